"""The app's "Number" mode, without Gradio: read a whole number, show its digits, save corrections.

`app.py` wires these to a wide Sketchpad. The handlers use the `DigitApp`'s active model and
corrections store, so a fine-tuned model reads numbers too and number corrections feed fine-tuning
like any other: each digit of a corrected number is stored as its own correction, with its label.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from hwr.app_logic import SAVE_DISABLED, SAVED_MARK, DigitApp, InvalidDrawingError, enlarge, is_blank_sketch
from hwr.preprocess import EmptyDrawingError, as_array, to_uint8
from hwr.recognizer import Reading, Recognizer

log = logging.getLogger(__name__)

EMPTY_NUMBER_MESSAGE = "Draw a number"
ASK_FOR_NUMBER = "Type the right number first (its digits, left to right), then save."
ASK_FOR_NUMBER_DRAWING = "Draw the number first, then type the right one and save it."
BOX_COLOUR = (220, 38, 38)  # red boxes over the drawing
LABEL_COLOUR = (37, 99, 235)  # blue digit labels above them
BOX_WIDTH = 3  # px
SAVE_MARGIN = 8  # px of white kept around each digit saved as a correction
MODEL_VIEW_SCALE = 4  # each digit's 28x28 input shown at 112x112 in the gallery

Gallery = list[tuple[np.ndarray, str]]


@dataclass(frozen=True)
class NumberSaveOutcome:
    """The message to show after saving a corrected number, and the ids saved (one per digit)."""

    message: str
    saved_ids: tuple[str, ...] = ()


def reading_markdown(reading: Reading) -> str:
    """The number read, its overall confidence and each digit's, as Markdown."""
    digits = " · ".join(f"{d.label} ({d.confidence:.0%})" for d in reading.digits)
    return (
        f"## {reading.text}\n"
        f"Confidence {reading.confidence:.0%} (the product of the digits' confidences). "
        f"Digits: {digits}"
    )


