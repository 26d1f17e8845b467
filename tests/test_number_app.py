"""The app's Number mode without a browser: hwr.number_app's handlers and app.py's wiring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hwr import Recognizer
from hwr.app_logic import SAVED_MARK, DigitApp, InvalidDrawingError
from hwr.corrections import METADATA_NAME, CorrectionStore
from hwr.number_app import EMPTY_NUMBER_MESSAGE, NumberApp, clean_number, digit_image
from hwr.preprocess import preprocess

from tests.test_segment import compose


def sketch_of(image: np.ndarray | None) -> dict:
    """A Sketchpad value as Gradio 6 passes it to handlers (type='numpy', image_mode='RGBA')."""
    return {"background": None, "layers": [], "composite": image}


def rgba(grey: np.ndarray) -> np.ndarray:
    """Dark-on-white grey -> black ink on a transparent canvas (what the app's Sketchpad sends)."""
    out = np.zeros(grey.shape + (4,), np.uint8)
    out[..., 3] = 255 - grey
    return out


@pytest.fixture(scope="module")
def recognizer(checkpoint_path: Path) -> Recognizer:
    return Recognizer.load(checkpoint_path)


@pytest.fixture
def number_app(recognizer: Recognizer, tmp_path: Path) -> NumberApp:
    store = CorrectionStore(tmp_path / "corrections", classes=recognizer.classes)
    return NumberApp(DigitApp(recognizer, store))


def metadata_lines(folder: Path) -> list[dict]:
    path = folder / METADATA_NAME
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


@pytest.mark.parametrize("sketch", [None, sketch_of(None), sketch_of(np.zeros((300, 800, 4), np.uint8))])
def test_blank_number_asks_for_a_drawing(number_app: NumberApp, sketch: dict | None) -> None:
    assert number_app.read(sketch) == (EMPTY_NUMBER_MESSAGE, None, [])


def test_read_shows_number_boxes_and_model_inputs(number_app: NumberApp) -> None:
    text, boxes, inputs = number_app.read(sketch_of(rgba(compose("2026"))))
    assert text.startswith("## 2026\n") and "Confidence" in text
    assert boxes.shape == (300, 800, 3) and boxes.dtype == np.uint8
    assert (boxes == (220, 38, 38)).all(axis=2).any()  # the red boxes are drawn
    assert [caption.split(" ")[1] for _, caption in inputs] == list("2026")
    assert all(image.shape == (112, 112) for image, _ in inputs)


def test_unreadable_number_drawing_is_a_clear_error(number_app: NumberApp) -> None:
    with pytest.raises(InvalidDrawingError, match="cannot be read"):
        number_app.read("not an image")


def test_save_number_stores_each_digit_with_its_label(number_app: NumberApp, recognizer: Recognizer) -> None:
    sketch = sketch_of(rgba(compose("2026")))
    outcome = number_app.save_correction(sketch, " 2 0 2 7 ")  # the user says the last digit is a 7
    assert outcome.message.startswith(SAVED_MARK) and "2027" in outcome.message
    assert len(outcome.saved_ids) == 4
    folder = number_app.digit_app.store.root
    lines = metadata_lines(folder)
    assert [line["label"] for line in lines] == list("2027")
    assert [line["predicted"] for line in lines] == list("2026")
    assert all(line["source"] == "number" and line["number_read"] == "2026" for line in lines)
    assert [line["position"] for line in lines] == [0, 1, 2, 3]
    # Each stored digit is that digit alone: read back, it gives the model input the number gave it.
    reading = recognizer.read(sketch["composite"])
    for line, digit in zip(lines, reading.digits):
        stored = preprocess(folder / line["file_name"])
        assert np.abs(stored - digit.model_input).max() < 0.05


@pytest.mark.parametrize(
    "typed, expected",
    [("", "Type the right number"), (None, "Type the right number"), ("20x6", "not a digit"),
     ("202", "split into 4 digits"), ("20261", "split into 4 digits")],
)
def test_save_number_refuses_bad_input_and_saves_nothing(number_app: NumberApp, typed: str | None, expected: str) -> None:
    outcome = number_app.save_correction(sketch_of(rgba(compose("2026"))), typed)
    assert expected in outcome.message and not outcome.saved_ids
    assert metadata_lines(number_app.digit_app.store.root) == []


def test_save_number_without_drawing(number_app: NumberApp) -> None:
    outcome = number_app.save_correction(None, "12")
    assert "Draw the number first" in outcome.message and not outcome.saved_ids


def test_clean_number_and_digit_image() -> None:
    assert clean_number(" 1,234.5 ") == "12345"
    ink = np.zeros((10, 6), np.float32)
    ink[2:8, 2:4] = 1.0
    image = digit_image(ink, margin=3)
    assert image.shape == (16, 12) and image[0, 0] == 255 and image[5, 5] == 0


# ---------------------------------------------------------------------------------------------
# app.py: the Number tab is wired (the module builds `demo` and never launches)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app_module(checkpoint_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """`import app` with a temporary corrections folder, as tests/test_app.py does."""
    import importlib
    import sys

    folder = tmp_path_factory.mktemp("number_app_module") / "corrections"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HWR_CHECKPOINT", str(checkpoint_path))
        mp.setenv("HWR_CORRECTIONS_DIR", str(folder))
        mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        mp.syspath_prepend(str(Path(__file__).resolve().parent.parent))
        if "app" in sys.modules:
            return importlib.reload(sys.modules["app"])
        return importlib.import_module("app")


def test_number_tab_handlers(app_module) -> None:
    import gradio as gr

    text, boxes, inputs = app_module.read_number(sketch_of(rgba(compose("47"))))
    assert text.startswith("## 47") and boxes is not None and len(inputs) == 2
    assert app_module.read_number(None) == (EMPTY_NUMBER_MESSAGE, None, [])
    with pytest.raises(gr.Error, match="cannot be read"):
        app_module.read_number("definitely not an image")
    message = app_module.save_number_correction(sketch_of(rgba(compose("47"))), "471")
    assert "split into 2 digits" in message
    assert app_module.clear_number_outputs() == (EMPTY_NUMBER_MESSAGE, None, [], "", "")
    names = {fn.api_name for fn in app_module.demo.fns.values() if fn.api_visibility == "public"}
    assert {"read_number", "save_number_correction"} <= names
