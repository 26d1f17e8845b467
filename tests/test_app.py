"""The Gradio app without a browser: its logic (hwr.app_logic), its handlers (import app), and its
API through gradio_client against `python app.py` running on a free port (the app_server fixture)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from hwr import Recognizer
from hwr.app_logic import (
    ASK_FOR_DRAWING,
    ASK_FOR_LABEL,
    EMPTY_MESSAGE,
    MODEL_VIEW_SCALE,
    NOTHING_TO_UNDO,
    SAVED_MARK,
    DigitApp,
    InvalidDrawingError,
    Settings,
    check_upload,
    enlarge,
    header_markdown,
    mnist_accuracy,
)
from hwr.corrections import METADATA_NAME, CorrectionStore
from hwr.recognizer import DEFAULT_CHECKPOINT

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "assets" / "examples"
# How many of the example drawings (assets/examples: pendigits writer 1, digits 0-9) the model must get right.
MIN_EXAMPLES_RIGHT = 10


def example_path(digit: int) -> Path:
    return EXAMPLES / f"digit_{digit}.png"


def sketch_of(image: np.ndarray | None) -> dict:
    """A Sketchpad value as Gradio 6 passes it to handlers (type='numpy', image_mode='RGBA')."""
    return {"background": None, "layers": [], "composite": image}


def example_sketch(digit: int) -> dict:
    return sketch_of(np.asarray(Image.open(example_path(digit)).convert("RGBA")))


def blank_canvas() -> np.ndarray:
    return np.full((400, 400, 4), 255, np.uint8)


@pytest.fixture(scope="session")
def recognizer(checkpoint_path: Path) -> Recognizer:
    return Recognizer.load(checkpoint_path)


@pytest.fixture
def digit_app(recognizer: Recognizer, tmp_path: Path) -> DigitApp:
    return DigitApp(recognizer, CorrectionStore(tmp_path / "corrections", classes=recognizer.classes))


def metadata_lines(folder: Path) -> list[dict]:
    path = folder / METADATA_NAME
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


# ---------------------------------------------------------------------------------------------
# Settings, header, pure helpers
# ---------------------------------------------------------------------------------------------


def test_settings_defaults_and_environment(tmp_path: Path) -> None:
    default = Settings.from_env({})
    assert default.checkpoint == DEFAULT_CHECKPOINT
    assert default.corrections_dir == Path("corrections")
    assert Settings.from_env({"HWR_CHECKPOINT": "", "HWR_CORRECTIONS_DIR": ""}) == default
    custom = Settings.from_env(
        {"HWR_CHECKPOINT": str(tmp_path / "m.safetensors"), "HWR_CORRECTIONS_DIR": str(tmp_path)}
    )
    assert custom == Settings(tmp_path / "m.safetensors", tmp_path)


def test_header_shows_model_name_and_mnist_accuracy(recognizer: Recognizer) -> None:
    header = header_markdown(recognizer)
    assert recognizer.name in header
    accuracy = recognizer.metadata["metrics"]["mnist-test"]["accuracy"]
    assert f"{accuracy:.2%}" in header


@pytest.mark.parametrize(
    "metadata, expected",
    [
        ({"metrics": {"mnist-test": {"accuracy": 0.9931}}}, 0.9931),
        ({}, None),
        ({"metrics": None}, None),
        ({"metrics": {"mnist-test": {"accuracy": "high"}}}, None),
        ({"metrics": {"mnist-test": []}}, None),
    ],
)
def test_mnist_accuracy_tolerates_missing_metadata(metadata: dict, expected: float | None) -> None:
    assert mnist_accuracy(metadata) == expected


def test_enlarge_is_nearest_neighbour_white_on_black() -> None:
    model_input = np.zeros((28, 28), np.float32)
    model_input[3, 5] = 1.0
    model_input[10, 10] = 0.5
    big = enlarge(model_input)
    s = MODEL_VIEW_SCALE
    assert big.shape == (28 * s, 28 * s) and big.dtype == np.uint8
    assert (big[3 * s : 4 * s, 5 * s : 6 * s] == 255).all()  # one input pixel = one s x s block
    assert (big[10 * s : 11 * s, 10 * s : 11 * s] == 128).all()
    assert big.sum() == 255 * s * s + 128 * s * s


def test_check_upload_refuses_non_images_and_huge_images(tmp_path: Path) -> None:
    check_upload(example_path(3))  # a real drawing passes
    text = tmp_path / "d.png"
    text.write_text("not an image")
    with pytest.raises(InvalidDrawingError, match="not an image"):
        check_upload(text)
    huge = tmp_path / "huge.png"
    Image.new("1", (5000, 5000)).save(huge)  # a few KB on disk, 25 Mpx decoded
    with pytest.raises(InvalidDrawingError, match="too large"):
        check_upload(huge)
    with pytest.raises(InvalidDrawingError, match="could not be found"):
        check_upload(tmp_path / "missing.png")
    check_upload(example_path(3).read_bytes())  # bytes too (the browser's blob uploads)
    with pytest.raises(InvalidDrawingError, match="too large"):
        check_upload(huge.read_bytes())


# ---------------------------------------------------------------------------------------------
# DigitApp: predict, save, undo
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sketch",
    [None, {}, sketch_of(None), {"background": None, "layers": [None], "composite": None}, sketch_of(blank_canvas())],
    ids=["none", "empty-dict", "no-composite", "none-layer", "white-canvas"],
)
def test_blank_drawing_asks_for_a_digit(digit_app: DigitApp, sketch: dict | None) -> None:
    assert digit_app.predict(sketch) == (EMPTY_MESSAGE, None)


def test_predict_gives_top3_label_and_model_view(digit_app: DigitApp) -> None:
    label, view = digit_app.predict(example_sketch(3))
    assert isinstance(label, dict) and len(label) == 3
    confidences = list(label.values())
    assert confidences == sorted(confidences, reverse=True) and 0 < sum(confidences) <= 1 + 1e-6
    assert set(label) <= set(digit_app.classes)
    assert view.shape == (28 * MODEL_VIEW_SCALE, 28 * MODEL_VIEW_SCALE) and view.dtype == np.uint8
    assert view.max() == 255 and view.min() == 0  # white ink on black


def test_example_drawings_are_recognised(digit_app: DigitApp) -> None:
    predicted = {d: next(iter(digit_app.predict(example_sketch(d))[0])) for d in range(10)}
    wrong = {d: p for d, p in predicted.items() if p != str(d)}
    assert 10 - len(wrong) >= MIN_EXAMPLES_RIGHT, f"wrong predictions (true: predicted): {wrong}"


def test_predict_accepts_layers_only_and_alpha_drawings(digit_app: DigitApp) -> None:
    rgba = np.asarray(Image.open(example_path(7)).convert("RGBA")).copy()
    ink_alpha = 255 - rgba[..., 0]  # black ink on a transparent layer, as an API client may send
    layer = np.zeros_like(rgba)
    layer[..., 3] = ink_alpha
    from_layer = digit_app.predict({"background": None, "layers": [layer], "composite": None})[0]
    from_composite = digit_app.predict(sketch_of(rgba))[0]
    assert next(iter(from_layer)) == next(iter(from_composite))


@pytest.mark.parametrize("bad", ["not an image path", sketch_of(np.array(["a", "b"])), sketch_of(np.zeros((5, 5, 7)))])
def test_unreadable_drawing_is_a_clear_error(digit_app: DigitApp, bad: object) -> None:
    with pytest.raises(InvalidDrawingError, match="cannot be read"):
        digit_app.predict(bad)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.integers(1, 64), st.integers(1, 64), st.sampled_from([None, 1, 3, 4]), st.integers(0, 2**32 - 1)
)
def test_predict_never_crashes_on_arbitrary_images(
    digit_app: DigitApp, h: int, w: int, c: int | None, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    shape = (h, w) if c is None else (h, w, c)
    image = (rng.random(shape) > rng.random()).astype(np.uint8) * 255
    label, view = digit_app.predict(sketch_of(image))
    assert label == EMPTY_MESSAGE or (isinstance(label, dict) and 1 <= len(label) <= 3)


def test_save_correction_stores_png_and_metadata(digit_app: DigitApp) -> None:
    before = len(digit_app.store)
    outcome = digit_app.save_correction(example_sketch(4), "4")
    assert outcome.saved and outcome.message.startswith(SAVED_MARK)
    assert f"{before + 1} correction" in outcome.message
    folder = digit_app.store.root
    (line,) = [m for m in metadata_lines(folder) if m["id"] == outcome.saved_id]
    assert line["label"] == "4" and line["checkpoint"] == digit_app.recognizer.name
    assert line["predicted"] in digit_app.classes and 0 <= line["probability"] <= 1
    with Image.open(folder / line["file_name"]) as png:
        assert png.format == "PNG" and png.size == (400, 400)


@pytest.mark.parametrize(
    "sketch, label, expected",
    [
        (None, "3", ASK_FOR_DRAWING),
        (sketch_of(blank_canvas()), "3", ASK_FOR_DRAWING),
        ("EXAMPLE", None, ASK_FOR_LABEL),
        ("EXAMPLE", "", ASK_FOR_LABEL),
        ("EXAMPLE", "../../etc", "is not a class"),
        ("EXAMPLE", "12", "is not a class"),
    ],
)
def test_save_without_drawing_or_label_is_a_friendly_message(
    digit_app: DigitApp, sketch: object, label: str | None, expected: str
) -> None:
    if sketch == "EXAMPLE":
        sketch = example_sketch(2)
    outcome = digit_app.save_correction(sketch, label)
    assert not outcome.saved and expected in outcome.message
    assert len(digit_app.store) == 0 and not digit_app.store.root.exists()


def test_save_when_the_disk_refuses_is_a_message(recognizer: Recognizer, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the corrections folder should be")
    app = DigitApp(recognizer, CorrectionStore(blocker, classes=recognizer.classes))
    outcome = app.save_correction(example_sketch(5), "5")
    assert not outcome.saved and outcome.message.startswith("Not saved:")


def test_undo_removes_the_last_save(digit_app: DigitApp) -> None:
    assert digit_app.undo(None) == NOTHING_TO_UNDO
    saved = digit_app.save_correction(example_sketch(1), "7")
    assert len(digit_app.store) == 1
    assert "Removed" in digit_app.undo(saved.saved_id)
    assert len(digit_app.store) == 0 and metadata_lines(digit_app.store.root) == []
    assert not list(digit_app.store.root.glob("*/*.png"))
    assert "already removed" in digit_app.undo(saved.saved_id)


# ---------------------------------------------------------------------------------------------
# app.py: import it and call its handlers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app_module(checkpoint_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """`import app` with a temporary corrections folder (the module builds `demo`, never launches)."""
    folder = tmp_path_factory.mktemp("app_module") / "corrections"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HWR_CHECKPOINT", str(checkpoint_path))
        mp.setenv("HWR_CORRECTIONS_DIR", str(folder))
        mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        mp.syspath_prepend(str(REPO_ROOT))
        if "app" in sys.modules:
            module = importlib.reload(sys.modules["app"])
        else:
            module = importlib.import_module("app")
    assert module.APP.store.root == folder
    return module


def test_app_builds_demo_without_launching(app_module) -> None:
    import gradio as gr

    assert isinstance(app_module.demo, gr.Blocks)
    assert not app_module.demo.is_running  # launch() only under __main__
    names = {fn.api_name for fn in app_module.demo.fns.values() if fn.api_visibility == "public"}
    assert names == {"predict", "save_correction", "read_number", "save_number_correction"}


def test_app_handlers(app_module) -> None:
    import gradio as gr

    label, view = app_module.predict(example_sketch(0))
    assert isinstance(label, dict) and view.shape == (224, 224)
    assert app_module.predict(None) == (EMPTY_MESSAGE, None)
    with pytest.raises(gr.Error, match="cannot be read"):
        app_module.predict("definitely not an image")
    message, last_id = app_module.save_correction(example_sketch(6), "6", None)
    assert message.startswith(SAVED_MARK) and last_id
    message, kept_id = app_module.save_correction(None, "6", last_id)
    assert message == ASK_FOR_DRAWING and kept_id == last_id  # a failed save keeps the undo target
    message, cleared = app_module.undo(kept_id)
    assert "Removed" in message and cleared is None
    assert app_module.clear_outputs() == (EMPTY_MESSAGE, None, None, "")


def test_model_accordion_wiring(app_module) -> None:
    """Fine-tuning has its own queue group (predictions never wait for it); its events are private."""
    import gradio as gr

    fns = {fn.api_name: fn for fn in app_module.demo.fns.values()}
    finetune, predict = fns["finetune"], fns["predict"]
    assert finetune.concurrency_id == app_module.FINETUNE_CONCURRENCY_ID != predict.concurrency_id
    assert fns["predict_while_drawing"].concurrency_id == predict.concurrency_id
    assert finetune.concurrency_limit == app_module.FINETUNE_CONCURRENCY_LIMIT >= 2  # room to say "already running"
    assert predict.concurrency_limit == 4
    assert finetune.show_progress_on == [app_module.model_message]  # the bar sits by the buttons
    for name in ("finetune", "use_bundled_model", "counts", "counts_on_open", "counts_after_save", "counts_after_undo", "header"):
        assert fns[name].api_visibility == "private", name
    assert isinstance(app_module.model_box, gr.Accordion) and app_module.model_box.open is False
    assert app_module.finetune_button.visible is app_module.APP.allow_finetune


def test_model_accordion_handlers(app_module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Counts, a fine-tune with nothing to learn (a message, no traceback), and the bundled model."""
    app = app_module.APP
    monkeypatch.setattr(app, "store", CorrectionStore(tmp_path / "empty", classes=app.classes))
    monkeypatch.setattr(app, "_active", app.active)  # restored after: other tests keep their model
    assert "No corrections saved yet" in app_module.corrections_counts()
    calls = []
    message, header, counts = app_module.finetune_model(lambda fraction, desc=None: calls.append((fraction, desc)))
    assert message.startswith("Cannot fine-tune yet:") and "No usable corrections" in message
    assert header == app.header() and "No corrections saved yet" in counts
    assert calls and calls[0][0] == 0.0  # the progress bar was fed
    app.store.add(example_sketch(4)["composite"], "4")
    assert "| Corrections |" in app_module.corrections_counts()
    message, header = app_module.use_bundled_model()
    assert app.recognizer.name in message and header == app.header()


