"""A crash-safe store of user corrections: each one a PNG of the drawing plus one metadata line.

Layout (the "imagefolder" layout that Hugging Face `datasets` and torchvision `ImageFolder` read
as they are)::

    <dir>/metadata.jsonl          one JSON object per line, see `CorrectionStore.add`
    <dir>/<label>/<id>.png        the drawing as drawn (longer side at most MAX_SAVED_SIDE px)
    <dir>/.lock                   flock(2) target that serialises metadata writers

Durability protocol of `add` (so that a crash or SIGKILL at any moment leaves either the whole
sample, or at worst a PNG without a metadata line -- an "orphan" that `verify` reports and repairs --
and metadata never names a missing file):

1. encode the PNG in memory; write it to `<label>/.tmp-<random>.png`, fsync;
2. under an exclusive flock on `.lock`: `os.replace` it to `<label>/<id>.png`, fsync the folder,
   append the metadata line with one `os.write` (O_APPEND), fsync the metadata file.

Metadata is only ever appended under the lock, or rewritten whole (temp file + `os.replace`) under
the lock. Readers take a shared lock and skip torn lines (e.g. a partial last line) with a warning.

Command line::

    python -m hwr.corrections verify DIR [--repair]
    python -m hwr.corrections export DIR ZIP
    python -m hwr.corrections counts DIR
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import io
import json
import logging
import os
import re
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hwr.fileio import TEMP_PREFIX, atomic_write, fsync_dir, write_all
from hwr.preprocess import PREPROCESS_VERSION, EmptyDrawingError, as_array, ink_bbox, to_ink, to_uint8

log = logging.getLogger(__name__)

METADATA_NAME = "metadata.jsonl"  # the name Hugging Face `datasets` "imagefolder" looks for
LOCK_NAME = ".lock"
CORRUPT_SUFFIX = ".corrupt"  # undecodable PNGs are renamed `<id>.png.corrupt` by repair, not deleted
DROPPED_NAME = ".dropped-metadata.jsonl"  # metadata lines removed by repair are kept here

MAX_SAVED_SIDE = 512  # saved PNGs are downscaled so their longer side is at most this (brief)
MAX_INPUT_SIDE = 4096  # refuse inputs larger than this a side (brief): far above any canvas
MAX_INPUT_BYTES = 10 * 1024 * 1024  # refuse encoded inputs (bytes, files) over 10 MB (brief)
MAX_LINE_BYTES = 64 * 1024  # one metadata line; a drawing's metadata is a few hundred bytes
MAX_LABEL_LEN = 64  # labels become folder names: short and portable
LABEL_RE = re.compile(r"[A-Za-z0-9_-]+")  # no dots, slashes or spaces: never a path trick
ID_RE = re.compile(r"[0-9a-f]{32}")  # uuid4().hex
# A temp file younger than this may belong to a save in progress; repair leaves it alone.
# A save writes a <= 512 px PNG in milliseconds, so a minute is a wide margin.
DEFAULT_TEMP_GRACE_S = 60.0

REQUIRED_KEYS = ("file_name", "label", "id")
RESERVED_KEYS = frozenset(
    {"file_name", "label", "predicted", "probability", "checkpoint", "time", "preprocess_version", "id"}
)


class StoreWriteError(OSError):
    """Writing to the store failed (read-only folder, full disk, ...); the store is left intact."""

    def __init__(self, message: str, err: int | None = None) -> None:
        super().__init__(message)
        self.errno = err  # type: ignore[misc]


@dataclass(frozen=True)
class Sample:
    """One stored correction: `path` is the PNG, `meta` its whole metadata line."""

    id: str
    label: str
    path: Path
    meta: dict[str, Any]


@dataclass
class VerifyReport:
    """What `verify` found. Paths are relative to the store folder; `torn` holds line numbers (1-based).

    With repair, the lists describe what was found before repairing; `actions` says what was done.
    """

    n_ok: int = 0
    orphans: list[str] = field(default_factory=list)  # PNGs without a metadata line
    dangling: list[str] = field(default_factory=list)  # lines naming a missing or undecodable file
    torn: list[int] = field(default_factory=list)  # lines that are not valid JSON or lack keys
    duplicates: list[int] = field(default_factory=list)  # lines repeating an earlier id or file
    temp_files: list[str] = field(default_factory=list)  # leftovers of interrupted writes
    repaired: bool = False
    actions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing needs repair."""
        return not (self.orphans or self.dangling or self.torn or self.duplicates or self.temp_files)

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [
            f"{self.n_ok} good samples",
            f"{len(self.orphans)} orphan PNGs (no metadata line)",
            f"{len(self.dangling)} dangling metadata lines (file missing or undecodable)",
            f"{len(self.torn)} torn metadata lines",
            f"{len(self.duplicates)} duplicate metadata lines",
            f"{len(self.temp_files)} temp files",
        ]
        lines += [f"repair: {a}" for a in self.actions]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Small file-system helpers
