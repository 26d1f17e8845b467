"""A fix for Gradio 6.31's output-image cache, applied by app.py (and bench/floor_app.py) at start.

The race: Gradio saves every output image under `<cache>/<sha256 of its bytes>/image.<ext>` and
rewrites that file in place (`Path.write_bytes`: truncate, then write) each time the same image is
returned. When two requests return the same image at once (16 clients sending the same drawing;
many users on a blank canvas, whose model view is the same black square), one request's rewrite
truncates the file while another's download is being served: Starlette has already sent a
Content-Length of N bytes and then finds 0, and the client fails with
`httpx.RemoteProtocolError: peer closed connection without sending complete message body
(received 0 bytes, expected N)`. Measured in bench/app_roundtrip.py before the fix: 13 to 29
errors in 320 requests at 16 clients, the constant-handler floor app included.

The fix: a file whose name is the hash of its content is written once, atomically (a temporary
file in the same folder, then os.replace), and never rewritten. A reader sees the whole file or
none; since the name is the content's hash, an existing file is already right.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from hwr.fileio import TEMP_PREFIX, write_all

log = logging.getLogger(__name__)

_PATCHED = "_hwr_atomic"  # attribute set on the replacement function, so patching is idempotent


def write_once(path: Path, data: bytes) -> None:
    """Write `data` to `path` unless it exists: temp file + os.replace, so readers never see a part.

    No fsync: this is a cache that Gradio rebuilds, not data to keep across a crash.
    """
    if path.exists():
        return
    tmp = path.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}{path.suffix}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def make_image_cache_writes_atomic() -> bool:
    """Replace gradio.processing_utils.save_pil_to_cache with a write-once, atomic version.

    Every Gradio image output (Image, Gallery, AnnotatedImage, and numpy arrays through
    save_img_array_to_cache) goes through that one function. Returns True when the patch is in
    place (also when it already was).
    """
    from gradio import processing_utils as pu

    if getattr(pu.save_pil_to_cache, _PATCHED, False):
        return True

    def save_pil_to_cache(img: Any, cache_dir: str, name: str = "image", format: str = "webp") -> str:
        data = pu.encode_pil_to_bytes(img, format)
        folder = Path(cache_dir) / pu.hash_bytes(data)
        folder.mkdir(exist_ok=True, parents=True)
        path = (folder / f"{name}.{format}").resolve()
        write_once(path, data)
        return str(path)

    setattr(save_pil_to_cache, _PATCHED, True)
    pu.save_pil_to_cache = save_pil_to_cache
    log.debug("Gradio's output-image cache now writes each file once, atomically")
    return True
