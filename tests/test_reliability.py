"""Reliability of the running app: garbage through the API, load, SIGKILL, bad checkpoints, a full
disk, and the switch that turns saving off. Each test starts `python app.py` (tests/conftest.py)
on a free loopback port; the figures are in RELIABILITY.md."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.load_test import check_stored_exactly_once, pixel_key, run_load, stored_keys, tagged_drawing
from hwr import Recognizer
from hwr.app_logic import MAX_UPLOAD_BYTES, SAVE_DISABLED, SAVED_MARK, DigitApp, Settings
from hwr.corrections import CorrectionStore
from hwr.number_app import NumberApp
from tests.conftest import REPO_ROOT, start_app, stop_app

EXAMPLES = REPO_ROOT / "assets" / "examples"


def sketch_payload(path: Path | str) -> dict:
    from gradio_client import handle_file

    return {"background": None, "layers": [], "composite": handle_file(str(path))}


def good_predict_works(client) -> None:
    label, _ = client.predict(sketch_payload(EXAMPLES / "digit_4.png"), api_name="/predict")
    assert label["label"] == "4"


# ---------------------------------------------------------------------------------------------
# Garbage through the API: every call answered, the server stays up and answers the next good one
# ---------------------------------------------------------------------------------------------


def test_api_garbage_keeps_the_server_up(app_server, tmp_path: Path) -> None:
    import httpx
    from gradio_client import Client

    client = Client(app_server.url, verbose=False)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("not a drawing")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes((EXAMPLES / "digit_2.png").read_bytes()[:300])
    bomb = tmp_path / "bomb.png"
    Image.new("1", (30_000, 30_000)).save(bomb)
    oversized = tmp_path / "oversized.png"
    oversized.write_bytes(os.urandom(MAX_UPLOAD_BYTES + 1024))
    calls = [
        ((sketch_payload(empty),), "/predict"),
        ((sketch_payload(text),), "/predict"),
        ((sketch_payload(truncated),), "/predict"),
        ((sketch_payload(bomb),), "/predict"),
        ((sketch_payload(oversized),), "/predict"),
        ((12345,), "/predict"),
        (([1, 2, 3],), "/predict"),
        (({"layers": "not a list"},), "/predict"),
        (({"background": None, "layers": [None, 7], "composite": {"path": None}},), "/predict"),
        ((sketch_payload(EXAMPLES / "digit_3.png"), ["3"]), "/save_correction"),
        ((sketch_payload(EXAMPLES / "digit_3.png"), "3" * 10_000), "/save_correction"),
        ((sketch_payload(bomb), "3"), "/save_correction"),
        ((sketch_payload(text), "2026"), "/save_number_correction"),
        ((sketch_payload(EXAMPLES / "digit_3.png"), {"number": 1}), "/save_number_correction"),
        ((sketch_payload(oversized),), "/read_number"),
    ]
    answered = 0
    for args, endpoint in calls:
        try:
            client.predict(*args, api_name=endpoint)
        except Exception:  # an error answer (AppError, an HTTP 413 for the oversized upload): fine
            pass
        answered += 1
        good_predict_works(client)
    # Raw HTTP: malformed JSON, wrong shapes, a 20 MB body, unknown routes.
    base = app_server.url.rstrip("/")
    with httpx.Client(timeout=60) as http:
        for body in (b"{", b"null", b'{"data": "x"}', b'{"data": [1, 2, 3, 4, 5]}', b"[" * 10_000, b"x" * 20_000_000):
            response = http.post(f"{base}/gradio_api/call/predict", content=body,
                                 headers={"content-type": "application/json"})
            assert response.status_code < 500 or response.status_code in (503,), response.text[:300]
            answered += 1
        assert http.post(f"{base}/gradio_api/upload", files={"files": ("x.png", b"")}).status_code < 500
        assert http.get(f"{base}/gradio_api/file=/etc/passwd").status_code in (403, 404)
        assert http.get(f"{base}/gradio_api/file=../../../../etc/passwd").status_code in (403, 404)
    assert answered == len(calls) + 6
    good_predict_works(client)
    assert app_server.process.poll() is None
    assert "Traceback" not in app_server.log_text(), app_server.log_text()[-3000:]


# ---------------------------------------------------------------------------------------------
# Load: concurrent users, predictions and corrections mixed (small here; the full run is
# `python bench/load_test.py`, 32 users x 50 requests, in RELIABILITY.md)
# ---------------------------------------------------------------------------------------------


def test_load_every_correction_stored_exactly_once(checkpoint_path: Path, tmp_path: Path) -> None:
    server = start_app(tmp_path / "load", checkpoint_path)
    try:
        report = run_load(server.url, clients=8, requests=6, save_share=0.4, workdir=tmp_path)
        assert server.process.poll() is None
    finally:
        stop_app(server.process)
    assert report.errors == []
    assert len(report.latencies["predict"]) + len(report.latencies["save"]) == 8 * 6
    assert report.confirmed, "the seed gives saves"
    assert check_stored_exactly_once(report, server.corrections_dir) == []
    print(f"8 x 6 requests: p95 predict {report.percentile('predict', 95) * 1000:.0f} ms, "
          f"save {report.percentile('save', 95) * 1000:.0f} ms")


# ---------------------------------------------------------------------------------------------
# Faults: SIGKILL during a stream of corrections; bad checkpoints; a full disk
# ---------------------------------------------------------------------------------------------


def save_stream(url: str, workdir: Path, writer: int, confirmed: list[str], stop: threading.Event) -> None:
    """Save tagged drawings one after another until `stop`; the keys of the confirmed ones go to `confirmed`."""
    from gradio_client import Client

    try:
        client = Client(url, verbose=False)
    except Exception:
        return
    for i in range(10_000):
        if stop.is_set():
            return
        drawing = tagged_drawing(i % 10, 1000 * (writer + 1) + i)
        path = workdir / f"w{writer}-{i}.png"
        drawing.save(path)
        try:
            message = client.predict(sketch_payload(path), str(i % 10), api_name="/save_correction")
        except Exception:  # the server died under this request: not confirmed, may or may not be stored
            return
        if message.startswith(SAVED_MARK):
            confirmed.append(pixel_key(drawing))


def test_sigkill_during_corrections_then_restart(checkpoint_path: Path, tmp_path: Path) -> None:
    corrections = tmp_path / "corrections"
    server = start_app(tmp_path / "first", checkpoint_path, corrections)
    confirmed: list[str] = []
    stop = threading.Event()
    writers = [threading.Thread(target=save_stream, args=(server.url, tmp_path, k, confirmed, stop)) for k in range(3)]
    try:
        for w in writers:
            w.start()
        deadline = time.monotonic() + 60
        while len(confirmed) < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(float(np.random.default_rng().uniform(0, 0.3)))  # a random moment in the stream
        server.process.kill()  # SIGKILL: no clean-up of any kind
        server.process.wait(timeout=10)
    finally:
        stop.set()
        for w in writers:
            w.join(timeout=60)
        stop_app(server.process)
    seen = list(confirmed)
    assert len(seen) >= 12

    restarted = start_app(tmp_path / "second", checkpoint_path, corrections)  # repairs the store at start-up
    try:
        from gradio_client import Client

        client = Client(restarted.url, verbose=False)
        good_predict_works(client)
        report = CorrectionStore(corrections).verify()
        assert not (report.orphans or report.dangling or report.torn or report.duplicates), report.summary()
        stored = stored_keys(corrections)
        assert all(stored.count(key) == 1 for key in seen), "a confirmed save is missing or doubled"
        assert len(stored) <= len(seen) + 3  # at most one unconfirmed save in flight per writer
        repaired = "repaired at start-up" in restarted.log_text()
        print(f"SIGKILL after {len(seen)} confirmed saves: {len(stored)} stored after the restart, "
              f"all confirmed ones once; start-up repair {'ran' if repaired else 'had nothing to do'}")
        drawing = tagged_drawing(6, 4095)
        path = tmp_path / "after.png"
        drawing.save(path)
        assert client.predict(sketch_payload(path), "6", api_name="/save_correction").startswith(SAVED_MARK)
    finally:
        stop_app(restarted.process)
    assert CorrectionStore(corrections).verify(repair=True, temp_grace_s=0).ok  # only a killed write's temp file, if any
    assert CorrectionStore(corrections).verify().ok


def mismatched_checkpoint(good: Path, out: Path) -> Path:
    """The bundled weights with one tensor cut short, its metadata unchanged."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(good), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        metadata = f.metadata()
    name = next(k for k, v in tensors.items() if v.ndim == 4)
    tensors[name] = tensors[name][: tensors[name].shape[0] // 2].contiguous()
    save_file(tensors, str(out), metadata=metadata)
    return out


def test_a_bad_checkpoint_stops_the_app_with_a_message_naming_it(checkpoint_path: Path, tmp_path: Path) -> None:
    """Chosen behaviour: refuse to start (a server that silently serves another model is worse)."""
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(checkpoint_path.read_bytes()[:5000])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(4096))
    cases = {
        "truncated": truncated,
        "garbage": garbage,
        "mismatched": mismatched_checkpoint(checkpoint_path, tmp_path / "mismatched.safetensors"),
        "missing": tmp_path / "missing.safetensors",
    }
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HWR_CORRECTIONS_DIR": str(tmp_path / "c"),
           "GRADIO_SERVER_PORT": "1"}  # never reached: the app must stop before it serves
    procs = {
        name: subprocess.Popen([sys.executable, str(REPO_ROOT / "app.py")], cwd=REPO_ROOT,
                               env={**env, "HWR_CHECKPOINT": str(path)}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        for name, path in cases.items()
    }  # started together: four imports of torch and gradio in parallel
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode not in (0, None), f"{name}: started anyway\n{out[-2000:]}"
        assert "Cannot start the app" in out and cases[name].name in out, f"{name}:\n{out[-2000:]}"
        assert "Traceback" not in out, f"{name}:\n{out[-2000:]}"


@pytest.fixture(scope="module")
def recognizer(checkpoint_path: Path) -> Recognizer:
    return Recognizer.load(checkpoint_path)


def example_sketch(digit: int) -> dict:
    return {"background": None, "layers": [], "composite": np.asarray(Image.open(EXAMPLES / f"digit_{digit}.png").convert("RGBA"))}


@pytest.mark.parametrize("err, reason", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only")])
def test_full_or_read_only_disk_saving_fails_clearly_and_predictions_go_on(
    recognizer: Recognizer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int, reason: str
) -> None:
    app = DigitApp(recognizer, CorrectionStore(tmp_path / "corrections", classes=recognizer.classes))
    kept = app.save_correction(example_sketch(1), "1")
    assert kept.saved
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and "corrections" in str(path) and not str(path).endswith(".lock"):
            raise OSError(err, os.strerror(err), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    outcome = app.save_correction(example_sketch(2), "2")
    assert not outcome.saved and outcome.message.startswith("Not saved:") and reason in outcome.message
    number = NumberApp(app).save_correction(example_sketch(2), "2")
    assert not number.saved_ids and reason in number.message
    label, view = app.predict(example_sketch(7))
    assert max(label, key=label.get) == "7" and view is not None
    monkeypatch.undo()
    assert [s.id for s in app.store.samples()] == [kept.saved_id] and app.store.verify().ok


# ---------------------------------------------------------------------------------------------
# Security: saving can be turned off for a public Space
# ---------------------------------------------------------------------------------------------


def test_saving_can_be_turned_off(recognizer: Recognizer, tmp_path: Path) -> None:
    assert Settings.from_env({}).allow_save
    assert not Settings.from_env({"HWR_ALLOW_SAVE": "0"}).allow_save
    assert not Settings.from_env({"HWR_ALLOW_SAVE": " Off "}).allow_save
    app = DigitApp(recognizer, CorrectionStore(tmp_path / "c", classes=recognizer.classes), allow_save=False)
    assert app.save_correction(example_sketch(3), "3").message == SAVE_DISABLED
    assert NumberApp(app).save_correction(example_sketch(3), "3").message == SAVE_DISABLED
    assert app.undo("0" * 32) == SAVE_DISABLED
    assert app.predict(example_sketch(3))[1] is not None  # predictions go on
    assert not (tmp_path / "c").exists()


def test_the_app_hides_the_correction_controls_when_saving_is_off(checkpoint_path: Path, tmp_path: Path) -> None:
    from gradio_client import Client

    server = start_app(tmp_path / "nosave", checkpoint_path, HWR_ALLOW_SAVE="0")
    try:
        import httpx

        config = httpx.get(server.url.rstrip("/") + "/config", timeout=30).json()
        visible = {c["props"].get("elem_id"): c["props"].get("visible", True) for c in config["components"]}
        assert visible["correction-buttons"] is False and visible["correct-label"] is False and visible["number-label"] is False
        assert visible["save-number-button"] is False
        client = Client(server.url, verbose=False)
        assert client.predict(sketch_payload(EXAMPLES / "digit_5.png"), "5", api_name="/save_correction") == SAVE_DISABLED
        good_predict_works(client)
    finally:
        stop_app(server.process)
    assert not server.corrections_dir.exists()