# ---------------------------------------------------------------------------------------------


def _write_error(what: str, exc: OSError, where: Path) -> StoreWriteError:
    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: f"no permission to write in {where}",
        errno.EPERM: f"no permission to write in {where}",
    }
    reason = reasons.get(exc.errno or 0, exc.strerror or str(exc))
    return StoreWriteError(f"{what} failed: {reason} ({type(exc).__name__}: {exc}).", exc.errno)


# ---------------------------------------------------------------------------------------------
# Input checks and image conversion
# ---------------------------------------------------------------------------------------------


def _too_large(w: int, h: int) -> ValueError:
    return ValueError(f"Image too large: {w}x{h} pixels (limit {MAX_INPUT_SIDE} px a side).")


def _open_encoded(source: str | Path | bytes) -> Image.Image:
    """Open a file path or encoded bytes, checking byte size and pixel size before decoding."""
    if isinstance(source, bytes):
        n = len(source)
    else:
        try:
            n = os.stat(source).st_size
        except (OSError, ValueError):
            raise ValueError(f"Image file not found or unreadable: {source}") from None
    if n > MAX_INPUT_BYTES:
        raise ValueError(f"Image file too large: {n:,} bytes (limit {MAX_INPUT_BYTES:,} bytes).")
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except Exception as exc:  # PIL raises many types (UnidentifiedImageError, OSError, ...)
        raise ValueError(f"Not a readable image file ({type(exc).__name__}: {exc}).") from None
    w, h = img.size
    if max(w, h) > MAX_INPUT_SIDE:
        raise _too_large(w, h)
    try:
        img.load()
    except Exception as exc:
        raise ValueError(f"Image file is truncated or corrupt ({type(exc).__name__}: {exc}).") from None
    return img


def _check_size(image: Any) -> Any:
    """Refuse oversized inputs before decoding them; return the input (encoded ones opened)."""
    if isinstance(image, dict):  # Gradio Sketchpad: check every part it may be composed from
        out = dict(image)
        for k in ("background", "composite"):
            if out.get(k) is not None:
                out[k] = _check_size(out[k])
        if isinstance(out.get("layers"), (list, tuple)):
            out["layers"] = [_check_size(x) for x in out["layers"] if x is not None]
        return out
    if isinstance(image, (str, Path, bytes)):
        return _open_encoded(image)
    if isinstance(image, Image.Image):
        w, h = image.size
        if max(w, h) > MAX_INPUT_SIDE:
            raise _too_large(w, h)
    return image


def _to_pil(arr: np.ndarray) -> Image.Image:
    """(H, W) -> L, (H, W, 3) -> RGB, (H, W, 2|4) -> RGBA (alpha kept)."""
    a = to_uint8(arr)
    if a.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(a), "L")
    c = a.shape[-1]
    if c == 2:
        a = np.concatenate([a[..., :1], a[..., :1], a[..., :1], a[..., 1:]], axis=-1)
        c = 4
    return Image.fromarray(np.ascontiguousarray(a), "RGB" if c == 3 else "RGBA")