def test_sketchpad_checks_browser_blobs_before_decoding(app_module, tmp_path: Path) -> None:
    import gradio as gr
    from gradio.components.image_editor import EditorData, EditorDataBlobs

    huge = tmp_path / "huge.png"
    Image.new("1", (5000, 5000)).save(huge)
    sketchpad = app_module.sketch
    sketchpad.blob_storage["test-huge"] = EditorDataBlobs(background=None, layers=[], composite=huge.read_bytes())
    with pytest.raises(gr.Error, match="too large"):
        sketchpad.preprocess(EditorData(background=None, layers=[], composite=None, id="test-huge"))
    fine = example_path(5).read_bytes()
    sketchpad.blob_storage["test-fine"] = EditorDataBlobs(background=None, layers=[], composite=fine)
    value = sketchpad.preprocess(EditorData(background=None, layers=[], composite=None, id="test-fine"))
    assert value["composite"].shape == (400, 400, 4)


def test_app_uses_builtin_components_and_writes_no_stub_files(app_module) -> None:
    config = app_module.demo.get_config_file()
    types = {c["props"].get("elem_id"): c["type"] for c in config["components"]}
    assert types["sketchpad"] == "imageeditor" and types["correct-label"] == "radio"
    # Gradio writes a .pyi next to any module that defines a Component subclass: app.py defines none.
    assert not (REPO_ROOT / "app.pyi").exists() and not list((REPO_ROOT / "hwr").glob("*.pyi"))


