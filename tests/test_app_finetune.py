"""The app's "Model" accordion without a browser: corrections counts, fine-tuning from the app (gate
passed: saved and swapped in; gate failed: kept), friendly refusals, switching back to the bundled
model, and predictions while a fine-tune runs in another thread.

Everything is tiny: a (4, 4, 8)-wide model, 20 bar drawings, 64 fake MNIST images, one epoch.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from hwr import Recognizer
from hwr.app_logic import (
    ALREADY_RUNNING,
    FINETUNE_DISABLED,
    NO_CHECKPOINT_FILE,
    DigitApp,
    Settings,
    counts_markdown,
    finetuned_name,
    header_markdown,
)
from hwr.checkpoint import read_metadata, save_checkpoint
from hwr.corrections import CorrectionStore
from hwr.finetune import FinetuneConfig
from tests.test_checkpoint import tiny_checkpoint
from tests.test_finetune import bar_drawing, fake_mnist

CLASSES = [str(d) for d in range(10)]
PASS = FinetuneConfig(epochs=1, batch_size=16, max_mnist_drop=100.0)  # any result passes the gate
FAIL = FinetuneConfig(epochs=1, batch_size=16, max_mnist_drop=-100.0)  # no result passes


def sketch(vertical: bool = True, shift: int = 0) -> dict:
    return {"background": None, "layers": [], "composite": bar_drawing(vertical, shift)}


@pytest.fixture
def checkpoints(tmp_path: Path) -> tuple[Path, Path]:
    """(the model the app starts with, named "tiny"; the "bundled" one, named "bundled")."""
    start = tmp_path / "start.safetensors"
    model, meta = tiny_checkpoint(start)
    # Trained on MNIST, as the bundled model's metadata says (fine-tunes carry this on to children).
    meta = dict(meta, training={"dataset": "mnist-train"})
    save_checkpoint(model, meta, start)
    bundled = tmp_path / "bundled.safetensors"
    save_checkpoint(model, dict(meta, name="bundled"), bundled)
    return start, bundled


def make_app(tmp_path: Path, checkpoints: tuple[Path, Path], n_corrections: int = 20, **kwargs) -> DigitApp:
    start, bundled = checkpoints
    store = CorrectionStore(tmp_path / "corrections", classes=CLASSES)
    for i in range(n_corrections // 2):
        store.add(bar_drawing(True, i - 5), "1")
        store.add(bar_drawing(False, i - 5), "7")
    return DigitApp(
        Recognizer.load(start), store, start,
        models_dir=tmp_path / "models", data_dir=tmp_path / "no-data", bundled_checkpoint=bundled, **kwargs,
    )


@pytest.fixture
def app(tmp_path: Path, checkpoints: tuple[Path, Path]) -> DigitApp:
    return make_app(tmp_path, checkpoints)


def run(app: DigitApp, config: FinetuneConfig = PASS, **kwargs):
    return app.start_finetune(config=config, replay=fake_mnist(), mnist_test=fake_mnist(), **kwargs)


def weights(recognizer: Recognizer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in recognizer.model.state_dict().items()}


# ---------------------------------------------------------------------------------------------
# Settings and Markdown
# ---------------------------------------------------------------------------------------------


def test_settings_for_finetuning(tmp_path: Path) -> None:
    default = Settings.from_env({})
    assert default.models_dir == Path("models") and default.data_dir == Path("data") and default.allow_finetune
    custom = Settings.from_env(
        {"HWR_MODELS_DIR": str(tmp_path / "m"), "HWR_DATA_DIR": str(tmp_path / "d"), "HWR_ALLOW_FINETUNE": "0"}
    )
    assert custom.models_dir == tmp_path / "m" and custom.data_dir == tmp_path / "d" and not custom.allow_finetune
    for off in ("0", "false", "No", " off "):
        assert not Settings.from_env({"HWR_ALLOW_FINETUNE": off}).allow_finetune
    for on in ("", "1", "yes"):
        assert Settings.from_env({"HWR_ALLOW_FINETUNE": on}).allow_finetune


def test_counts_markdown(app: DigitApp, tmp_path: Path) -> None:
    table = app.counts_markdown()
    header, rule, row = table.splitlines()
    assert header == "| Label | 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | Total |"
    assert row == "| Corrections | 0 | 10 | 0 | 0 | 0 | 0 | 0 | 10 | 0 | 0 | **20** |"
    assert "No corrections saved yet" in counts_markdown(dict.fromkeys(CLASSES, 0))
    empty = DigitApp(app.recognizer, CorrectionStore(tmp_path / "none", classes=CLASSES))
    assert "No corrections saved yet" in empty.counts_markdown()


def test_finetuned_names_are_utc_timestamps() -> None:
    from datetime import datetime, timedelta, timezone

    paris = timezone(timedelta(hours=2))
    assert finetuned_name(datetime(2025, 6, 1, 14, 30, 5, tzinfo=paris)) == "finetuned-20250601T123005Z"


# ---------------------------------------------------------------------------------------------
# Fine-tuning from the app
# ---------------------------------------------------------------------------------------------


def test_gate_passed_saves_and_swaps_the_model(app: DigitApp, tmp_path: Path) -> None:
    old = app.recognizer
    old_weights = weights(old)
    steps: list[tuple[float, str]] = []
    outcome = run(app, progress=lambda f, m: steps.append((f, m)))
    assert outcome.swapped and outcome.message.startswith("✅"), outcome.message
    assert steps[-1][0] == 1.0 and [f for f, _ in steps] == sorted(f for f, _ in steps)
    # Saved into models_dir under a UTC-timestamped name, with the parent recorded.
    path = outcome.saved_path
    assert path.parent == tmp_path / "models" and path.stem.startswith("finetuned-") and path.stem.endswith("Z")
    meta = read_metadata(path)
    assert meta["name"] == path.stem and meta["parent"] == "tiny"
    assert meta["training"]["kind"] == "finetune" and meta["finetune"]["gate_passed"]
    # Swapped in: new recognizer, its checkpoint tracked, the header follows.
    assert app.recognizer is not old and app.recognizer.name == path.stem
    assert app.active.checkpoint == path
    header = app.header()
    assert path.stem in header and "fine-tuned from tiny" in header
    accuracy = outcome.result.after["mnist_accuracy"]
    assert f"{accuracy:.2%}" in header
    # Before/after figures shown; the old model was never touched.
    assert "| MNIST test accuracy |" in outcome.message and "Held-out corrections (4)" in outcome.message
    assert all(torch.equal(old_weights[k], v) for k, v in old.model.state_dict().items())
    assert isinstance(app.predict(sketch())[0], dict)
    # A second fine-tune starts from the fine-tuned file.
    again = run(app)
    assert again.swapped and read_metadata(again.saved_path)["parent"] == path.stem


def test_gate_failed_keeps_the_model_and_says_why(app: DigitApp, tmp_path: Path) -> None:
    old, old_header = app.recognizer, app.header()
    outcome = run(app, FAIL)
    assert not outcome.swapped and outcome.result is not None and not outcome.result.gate_passed
    assert outcome.message.startswith("❌") and "**tiny** stays" in outcome.message
    assert outcome.result.reason in outcome.message and "| MNIST test accuracy |" in outcome.message
    assert app.recognizer is old and app.header() == old_header
    assert not (tmp_path / "models").exists()


def test_no_corrections_is_a_friendly_message(tmp_path: Path, checkpoints: tuple[Path, Path]) -> None:
    app = make_app(tmp_path, checkpoints, n_corrections=0)
    old = app.recognizer
    outcome = run(app)
    assert not outcome.swapped and outcome.result is None
    assert outcome.message.startswith("Cannot fine-tune yet:") and "No usable corrections" in outcome.message
    assert "Traceback" not in outcome.message and app.recognizer is old


def test_missing_mnist_and_bad_checkpoint_are_friendly_messages(app: DigitApp, tmp_path: Path) -> None:
    def no_mnist(*args, **kwargs):
        raise FileNotFoundError("MNIST not found under /nowhere and could not be downloaded")

    with pytest.MonkeyPatch.context() as mp:  # no download attempt from a test
        mp.setattr("hwr.finetune.load_dataset", no_mnist)
        outcome = app.start_finetune(config=PASS)
    assert outcome.message.startswith("Cannot fine-tune: MNIST not found") and "HWR_DATA_DIR" in outcome.message
    app.active.checkpoint.write_bytes(b"not a checkpoint")  # the file the model came from is damaged
    outcome = run(app)
    assert outcome.message.startswith("Cannot fine-tune: the model file is unusable")
    assert not outcome.swapped and app.recognizer.name == "tiny"


def test_refusals(app: DigitApp, tmp_path: Path, checkpoints: tuple[Path, Path]) -> None:
    off = make_app(tmp_path / "off", checkpoints, n_corrections=0, allow_finetune=False)
    assert run(off).message == FINETUNE_DISABLED
    in_memory = DigitApp(app.recognizer, app.store)  # no checkpoint file known
    assert run(in_memory).message == NO_CHECKPOINT_FILE


def test_unexpected_failure_is_an_apology_not_a_traceback(app: DigitApp, caplog) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("hwr.finetune.finetune", broken)
        outcome = run(app)
    assert "failed on our side" in outcome.message and "boom" not in outcome.message
    assert "Fine-tune failed" in caplog.text  # logged with its traceback for the operator
    assert not app.finetune_running  # the lock was released


# ---------------------------------------------------------------------------------------------
# Switching back, concurrency
# ---------------------------------------------------------------------------------------------


def test_use_bundled_switches_back(app: DigitApp, checkpoints: tuple[Path, Path]) -> None:
    _, bundled = checkpoints
    assert run(app).swapped
    message = app.use_bundled()
    assert message == "Now using the bundled model, **bundled**."
    assert app.recognizer.name == "bundled" and app.active.checkpoint == bundled
    assert "Model: **bundled** ·" in app.header() and app.header() == header_markdown(app.recognizer)
    assert "Already using the bundled model" in app.use_bundled()
    assert isinstance(app.predict(sketch())[0], dict)


def test_use_bundled_when_it_is_missing_keeps_the_model(app: DigitApp, checkpoints: tuple[Path, Path]) -> None:
    checkpoints[1].unlink()
    message = app.use_bundled()
    assert message.startswith("Could not load the bundled model") and "**tiny** stays" in message
    assert app.recognizer.name == "tiny"


def test_predictions_keep_working_while_a_finetune_runs(app: DigitApp) -> None:
    """A fine-tune paused mid-training in another thread: predictions answer, a second fine-tune is
    refused, and the swap happens only when it ends."""
    old = app.recognizer
    training = threading.Event()  # set by the fine-tune thread when it reaches its training loop
    resume = threading.Event()  # set by this thread once it has predicted

    def progress(fraction: float, message: str) -> None:
        if message.startswith("fine-tuning"):
            training.set()
            assert resume.wait(timeout=60), "the test thread never resumed the fine-tune"

    outcomes = []
    worker = threading.Thread(target=lambda: outcomes.append(run(app, progress=progress)))
    worker.start()
    try:
        assert training.wait(timeout=60), "the fine-tune never reached its training loop"
        assert app.finetune_running
        for shift in range(-4, 5, 2):
            label, view = app.predict(sketch(shift % 2 == 0, shift))
            assert isinstance(label, dict) and view.shape == (224, 224)
        assert app.recognizer is old  # nothing swapped mid-run
        assert run(app).message == ALREADY_RUNNING  # one fine-tune at a time
        assert app.save_correction(sketch(), "1").saved  # saving works too
    finally:
        resume.set()
        worker.join(timeout=120)
    assert not worker.is_alive() and outcomes and outcomes[0].swapped, outcomes
    assert app.recognizer is not old and not app.finetune_running
    assert isinstance(app.predict(sketch())[0], dict)