def _downscale(img: Image.Image, max_side: int = MAX_SAVED_SIDE) -> Image.Image:
    """Shrink so the longer side is at most `max_side`, keeping the aspect ratio (alpha-aware)."""
    w, h = img.size
    if max(w, h) <= max_side:
        return img
    s = max_side / max(w, h)
    size = (max(1, min(max_side, round(w * s))), max(1, min(max_side, round(h * s))))
    # Pillow premultiplies alpha for RGBA resizes, so transparent pixels do not bleed colour.
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def encode_drawing(image: Any) -> tuple[bytes, tuple[int, int], str]:
    """Validate a drawing and encode it as the PNG we store: (png bytes, (w, h), PIL mode).

    Raises ValueError for non-images and oversized inputs, EmptyDrawingError for blank drawings.
    """
    arr = as_array(_check_size(image))
    h, w = arr.shape[:2]
    if max(h, w) > MAX_INPUT_SIDE:
        raise _too_large(w, h)
    if ink_bbox(to_ink(arr).ink) is None:
        raise EmptyDrawingError("The drawing is empty: draw the digit before saving a correction.")
    img = _downscale(_to_pil(arr))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue(), img.size, img.mode


# ---------------------------------------------------------------------------------------------
# Metadata lines
# ---------------------------------------------------------------------------------------------


def _valid_label(label: Any) -> bool:
    return (
        isinstance(label, str)
        and 0 < len(label) <= MAX_LABEL_LEN
        and LABEL_RE.fullmatch(label) is not None
    )


def _parse_line(raw: bytes) -> dict[str, Any] | None:
    """A metadata line -> its record, or None when torn (not JSON, missing keys, unsafe file name)."""
    try:
        rec = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str) for k in REQUIRED_KEYS):
        return None
    label, id_ = rec["label"], rec["id"]
    # file_name must be exactly "<label>/<id>.png" with safe parts: a line never points elsewhere.
    if not _valid_label(label) or not _valid_label(id_) or rec["file_name"] != f"{label}/{id_}.png":
        return None
    return rec


@dataclass
class _Line:
    number: int  # 1-based
    raw: bytes
    record: dict[str, Any] | None


def _split_lines(data: bytes) -> list[_Line]:
    out = []
    for i, raw in enumerate(data.split(b"\n"), start=1):
        if raw.strip():
            out.append(_Line(i, raw, _parse_line(raw)))
    return out


