"""Tests for hwr.corrections: the crash-safe store of user corrections."""

from __future__ import annotations

import errno
import io
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from hwr import corrections
from hwr.corrections import (
    METADATA_NAME,
    CorrectionStore,
    Sample,
    StoreWriteError,
    VerifyReport,
)
from hwr.preprocess import PREPROCESS_VERSION, EmptyDrawingError

DIGITS = [str(i) for i in range(10)]
REPO = Path(__file__).resolve().parents[1]
# 'fork' shares the already imported modules with the children, so 8 workers start instantly
# (spawn would import torch 8 times on a 2-core machine). The children use numpy and PIL only.
FORK = multiprocessing.get_context("fork")


def drawing(h: int = 64, w: int = 64, kind: str = "L") -> np.ndarray:
    """A small drawing: a dark vertical stroke on white ("L", "RGB"), or opaque ink on transparent."""
    top, bottom, left, right = h // 6, h - h // 6, w // 2 - max(1, w // 16), w // 2 + max(1, w // 16)
    if kind == "L":
        a = np.full((h, w), 255, np.uint8)
        a[top:bottom, left:right] = 0
    elif kind == "RGB":
        a = np.full((h, w, 3), 255, np.uint8)
        a[top:bottom, left:right] = (0, 0, 200)
    elif kind == "RGBA":
        a = np.zeros((h, w, 4), np.uint8)
        a[top:bottom, left:right] = (0, 0, 0, 255)
    elif kind == "LA":
        a = np.zeros((h, w, 2), np.uint8)
        a[top:bottom, left:right] = (0, 255)
    else:
        raise AssertionError(kind)
    return a


def png_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def all_files(root: Path) -> list[str]:
    """Every file under root, relative, except the lock file."""
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != ".lock"
    )


def meta_lines(root: Path) -> list[str]:
    p = root / METADATA_NAME
    return p.read_text().splitlines() if p.exists() else []


@pytest.fixture
def store(tmp_path: Path) -> CorrectionStore:
    return CorrectionStore(tmp_path / "corrections", classes=DIGITS)


# ---------------------------------------------------------------------------------------------
# Round trip
# ---------------------------------------------------------------------------------------------


def test_round_trip_grey(store: CorrectionStore) -> None:
    img = drawing()
    before = datetime.now(timezone.utc).replace(microsecond=0)
    sid = store.add(img, "7", predicted=1, probability=np.float32(0.75), checkpoint="cnn-v2", user="anon")
    assert len(sid) == 32 and int(sid, 16) >= 0

    assert len(store) == 1
    assert store.counts() == {**dict.fromkeys(DIGITS, 0), "7": 1}
    [s] = store.samples()
    assert isinstance(s, Sample)
    assert (s.id, s.label) == (sid, "7")
    assert s.path == store.root / "7" / f"{sid}.png"
    with Image.open(s.path) as im:
        assert im.mode == "L" and im.size == (64, 64)
        np.testing.assert_array_equal(np.asarray(im), img)  # PNG is lossless: the drawing as drawn

    [line] = meta_lines(store.root)
    rec = json.loads(line)
    assert rec == s.meta
    assert rec["file_name"] == f"7/{sid}.png"
    assert rec["label"] == "7" and rec["predicted"] == "1" and rec["probability"] == 0.75
    assert rec["checkpoint"] == "cnn-v2" and rec["preprocess_version"] == PREPROCESS_VERSION
    assert rec["id"] == sid and rec["user"] == "anon"
    t = datetime.fromisoformat(rec["time"])
    assert t.utcoffset().total_seconds() == 0 and before <= t <= datetime.now(timezone.utc)
    assert store.verify().ok


def test_optional_metadata_is_null(store: CorrectionStore) -> None:
    store.add(drawing(), "3")
    rec = store.samples()[0].meta
    assert rec["predicted"] is None and rec["probability"] is None and rec["checkpoint"] is None


@pytest.mark.parametrize(
    ("kind", "mode"), [("L", "L"), ("RGB", "RGB"), ("RGBA", "RGBA"), ("LA", "RGBA")]
)
def test_saved_mode_keeps_alpha(store: CorrectionStore, kind: str, mode: str) -> None:
    img = drawing(40, 30, kind)
    store.add(img, "1")
    with Image.open(store.samples()[0].path) as im:
        assert im.mode == mode and im.size == (30, 40)
        if kind in ("RGBA", "LA"):
            alpha = np.asarray(im)[..., 3]
            np.testing.assert_array_equal(alpha, img[..., -1])


