"""The public API: load a checkpoint once, then predict on drawings."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from hwr.checkpoint import load_checkpoint
from hwr.inference import predict_probabilities
from hwr.checkpoint import CheckpointError
from hwr.preprocess import UnknownRecipeError, preprocess_for, recipe_of

# The bundled digit model, trained on MNIST only (see README's model card).
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


class Recognizer:
    """A trained model plus the preprocessing it was trained for."""

    def __init__(self, model: torch.nn.Module, metadata: dict[str, Any], device: str | torch.device = "cpu") -> None:
        self.model = model.eval()
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

    def preprocess(self, image: Any) -> np.ndarray:
        """The (28, 28) model input for a drawing, with this model's preprocessing recipe."""
        return preprocess_for(image, self._preprocess_spec)

    def predict_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """(B, 28, 28) model inputs in [0, 1] -> (B, C) probabilities, one forward pass."""
        x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))  # (B, 28, 28)
        return predict_probabilities(self.model, x, self._normalization, max(len(x), 1), self.device).numpy()

    def _prediction(self, probs: np.ndarray, model_input: np.ndarray) -> Prediction:
        order = np.argsort(-probs, kind="stable")
        probabilities = {self.classes[i]: float(probs[i]) for i in order}
        return Prediction(self.classes[int(order[0])], probabilities, model_input)

    def predict(self, image: Any) -> Prediction:
        """Predict one drawing. Raises EmptyDrawingError (blank) or ValueError (not an image)."""
        return self.predict_batch([image])[0]

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
        return [self._prediction(p, x) for p, x in zip(probs, batch)]