def drawing_rgb(image: Any) -> np.ndarray:
    """The drawing as (H, W, 3) uint8 RGB on white (a transparent canvas is put on white paper)."""
    arr = to_uint8(as_array(image))
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    if arr.shape[2] == 2:  # grey + alpha
        grey, alpha = arr[..., :1].astype(np.float32), arr[..., 1:].astype(np.float32) / 255
        return np.repeat(np.rint(grey * alpha + 255 * (1 - alpha)).astype(np.uint8), 3, axis=2)
    if arr.shape[2] == 4:
        rgb, alpha = arr[..., :3].astype(np.float32), arr[..., 3:].astype(np.float32) / 255
        return np.rint(rgb * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return arr


def annotate(image: Any, reading: Reading) -> np.ndarray:
    """The drawing with each digit's box and label drawn over it; (H, W, 3) uint8."""
    canvas = Image.fromarray(drawing_rgb(image))
    draw = ImageDraw.Draw(canvas)
    for d in reading.digits:
        x0, y0, x1, y1 = d.bbox
        draw.rectangle((x0, y0, max(x1 - 1, x0), max(y1 - 1, y0)), outline=BOX_COLOUR, width=BOX_WIDTH)
        draw.text((x0 + 2, max(y0 - 14, 0)), f"{d.label} {d.confidence:.0%}", fill=LABEL_COLOUR)
    return np.asarray(canvas)


def gallery(reading: Reading) -> Gallery:
    """Each digit's model input (enlarged, white on black) with its label and confidence."""
    return [
        (enlarge(d.model_input, MODEL_VIEW_SCALE), f"{i + 1}: {d.label} ({d.confidence:.0%})")
        for i, d in enumerate(reading.digits)
    ]


def digit_image(ink: np.ndarray, margin: int = SAVE_MARGIN) -> np.ndarray:
    """A digit's own ink (h, w) in [0, 1] as a dark-on-white uint8 image with a white margin.

    `hwr.preprocess` reads it back to the same ink (up to 8-bit rounding), so a saved digit trains
    on what the model saw in the number.
    """
    grey = np.rint(255.0 * (1.0 - np.clip(ink, 0.0, 1.0))).astype(np.uint8)
    return np.pad(grey, margin, constant_values=255)


def clean_number(text: Any) -> str:
    """The typed number without spaces, commas, dots and similar separators."""
    return "".join(ch for ch in str(text or "") if not ch.isspace() and ch not in ",.'_-/")


class NumberApp:
    """Read numbers and save their corrections with a `DigitApp`'s active model and store."""

    def __init__(self, digit_app: DigitApp) -> None:
        self.digit_app = digit_app

    def _read(self, sketch: Any, recognizer: Recognizer | None = None) -> Reading | None:
        """The reading of a drawing; None when it is blank. Raises InvalidDrawingError."""
        if is_blank_sketch(sketch):
            return None
        try:
            return (recognizer or self.digit_app.recognizer).read(sketch)
        except EmptyDrawingError:
            return None
        except ValueError as exc:  # not an image, or too many separate marks
            log.warning("Unreadable number drawing: %s", exc)
            raise InvalidDrawingError(f"This drawing cannot be read: {exc}") from None

    def read(self, sketch: Any) -> tuple[str, np.ndarray | None, Gallery]:
        """Sketchpad value -> (Markdown of the number, the drawing with boxes, the digits' inputs).

        Blank drawings give ("Draw a number", None, []); unreadable ones raise InvalidDrawingError.
        """
        reading = self._read(sketch)
        if reading is None:
            return EMPTY_NUMBER_MESSAGE, None, []
        return reading_markdown(reading), annotate(sketch, reading), gallery(reading)

    def save_correction(self, sketch: Any, number: Any) -> NumberSaveOutcome:
        """Store each digit of the drawing as its own correction, labelled by the typed number.

        The typed number must have as many digits as were found in the drawing (otherwise nothing
        is saved and the message says how many were found). Never raises.
        """
        if not self.digit_app.allow_save:
            return NumberSaveOutcome(SAVE_DISABLED)
        text = clean_number(number)
        if not text:
            return NumberSaveOutcome(ASK_FOR_NUMBER)
        classes = self.digit_app.classes
        unknown = sorted({ch for ch in text if ch not in classes})
        if unknown:
            return NumberSaveOutcome(
                f"“{''.join(unknown)[:20]}” is not a digit the model knows; type only {', '.join(classes)}."
            )
        recognizer = self.digit_app.recognizer  # one model for the reading and the name recorded
        try:
            reading = self._read(sketch, recognizer)
        except InvalidDrawingError as exc:
            return NumberSaveOutcome(str(exc))
        if reading is None:
            return NumberSaveOutcome(ASK_FOR_NUMBER_DRAWING)
        found = len(reading.digits)
        if len(text) != found:
            return NumberSaveOutcome(
                f"Not saved: the drawing was split into {found} digit{'s' if found != 1 else ''} "
                f"({reading.text}) but “{text[:40]}” has {len(text)}. Save digits one by one in the "
                "Digit mode, or redraw the number with a little space between digits."
            )
        saved: list[str] = []
        for position, (digit, label) in enumerate(zip(reading.digits, text)):
            try:
                saved.append(
                    self.digit_app.store.add(
                        digit_image(digit.ink),
                        label,
                        predicted=digit.label,
                        probability=digit.confidence,
                        checkpoint=recognizer.name,
                        source="number",
                        number_read=reading.text,
                        number_label=text,
                        position=position,
                    )
                )
            except (ValueError, OSError) as exc:  # StoreWriteError is an OSError
                log.error("Could not save digit %d of a number: %s", position + 1, exc)
                done = f" The first {len(saved)} digit(s) were saved." if saved else ""
                return NumberSaveOutcome(f"Not saved: digit {position + 1}: {exc}.{done}", tuple(saved))
        wrong = sum(d.label != label for d, label in zip(reading.digits, text))
        verdict = "the model agreed" if wrong == 0 else f"the model read {reading.text}"
        total = self.digit_app._count()
        count = "" if total is None else f" {total} corrections saved so far."
        return NumberSaveOutcome(
            f"{SAVED_MARK} Saved **{text}** as {found} digit corrections ({verdict}). Thank you!{count}",
            tuple(saved),
        )