def test_downscale_to_512_keeps_aspect_and_alpha(store: CorrectionStore) -> None:
    img = drawing(600, 1200, "RGBA")
    store.add(img, "1")
    with Image.open(store.samples()[0].path) as im:
        assert im.mode == "RGBA" and im.size == (512, 256)
        a = np.asarray(im)
    assert a[0, 0, 3] == 0  # the background stays transparent
    assert a[128, 256, 3] == 255  # the stroke stays opaque


@pytest.mark.parametrize("form", ["pil", "bytes", "path", "sketchpad", "sketchpad-layers", "float"])
def test_input_forms(store: CorrectionStore, tmp_path: Path, form: str) -> None:
    img = drawing(48, 48, "RGBA")
    if form == "pil":
        x = Image.fromarray(img)
    elif form == "bytes":
        x = png_bytes(img)
    elif form == "path":
        x = tmp_path / "in.png"
        x.write_bytes(png_bytes(img))
    elif form == "sketchpad":
        x = {"background": None, "layers": [], "composite": img}
    elif form == "sketchpad-layers":
        x = {"background": np.zeros_like(img), "layers": [img], "composite": None}
    else:
        x = img.astype(np.float64) / 255.0
    store.add(x, "5")
    with Image.open(store.samples()[0].path) as im:
        assert im.size == (48, 48)
        np.testing.assert_array_equal(np.asarray(im.convert("RGBA"))[..., 3], img[..., 3])


# ---------------------------------------------------------------------------------------------
# Bad input: refused with a clear message, nothing written
# ---------------------------------------------------------------------------------------------


def assert_nothing_written(store: CorrectionStore) -> None:
    assert not store.root.exists() or all_files(store.root) == []


@pytest.mark.parametrize(
    "label", ["../7", "", "7/8", "a", "77", "7 ", ".", "..", "é", 7, None, ["7"], "x" * 65]
)
def test_invalid_label_with_classes(store: CorrectionStore, label: object) -> None:
    with pytest.raises(ValueError, match="label"):
        store.add(drawing(), label)  # type: ignore[arg-type]
    assert_nothing_written(store)


@pytest.mark.parametrize("label", ["../x", "", "a/b", "a\\b", ".hidden", "x" * 65, "é", "a b", "a.b", 3])
def test_invalid_label_without_classes(tmp_path: Path, label: object) -> None:
    s = CorrectionStore(tmp_path / "c")
    with pytest.raises(ValueError, match="label"):
        s.add(drawing(), label)  # type: ignore[arg-type]
    assert_nothing_written(s)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(label=st.text(max_size=70))
def test_any_label_is_saved_inside_its_folder_or_refused(tmp_path: Path, label: str) -> None:
    root = tmp_path / "h"
    s = CorrectionStore(root)
    try:
        sid = s.add(drawing(16, 16), label)
    except ValueError:
        return
    path = (root / label / f"{sid}.png").resolve()
    assert path.parent.parent == root.resolve() and path.is_file()


def test_classes_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="classes"):
        CorrectionStore(tmp_path, classes=["ok", "../bad"])
    with pytest.raises(ValueError, match="classes"):
        CorrectionStore(tmp_path, classes=[])


@pytest.mark.parametrize(
    "image",
    [
        np.full((64, 64), 255, np.uint8),  # white paper
        np.zeros((64, 64), np.uint8),  # black paper
        np.zeros((64, 64, 4), np.uint8),  # transparent canvas
        {"background": None, "layers": [], "composite": None},  # untouched Sketchpad
    ],
    ids=["white", "black", "transparent", "sketchpad"],
)
def test_blank_refused(store: CorrectionStore, image: object) -> None:
    with pytest.raises(EmptyDrawingError, match="The drawing is empty"):
        store.add(image, "1")
    assert_nothing_written(store)


