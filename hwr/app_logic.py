"""What the Gradio app does, without Gradio: read a drawing, predict, show it, save corrections.

`app.py` only lays out components and wires them to a `DigitApp`. Every handler here takes and
returns plain Python values (dicts, strings, numpy arrays), so it can be tested without a server.

Settings come from the environment (see `Settings.from_env`):
    HWR_CHECKPOINT        the model to load (default: the bundled checkpoints/mnist-cnn.safetensors)
    HWR_LETTERS_CHECKPOINT  the letters model behind the "Digits / Letters" switch (default: the
                          bundled checkpoints/letters-cnn.safetensors; "none" or a missing file: no
                          switch, digits only). Its corrections go to <corrections>/letters and its
                          fine-tuned models to <models>/letters.
    HWR_CORRECTIONS_DIR   where corrections are saved (default: ./corrections)
    HWR_MODELS_DIR        where fine-tuned models are saved (default: ./models)
    HWR_DATA_DIR          the data root for MNIST replay and test during fine-tuning (default: ./data;
                          torchvision downloads MNIST there when it is absent and the machine is online)
    HWR_ALLOW_FINETUNE    "1" (default) lets users fine-tune from the app; "0" turns it off (e.g. a
                          public Space where CPU is scarce)
    HWR_ALLOW_SAVE        "1" (default) lets users save corrections; "0" turns saving (and so undo)
                          off: a public demo that keeps nothing its visitors draw

Model swaps are thread-safe: the model that answers predictions and the file it came from are held
together in one attribute (`DigitApp._active`, an `ActiveModel`) that is replaced whole, never
mutated; fine-tuning trains its own copy, loaded from the checkpoint file. One fine-tune at a time.

Modes: `ModeApps` holds one `DigitApp` per mode ("Digits", and "Letters" when a letters model is
present); each mode has its own model, corrections store, fine-tunes and "bundled model".
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from hwr.checkpoint import CheckpointError, save_checkpoint
from hwr.corrections import CorrectionStore
from hwr.preprocess import EmptyDrawingError
from hwr.recognizer import DEFAULT_CHECKPOINT, DEFAULT_LETTERS_CHECKPOINT, Prediction, Recognizer

if TYPE_CHECKING:  # hwr.finetune pulls in training code: imported when a fine-tune starts
    from hwr.data import ImageDataset
    from hwr.finetune import FinetuneConfig, FinetuneResult

log = logging.getLogger(__name__)

CHECKPOINT_ENV = "HWR_CHECKPOINT"
LETTERS_CHECKPOINT_ENV = "HWR_LETTERS_CHECKPOINT"
CORRECTIONS_DIR_ENV = "HWR_CORRECTIONS_DIR"
MODELS_DIR_ENV = "HWR_MODELS_DIR"
DATA_DIR_ENV = "HWR_DATA_DIR"
ALLOW_FINETUNE_ENV = "HWR_ALLOW_FINETUNE"
ALLOW_SAVE_ENV = "HWR_ALLOW_SAVE"
DEFAULT_CORRECTIONS_DIR = Path("corrections")
DEFAULT_MODELS_DIR = Path("models")
DEFAULT_DATA_DIR = Path("data")
FALSE_WORDS = frozenset({"0", "false", "no", "off"})  # HWR_ALLOW_* values that turn it off
NONE_WORDS = FALSE_WORDS | {"none"}  # HWR_LETTERS_CHECKPOINT values that turn letters off

DIGITS, LETTERS = "Digits", "Letters"  # the modes, as the switch shows them
LETTERS_SUBDIR = "letters"  # the letters model's corrections and fine-tuned models: a sub-folder

EMPTY_MESSAGE = "Draw a digit"  # empty_message("digit"): shown in the label area when there is nothing to recognise
TOP_K = 3  # classes shown with their confidence
MODEL_VIEW_SCALE = 8  # the 28x28 model input is shown at 8x: 224x224
# Uploads larger than this are refused before decoding (a 400 px canvas is 160,000 pixels).
MAX_UPLOAD_PIXELS = 4096 * 4096
MAX_UPLOAD_BYTES = 10 * 1024 * 1024

SAVED_MARK = "✅"  # every "saved" message starts with this (the UI clears the canvas on it)
ASK_FOR_LABEL = "Pick the right digit first, then press **Save correction**."  # ask_for_label("digit")
ASK_FOR_DRAWING = "Draw the digit first, then pick its label and save it."  # ask_for_drawing("digit")
NOTHING_TO_UNDO = "Nothing to undo."

FINETUNED_PREFIX = "finetuned"  # fine-tuned models are named finetuned-<UTC time>
ALREADY_RUNNING = "⏳ A fine-tune is already running; wait for it to finish, then try again."
FINETUNE_DISABLED = f"Fine-tuning is turned off on this server ({ALLOW_FINETUNE_ENV}=0)."
SAVE_DISABLED = f"Saving corrections is turned off on this server ({ALLOW_SAVE_ENV}=0): nothing you draw is kept."
NO_CHECKPOINT_FILE = "The current model was not loaded from a file, so it cannot be fine-tuned."

ProgressFn = Callable[[float, str], None]


@dataclass(frozen=True)
class Settings:
    """Where the model comes from and where corrections go."""

    checkpoint: Path
    corrections_dir: Path
    models_dir: Path = DEFAULT_MODELS_DIR
    data_dir: Path = DEFAULT_DATA_DIR
    allow_finetune: bool = True
    letters_checkpoint: Path | None = DEFAULT_LETTERS_CHECKPOINT  # None: digits only
    allow_save: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Read the HWR_* variables (see the module docstring); empty values mean the defaults."""
        env = os.environ if environ is None else environ
        checkpoint = env.get(CHECKPOINT_ENV) or DEFAULT_CHECKPOINT
        corrections = env.get(CORRECTIONS_DIR_ENV) or DEFAULT_CORRECTIONS_DIR
        models = env.get(MODELS_DIR_ENV) or DEFAULT_MODELS_DIR
        data = env.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
        allow = _is_on(env.get(ALLOW_FINETUNE_ENV))
        letters = env.get(LETTERS_CHECKPOINT_ENV) or DEFAULT_LETTERS_CHECKPOINT
        no_letters = str(letters).strip().lower() in NONE_WORDS
        return cls(
            Path(checkpoint).expanduser(),
            Path(corrections).expanduser(),
            Path(models).expanduser(),
            Path(data).expanduser(),
            allow,
            None if no_letters else Path(letters).expanduser(),
            _is_on(env.get(ALLOW_SAVE_ENV)),
        )


