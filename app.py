"""Draw a digit, see what the model predicts and what it saw, and correct it: the Gradio app.

Layout and wiring only; the logic is in `hwr/app_logic.py`. Run with `python app.py`.
API endpoints: /predict and /save_correction; /read_number and /save_number_correction (the
"Number" tab); the "Model" accordion's events are private.

Settings (environment; details in `hwr/app_logic.py`):
    HWR_CHECKPOINT        the model to start with (default: the bundled one)
    HWR_LETTERS_CHECKPOINT  the letters model; when it is present a "Digits / Letters" switch shows
                          (default: the bundled checkpoints/letters-cnn.safetensors; "none": off)
    HWR_CORRECTIONS_DIR   where corrections are saved (default: ./corrections)
    HWR_MODELS_DIR        where fine-tuned models are saved (default: ./models)
    HWR_DATA_DIR          MNIST for replay and the accuracy check while fine-tuning (default: ./data;
                          downloaded there if absent and the machine is online)
    HWR_ALLOW_FINETUNE    "1" (default) shows the fine-tune button; "0" hides it and the server
                          refuses fine-tunes (e.g. a public Space where CPU is scarce)
    HWR_ALLOW_SAVE        "1" (default) shows the correction controls; "0" hides them and the server
                          refuses saves: a public demo that keeps nothing its visitors draw
    HWR_QUEUE_MAX_SIZE    requests waiting in Gradio's queue before new ones are turned away (default 256)
and Gradio's own GRADIO_SERVER_NAME / GRADIO_SERVER_PORT.

Fine-tuning runs in its own queue group (FINETUNE_CONCURRENCY_ID), so predictions keep their own
workers while it trains; the model is swapped atomically when a fine-tuned one passes its check.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable
from typing import Any

import gradio as gr
from gradio.components.image_editor import EditorData
from pydantic import ConfigDict, ValidationError

from hwr import CheckpointError
from hwr.gradio_fixes import make_image_cache_writes_atomic
from hwr.number_app import EMPTY_NUMBER_MESSAGE, NumberApp
from hwr.app_logic import (
    DIGITS,
    EMPTY_MESSAGE,
    SAVED_MARK,
    DigitApp,
    ModeApps,
    FinetuneOutcome,
    MAX_UPLOAD_BYTES,
    InvalidDrawingError,
    Settings,
    check_upload,
    empty_message,
    malformed_sketch_message,
    unknown_label_message,
    unreadable_upload_message,
)

log = logging.getLogger("hwr.app")
if __name__ == "__main__":  # before the model loads, so its log lines show
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests

CANVAS_SIZE = (400, 400)
SKETCHPAD_HEIGHT = 540  # px: room for the 400 px canvas at 100 % or more, plus the toolbars
BRUSH_RADIUS = 12  # px on the 400 px canvas: a 24 px stroke, easy with a mouse or a finger
# Fine-tuning's own queue group. Two slots: one fine-tune runs, a second click gets "already
# running" at once (DigitApp's lock) instead of waiting in the queue to start another one.
FINETUNE_CONCURRENCY_ID = "finetune"
FINETUNE_CONCURRENCY_LIMIT = 2

# --- Browser-side helpers -------------------------------------------------------------------------
# Gradio 6's Sketchpad starts with no tool selected ("select the draw tool to start") and drops the
# tool when cleared; and setting its value to None from Python can leave it stuck "processing".
# So the canvas is cleared with its own "Clear canvas" button, and the brush is picked again after.
# Buttons are found by their English aria-label, else by position (labels are translated in a few
# locales).
_SKETCHPAD_JS = """
  const pad = () => document.querySelector('#sketchpad');
  const brushButton = () => pad()?.querySelector('button[aria-label="Brush"]')
      || pad()?.querySelector('.half-container:not(.right) button');
  const clearButton = () => pad()?.querySelector('button[aria-label="Clear canvas"]')
      || [...(pad()?.querySelectorAll('.top-panel button') ?? [])].pop();
  // For `tries` x 100 ms, pick the brush whenever it is not picked: the tool is dropped a moment
  // after a clear (the DOM updates later), and its button appears a moment after the page loads.
  const keepBrush = (tries) => {
    const brush = brushButton();
    if (brush && !brush.classList.contains('highlight')) brush.click();
    if (tries > 0) setTimeout(() => keepBrush(tries - 1), 100);
  };
  const clearCanvas = () => { const b = clearButton(); if (b) b.click(); keepBrush(15); };
