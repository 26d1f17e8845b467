"""hwr.gradio_fixes: Gradio's output-image cache never shows a reader a partly written file."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from PIL import Image

from hwr.gradio_fixes import make_image_cache_writes_atomic, write_once


def test_write_once_writes_whole_files_and_never_rewrites(tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    write_once(path, b"first")
    write_once(path, b"second")  # same name means same content in a content-addressed cache
    assert path.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["image.png"]  # no temp file left behind


def test_patched_cache_serves_whole_files_while_the_same_image_is_saved_again(tmp_path: Path) -> None:
    """The race behind the RemoteProtocolErrors at 16 clients: readers stat a cached image and read
    it while other requests save the same image again. Every read must see the whole file."""
    from gradio import processing_utils as pu

    assert make_image_cache_writes_atomic()
    assert make_image_cache_writes_atomic()  # idempotent
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (224, 224), dtype=np.uint8))
    path = Path(pu.save_pil_to_cache(image, str(tmp_path), format="png"))
    size = path.stat().st_size
    short_reads: list[int] = []
    stop = threading.Event()

    def save_again() -> None:
        while not stop.is_set():
            assert pu.save_pil_to_cache(image, str(tmp_path), format="png") == str(path)

    def read() -> None:
        for _ in range(300):
            data = path.read_bytes()
            if len(data) != size:
                short_reads.append(len(data))

    writers = [threading.Thread(target=save_again) for _ in range(4)]
    readers = [threading.Thread(target=read) for _ in range(4)]
    for t in writers + readers:
        t.start()
    for t in readers:
        t.join()
    stop.set()
    for t in writers:
        t.join()
    assert short_reads == []
    assert Image.open(path).size == (224, 224)
    assert sorted(p.name for p in path.parent.iterdir()) == ["image.png"]