def test_huge_refused_before_decoding(store: CorrectionStore, tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(ValueError, match="too large"):
        store.add(np.zeros((10, 4097), np.uint8), "1")
    # A 5000x5000 PNG is tiny when encoded; it must be refused from its header, never decoded.
    big = png_bytes(np.zeros((5000, 5000), np.uint8))
    loads = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: loads.append(im) or real_load(im))
    with pytest.raises(ValueError, match="too large"):
        store.add(big, "1")
    assert loads == []
    p = tmp_path / "big.png"
    p.write_bytes(big)
    with pytest.raises(ValueError, match="too large"):
        store.add(p, "1")
    with pytest.raises(ValueError, match="too large"):
        store.add({"background": None, "layers": [], "composite": big}, "1")
    with pytest.raises(ValueError, match="too large"):
        store.add(Image.new("L", (4097, 8)), "1")
    # Over 10 MB encoded: refused by size, before PIL sees it.
    huge = png_bytes(drawing()) + b"\0" * (10 * 1024 * 1024)
    with pytest.raises(ValueError, match="too large"):
        store.add(huge, "1")
    p.write_bytes(huge)
    with pytest.raises(ValueError, match="too large"):
        store.add(str(p), "1")
    assert_nothing_written(store)


@pytest.mark.parametrize(
    "image",
    [
        b"not an image",
        png_bytes(drawing())[:60],  # truncated PNG
        "no/such/file.png",
        object(),
        np.array(["a", "b"]),
        np.zeros((4, 4, 7)),
        np.full((8, 8), np.nan),
        np.zeros((0, 5)),
        None,
    ],
    ids=[
        "junk-bytes", "truncated", "missing-file", "object", "strings", "7-channels", "nan", "empty",
        "none",
    ],
)
def test_non_image_refused(store: CorrectionStore, image: object) -> None:
    with pytest.raises(ValueError):
        store.add(image, "1")
    assert_nothing_written(store)


def test_bad_metadata_refused(store: CorrectionStore) -> None:
    with pytest.raises(ValueError, match="reserved"):
        store.add(drawing(), "1", file_name="../../x.png")
    with pytest.raises(ValueError, match="reserved"):
        store.add(drawing(), "1", id="mine")
    with pytest.raises(ValueError, match="JSON"):
        store.add(drawing(), "1", blob=object())
    with pytest.raises(ValueError, match="JSON"):
        store.add(drawing(), "1", score=float("nan"))
    with pytest.raises(ValueError, match="probability"):
        store.add(drawing(), "1", probability=1.5)
    with pytest.raises(ValueError, match="too large"):
        store.add(drawing(), "1", note="x" * 70_000)
    assert_nothing_written(store)


# ---------------------------------------------------------------------------------------------
# Delete and export
# ---------------------------------------------------------------------------------------------


def test_delete(store: CorrectionStore) -> None:
    ids = [store.add(drawing(), lab) for lab in "123"]
    assert store.delete(ids[1]) is True
    assert [s.id for s in store.samples()] == [ids[0], ids[2]]
    assert not (store.root / "2" / f"{ids[1]}.png").exists()
    assert store.counts()["2"] == 0
    assert store.delete(ids[1]) is False
    assert store.delete("0" * 32) is False
    assert store.delete("../../etc/passwd") is False
    assert store.delete(123) is False  # type: ignore[arg-type]
    assert store.delete(ids[2]) is True  # "undo last save"
    assert [s.id for s in store.samples()] == [ids[0]]
    assert store.verify().ok and not any(".tmp-" in f for f in all_files(store.root))


def test_delete_on_missing_store(tmp_path: Path) -> None:
    assert CorrectionStore(tmp_path / "nope").delete("0" * 32) is False
    assert not (tmp_path / "nope").exists()


def test_export_zip(store: CorrectionStore, tmp_path: Path) -> None:
    ids = [store.add(drawing(), lab) for lab in "1237"]
    out = tmp_path / "out" / "corr.zip"
    assert store.export(out) == out
    with zipfile.ZipFile(out) as zf:
        names = sorted(zf.namelist())
        assert names == sorted([METADATA_NAME] + [s.meta["file_name"] for s in store.samples()])
        recs = [json.loads(x) for x in zf.read(METADATA_NAME).decode().splitlines()]
        assert [r["id"] for r in recs] == ids
        for s in store.samples():
            assert zf.read(s.meta["file_name"]) == s.path.read_bytes()
    assert sorted(os.listdir(out.parent)) == ["corr.zip"]  # no temp file left
    store.delete(ids[0])
    store.export(out)  # replaces the old zip
    with zipfile.ZipFile(out) as zf:
        assert len(zf.namelist()) == 4