# ---------------------------------------------------------------------------------------------
# The API, through gradio_client against `python app.py`
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(app_server):
    from gradio_client import Client

    return Client(app_server.url, verbose=False)


def api_sketch(path: Path | str) -> dict:
    """How the README tells API users to send a drawing: the Sketchpad dict, not a bare file."""
    from gradio_client import handle_file

    return {"background": None, "layers": [], "composite": handle_file(str(path))}


def test_api_lists_the_public_endpoints(client) -> None:
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(endpoints) == {"/predict", "/save_correction", "/read_number", "/save_number_correction"}
    assert [p["parameter_name"] for p in endpoints["/save_number_correction"]["parameters"]] == ["sketch", "number"]
    assert [p["parameter_name"] for p in endpoints["/save_correction"]["parameters"]] == ["sketch", "label"]


def test_api_predict(client) -> None:
    label, view = client.predict(api_sketch(example_path(3)), api_name="/predict")
    assert label["label"] in [str(d) for d in range(10)]
    assert [c["label"] for c in label["confidences"]][0] == label["label"] and len(label["confidences"]) == 3
    with Image.open(view) as image:
        assert image.size == (224, 224)


def test_api_blank_drawings(client, tmp_path: Path) -> None:
    from gradio_client import handle_file

    white = tmp_path / "white.png"
    Image.new("RGB", (400, 400), "white").save(white)
    for value in (None, api_sketch(white), {"background": None, "layers": [], "composite": None}):
        label, view = client.predict(value, api_name="/predict")
        assert label["label"] == EMPTY_MESSAGE and view is None
    # A bare file (not the dict) is accepted by Gradio and silently becomes None: why the README shows the dict.
    label, _ = client.predict(handle_file(str(example_path(3))), api_name="/predict")
    assert label["label"] == EMPTY_MESSAGE