"""
SELECT_BRUSH_JS = "() => {" + _SKETCHPAD_JS + "  keepBrush(50);\n}"
CLEAR_CANVAS_JS = "() => {" + _SKETCHPAD_JS + "  clearCanvas();\n}"
# After a save: clear the canvas and the chosen label if the message says it was saved.
CLEAR_IF_SAVED_JS = (
    "(message, label) => {" + _SKETCHPAD_JS
    + f"  if (!(message || '').startsWith({json.dumps(SAVED_MARK)})) return label;\n"
    + "  clearCanvas();\n  return null;\n}"
)


# --- Components that answer bad API input with a sentence (gr.Error), never a traceback ---------


class _SketchPayload(EditorData):
    """The Sketchpad's wire format; a payload of the wrong shape is a gr.Error, not a traceback."""

    model_config = ConfigDict(title="EditorData")  # the same API schema as Gradio's own

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> EditorData:
        try:
            return EditorData.model_validate(obj, *args, **kwargs)
        except ValidationError:
            raise gr.Error(malformed_sketch_message(), print_exception=False) from None


def guard_sketchpad(sketchpad: gr.Sketchpad) -> gr.Sketchpad:
    """Make this Sketchpad answer unreadable or malformed API input with a clear gr.Error.

    Wraps the instance rather than subclassing: Gradio writes a `.pyi` stub next to the module of
    every Component subclass it sees defined (gradio/component_meta.py).
    """
    gradio_preprocess = sketchpad.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            for source in _image_sources(sketchpad, payload):
                check_upload(source)  # before Gradio decodes anything
            return gradio_preprocess(payload)
        except Exception as exc:
            log.warning("Unreadable drawing upload: %s", exc)
            raise gr.Error(unreadable_upload_message(exc), print_exception=False) from None

    sketchpad.data_model = _SketchPayload
    sketchpad.preprocess = preprocess  # type: ignore[method-assign]
    return sketchpad


def _image_sources(sketchpad: gr.Sketchpad, payload: Any) -> list[Any]:
    """The images in a payload: file paths (API clients) or bytes (the browser's blob uploads)."""
    if payload is None:
        return []
    if payload.id is not None:  # the browser sent the images ahead, as blobs
        parts = sketchpad.blob_storage.get(payload.id)
        if parts is None:
            return []
        return [p for p in (parts.background, parts.composite, *parts.layers) if isinstance(p, bytes)]
    parts = [payload.background, payload.composite, *(payload.layers or [])]
    return [p.path for p in parts if p is not None and getattr(p, "path", None)]


def guard_choice(radio: gr.Radio) -> gr.Radio:
    """Make an unknown choice (from an API client) a gr.Error that lists the choices, no traceback."""
    gradio_preprocess = radio.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            return gradio_preprocess(payload)
        except Exception:
            choices = [str(value) for _, value in radio.choices]
            raise gr.Error(unknown_label_message(payload, choices), print_exception=False) from None

    radio.preprocess = preprocess  # type: ignore[method-assign]
    return radio


# --- Handlers: hwr.app_logic, with errors turned into messages -----------------------------------