def test_export_refuses_a_folder(store: CorrectionStore, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="folder"):
        store.export(tmp_path)


# ---------------------------------------------------------------------------------------------
# Torn metadata, verify and repair
# ---------------------------------------------------------------------------------------------


def test_torn_last_line_is_skipped_and_next_append_starts_fresh(store: CorrectionStore, caplog) -> None:
    a = store.add(drawing(), "1")
    with open(store.metadata_path, "ab") as f:
        f.write(b'{"file_name": "1/abc')  # a write cut short: no newline
    with caplog.at_level("WARNING", logger="hwr.corrections"):
        assert [s.id for s in store.samples()] == [a]
    assert "torn" in caplog.text
    b = store.add(drawing(), "2")
    assert [s.id for s in store.samples()] == [a, b]
    lines = meta_lines(store.root)
    assert len(lines) == 3 and json.loads(lines[2])["id"] == b
    report = store.verify()
    assert report.torn == [2] and not report.ok


@pytest.mark.parametrize(
    "junk",
    [
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b'"just a string"',
        b'{"label": "1"}',
        b'{"file_name": "../../etc/passwd", "label": "1", "id": "x"}',
        b'{"file_name": "2/x.png", "label": "1", "id": "x"}',
        b"[" * 100_000,
    ],
    ids=["binary", "list", "string", "missing-keys", "traversal", "mismatch", "deep-nesting"],
)
def test_readers_never_crash_on_junk_metadata(store: CorrectionStore, junk: bytes) -> None:
    a = store.add(drawing(), "1")
    with open(store.metadata_path, "ab") as f:
        f.write(junk + b"\n")
    assert [s.id for s in store.samples()] == [a]
    assert store.counts()["1"] == 1
    assert store.verify().torn == [2]
    store.verify(repair=True)
    assert store.verify().ok and len(store) == 1


def test_verify_detects_and_repairs_everything(store: CorrectionStore) -> None:
    root = store.root
    good = [store.add(drawing(), lab) for lab in "1122"]
    png = (root / "1" / f"{good[0]}.png").read_bytes()

    # orphan with a uuid name (a save killed before its line), and one dropped in by hand
    orphan_id = "a" * 32
    (root / "3").mkdir()
    (root / "3" / f"{orphan_id}.png").write_bytes(png)
    (root / "3" / "by-hand.png").write_bytes(png)
    # dangling: a line naming a missing file, and one naming an undecodable file
    lost, broken = store.add(drawing(), "4"), store.add(drawing(), "5")
    (root / "4" / f"{lost}.png").unlink()
    (root / "5" / f"{broken}.png").write_bytes(b"\x89PNG garbage")
    # torn line, duplicate line, and an old temp file
    with open(store.metadata_path, "ab") as f:
        f.write(meta_lines(root)[0].encode() + b"\n")
        f.write(b'{"file_name": "9/')
    tmp = root / "1" / ".tmp-deadbeef.png"
    tmp.write_bytes(png[:10])
    os.utime(tmp, (time.time() - 3600,) * 2)

    r = store.verify()
    assert isinstance(r, VerifyReport) and not r.ok and not r.repaired
    assert r.n_ok == 4
    assert r.orphans == [f"3/{orphan_id}.png", "3/by-hand.png"]
    assert r.dangling == [f"4/{lost}.png", f"5/{broken}.png"]
    assert r.torn == [8] and r.duplicates == [7]
    assert r.temp_files == ["1/.tmp-deadbeef.png"]
    assert all_files(root) == sorted(all_files(root))  # verify alone changed nothing
    snapshot = (store.metadata_path.read_bytes(), all_files(root))
    store.verify()
    assert (store.metadata_path.read_bytes(), all_files(root)) == snapshot

    r2 = store.verify(repair=True)
    assert r2.repaired and r2.actions
    after = store.verify()
    assert after.ok and after.n_ok == 6, after.summary()

    samples = {s.id: s for s in store.samples()}
    assert set(good) <= samples.keys()
    assert samples[orphan_id].label == "3" and samples[orphan_id].meta["recovered"] is True
    recovered = [s for s in samples.values() if s.meta.get("recovered")]
    assert len(recovered) == 2 and all(s.path.is_file() for s in recovered)
    assert not (root / "3" / "by-hand.png").exists()  # renamed to its new id, not lost
    assert lost not in samples and broken not in samples
    assert (root / "5" / f"{broken}.png.corrupt").read_bytes() == b"\x89PNG garbage"  # kept aside
    assert not tmp.exists()
    dropped = [json.loads(x) for x in (root / corrections.DROPPED_NAME).read_text().splitlines()]
    assert sorted(d["reason"] for d in dropped) == ["dangling", "dangling", "duplicate", "torn"]
    assert store.counts() == {**dict.fromkeys(DIGITS, 0), "1": 2, "2": 2, "3": 2}


