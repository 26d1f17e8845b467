"""What the Gradio app does, without Gradio: read a drawing, predict, show it, save corrections.

`app.py` only lays out components and wires them to a `DigitApp`. Every handler here takes and
returns plain Python values (dicts, strings, numpy arrays), so it can be tested without a server.

Settings come from the environment (see `Settings.from_env`):
    HWR_CHECKPOINT        the model to load (default: the bundled checkpoints/mnist-cnn.safetensors)
    HWR_CORRECTIONS_DIR   where corrections are saved (default: ./corrections)
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hwr.corrections import CorrectionStore
from hwr.preprocess import EmptyDrawingError
from hwr.recognizer import DEFAULT_CHECKPOINT, Prediction, Recognizer

log = logging.getLogger(__name__)

CHECKPOINT_ENV = "HWR_CHECKPOINT"
CORRECTIONS_DIR_ENV = "HWR_CORRECTIONS_DIR"
DEFAULT_CORRECTIONS_DIR = Path("corrections")

EMPTY_MESSAGE = "Draw a digit"  # shown in the label area when there is nothing to recognise
TOP_K = 3  # classes shown with their confidence
MODEL_VIEW_SCALE = 8  # the 28x28 model input is shown at 8x: 224x224
# Uploads larger than this are refused before decoding (a 400 px canvas is 160,000 pixels).
MAX_UPLOAD_PIXELS = 4096 * 4096
MAX_UPLOAD_BYTES = 10 * 1024 * 1024

SAVED_MARK = "✅"  # every "saved" message starts with this (the UI clears the canvas on it)
ASK_FOR_LABEL = "Pick the right digit first, then press **Save correction**."
ASK_FOR_DRAWING = "Draw the digit first, then pick its label and save it."
NOTHING_TO_UNDO = "Nothing to undo."


@dataclass(frozen=True)
class Settings:
    """Where the model comes from and where corrections go."""

    checkpoint: Path
    corrections_dir: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Read HWR_CHECKPOINT and HWR_CORRECTIONS_DIR; empty values mean the defaults."""
        env = os.environ if environ is None else environ
        checkpoint = env.get(CHECKPOINT_ENV) or DEFAULT_CHECKPOINT
        corrections = env.get(CORRECTIONS_DIR_ENV) or DEFAULT_CORRECTIONS_DIR
        return cls(Path(checkpoint).expanduser(), Path(corrections).expanduser())


@dataclass(frozen=True)
class SaveOutcome:
    """The message to show after a save, and the id of the saved sample (None if nothing saved)."""

    message: str
    saved_id: str | None = None

    @property
    def saved(self) -> bool:
        return self.saved_id is not None


class InvalidDrawingError(ValueError):
    """The input is not a drawing we can read (the message is a sentence for the user)."""


# ---------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------


def mnist_accuracy(metadata: Mapping[str, Any]) -> float | None:
    """The MNIST test accuracy recorded in checkpoint metadata, or None if absent or malformed."""
    metrics = metadata.get("metrics")
    entry = metrics.get("mnist-test") if isinstance(metrics, Mapping) else None
    accuracy = entry.get("accuracy") if isinstance(entry, Mapping) else None
    return float(accuracy) if isinstance(accuracy, (int, float)) else None


def header_markdown(recognizer: Recognizer) -> str:
    """The app's header: what it does, the model's name and its MNIST accuracy."""
    accuracy = mnist_accuracy(recognizer.metadata)
    if accuracy is None:
        score = "MNIST test accuracy not recorded"
    else:
        score = f"MNIST test accuracy **{accuracy:.2%}**"
    return (
        "# ✍️ Handwritten digit recognizer\n"
        "Draw a digit from 0 to 9; the prediction updates as you draw. "
        "If it is wrong, tell it the right answer below so it can learn.\n\n"
        f"Model: **{recognizer.name}** · {score}"
    )


def label_value(prediction: Prediction, k: int = TOP_K) -> dict[str, float]:
    """A gr.Label value: the top k classes and their probabilities, highest first."""
    return prediction.top(k)


def enlarge(model_input: np.ndarray, scale: int = MODEL_VIEW_SCALE) -> np.ndarray:
    """The (28, 28) model input in [0, 1] as an image: uint8, white ink on black, `scale`x nearest.

    White on black is how the model's training images (MNIST) look.
    """
    pixels = np.clip(np.asarray(model_input, dtype=np.float32), 0.0, 1.0)
    grey = np.rint(pixels * 255).astype(np.uint8)
    return np.repeat(np.repeat(grey, scale, axis=0), scale, axis=1)


def is_blank_sketch(sketch: Any) -> bool:
    """True for None and for a Sketchpad value with no image at all (nothing drawn or uploaded)."""
    if sketch is None:
        return True
    if isinstance(sketch, Mapping):
        return sketch.get("composite") is None and sketch.get("background") is None and not any(
            layer is not None for layer in (sketch.get("layers") or [])
        )
    return False


def check_upload(source: str | os.PathLike[str] | bytes) -> None:
    """Refuse a file (path or bytes) that is not an image, or too large, before anything decodes it.

    Reads only the header. Raises InvalidDrawingError with a sentence meant for the user.
    """
    if isinstance(source, bytes):
        size = len(source)
    else:
        try:
            size = os.path.getsize(source)
        except OSError:
            raise InvalidDrawingError("The uploaded drawing could not be found on the server.") from None
    if size > MAX_UPLOAD_BYTES:
        raise InvalidDrawingError(
            f"The uploaded file is too large ({size / 1e6:.1f} MB); send a PNG of at most "
            f"{MAX_UPLOAD_BYTES // 2**20} MB."
        )
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            width, height = img.size
    except Image.DecompressionBombError:  # PIL refuses it before we can read the size
        width = height = MAX_UPLOAD_PIXELS
    except Exception:  # PIL raises many types for non-images (UnidentifiedImageError, OSError, ...)
        raise InvalidDrawingError(
            "The uploaded file is not an image: send a PNG, JPEG or WebP of the drawing."
        ) from None
    if width * height >= MAX_UPLOAD_PIXELS:
        raise InvalidDrawingError(
            f"The uploaded image is too large; send less than {MAX_UPLOAD_PIXELS:,} pixels, "
            "e.g. the 400x400 canvas."
        )