def _is_on(value: str | None) -> bool:
    """An HWR_ALLOW_* value: on unless it is one of FALSE_WORDS (unset or empty: on)."""
    return (value or "1").strip().lower() not in FALSE_WORDS


@dataclass(frozen=True)
class ActiveModel:
    """The model that answers predictions and the checkpoint file it was loaded from.

    Replaced whole (one attribute assignment, atomic), never mutated: a prediction running in
    another thread keeps the model it started with.
    """

    recognizer: Recognizer
    checkpoint: Path | None  # None: built in memory, so it cannot be fine-tuned


@dataclass(frozen=True)
class FinetuneOutcome:
    """What a fine-tune did: the message to show; the result and saved file when there is one."""

    message: str
    result: "FinetuneResult | None" = field(default=None, repr=False)
    saved_path: Path | None = None

    @property
    def swapped(self) -> bool:
        """True when the fine-tuned model was saved and now answers predictions."""
        return self.saved_path is not None


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


def empty_message(kind: str = "digit") -> str:
    """What the label area says when there is nothing to recognise: "Draw a digit"."""
    return f"Draw a {kind}"


def ask_for_label(kind: str = "digit") -> str:
    return f"Pick the right {kind} first, then press **Save correction**."


def ask_for_drawing(kind: str = "digit") -> str:
    return f"Draw the {kind} first, then pick its label and save it."


def first_accuracy(metadata: Mapping[str, Any]) -> tuple[str, float] | None:
    """(test set, accuracy) of the first metrics entry with an accuracy, or None."""
    metrics = metadata.get("metrics")
    for name, entry in (metrics.items() if isinstance(metrics, Mapping) else []):
        accuracy = entry.get("accuracy") if isinstance(entry, Mapping) else None
        if isinstance(accuracy, (int, float)):
            return str(name), float(accuracy)
    return None


def mnist_accuracy(metadata: Mapping[str, Any]) -> float | None:
    """The MNIST test accuracy recorded in checkpoint metadata, or None if absent or malformed."""
    metrics = metadata.get("metrics")
    entry = metrics.get("mnist-test") if isinstance(metrics, Mapping) else None
    accuracy = entry.get("accuracy") if isinstance(entry, Mapping) else None
    return float(accuracy) if isinstance(accuracy, (int, float)) else None


