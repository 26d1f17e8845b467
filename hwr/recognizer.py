"""The public API: load a checkpoint once, then predict on drawings."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from hwr.checkpoint import load_checkpoint
from hwr.inference import predict_probabilities
from hwr.checkpoint import CheckpointError
from hwr.model import deslant, inference_copy
from hwr.preprocess import EmptyDrawingError, UnknownRecipeError, as_array, ink_to_model_input_for, preprocess_for, recipe_of, to_ink
from hwr.data import MNIST_CLASSES
from hwr.segment import Lattice, build_lattice
from hwr.verifier import DEFAULT_VERIFIER_CHECKPOINT, NAMING_WEIGHT, DigitVerifier, choose_digits

log = logging.getLogger(__name__)

# The bundled digit model: MNIST, then fine-tuned on stand-in corrections of pendigits writers 1-12 (README's model card).
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "mnist-cnn.safetensors"
# The bundled letters model (a-z), trained on the letters of EMNIST byclass's test split (README).
DEFAULT_LETTERS_CHECKPOINT = DEFAULT_CHECKPOINT.with_name("letters-cnn.safetensors")


@dataclass
class Prediction:
    label: str
    probabilities: dict[str, float]  # every class, sums to 1, highest first
    model_input: np.ndarray = field(repr=False)  # (28, 28) float32 in [0, 1]: what the model saw

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]

    def top(self, k: int = 3) -> dict[str, float]:
        return dict(list(self.probabilities.items())[:k])


@dataclass
class DigitPrediction(Prediction):
    """One digit of a number: a Prediction plus where the digit is in the drawing."""

    bbox: tuple[int, int, int, int] = (0, 0, 0, 0)  # (x0, y0, x1, y1) in input-image pixels, x1/y1 exclusive
    # The digit's own ink (h, w) float32 in [0, 1], other digits removed (ink-map pixels: the input's
    # pixels unless a huge input was reduced): what went through preprocessing; saved as a correction.
    ink: np.ndarray | None = field(default=None, repr=False)


@dataclass
class Reading:
    """What `Recognizer.read` found in a drawing: the digits, left to right."""

    digits: list[DigitPrediction]
    candidates: int = 0  # how many candidate digits were scored to choose these

    @property
    def text(self) -> str:
        """The number read, e.g. "2026"."""
        return "".join(d.label for d in self.digits)

    @property
    def confidence(self) -> float:
        """The product of the digits' confidences: the chance that every digit is right if the
        digits' errors were independent (so a long number is less certain than each digit)."""
        return float(np.prod([d.confidence for d in self.digits])) if self.digits else 0.0

    @property
    def boxes(self) -> list[tuple[int, int, int, int]]:
        return [d.bbox for d in self.digits]