def test_repair_keeps_recent_temp_files(store: CorrectionStore) -> None:
    store.add(drawing(), "1")
    tmp = store.root / "1" / ".tmp-inflight.png"
    tmp.write_bytes(b"partial")
    r = store.verify(repair=True)
    assert r.temp_files == ["1/.tmp-inflight.png"] and tmp.exists()
    store.verify(repair=True, temp_grace_s=0)
    assert not tmp.exists() and store.verify().ok


def test_repair_leaves_orphans_of_unknown_folders(store: CorrectionStore) -> None:
    store.add(drawing(), "1")
    (store.root / "cat").mkdir()
    (store.root / "cat" / f"{'b' * 32}.png").write_bytes(png_bytes(drawing()))
    store.verify(repair=True)
    assert (store.root / "cat" / f"{'b' * 32}.png").exists()
    assert store.verify().orphans == [f"cat/{'b' * 32}.png"]


def test_verify_on_missing_folder(tmp_path: Path) -> None:
    s = CorrectionStore(tmp_path / "none")
    assert s.verify().ok and s.samples() == [] and len(s) == 0 and s.counts() == {}


# ---------------------------------------------------------------------------------------------
# Readers of the imagefolder layout
# ---------------------------------------------------------------------------------------------


def test_torchvision_imagefolder_reads_it(store: CorrectionStore) -> None:
    datasets = pytest.importorskip("torchvision.datasets")
    for lab in "11237":
        store.add(drawing(kind="RGBA"), lab)
    store.verify(repair=True)  # (a no-op here) leaves no hidden folders ImageFolder would see
    ds = datasets.ImageFolder(str(store.root))  # sees only the label folders
    assert ds.classes == ["1", "2", "3", "7"]
    assert len(ds) == 5
    img, target = ds[0]
    assert img.size == (64, 64) and ds.classes[target] == "1"
    assert sorted(Path(p).name for p, _ in ds.samples) == sorted(s.path.name for s in store.samples())


# ---------------------------------------------------------------------------------------------
# Concurrency and crashes
# ---------------------------------------------------------------------------------------------


def _save_many(root: str, worker: int, n: int) -> None:
    store = CorrectionStore(root, classes=DIGITS)
    rng = np.random.default_rng(worker)
    for i in range(n):
        img = drawing(int(rng.integers(24, 64)), int(rng.integers(24, 64)), "RGBA" if i % 2 else "L")
        store.add(img, str((worker + i) % 10), worker=worker, i=i)


def assert_consistent(store: CorrectionStore) -> list[Sample]:
    """Every metadata line is valid, unique and names a decodable file; no stray PNG or temp file."""
    lines = meta_lines(store.root)
    recs = [json.loads(x) for x in lines]
    ids = [r["id"] for r in recs]
    assert len(set(ids)) == len(ids)
    pngs = sorted(str(p.relative_to(store.root)) for p in store.root.glob("*/*.png"))
    assert sorted(r["file_name"] for r in recs) == pngs
    for r in recs:
        with Image.open(store.root / r["file_name"]) as im:
            im.load()
    assert not list(store.root.glob("**/.tmp-*"))
    report = store.verify()
    assert report.ok and report.n_ok == len(recs), report.summary()
    return store.samples()