def _decodable(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            img.load()
        return True
    except Exception:
        return False


# ---------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------


class CorrectionStore:
    """Corrections in `path` (created on the first save). `classes`, if given, are the allowed labels;
    `preprocess_version` is recorded with each sample (the recipe of the model it was saved for)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        classes: Sequence[str] | None = None,
        preprocess_version: str = PREPROCESS_VERSION,
    ) -> None:
        self.root = Path(path)
        self.preprocess_version = preprocess_version
        if classes is not None:
            classes = list(classes)
            bad = [c for c in classes if not _valid_label(c)]
            if not classes or bad:
                raise ValueError(
                    f"classes must be non-empty labels of 1-{MAX_LABEL_LEN} characters from "
                    f"[A-Za-z0-9_-]; got {bad or classes!r}."
                )
        self.classes: list[str] | None = classes

    def __repr__(self) -> str:
        return f"CorrectionStore({str(self.root)!r}, classes={self.classes!r})"

    @property
    def metadata_path(self) -> Path:
        """The metadata.jsonl file."""
        return self.root / METADATA_NAME

    # -- locking ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self, exclusive: bool) -> Iterator[None]:
        """flock on `<dir>/.lock`. A shared lock on a store we cannot write is skipped (read-only use)."""
        lock_path = self.root / LOCK_NAME
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exclusive:
                raise
            try:
                fd = os.open(lock_path, os.O_RDONLY)
            except OSError:
                log.debug("Reading %s without a lock (%s).", self.root, exc)
                yield
                return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    # -- reading ------------------------------------------------------------------------------

    def _read_lines(self) -> list[_Line]:
        try:
            data = self.metadata_path.read_bytes()
        except FileNotFoundError:
            return []
        return _split_lines(data)

    def _records(self, lines: list[_Line]) -> list[dict[str, Any]]:
        """Valid records, first occurrence of each id; torn lines skipped with a warning."""
        torn = [ln.number for ln in lines if ln.record is None]
        if torn:
            log.warning(
                "%s: skipping %d torn metadata line(s) %s; run `python -m hwr.corrections verify "
                "--repair %s`.", self.metadata_path, len(torn), torn[:10], self.root,
            )
        seen: set[str] = set()
        out = []
        for ln in lines:
            if ln.record is not None and ln.record["id"] not in seen:
                seen.add(ln.record["id"])
                out.append(ln.record)
        return out

    def samples(self) -> list[Sample]:
        """All corrections named by metadata, in the order they were saved."""
        if not self.root.is_dir():
            return []
        with self._lock(exclusive=False):
            lines = self._read_lines()
        return [
            Sample(r["id"], r["label"], self.root / r["file_name"], r) for r in self._records(lines)
        ]

    def counts(self) -> dict[str, int]:
        """Number of corrections per label (every class listed, with 0, when classes are given)."""
        out: dict[str, int] = dict.fromkeys(self.classes or [], 0)
        for s in self.samples():
            out[s.label] = out.get(s.label, 0) + 1
        return out

    def __len__(self) -> int:
        return len(self.samples())

    # -- writing ------------------------------------------------------------------------------

    def _check_label(self, label: Any) -> str:
        if not isinstance(label, str):
            raise ValueError(f"The label must be a string, got {type(label).__name__}.")
        if self.classes is not None:
            if label not in self.classes:
                raise ValueError(f"Unknown label {label!r}: choose one of {', '.join(self.classes)}.")
        elif not _valid_label(label):
            raise ValueError(
                f"Invalid label {label[:80]!r}: use 1-{MAX_LABEL_LEN} characters from A-Z, a-z, 0-9, "
                "'_' and '-' (it becomes a folder name)."
            )
        return label

    def _build_record(
        self, label: str, predicted: Any, probability: Any, checkpoint: Any, meta: dict[str, Any]
    ) -> dict[str, Any]:
        clash = sorted(RESERVED_KEYS & meta.keys())
        if clash:
            raise ValueError(f"Metadata keys {clash} are reserved; pass them as named arguments.")
        if probability is not None:
            try:
                probability = float(probability)
            except (TypeError, ValueError):
                raise ValueError(f"probability must be a number or None, got {probability!r}.") from None
            if not (0.0 <= probability <= 1.0):
                raise ValueError(f"probability must be in [0, 1], got {probability}.")
        rec: dict[str, Any] = {
            "file_name": None,
            "label": label,
            "predicted": None if predicted is None else str(predicted)[:MAX_LABEL_LEN],
            "probability": probability,
            "checkpoint": None if checkpoint is None else str(checkpoint),
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "preprocess_version": self.preprocess_version,
            "id": None,
            **meta,
        }
        try:
            json.dumps(rec, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"Metadata must be JSON-serialisable ({exc}).") from None
        return rec

    def _append_line(self, rec: dict[str, Any]) -> None:
        """Append one record to metadata.jsonl. Caller holds the exclusive lock.

        One os.write with O_APPEND, then fsync. If the file's last line lacks its newline (a torn
        write), the new line starts on a fresh line. On failure the file is cut back to its
        previous size, so no partial line is left behind.
        """
        line = json.dumps(rec, ensure_ascii=True, allow_nan=False).encode() + b"\n"
        fd = os.open(self.metadata_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            try:
                n = os.write(fd, line)
                if n != len(line):
                    raise OSError(errno.ENOSPC, f"short write ({n} of {len(line)} bytes)")
                os.fsync(fd)
            except BaseException:
                try:
                    os.ftruncate(fd, size)
                    os.fsync(fd)
                except OSError as exc:  # the partial line, if any, is skipped as torn by readers
                    log.error("Could not roll back %s after a failed write: %s", self.metadata_path, exc)
                raise
        finally:
            os.close(fd)

    def add(
        self,
        image: Any,
        label: str,
        *,
        predicted: Any = None,
        probability: float | None = None,
        checkpoint: str | None = None,
        **meta: Any,
    ) -> str:
        """Store a correction: `image` (anything `hwr.preprocess.as_array` reads) drawn as `label`.

        `predicted`, `probability` and `checkpoint` describe the model's wrong answer; other keyword
        arguments are stored as extra JSON metadata. Returns the new sample's id (uuid4 hex).
        Raises ValueError (EmptyDrawingError for blank drawings) for bad input, before anything is
        written, and StoreWriteError (an OSError) when the disk refuses; the store stays intact.
        """
        label = self._check_label(label)
        rec = self._build_record(label, predicted, probability, checkpoint, meta)
        png, _, _ = encode_drawing(image)

        id_ = uuid.uuid4().hex
        rec["file_name"], rec["id"] = f"{label}/{id_}.png", id_
        if len(json.dumps(rec)) + 2 > MAX_LINE_BYTES:
            raise ValueError(f"Metadata too large (limit {MAX_LINE_BYTES:,} bytes a sample).")
        label_dir = self.root / label
        final = label_dir / f"{id_}.png"
        tmp = label_dir / f"{TEMP_PREFIX}{id_}.png"
        what = "Saving the correction"
        try:
            new_dir = not label_dir.is_dir()
            label_dir.mkdir(parents=True, exist_ok=True)
            if new_dir:
                fsync_dir(self.root)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                write_all(fd, png)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise _write_error(what, exc, label_dir) from exc
        try:
            with self._lock(exclusive=True):
                placed = False
                try:
                    os.replace(tmp, final)
                    placed = True
                    fsync_dir(label_dir)
                    self._append_line(rec)
                except BaseException:
                    # Roll back under the lock: no orphan, no temp file.
                    with contextlib.suppress(OSError):
                        (final if placed else tmp).unlink()
                    raise
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise _write_error(what, exc, self.root) from exc
        log.info("Saved correction %s as %r (predicted %r).", id_, label, rec["predicted"])
        return id_

    def delete(self, id: str) -> bool:
        """Remove a correction (its metadata line, then its PNG), e.g. to undo the last save.

        Returns False when no such id exists. Ids that are not uuid4 hex are never looked up.
        """
        if not isinstance(id, str) or not ID_RE.fullmatch(id) or not self.root.is_dir():
            return False
        try:
            with self._lock(exclusive=True):
                lines = self._read_lines()
                hit = [ln for ln in lines if ln.record is not None and ln.record["id"] == id]
                files = [self.root / ln.record["file_name"] for ln in hit if ln.record is not None]
                if hit:
                    keep = [ln.raw for ln in lines if ln not in hit]
                    atomic_write(self.metadata_path, b"".join(r + b"\n" for r in keep))
                else:  # an orphan PNG with this id (e.g. after a crash) is removed too
                    files = [p for p in self.root.glob(f"*/{id}.png") if p.parent.name[:1] != "."]
                for p in files:
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
                        fsync_dir(p.parent)
        except OSError as exc:
            raise _write_error("Deleting the correction", exc, self.root) from exc
        if hit or files:
            log.info("Deleted correction %s.", id)
        return bool(hit or files)

    def export(self, zip_path: str | os.PathLike[str]) -> Path:
        """Zip the samples and their metadata (imagefolder layout at the zip's root), atomically.

        Only samples named by valid metadata lines go in (torn lines and orphan PNGs are left out:
        run `verify(repair=True)` first to include orphans).
        """
        zip_path = Path(zip_path)
        if zip_path.is_dir():
            raise ValueError(f"{zip_path} is a folder; give the path of the zip file to write.")
        n = 0
        try:
            zip_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = zip_path.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}.zip"
            try:
                with self._lock(exclusive=False):
                    lines = self._read_lines() if self.root.is_dir() else []
                    kept: list[bytes] = []
                    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:  # PNGs are compressed
                        for rec, raw in self._export_lines(lines):
                            try:
                                zf.write(self.root / rec["file_name"], rec["file_name"])
                            except FileNotFoundError:
                                log.warning("Export: %s is missing; left out.", rec["file_name"])
                                continue
                            kept.append(raw)
                        zf.writestr(
                            METADATA_NAME, b"".join(r + b"\n" for r in kept), zipfile.ZIP_DEFLATED
                        )
                        n = len(kept)
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, zip_path)
                fsync_dir(zip_path.parent)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
        except OSError as exc:
            raise _write_error("Exporting the corrections", exc, zip_path.parent) from exc
        log.info("Exported %d corrections to %s.", n, zip_path)
        return zip_path

    def _export_lines(self, lines: list[_Line]) -> Iterator[tuple[dict[str, Any], bytes]]:
        seen: set[str] = set()
        self._records(lines)  # logs torn lines
        for ln in lines:
            if ln.record is not None and ln.record["id"] not in seen:
                seen.add(ln.record["id"])
                yield ln.record, ln.raw

    # -- verification -------------------------------------------------------------------------

    def _scan_files(self) -> tuple[set[str], list[str]]:
        """(relative paths of PNGs in label folders, relative paths of temp files)."""
        pngs: set[str] = set()
        temps: list[str] = []
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            if entry.name.startswith(TEMP_PREFIX) and entry.is_file(follow_symlinks=False):
                temps.append(entry.name)
            elif entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                for sub in sorted(os.scandir(entry.path), key=lambda e: e.name):
                    if not sub.is_file(follow_symlinks=False):
                        continue
                    rel = f"{entry.name}/{sub.name}"
                    if sub.name.startswith(TEMP_PREFIX):
                        temps.append(rel)
                    elif sub.name.lower().endswith(".png"):
                        pngs.add(rel)
        return pngs, temps

    def verify(self, repair: bool = False, temp_grace_s: float = DEFAULT_TEMP_GRACE_S) -> VerifyReport:
        """Check that metadata and files agree; with `repair`, make them agree without losing data.

        Finds orphan PNGs (no metadata line), dangling lines (file missing or undecodable), torn
        lines (not JSON, or lacking file_name/label/id), duplicate lines and temp files. Repair:
        - orphans are re-added with a metadata line (label from the folder name, `recovered: true`,
          the file's name as id when it is a uuid4 hex, else it is renamed to a new id); orphans
          in a folder that is not a valid label are left and reported;
        - torn, duplicate and dangling lines are removed from metadata.jsonl and appended to
          `.dropped-metadata.jsonl`, so nothing is lost;
        - undecodable PNGs are renamed `<name>.png.corrupt` (readers ignore them), not deleted;
        - temp files older than `temp_grace_s` seconds are deleted (younger ones may belong to a
          save in progress).
        The whole check runs under the store's lock, so saves wait for it.
        The report lists what was found (before repair); call verify() again to confirm.
        """
        report = VerifyReport(repaired=repair)
        if not self.root.is_dir():
            return report
        try:
            with self._lock(exclusive=repair):
                self._verify_locked(report, repair, temp_grace_s)
        except OSError as exc:
            what = "Repairing the store" if repair else "Verifying the store"
            raise _write_error(what, exc, self.root) from exc
        return report

    def _verify_locked(self, report: VerifyReport, repair: bool, temp_grace_s: float) -> None:
        lines = self._read_lines()
        pngs, report.temp_files = self._scan_files()
        seen_ids: set[str] = set()
        seen_files: set[str] = set()
        drop: list[tuple[_Line, str]] = []  # (line, reason)
        corrupt: list[str] = []
        for ln in lines:
            rec = ln.record
            if rec is None:
                report.torn.append(ln.number)
                drop.append((ln, "torn"))
            elif rec["id"] in seen_ids or rec["file_name"] in seen_files:
                report.duplicates.append(ln.number)
                drop.append((ln, "duplicate"))
            else:
                seen_ids.add(rec["id"])
                seen_files.add(rec["file_name"])
                path = self.root / rec["file_name"]
                if rec["file_name"] in pngs and _decodable(path):
                    report.n_ok += 1
                else:
                    report.dangling.append(rec["file_name"])
                    drop.append((ln, "dangling"))
                    if path.is_file():
                        corrupt.append(rec["file_name"])
        report.orphans = sorted(pngs - seen_files)
        if not repair or report.ok:
            return

        now = time.time()
        for rel in report.temp_files:
            p = self.root / rel
            try:
                if now - p.stat().st_mtime >= temp_grace_s:
                    p.unlink()
                    report.actions.append(f"deleted temp file {rel}")
                else:
                    report.actions.append(f"kept recent temp file {rel} (a save may be in progress)")
            except FileNotFoundError:
                pass

        for rel in corrupt:
            os.replace(self.root / rel, self.root / (rel + CORRUPT_SUFFIX))
            report.actions.append(f"renamed undecodable {rel} to {rel + CORRUPT_SUFFIX}")

        new_records: list[dict[str, Any]] = []
        for rel in report.orphans:
            rec_or_none = self._recover_orphan(rel, seen_ids, report)
            if rec_or_none is not None:
                new_records.append(rec_or_none)

        if drop:
            stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
            dropped = b"".join(
                json.dumps({"dropped": stamp, "reason": why, "line": ln.number,
                            "raw": ln.raw.decode("utf-8", "replace")}).encode() + b"\n"
                for ln, why in drop
            )
            fd = os.open(self.root / DROPPED_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                write_all(fd, dropped)
                os.fsync(fd)
            finally:
                os.close(fd)
            report.actions.append(f"moved {len(drop)} bad metadata line(s) to {DROPPED_NAME}")
        if drop or new_records:
            dropped_ids = {id(ln) for ln, _ in drop}
            keep = [ln.raw + b"\n" for ln in lines if id(ln) not in dropped_ids]
            keep += [json.dumps(r, ensure_ascii=True).encode() + b"\n" for r in new_records]
            atomic_write(self.metadata_path, b"".join(keep))
        log.info("Repaired %s: %s", self.root, "; ".join(report.actions) or "nothing to do")

    def _recover_orphan(self, rel: str, seen_ids: set[str], report: VerifyReport) -> dict[str, Any] | None:
        """Give an orphan PNG a metadata line (renaming it to a fresh id if needed); None if left."""
        label, name = rel.split("/", 1)
        path = self.root / rel
        if not _valid_label(label) or (self.classes is not None and label not in self.classes):
            report.actions.append(f"left orphan {rel}: its folder is not a known label")
            return None
        if not _decodable(path):
            os.replace(path, self.root / (rel + CORRUPT_SUFFIX))
            report.actions.append(f"renamed undecodable orphan {rel} to {rel + CORRUPT_SUFFIX}")
            return None
        stem = name[: -len(".png")]
        if ID_RE.fullmatch(stem) and stem not in seen_ids:
            id_ = stem
        else:
            id_ = uuid.uuid4().hex
            os.replace(path, self.root / label / f"{id_}.png")
            fsync_dir(self.root / label)
        seen_ids.add(id_)
        report.actions.append(f"re-added orphan {rel} as {label}/{id_}.png")
        return {
            "file_name": f"{label}/{id_}.png",
            "label": label,
            "predicted": None,
            "probability": None,
            "checkpoint": None,
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "preprocess_version": None,  # unknown: the line that would have said it was lost
            "id": id_,
            "recovered": True,
        }


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m hwr.corrections {verify,export,counts} ...`; returns the exit code."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(
        prog="python -m hwr.corrections", description="Inspect, repair and export a corrections folder.",
        formatter_class=fmt,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("verify", formatter_class=fmt,
                       help="check metadata against files; exit code 1 if problems remain unrepaired")
    p.add_argument("dir", type=Path, help="the corrections folder")
    p.add_argument(
        "--repair", action="store_true", help="fix what is found (re-adds orphans, drops bad lines)"
    )
    p.add_argument("--temp-grace", type=float, default=DEFAULT_TEMP_GRACE_S,
                   help="with --repair, keep temp files younger than this many seconds")
    p = sub.add_parser("export", formatter_class=fmt, help="zip the samples with their metadata")
    p.add_argument("dir", type=Path, help="the corrections folder")
    p.add_argument("zip", type=Path, help="the zip file to write (replaced atomically)")
    p = sub.add_parser("counts", formatter_class=fmt, help="print the number of corrections per label")
    p.add_argument("dir", type=Path, help="the corrections folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    if not args.dir.is_dir():
        print(f"error: {args.dir} is not a folder", file=sys.stderr)
        return 2
    store = CorrectionStore(args.dir)
    try:
        if args.command == "verify":
            report = store.verify(repair=args.repair, temp_grace_s=args.temp_grace)
            print(report.summary())
            if args.repair:
                after = store.verify()
                print("after repair:\n" + after.summary())
                return 0 if after.ok else 1
            return 0 if report.ok else 1
        if args.command == "export":
            print(store.export(args.zip))
            return 0
        counts = store.counts()
        for label in sorted(counts):
            print(f"{label}\t{counts[label]}")
        print(f"total\t{sum(counts.values())}")
        return 0
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