class Recognizer:
    """A trained model plus the preprocessing it was trained for."""

    def __init__(
        self, model: torch.nn.Module, metadata: dict[str, Any], device: str | torch.device = "cpu",
        verifier: DigitVerifier | None = None,
    ) -> None:
        self.model = model.eval()
        # What forward passes run: BatchNorm folded into the convolutions and channels_last layout
        # (~30 % faster convolutions on this project's CPU: 170 vs 247 ms for the 131 candidates of a
        # touching 4-digit number, one thread); the same outputs up to float rounding.
        self._inference_model = inference_copy(model)
        # `read`'s judge of where digits end; None = the bundled one, loaded on the first `read`.
        self._verifier = verifier
        self._verifier_lock = threading.Lock()
        self._verifier_tried = verifier is not None
        self.metadata = metadata
        self.device = torch.device(device)
        self.classes: list[str] = list(metadata["classes"])
        norm = metadata["normalization"]
        self._normalization = {"mean": float(norm["mean"]), "std": float(norm["std"])}
        self._preprocess_spec = dict(metadata["preprocess"])  # the recipe it was trained for
        try:
            self.recipe: str = recipe_of(self._preprocess_spec)  # "mnist" or "emnist"
        except UnknownRecipeError as exc:
            raise CheckpointError(f"model {metadata.get('name', '?')!r}: {exc}") from None

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", "model"))

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> "Recognizer":
        """Load a checkpoint (default: the bundled digit model). Raises CheckpointError if it is bad."""
        model, meta = load_checkpoint(path or DEFAULT_CHECKPOINT, device)
        return cls(model, meta, device)

    @property
    def verifier(self) -> DigitVerifier | None:
        """The digit verifier `read` uses: the one given, else the bundled one (loaded once), else None
        (a missing or broken verifier file is logged and `read` falls back to hand-made rules)."""
        with self._verifier_lock:
            if not self._verifier_tried:
                self._verifier_tried = True
                try:
                    self._verifier = DigitVerifier.load(DEFAULT_VERIFIER_CHECKPOINT, self.device)
                except CheckpointError as exc:
                    log.warning("reading numbers without a digit verifier: %s", exc)
            return self._verifier

    @verifier.setter
    def verifier(self, value: DigitVerifier | None) -> None:
        with self._verifier_lock:
            self._verifier, self._verifier_tried = value, True

    def preprocess(self, image: Any) -> np.ndarray:
        """The (28, 28) model input for a drawing, with this model's preprocessing recipe."""
        return preprocess_for(image, self._preprocess_spec)

    def predict_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """(B, 28, 28) model inputs in [0, 1] -> (B, C) probabilities, one forward pass."""
        x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))  # (B, 28, 28)
        return predict_probabilities(self._inference_model, x, self._normalization, max(len(x), 1), self.device).numpy()

    def _prediction(self, probs: np.ndarray, model_input: np.ndarray) -> Prediction:
        order = np.argsort(-probs, kind="stable")
        probabilities = {self.classes[i]: float(probs[i]) for i in order}
        return Prediction(self.classes[int(order[0])], probabilities, model_input)

    def predict(self, image: Any) -> Prediction:
        """Predict one drawing. Raises EmptyDrawingError (blank) or ValueError (not an image)."""
        return self.predict_batch([image])[0]

    def read(self, image: Any) -> Reading:
        """Read a whole number drawn on one canvas: digits split apart, ordered left to right.

        Segmentation (`hwr.segment`) proposes candidate digits; each goes through this model's
        preprocessing (the same as `predict`) and all are scored in one forward pass; the digit
        verifier judges which are whole digits; the best consistent split is kept. A single digit
        gets exactly the model input and probabilities `predict` gives it; a digit cut out of
        touching ink is read by the digit model and the verifier together (`read_cut_pieces`).
        Raises EmptyDrawingError (blank), TooManyPiecesError or ValueError (not an image).
        """
        arr = as_array(image)
        ink_map = to_ink(arr)
        lattice = build_lattice(ink_map.ink)
        if not lattice.candidates:
            raise EmptyDrawingError()
        inputs, probs, readable = self.score_candidates(lattice)
        verifier = self.verifier
        verifier_probs = verifier.probabilities(ink_map.ink, lattice) if verifier is not None else None  # (N, 11)
        # The verifier names digits: it helps a digit model (not a letters one) read cut pieces.
        naming = NAMING_WEIGHT if self.classes == list(MNIST_CLASSES) else 0.0
        chosen, probs = choose_digits(lattice, probs, readable, verifier_probs, naming)
        if not chosen:
            raise EmptyDrawingError()
        f = ink_map.reduction
        h, w = arr.shape[:2]
        digits = []
        for k in chosen:
            x0, y0, x1, y1 = lattice.candidates[k].box
            bbox = (x0 * f, y0 * f, min(x1 * f, w), min(y1 * f, h))
            p = self._prediction(probs[k], inputs[k])
            digits.append(DigitPrediction(p.label, p.probabilities, p.model_input, bbox, lattice.candidates[k].ink))
        return Reading(digits, len(lattice.candidates))

    def score_candidates(self, lattice: Lattice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every candidate of a lattice through this model's preprocessing and one forward pass:
        (inputs (N, 28, 28), probabilities (N, C), readable (N,) bool; False for a candidate of faint
        pixels only, whose input stays blank)."""
        inputs = np.zeros((len(lattice.candidates), 28, 28), np.float32)  # (N, 28, 28)
        readable = np.ones(len(lattice.candidates), bool)
        for i, c in enumerate(lattice.candidates):
            try:
                inputs[i] = ink_to_model_input_for(c.ink, self._preprocess_spec)
            except EmptyDrawingError:  # a slice of faint pixels only: never chosen
                readable[i] = False
        return inputs, self.predict_inputs(inputs), readable

    def predict_batch(self, images: Sequence[Any]) -> list[Prediction]:
        """Predict many drawings in one forward pass. Any bad drawing raises, naming its index."""
        if len(images) == 0:
            return []
        inputs = []
        for i, image in enumerate(images):
            try:
                inputs.append(self.preprocess(image))
            except ValueError as exc:
                if len(images) == 1:
                    raise
                raise type(exc)(f"Drawing {i}: {exc}") from exc
        batch = np.stack(inputs)  # (B, 28, 28)
        probs = self.predict_inputs(batch)
        return [self._prediction(p, x) for p, x in zip(probs, self.model_view(batch))]

    def model_view(self, inputs: np.ndarray) -> np.ndarray:
        """(B, 28, 28) preprocessed inputs -> what the network's first layer sees: deslanted when the
        model deslants (a layer of the model, see hwr.model.deslant), else the inputs themselves."""
        if not getattr(self.model, "deslant_input", False):
            return inputs
        with torch.inference_mode():
            return deslant(torch.from_numpy(inputs).unsqueeze(1))[:, 0].clamp(0, 1).numpy()