def test_concurrent_saves_from_8_processes(store: CorrectionStore) -> None:
    procs = [FORK.Process(target=_save_many, args=(str(store.root), w, 50)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    samples = assert_consistent(store)
    assert len(samples) == 400 and len(list(store.root.glob("*/*.png"))) == 400
    assert sum(store.counts().values()) == 400
    assert sorted((s.meta["worker"], s.meta["i"]) for s in samples) == [
        (w, i) for w in range(8) for i in range(50)
    ]


def _save_forever(root: str, ready_w: int) -> None:
    store = CorrectionStore(root, classes=DIGITS)
    i = 0
    while True:
        store.add(drawing(96, 96, "RGBA" if i % 2 else "L"), str(i % 10))
        os.write(ready_w, b".")
        i += 1


def test_sigkill_at_random_moments_loses_nothing(store: CorrectionStore) -> None:
    rng = random.Random(1234)
    saved_before = 0
    for _ in range(5):
        r, w = os.pipe()
        p = FORK.Process(target=_save_forever, args=(str(store.root), w))
        p.start()
        os.close(w)
        assert len(os.read(r, 1)) == 1  # at least one save went through
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
        assert p.exitcode == -signal.SIGKILL
        acked = 1
        while chunk := os.read(r, 4096):
            acked += len(chunk)
        os.close(r)

        report = store.verify()
        assert report.torn == [] and report.dangling == [] and report.duplicates == []
        assert len(report.orphans) <= 1 and len(report.temp_files) <= 1
        # every save the child reported done is there, plus at most the one it was in
        assert acked <= report.n_ok - saved_before <= acked + 1
        store.verify(repair=True, temp_grace_s=0)
        saved_before = len(assert_consistent(store))


def _crash_at(root: str, point: str) -> None:
    """Save once, killing ourselves with SIGKILL at `point` of the write protocol."""
    real_write, real_replace = os.write, os.replace

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def write(fd: int, data) -> int:
        data = bytes(data)
        if point == "png-write" and data.startswith(b"\x89PNG"):
            real_write(fd, data[: len(data) // 2])
            die()
        if point == "line-write" and b'"file_name"' in data:
            real_write(fd, data[: len(data) // 2])  # a torn line (e.g. power loss mid-write)
            die()
        return real_write(fd, data)

    def replace(src, dst) -> None:
        real_replace(src, dst)
        if point == "after-replace" and str(dst).endswith(".png"):
            die()

    os.write, os.replace = write, replace  # this is a forked child: the parent is unaffected
    CorrectionStore(root, classes=DIGITS).add(drawing(), "4")


@pytest.mark.parametrize("point", ["png-write", "after-replace", "line-write"])
def test_kill_at_each_step_of_a_save(store: CorrectionStore, point: str) -> None:
    keep = store.add(drawing(), "1")
    p = FORK.Process(target=_crash_at, args=(str(store.root), point))
    p.start()
    p.join(30)
    assert p.exitcode == -signal.SIGKILL

    report = store.verify()
    assert report.dangling == [] and report.n_ok == 1
    assert [s.id for s in store.samples()] == [keep]  # readers see only whole samples
    if point == "png-write":
        assert report.orphans == [] and len(report.temp_files) == 1 and report.torn == []
    elif point == "after-replace":
        assert len(report.orphans) == 1 and report.temp_files == [] and report.torn == []
    else:
        assert len(report.orphans) == 1 and report.torn == [2]
    # A save after the crash works, and starts on a fresh line even after a torn one.
    after = store.add(drawing(), "2")
    assert [s.id for s in store.samples()] == [keep, after]

    store.verify(repair=True, temp_grace_s=0)
    samples = assert_consistent(store)
    expected = 2 if point == "png-write" else 3  # the orphan PNG is re-added, not lost
    assert len(samples) == expected
    if point != "png-write":
        [rec] = [s for s in samples if s.meta.get("recovered")]
        assert rec.label == "4" and rec.id == report.orphans[0].split("/")[1][:-4]


# ---------------------------------------------------------------------------------------------
# Write failures: clear error, store intact
# ---------------------------------------------------------------------------------------------


def _fail_on(monkeypatch, func: str, err: int, match: bytes | None = None) -> None:
    real = getattr(os, func)

    def failing(*args, **kwargs):
        if match is None or (len(args) > 1 and match in bytes(args[1])):
            raise OSError(err, os.strerror(err))
        return real(*args, **kwargs)

    monkeypatch.setattr(os, func, failing)


@pytest.mark.parametrize(
    ("func", "err", "match", "reason"),
    [
        ("write", errno.ENOSPC, b"\x89PNG", "disk is full"),  # writing the PNG
        ("write", errno.ENOSPC, b'"file_name"', "disk is full"),  # appending the line
        ("fsync", errno.EIO, None, "Input/output error"),
        ("replace", errno.EROFS, None, "read-only"),
        ("open", errno.EACCES, None, "no permission"),
    ],
    ids=["png-enospc", "line-enospc", "fsync-eio", "replace-erofs", "open-eacces"],
)
def test_write_failure_is_clear_and_store_intact(
    store: CorrectionStore, monkeypatch, func: str, err: int, match: bytes | None, reason: str
) -> None:
    keep = [store.add(drawing(), lab) for lab in "12"]
    before = (store.metadata_path.read_bytes(), all_files(store.root))
    with monkeypatch.context() as m:
        _fail_on(m, func, err, match)
        with pytest.raises(StoreWriteError, match="Saving the correction failed") as exc:
            store.add(drawing(), "1")
    assert isinstance(exc.value, OSError) and exc.value.errno == err
    assert reason in str(exc.value)
    assert (store.metadata_path.read_bytes(), all_files(store.root)) == before
    assert [s.id for s in store.samples()] == keep and store.verify().ok


def test_delete_failure_keeps_the_sample(store: CorrectionStore, monkeypatch) -> None:
    sid, other = store.add(drawing(), "1"), store.add(drawing(), "2")
    with monkeypatch.context() as m:
        _fail_on(m, "write", errno.ENOSPC)
        with pytest.raises(StoreWriteError, match="Deleting the correction failed: the disk is full"):
            store.delete(sid)
    assert [s.id for s in store.samples()] == [sid, other] and store.verify().ok


def test_export_failure_leaves_no_partial_zip(store: CorrectionStore, tmp_path: Path, monkeypatch) -> None:
    store.add(drawing(), "1")
    out = tmp_path / "x" / "c.zip"
    with monkeypatch.context() as m:
        _fail_on(m, "fsync", errno.ENOSPC)
        with pytest.raises(StoreWriteError, match="Exporting the corrections failed"):
            store.export(out)
    assert os.listdir(out.parent) == []


def _permissions_enforced(tmp_path: Path) -> bool:
    """False when we may write into a read-only folder anyway (root, CAP_DAC_OVERRIDE)."""
    d = tmp_path / "ro-probe"
    d.mkdir()
    d.chmod(0o555)
    try:
        (d / "x").touch()
        return False
    except PermissionError:
        return True
    finally:
        d.chmod(0o755)


def test_read_only_folder(store: CorrectionStore, tmp_path: Path) -> None:
    if not _permissions_enforced(tmp_path):
        pytest.skip("this user ignores file permissions (root); simulated in the tests above")
    keep = store.add(drawing(), "1")
    dirs = [store.root, store.root / "1"]
    for d in dirs:
        d.chmod(0o555)
    try:
        with pytest.raises(StoreWriteError, match="Saving the correction failed"):
            store.add(drawing(), "1")
        with pytest.raises(StoreWriteError, match="Saving the correction failed"):
            store.add(drawing(), "2")
        assert [s.id for s in store.samples()] == [keep]
    finally:
        for d in dirs:
            d.chmod(0o755)
    assert store.verify().ok


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def test_cli(store: CorrectionStore, tmp_path: Path, capsys) -> None:
    root = str(store.root)
    for lab in "112":
        store.add(drawing(), lab)
    assert corrections.main(["counts", root]) == 0
    assert capsys.readouterr().out.splitlines() == ["1\t2", "2\t1", "total\t3"]
    assert corrections.main(["verify", root]) == 0
    (store.root / "2" / f"{'c' * 32}.png").write_bytes(png_bytes(drawing()))
    assert corrections.main(["verify", root]) == 1
    assert "1 orphan" in capsys.readouterr().out
    assert corrections.main(["verify", root, "--repair"]) == 0
    assert corrections.main(["verify", root]) == 0
    zpath = tmp_path / "c.zip"
    assert corrections.main(["export", root, str(zpath)]) == 0
    with zipfile.ZipFile(zpath) as zf:
        assert len(zf.namelist()) == 5
    assert corrections.main(["counts", str(tmp_path / "missing")]) == 2


def test_cli_as_module(store: CorrectionStore, capsys) -> None:
    store.add(drawing(), "1")
    run = subprocess.run(
        [sys.executable, "-m", "hwr.corrections", "verify", str(store.root)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "1 good samples" in run.stdout
    with pytest.raises(SystemExit):
        corrections.main(["verify", "--help"])
    assert "default: 60.0" in capsys.readouterr().out