def test_api_save_correction(client, app_server) -> None:
    folder = app_server.corrections_dir
    before = len(metadata_lines(folder))
    message = client.predict(api_sketch(example_path(8)), "8", api_name="/save_correction")
    assert message.startswith(SAVED_MARK) and "Saved as **8**" in message
    lines = metadata_lines(folder)
    assert len(lines) == before + 1 and lines[-1]["label"] == "8"
    assert (folder / lines[-1]["file_name"]).is_file()
    assert client.predict(api_sketch(example_path(8)), None, api_name="/save_correction") == ASK_FOR_LABEL
    assert client.predict(None, "8", api_name="/save_correction") == ASK_FOR_DRAWING
    assert len(metadata_lines(folder)) == before + 1


def test_api_bad_payloads_are_clear_errors_without_tracebacks(client, app_server, tmp_path: Path) -> None:
    from gradio_client.exceptions import AppError

    text = tmp_path / "digit.png"
    text.write_text("this is not a PNG")
    huge = tmp_path / "huge.png"
    Image.new("1", (5000, 5000)).save(huge)
    cases = [
        ((api_sketch(text),), "/predict", "not an image"),
        ((api_sketch(huge),), "/predict", "too large"),
        (({"background": None, "layers": [], "composite": 42},), "/predict", "must be a Sketchpad value"),
        (("a string",), "/predict", "must be a Sketchpad value"),
        ((api_sketch(text), "3"), "/save_correction", "not an image"),
        ((api_sketch(example_path(3)), "../../etc"), "/save_correction", "is not a class"),
    ]
    for args, endpoint, expected in cases:
        with pytest.raises(AppError, match=expected):
            client.predict(*args, api_name=endpoint)
    log = app_server.log_text()
    assert "Traceback" not in log, log[-3000:]