def malformed_sketch_message() -> str:
    """The sentence shown when an API client sends something that is not a Sketchpad value."""
    return (
        'The drawing must be a Sketchpad value: {"background": None, "layers": [], '
        '"composite": handle_file("digit.png")}.'
    )


def unknown_label_message(label: Any, classes: list[str]) -> str:
    """The sentence shown when a correction names a class the model does not have."""
    return f"“{str(label)[:20]}” is not a class; pick one of {', '.join(classes)}."


def unreadable_upload_message(exc: BaseException) -> str:
    """The sentence shown when an uploaded drawing cannot be read."""
    if isinstance(exc, InvalidDrawingError):
        return str(exc)
    return "The uploaded drawing could not be read: send a PNG, JPEG or WebP image."


# ---------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------


class DigitApp:
    """One model and one corrections store: the handlers behind the app's buttons and API."""

    def __init__(self, recognizer: Recognizer, store: CorrectionStore) -> None:
        self.recognizer = recognizer
        self.store = store

    @classmethod
    def from_settings(cls, settings: Settings) -> "DigitApp":
        """Load the model (raises CheckpointError if it is bad) and open the corrections store."""
        recognizer = Recognizer.load(settings.checkpoint)
        store = CorrectionStore(settings.corrections_dir, classes=recognizer.classes)
        log.info(
            "Loaded model %r from %s; corrections go to %s.",
            recognizer.name, settings.checkpoint, settings.corrections_dir.resolve(),
        )
        return cls(recognizer, store)

    @property
    def classes(self) -> list[str]:
        return self.recognizer.classes

    def warm_up(self) -> None:
        """One prediction on a dummy drawing, so the first user does not wait for lazy set-up."""
        dummy = np.full((64, 64), 255, np.uint8)
        dummy[16:48, 30:34] = 0  # a "1"
        self.recognizer.predict(dummy)

    def header(self) -> str:
        return header_markdown(self.recognizer)

    def _predict(self, sketch: Any) -> Prediction | None:
        """The prediction for a drawing; None when it is blank. Raises InvalidDrawingError."""
        if is_blank_sketch(sketch):
            return None
        try:
            return self.recognizer.predict(sketch)
        except EmptyDrawingError:
            return None
        except ValueError as exc:
            log.warning("Unreadable drawing: %s", exc)
            raise InvalidDrawingError(f"This drawing cannot be read: {exc}") from None

    def predict(self, sketch: Any) -> tuple[dict[str, float] | str, np.ndarray | None]:
        """Sketchpad value -> (gr.Label value, enlarged model input or None).

        Blank drawings give ("Draw a digit", None); unreadable ones raise InvalidDrawingError.
        """
        prediction = self._predict(sketch)
        if prediction is None:
            return EMPTY_MESSAGE, None
        return label_value(prediction), enlarge(prediction.model_input)

    def save_correction(self, sketch: Any, label: Any) -> SaveOutcome:
        """Store the drawing as `label`; the outcome's message says what happened, never raises.

        The model's own answer on the drawing is recorded with it (what it got wrong).
        """
        label = None if label is None else str(label).strip()
        if not label:
            return SaveOutcome(ASK_FOR_LABEL)
        if label not in self.classes:
            return SaveOutcome(unknown_label_message(label, self.classes))
        try:
            prediction = self._predict(sketch)
        except InvalidDrawingError as exc:
            return SaveOutcome(str(exc))
        if prediction is None:
            return SaveOutcome(ASK_FOR_DRAWING)
        try:
            saved_id = self.store.add(
                sketch,
                label,
                predicted=prediction.label,
                probability=prediction.confidence,
                checkpoint=self.recognizer.name,
            )
        except EmptyDrawingError:
            return SaveOutcome(ASK_FOR_DRAWING)
        except ValueError as exc:
            log.warning("Correction refused: %s", exc)
            return SaveOutcome(f"Not saved: {exc}")
        except OSError as exc:  # StoreWriteError: disk full, read-only, no permission
            log.error("Could not save a correction: %s", exc)
            return SaveOutcome(f"Not saved: {exc}")
        return SaveOutcome(self._saved_message(label, prediction.label), saved_id)

    def _saved_message(self, label: str, predicted: str) -> str:
        total = self._count()
        count = "" if total is None else f" {total} correction{'s' if total != 1 else ''} saved so far."
        verdict = "the model agreed" if predicted == label else f"the model said {predicted}"
        return f"{SAVED_MARK} Saved as **{label}** ({verdict}). Thank you!{count}"

    def _count(self) -> int | None:
        try:
            return len(self.store)
        except OSError as exc:
            log.warning("Could not count corrections: %s", exc)
            return None

    def undo(self, saved_id: str | None) -> str:
        """Delete the correction saved last (by its id); returns the message to show."""
        if not saved_id:
            return NOTHING_TO_UNDO
        try:
            deleted = self.store.delete(saved_id)
        except OSError as exc:
            log.error("Could not undo a correction: %s", exc)
            return f"Could not undo: {exc}"
        if not deleted:
            return "That correction was already removed."
        total = self._count()
        count = "" if total is None else f" {total} saved."
        return f"↩️ Removed the last saved correction.{count}"