def header_markdown(recognizer: Recognizer, kind: str = "digit") -> str:
    """The app's header: what it does, the model's name and its MNIST accuracy (letters: its own)."""
    if kind != "digit":
        return letters_header_markdown(recognizer)
    accuracy = mnist_accuracy(recognizer.metadata)
    if accuracy is None:
        score = "MNIST test accuracy not recorded"
    else:
        score = f"MNIST test accuracy **{accuracy:.2%}**"
    return (
        "# ✍️ Handwritten digit recognizer\n"
        "Draw a digit from 0 to 9; the prediction updates as you draw. "
        "If it is wrong, tell it the right answer below so it can learn.\n\n"
        f"Model: **{recognizer.name}**{_parent_note(recognizer.metadata)} · {score}"
    )


def letters_header_markdown(recognizer: Recognizer) -> str:
    """The header in letters mode: what to draw, the model and the accuracy it recorded."""
    found = first_accuracy(recognizer.metadata)
    score = "accuracy not recorded" if found is None else f"{found[0]} accuracy **{found[1]:.2%}**"
    note = recognizer.metadata.get("data_note")
    trained = " Trained on EMNIST letters (see README)." if isinstance(note, str) and "TEST split" in note else ""
    return (
        "# ✍️ Handwritten letter recognizer\n"
        "Draw a letter from a to z, upper or lower case (it answers in lower case); the prediction "
        "updates as you draw. If it is wrong, tell it the right answer below so it can learn.\n\n"
        f"Model: **{recognizer.name}**{_parent_note(recognizer.metadata)} · {score}.{trained}"
    )


def _parent_note(metadata: Mapping[str, Any]) -> str:
    parent = metadata.get("parent")
    return f" (fine-tuned from {parent})" if isinstance(parent, str) and parent else ""


def counts_markdown(counts: Mapping[str, int], kind: str = "digit") -> str:
    """The corrections stored per label, as a one-row Markdown table with a total."""
    total = sum(counts.values())
    if total == 0:
        return f"No corrections saved yet: when the model gets a {kind} wrong, pick the right label and save it."
    labels = list(counts)
    head = "| Label | " + " | ".join(labels) + " | Total |"
    rule = "|---|" + "---:|" * (len(labels) + 1)
    row = "| Corrections | " + " | ".join(str(counts[k]) for k in labels) + f" | **{total}** |"
    return f"{head}\n{rule}\n{row}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def comparison_markdown(result: "FinetuneResult") -> str:
    """Before/after accuracies of a fine-tune, as a Markdown table."""
    from hwr.data import dataset_of

    holdout = f"Held-out corrections ({result.n_holdout})"
    dataset = dataset_of(str(result.metadata.get("training", {}).get("dataset") or "mnist-train"))
    test_title = "MNIST test accuracy" if dataset == "mnist" else f"{dataset} test accuracy"
    rows = [(test_title, "mnist_accuracy"), (holdout, "holdout_accuracy")]
    lines = ["| | Before | After |", "|---|---:|---:|"]
    lines += [
        f"| {title} | {_percent(result.before.get(key))} | {_percent(result.after.get(key))} |"
        for title, key in rows
    ]
    return "\n".join(lines)


