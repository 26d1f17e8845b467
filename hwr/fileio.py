"""Crash-safe file writes shared by checkpoints and the corrections store.

A file is written to a temporary name in the same folder, fsynced, renamed over the target with
os.replace (atomic on POSIX), and the folder is fsynced: readers see the old file or the whole new
one, never a torn one, even if the process is killed at any moment.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from pathlib import Path

TEMP_PREFIX = ".tmp-"  # every temp file we create starts with this; CorrectionStore.verify cleans stale ones


def fsync_dir(path: Path) -> None:
    """fsync a folder, so a rename inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:  # pragma: no cover - os.write raises rather than return 0 on regular files
            raise OSError(errno.EIO, "short write")
        view = view[n:]


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temp file in the same folder, fsync, os.replace, fsync folder."""
    tmp = path.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}{path.suffix}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