def friendly_errors(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a bad drawing into a gr.Error sentence, and any bug into a short apology (logged)."""

    @functools.wraps(handler)
    def wrapped(*args: Any) -> Any:
        try:
            return handler(*args)
        except InvalidDrawingError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except gr.Error:
            raise
        except Exception:
            log.exception("Handler %s failed", handler.__name__)
            raise gr.Error("Something went wrong on our side; please try again.", print_exception=False) from None

    return wrapped


make_image_cache_writes_atomic()  # Gradio 6.31 rewrites cached output images in place: see the module
try:
    APPS = ModeApps.from_settings(Settings.from_env())  # the models are loaded once per process
except CheckpointError as exc:
    raise SystemExit(f"Cannot start the app: {exc}") from None
APP: DigitApp = APPS.digits  # the digit mode; APPS.get(mode) serves the "Digits / Letters" switch
APPS.warm_up()
NUMBER_APP = NumberApp(APP)  # the "Number" tab: the digit model and its corrections store

# Every single-digit handler below takes the session's mode (a gr.State, so not an API parameter: API
# clients always get digits) as its last argument, "Digits" by default.


@friendly_errors
def predict(sketch: dict | None, mode: str = DIGITS) -> tuple[Any, Any]:
    """The gr.Label value (top 3, or "Draw a digit") and the enlarged 28x28 model input."""
    return APPS.get(mode).predict(sketch)


@friendly_errors
def save_correction(
    sketch: dict | None, label: str | None, last_saved_id: str | None, mode: str = DIGITS
) -> tuple[str, str | None]:
    """Save the drawing as `label`: (message, the id "Undo last save" removes)."""
    outcome = APPS.get(mode).save_correction(sketch, label)
    return outcome.message, outcome.saved_id or last_saved_id


@friendly_errors
def undo(last_saved_id: str | None, mode: str = DIGITS) -> tuple[str, None]:
    """Delete the last saved correction."""
    return APPS.get(mode).undo(last_saved_id), None


def header(mode: str = DIGITS) -> str:
    """The header for the model in use now (it changes after a fine-tune or a switch)."""
    return APPS.get(mode).header()


def corrections_counts(mode: str = DIGITS) -> str:
    """The corrections stored per label, as Markdown."""
    return APPS.get(mode).counts_markdown()


@friendly_errors
def finetune_model(progress: gr.Progress = gr.Progress(), mode: str = DIGITS) -> tuple[str, str, str]:
    """Fine-tune the model in use on the stored corrections: (message, header, counts).

    Runs in a worker thread for as long as it trains; predictions go on meanwhile.
    """
    app = APPS.get(mode)
    outcome: FinetuneOutcome = app.start_finetune(lambda fraction, message: progress(fraction, desc=message))
    return outcome.message, app.header(), app.counts_markdown()


@friendly_errors
def use_bundled_model(mode: str = DIGITS) -> tuple[str, str]:
    """Switch back to the bundled model: (message, header)."""
    app = APPS.get(mode)
    return app.use_bundled(), app.header()


def clear_outputs() -> tuple[str, None, None, str]:
    """Reset the outputs: label "Draw a digit", no model view, no label chosen, no message.

    The canvas itself is cleared in the browser (CLEAR_CANVAS_JS).
    """
    return EMPTY_MESSAGE, None, None, ""


def empty_label(mode: str = DIGITS) -> str:
    """The label area's text for an empty canvas in this mode: "Draw a digit" / "Draw a letter"."""
    return empty_message(APPS.get(mode).kind)


def switch_mode(mode: str) -> tuple[str, str, Any, str, None, str, None, str]:
    """The "Digits / Letters" switch: (the session's mode, header, label choices, prediction,
    model view, message, undo target, counts). The drawing stays; it is predicted again after."""
    app = APPS.get(mode)
    mode = mode if app is not APP else DIGITS
    choices = gr.Radio(choices=app.classes, value=None)  # the session's copy gets these choices
    return mode, app.header(), choices, empty_message(app.kind), None, "", None, app.counts_markdown()


# --- The "Number" tab: a whole number on a wide canvas -----------------------------------------

NUMBER_CANVAS_SIZE = (800, 300)
NUMBER_SKETCHPAD_HEIGHT = 440  # px: the 300 px canvas plus the toolbars
NUMBER_SELECT_BRUSH_JS = SELECT_BRUSH_JS.replace("#sketchpad", "#number-sketchpad")
NUMBER_CLEAR_CANVAS_JS = CLEAR_CANVAS_JS.replace("#sketchpad", "#number-sketchpad")


@friendly_errors
def read_number(sketch: dict | None) -> tuple[str, Any, Any]:
    """The number read (Markdown), the drawing with each digit's box, and the digits' model inputs."""
    return NUMBER_APP.read(sketch)


@friendly_errors
def save_number_correction(sketch: dict | None, number: str | None) -> str:
    """Save each digit of the drawing as its own correction, labelled by the typed number."""
    return NUMBER_APP.save_correction(sketch, number).message


def clear_number_outputs() -> tuple[str, None, list, str, str]:
    """Reset the Number tab's outputs (the canvas is cleared in the browser)."""
    return EMPTY_NUMBER_MESSAGE, None, [], "", ""


def build_number_tab() -> None:
    """The Number tab's components and events (called inside the Blocks, in a gr.Tab)."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=520):
            number_sketch = gr.Sketchpad(
                label="Draw a number (several digits, left to right)",
                canvas_size=NUMBER_CANVAS_SIZE,
                fixed_canvas=True,
                brush=gr.Brush(default_size=BRUSH_RADIUS, colors=["#000000"], color_mode="fixed"),
                eraser=gr.Eraser(default_size=BRUSH_RADIUS * 2),
                layers=False,
                transforms=(),
                image_mode="RGBA",
                type="numpy",
                buttons=[],
                height=NUMBER_SKETCHPAD_HEIGHT,
                elem_id="number-sketchpad",
            )
            guard_sketchpad(number_sketch)
            with gr.Row():
                read_button = gr.Button("Read", variant="primary", elem_id="read-number-button")
                clear_number_button = gr.Button("Clear", elem_id="clear-number-button")
        with gr.Column(scale=2, min_width=280):
            number_text = gr.Markdown(EMPTY_NUMBER_MESSAGE, elem_id="number-text")
            number_boxes = gr.Image(
                label="Digits found", type="numpy", format="png", interactive=False, buttons=[],
                elem_id="number-boxes",
            )
            number_inputs = gr.Gallery(
                label="What the model sees, digit by digit", columns=6, height=160, allow_preview=False,
                object_fit="contain",
                buttons=[], elem_id="number-inputs",
            )
            number_label = gr.Textbox(
                label="Wrong? The number is:", placeholder="e.g. 2026", max_lines=1, visible=APP.allow_save,
                elem_id="number-label",
            )
            save_number_button = gr.Button(
                "Save correction (one per digit)", visible=APP.allow_save, elem_id="save-number-button"
            )
            number_message = gr.Markdown(elem_id="number-message")
    outputs = [number_text, number_boxes, number_inputs]
    number_sketch.change(
        read_number, inputs=number_sketch, outputs=outputs, trigger_mode="always_last", show_progress="hidden",
        concurrency_limit=4, api_name="read_number_while_drawing", api_visibility="private",
    )
    read_button.click(read_number, inputs=number_sketch, outputs=outputs, api_name="read_number", concurrency_limit=4)
    save_number_button.click(
        save_number_correction, inputs=[number_sketch, number_label], outputs=number_message,
        api_name="save_number_correction",
    )
    clear_number_button.click(
        clear_number_outputs, outputs=[*outputs, number_label, number_message], js=NUMBER_CLEAR_CANVAS_JS,
        api_name="clear_number", api_visibility="private",
    )


# analytics off: no telemetry and no version check, so nothing goes out at start-up.
with gr.Blocks(title="Handwritten digit recognizer", analytics_enabled=False) as demo:
    header_text = gr.Markdown(APP.header(), elem_id="header")
    mode = gr.State(DIGITS)  # this session's mode
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=420):
            mode_switch = gr.Radio(
                choices=APPS.modes,
                value=DIGITS,
                label="Recognise",
                visible=APPS.has_letters,  # shown only when a letters model is present
                elem_id="mode-switch",
            )
            sketch = gr.Sketchpad(
                label="Draw a digit",
                canvas_size=CANVAS_SIZE,
                fixed_canvas=True,
                brush=gr.Brush(default_size=BRUSH_RADIUS, colors=["#000000"], color_mode="fixed"),
                eraser=gr.Eraser(default_size=BRUSH_RADIUS * 2),
                layers=False,
                transforms=(),
                image_mode="RGBA",
                type="numpy",
                buttons=[],
                height=SKETCHPAD_HEIGHT,
                elem_id="sketchpad",
            )
            guard_sketchpad(sketch)
            with gr.Row():
                predict_button = gr.Button("Predict", variant="primary", elem_id="predict-button")
                clear_button = gr.Button("Clear", elem_id="clear-button")
        with gr.Column(scale=2, min_width=280):
            prediction = gr.Label(
                value=EMPTY_MESSAGE, num_top_classes=3, label="Prediction", elem_id="prediction"
            )
            model_view = gr.Image(
                label="What the model sees (28×28)",
                type="numpy",
                format="png",
                interactive=False,
                height=224,
                width=224,
                buttons=[],
                elem_id="model-view",
            )
            correct_label = gr.Radio(
                choices=APP.classes, label="Wrong? It is:", visible=APP.allow_save, elem_id="correct-label"
            )
            guard_choice(correct_label)
            with gr.Row(visible=APP.allow_save, elem_id="correction-buttons"):
                save_button = gr.Button("Save correction", elem_id="save-button")
                undo_button = gr.Button("Undo last save", elem_id="undo-button")
            message = gr.Markdown(elem_id="message")
    with gr.Accordion("Model", open=False, elem_id="model-box") as model_box:
        gr.Markdown(
            "Corrections saved so far, per label. Fine-tuning teaches them to the model in use, "
            "mixed with MNIST so it does not forget; the new model is kept only if its MNIST "
            "accuracy falls by at most 0.3 points." if APP.allow_finetune else "Corrections saved so far, per label."
        )
        counts_text = gr.Markdown(elem_id="correction-counts")
        with gr.Row():
            refresh_button = gr.Button("Refresh counts", size="sm", elem_id="refresh-counts-button")
            finetune_button = gr.Button(
                "Fine-tune on the corrections",
                variant="primary",
                size="sm",
                visible=APP.allow_finetune,
                elem_id="finetune-button",
            )
            bundled_button = gr.Button("Use the bundled model", size="sm", elem_id="bundled-button")
        model_message = gr.Markdown(elem_id="model-message")
    last_saved_id = gr.State(None)

    demo.load(None, js=SELECT_BRUSH_JS)  # draw at once, without first clicking the brush tool
    # The model may have changed since the page was built (a fine-tune by another visitor).
    demo.load(header, inputs=mode, outputs=header_text, api_name="header", api_visibility="private", show_progress="hidden")
    mode_switch.change(
        switch_mode,
        inputs=mode_switch,
        outputs=[mode, header_text, correct_label, prediction, model_view, message, last_saved_id, counts_text],
        api_name="switch_mode",
        api_visibility="private",
        show_progress="hidden",
    ).then(
        predict, inputs=[sketch, mode], outputs=[prediction, model_view], api_name="predict_after_switch",
        api_visibility="private", show_progress="hidden",
    )
    sketch.change(
        predict,
        inputs=[sketch, mode],
        outputs=[prediction, model_view],
        trigger_mode="always_last",
        show_progress="hidden",
        concurrency_limit=4,
        api_name="predict_while_drawing",  # explicit: a private event still claims its function's name
        api_visibility="private",
    )
    predict_button.click(
        predict, inputs=[sketch, mode], outputs=[prediction, model_view], api_name="predict", concurrency_limit=4
    )
    saved = save_button.click(
        save_correction,
        inputs=[sketch, correct_label, last_saved_id, mode],
        outputs=[message, last_saved_id],
        api_name="save_correction",
    )
    saved.success(None, inputs=[message, correct_label], outputs=correct_label, js=CLEAR_IF_SAVED_JS)
    saved.then(
        corrections_counts, inputs=mode, outputs=counts_text, api_name="counts_after_save", api_visibility="private",
        show_progress="hidden",
    )
    undo_button.click(
        undo, inputs=[last_saved_id, mode], outputs=[message, last_saved_id], api_name="undo", api_visibility="private"
    ).then(
        corrections_counts, inputs=mode, outputs=counts_text, api_name="counts_after_undo", api_visibility="private",
        show_progress="hidden",
    )
    model_box.expand(
        corrections_counts, inputs=mode, outputs=counts_text, api_name="counts_on_open", api_visibility="private"
    )
    refresh_button.click(
        corrections_counts, inputs=mode, outputs=counts_text, api_name="counts", api_visibility="private"
    )
    finetune_button.click(
        finetune_model,
        inputs=mode,
        outputs=[model_message, header_text, counts_text],
        show_progress_on=model_message,  # the progress bar under the buttons, not over the header
        concurrency_id=FINETUNE_CONCURRENCY_ID,  # not the predict events' group: they keep running
        concurrency_limit=FINETUNE_CONCURRENCY_LIMIT,
        api_name="finetune",
        api_visibility="private",
    )
    bundled_button.click(
        use_bundled_model,
        inputs=mode,
        outputs=[model_message, header_text],
        api_name="use_bundled_model",
        api_visibility="private",
    )
    clear_button.click(
        clear_outputs,
        outputs=[prediction, model_view, correct_label, message],
        js=CLEAR_CANVAS_JS,
        api_name="clear",
        api_visibility="private",
    ).then(  # "Draw a letter" in letters mode
        empty_label, inputs=mode, outputs=prediction, api_name="empty_label", api_visibility="private",
        show_progress="hidden",
    )

    # The Number mode, in its own tab (the single-digit UI above is unchanged).
    with gr.Tab("Number: read several digits", elem_id="number-tab") as number_tab:
        build_number_tab()
    number_tab.select(None, js=NUMBER_SELECT_BRUSH_JS)

# The queue, set deliberately (RELIABILITY.md measures it): predictions run 4 at a time (their
# events say so; more threads than the 2-4 cores of a Space only queue up inside torch), saves and
# everything else 2 at a time (the store serialises appends with a file lock anyway), one fine-tune.
# At most QUEUE_MAX_SIZE requests wait; beyond that a client is told "queue full" at once instead of
# the server holding an unbounded backlog (a flood fails fast, the server stays up).
QUEUE_MAX_SIZE = int(os.environ.get("HWR_QUEUE_MAX_SIZE") or 256)
DEFAULT_CONCURRENCY_LIMIT = 2
demo.queue(default_concurrency_limit=DEFAULT_CONCURRENCY_LIMIT, max_size=QUEUE_MAX_SIZE)


if __name__ == "__main__":
    # Uploads over MAX_UPLOAD_BYTES are refused by Gradio while they stream in, before any handler.
    demo.launch(max_file_size=MAX_UPLOAD_BYTES)