def finetuned_name(now: datetime | None = None) -> str:
    """A fine-tuned model's name: finetuned-<UTC time>, e.g. finetuned-20250101T120000Z."""
    now = now or datetime.now(timezone.utc)
    return f"{FINETUNED_PREFIX}-{now.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}"


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
        layers = sketch.get("layers")
        if layers is None:
            layers = []
        elif not isinstance(layers, (list, tuple)):  # not a list of layers: preprocessing says what is wrong
            return False
        return sketch.get("composite") is None and sketch.get("background") is None and not any(
            layer is not None for layer in layers
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


def repair_at_start(store: CorrectionStore) -> None:
    """Make the store whole after a crash (a server killed mid-save can leave a PNG without its
    metadata line, or a torn last line): `verify(repair=True)`, which loses nothing. A store that
    cannot be repaired (e.g. read-only) is logged; the app starts anyway and predictions go on."""
    try:
        report = store.verify(repair=True)
    except OSError as exc:
        log.error("Could not check the corrections in %s: %s", store.root, exc)
        return
    if not report.ok:
        log.warning("Corrections in %s were repaired at start-up:\n%s", store.root, report.summary())


class DigitApp:
    """The active model and one corrections store: the handlers behind the app's buttons and API.

    The active model can be swapped while the app runs (fine-tune, "use the bundled model"):
    read `recognizer` once per request, and the request sees one model from start to end.
    """

    def __init__(
        self,
        recognizer: Recognizer,
        store: CorrectionStore,
        checkpoint: str | os.PathLike[str] | None = None,
        *,
        models_dir: str | os.PathLike[str] = DEFAULT_MODELS_DIR,
        data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
        allow_finetune: bool = True,
        bundled_checkpoint: str | os.PathLike[str] = DEFAULT_CHECKPOINT,
        kind: str = "digit",
        allow_save: bool = True,
    ) -> None:
        """`checkpoint` is the file `recognizer` was loaded from (needed to fine-tune it); `kind`
        ("digit", "letter") is the word its messages use."""
        self._active = ActiveModel(recognizer, None if checkpoint is None else Path(checkpoint))
        self.store = store
        self.models_dir = Path(models_dir)
        self.data_dir = Path(data_dir)
        self.allow_finetune = allow_finetune
        self.allow_save = allow_save
        self.bundled_checkpoint = Path(bundled_checkpoint)
        self._finetune_lock = threading.Lock()  # held while a fine-tune runs: one at a time
        self.kind = kind

    @classmethod
    def from_settings(cls, settings: Settings) -> "DigitApp":
        """Load the model (raises CheckpointError if it is bad) and open the corrections store."""
        recognizer = Recognizer.load(settings.checkpoint)
        store = CorrectionStore(settings.corrections_dir, classes=recognizer.classes)
        repair_at_start(store)
        log.info(
            "Loaded model %r from %s; corrections go to %s.",
            recognizer.name, settings.checkpoint, settings.corrections_dir.resolve(),
        )
        if settings.allow_finetune:
            log.info(
                "Fine-tuning on: models go to %s, MNIST is read from %s.",
                settings.models_dir.resolve(), settings.data_dir.resolve(),
            )
        else:
            log.info("Fine-tuning is off (%s=0).", ALLOW_FINETUNE_ENV)
        if not settings.allow_save:
            log.info("Saving corrections is off (%s=0).", ALLOW_SAVE_ENV)
        return cls(
            recognizer,
            store,
            settings.checkpoint,
            models_dir=settings.models_dir,
            data_dir=settings.data_dir,
            allow_finetune=settings.allow_finetune,
            allow_save=settings.allow_save,
        )

    @property
    def active(self) -> ActiveModel:
        """The active model and its checkpoint file (one consistent snapshot)."""
        return self._active

    @property
    def recognizer(self) -> Recognizer:
        """The model answering predictions now."""
        return self._active.recognizer

    @property
    def classes(self) -> list[str]:
        return self.recognizer.classes

    @property
    def finetune_running(self) -> bool:
        """True while a fine-tune is running."""
        return self._finetune_lock.locked()

    def warm_up(self) -> None:
        """One prediction on a dummy drawing, so the first user does not wait for lazy set-up."""
        dummy = np.full((64, 64), 255, np.uint8)
        dummy[16:48, 30:34] = 0  # a "1"
        self.recognizer.predict(dummy)

    def header(self) -> str:
        return header_markdown(self.recognizer, self.kind)

    def _predict(self, sketch: Any, recognizer: Recognizer | None = None) -> Prediction | None:
        """The prediction for a drawing; None when it is blank. Raises InvalidDrawingError."""
        if is_blank_sketch(sketch):
            return None
        try:
            return (recognizer or self.recognizer).predict(sketch)
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
            return empty_message(self.kind), None
        return label_value(prediction), enlarge(prediction.model_input)

    def save_correction(self, sketch: Any, label: Any) -> SaveOutcome:
        """Store the drawing as `label`; the outcome's message says what happened, never raises.

        The model's own answer on the drawing is recorded with it (what it got wrong).
        """
        if not self.allow_save:
            return SaveOutcome(SAVE_DISABLED)
        label = None if label is None else str(label).strip()
        if not label:
            return SaveOutcome(ask_for_label(self.kind))
        if label not in self.classes:
            return SaveOutcome(unknown_label_message(label, self.classes))
        recognizer = self.recognizer  # one model for the prediction and the name recorded with it
        try:
            prediction = self._predict(sketch, recognizer)
        except InvalidDrawingError as exc:
            return SaveOutcome(str(exc))
        if prediction is None:
            return SaveOutcome(ask_for_drawing(self.kind))
        try:
            saved_id = self.store.add(
                sketch,
                label,
                predicted=prediction.label,
                probability=prediction.confidence,
                checkpoint=recognizer.name,
            )
        except EmptyDrawingError:
            return SaveOutcome(ask_for_drawing(self.kind))
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
        if not self.allow_save:
            return SAVE_DISABLED
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

    # -- the model: corrections counts, fine-tuning, switching ----------------------------------

    def counts_markdown(self) -> str:
        """How many corrections are stored per label (a Markdown table), or why it cannot say."""
        try:
            counts = self.store.counts()
        except OSError as exc:
            log.warning("Could not count corrections: %s", exc)
            return f"Could not read the corrections: {exc}"
        return counts_markdown(counts, self.kind)

    def start_finetune(
        self,
        progress: ProgressFn | None = None,
        *,
        config: "FinetuneConfig | None" = None,
        replay: "ImageDataset | None" = None,
        mnist_test: "ImageDataset | None" = None,
        device: str = "cpu",
    ) -> FinetuneOutcome:
        """Fine-tune the active model on the stored corrections; swap it in if the gate passes.

        Blocks until done (run it in a worker thread; predictions keep using the active model
        meanwhile). `progress(fraction, message)` is called along the way. `config`, `replay` and
        `mnist_test` default to FinetuneConfig() and MNIST read from `data_dir` (tests pass small
        ones). Never raises: every problem is a message in the outcome.
        """
        if not self.allow_finetune:
            return FinetuneOutcome(FINETUNE_DISABLED)
        if not self._finetune_lock.acquire(blocking=False):
            return FinetuneOutcome(ALREADY_RUNNING)
        try:
            return self._finetune(progress, config, replay, mnist_test, device)
        finally:
            self._finetune_lock.release()

    def _finetune(
        self,
        progress: ProgressFn | None,
        config: "FinetuneConfig | None",
        replay: "ImageDataset | None",
        mnist_test: "ImageDataset | None",
        device: str,
    ) -> FinetuneOutcome:
        from hwr.finetune import FinetuneConfig, finetune

        parent = self._active  # one snapshot: the model and the file it came from
        if parent.checkpoint is None:
            return FinetuneOutcome(NO_CHECKPOINT_FILE)
        log.info("Fine-tuning %r (%s) on %s.", parent.recognizer.name, parent.checkpoint, self.store.root)
        try:
            result = finetune(
                parent.checkpoint,
                self.store.root,
                self.data_dir,
                config=config or FinetuneConfig(),
                device=device,
                progress=progress,
                replay=replay,
                mnist_test=mnist_test,
            )
        except CheckpointError as exc:  # before ValueError: it is one
            log.error("Fine-tune: bad checkpoint: %s", exc)
            return FinetuneOutcome(f"Cannot fine-tune: the model file is unusable ({exc}).")
        except FileNotFoundError as exc:
            log.error("Fine-tune: missing data: %s", exc)
            return FinetuneOutcome(
                f"Cannot fine-tune: {exc}. Put {'MNIST' if self.kind == 'digit' else 'the training data'} "
                f"under {self.data_dir} (or set {DATA_DIR_ENV})."
            )
        except ValueError as exc:  # no usable corrections, too few to train on
            log.info("Fine-tune refused: %s", exc)
            return FinetuneOutcome(f"Cannot fine-tune yet: {exc}")
        except Exception:
            log.exception("Fine-tune failed")
            return FinetuneOutcome("Fine-tuning failed on our side; the current model stays. Please try again.")

        summary = (
            f"{result.n_corrections} corrections ({result.n_holdout} held out to measure), "
            f"{result.seconds:.0f} s.\n\n{comparison_markdown(result)}"
        )
        if not result.gate_passed:
            log.info("Fine-tune gate failed: %s", result.reason)
            return FinetuneOutcome(
                f"❌ The fine-tuned model was not kept; **{parent.recognizer.name}** stays. "
                f"{result.reason}.\n\n{summary}",
                result,
            )
        try:
            path, metadata = self._save_finetuned(result)
        except (OSError, ValueError) as exc:
            log.error("Could not save the fine-tuned model: %s", exc)
            return FinetuneOutcome(
                f"The fine-tuned model passed the check but could not be saved ({exc}); "
                f"**{parent.recognizer.name}** stays.\n\n{summary}",
                result,
            )
        self._active = ActiveModel(Recognizer(result.model, metadata), path)  # the atomic swap
        log.info("Now using the fine-tuned model %r (%s).", metadata["name"], path)
        return FinetuneOutcome(
            f"✅ Now using **{metadata['name']}**, fine-tuned from {parent.recognizer.name} "
            f"(saved as `{path.name}`). {result.reason}.\n\n{summary}",
            result,
            path,
        )

    def _save_finetuned(self, result: "FinetuneResult") -> tuple[Path, dict[str, Any]]:
        """Write the fine-tuned model to models_dir as <name>.safetensors; (path, its metadata)."""
        name = finetuned_name()
        path = self.models_dir / f"{name}.safetensors"
        n = 1
        while path.exists():  # two fine-tunes within one second
            n += 1
            path = self.models_dir / f"{name}-{n}.safetensors"
        metadata = dict(result.metadata, name=path.stem, created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        save_checkpoint(result.model, metadata, path)
        return path, metadata

    def use_bundled(self) -> str:
        """Switch back to the bundled model; returns the message to show."""
        if self._active.checkpoint is not None and _same_file(self._active.checkpoint, self.bundled_checkpoint):
            return f"Already using the bundled model, **{self.recognizer.name}**."
        try:
            recognizer = Recognizer.load(self.bundled_checkpoint)
        except (CheckpointError, OSError) as exc:
            log.error("Could not load the bundled model: %s", exc)
            return f"Could not load the bundled model ({exc}); **{self.recognizer.name}** stays."
        if recognizer.classes != self.classes:
            return (
                f"The bundled model knows other classes ({', '.join(recognizer.classes)}); "
                f"**{self.recognizer.name}** stays."
            )
        self._active = ActiveModel(recognizer, self.bundled_checkpoint)
        log.info("Now using the bundled model %r (%s).", recognizer.name, self.bundled_checkpoint)
        return f"Now using the bundled model, **{recognizer.name}**."


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return a == b


# ---------------------------------------------------------------------------------------------
# Modes: digits, and letters when a letters model is present
# ---------------------------------------------------------------------------------------------


class ModeApps:
    """One DigitApp per mode ("Digits" always; "Letters" when a letters model loaded).

    Each mode keeps its own model, corrections (letters: <corrections>/letters) and fine-tuned models
    (letters: <models>/letters). An unknown mode (e.g. from an old page) means digits.
    """

    def __init__(self, digits: DigitApp, letters: DigitApp | None = None) -> None:
        self.digits = digits
        self.letters = letters

    @classmethod
    def from_settings(cls, settings: Settings) -> "ModeApps":
        """Load the digit model (raises CheckpointError if it is bad) and, if present, the letters model.

        A letters model that is missing or unusable only turns the switch off (logged), never stops the app.
        """
        return cls(DigitApp.from_settings(settings), cls._letters_app(settings))

    @staticmethod
    def _letters_app(settings: Settings) -> DigitApp | None:
        path = settings.letters_checkpoint
        if path is None:
            log.info("Letters mode off (%s=none).", LETTERS_CHECKPOINT_ENV)
            return None
        if not path.is_file():
            log.info("Letters mode off: no letters model at %s (set %s).", path, LETTERS_CHECKPOINT_ENV)
            return None
        try:
            recognizer = Recognizer.load(path)
            store = CorrectionStore(
                settings.corrections_dir / LETTERS_SUBDIR,
                classes=recognizer.classes,
                preprocess_version=str(recognizer.metadata["preprocess"].get("version") or recognizer.recipe),
            )
        except (CheckpointError, ValueError) as exc:
            log.error("Letters mode off: cannot load the letters model: %s", exc)
            return None
        repair_at_start(store)
        log.info("Letters mode: model %r from %s; corrections go to %s.", recognizer.name, path, store.root.resolve())
        return DigitApp(
            recognizer, store, path,
            models_dir=settings.models_dir / LETTERS_SUBDIR,
            data_dir=settings.data_dir,
            allow_finetune=settings.allow_finetune,
            bundled_checkpoint=path,
            kind="letter",
            allow_save=settings.allow_save,
        )

    @property
    def has_letters(self) -> bool:
        return self.letters is not None

    @property
    def modes(self) -> list[str]:
        """The switch's choices: ["Digits", "Letters"], or ["Digits"]."""
        return [DIGITS, LETTERS] if self.has_letters else [DIGITS]

    def get(self, mode: Any) -> DigitApp:
        """The app for a mode; digits for anything else (None, an unknown string)."""
        if mode == LETTERS and self.letters is not None:
            return self.letters
        return self.digits

    def warm_up(self) -> None:
        for app in (self.digits, self.letters):
            if app is not None:
                app.warm_up()
