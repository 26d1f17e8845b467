"""The EMNIST preprocessing recipe, recipe dispatch, and a Recognizer applying its checkpoint's recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from hwr import Recognizer
from hwr.checkpoint import CheckpointError, make_metadata, save_checkpoint
from hwr.model import ModelConfig, build_model
from hwr.preprocess import (
    EMNIST_BOX_SIZE,
    EMNIST_PREPROCESS_VERSION,
    EMNIST_STROKE_WIDTH,
    FIELD_SIZE,
    PREPROCESS_VERSION,
    EmptyDrawingError,
    UnknownRecipeError,
    estimate_stroke_width,
    preprocess,
    preprocess_emnist,
    preprocess_for,
    recipe_metadata,
    recipe_of,
)


def drawing(kind: str = "tall") -> np.ndarray:
    """A black-on-white drawing on a 300x300 canvas, off centre."""
    img = Image.new("L", (300, 300), 255)
    d = ImageDraw.Draw(img)
    if kind == "tall":  # a letter "l" with a foot, much taller than wide
        d.line([(200, 40), (200, 260), (240, 260)], fill=0, width=14)
    else:  # a wide "c"-ish arc
        d.arc([(20, 150), (220, 260)], 30, 330, fill=0, width=14)
    return np.asarray(img)


def ink_box(x: np.ndarray, threshold: float = 0.25) -> tuple[int, int, int, int]:
    m = x > threshold
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


@pytest.mark.parametrize("kind", ["tall", "wide"])
def test_emnist_framing_fills_24_px_and_centres_the_box(kind: str) -> None:
    x = preprocess_emnist(drawing(kind))
    assert x.shape == (28, 28) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    t, l, b, r = ink_box(x)
    assert abs(max(b - t, r - l) - EMNIST_BOX_SIZE) <= 1  # longer side: 28 - 2 * 2 px border
    assert t >= 1 and l >= 1 and b <= 27 and r <= 27  # the border stays clear
    centre = ((t + b - 1) / 2, (l + r - 1) / 2)
    assert abs(centre[0] - 13.5) <= 1.0 and abs(centre[1] - 13.5) <= 1.0  # box centred, not mass


def test_emnist_characters_are_larger_than_mnist_digits() -> None:
    """MNIST fits the longer side to 20 px, EMNIST to 24 px: same drawing, different framing."""
    t, l, b, r = ink_box(preprocess(drawing("tall")))
    te, le, be, re_ = ink_box(preprocess_emnist(drawing("tall")))
    assert (be - te) > (b - t) + 2


def test_emnist_recipe_raises_like_mnist() -> None:
    with pytest.raises(EmptyDrawingError):
        preprocess_emnist(np.full((50, 50), 255, np.uint8))
    with pytest.raises(ValueError):
        preprocess_emnist("not an image at all")


def test_recipe_metadata_and_dispatch() -> None:
    mnist, emnist = recipe_metadata("mnist"), recipe_metadata("emnist")
    assert mnist["version"] == PREPROCESS_VERSION == "mnist-v1" and emnist["version"] == EMNIST_PREPROCESS_VERSION
    assert emnist["box_size"] == 24 and emnist["border"] == 2 and emnist["stroke_width"] == EMNIST_STROKE_WIDTH
    image = drawing("wide")
    # The MNIST path is exactly `preprocess`, so existing checkpoints behave as before.
    assert np.array_equal(preprocess_for(image, mnist), preprocess(image))
    assert np.array_equal(preprocess_for(image, {"stroke_width": 1.9}), preprocess(image))  # no recipe: mnist
    assert np.array_equal(preprocess_for(image, emnist), preprocess_emnist(image))
    assert recipe_of({}) == "mnist"
    with pytest.raises(UnknownRecipeError, match="Unknown preprocessing recipe 'kmnist'"):
        recipe_of({"recipe": "kmnist"})
    with pytest.raises(UnknownRecipeError):
        recipe_metadata("kmnist")


def tiny(path: Path, recipe: str, classes: list[str]) -> Path:
    config = ModelConfig(num_classes=len(classes), widths=(4, 4, 8))
    torch.manual_seed(0)
    meta = make_metadata(name="tiny-" + recipe, config=config, classes=classes,
                         normalization={"mean": 0.17, "std": 0.33}, preprocess=recipe_metadata(recipe))
    save_checkpoint(build_model(config), meta, path)
    return path


def test_recognizer_applies_its_checkpoints_recipe(tmp_path: Path) -> None:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    r = Recognizer.load(tiny(tmp_path / "l.safetensors", "emnist", letters))
    assert r.recipe == "emnist" and r.classes == letters
    p = r.predict(drawing("tall"))
    assert np.array_equal(p.model_input, preprocess_emnist(drawing("tall")))
    assert p.label in letters and len(p.probabilities) == 26 and abs(sum(p.probabilities.values()) - 1) < 1e-5
    m = Recognizer.load(tiny(tmp_path / "d.safetensors", "mnist", [str(d) for d in range(10)]))
    assert m.recipe == "mnist" and np.array_equal(m.predict(drawing("tall")).model_input, preprocess(drawing("tall")))


def test_checkpoint_with_an_unknown_recipe_is_refused(tmp_path: Path) -> None:
    path = tiny(tmp_path / "x.safetensors", "mnist", ["0", "1"])
    from hwr.checkpoint import load_checkpoint

    model, meta = load_checkpoint(path)
    save_checkpoint(model, dict(meta, preprocess={"recipe": "kmnist"}), path)
    with pytest.raises(CheckpointError, match="kmnist"):
        Recognizer.load(path)


# ---------------------------------------------------------------------------------------------
# The recipe's constants against the real EMNIST images
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emnist_images(data_dir: Path) -> torch.Tensor:
    if not (data_dir / "EMNIST" / "raw" / "emnist-byclass-test-images-idx3-ubyte").is_file():
        pytest.skip("EMNIST byclass test files not in data dir")
    from hwr.data import load_dataset

    return load_dataset("emnist-byclass", data_dir, train=False, download=False).images[::300]  # 388 images


def test_stroke_width_constant_matches_emnist(emnist_images: torch.Tensor) -> None:
    """EMNIST_STROKE_WIDTH is EMNIST's median stroke width, measured as MNIST_STROKE_WIDTH is."""
    import torch.nn.functional as F

    widths = []
    for img in emnist_images.float() / 255:
        up = F.interpolate(img[None, None], scale_factor=4, mode="bilinear", align_corners=False)[0, 0]
        widths.append(estimate_stroke_width((up > 0.5).float()) / 4)
    assert abs(float(np.median(widths)) - EMNIST_STROKE_WIDTH) < 0.1


def test_emnist_images_are_framed_as_the_recipe_says(emnist_images: torch.Tensor) -> None:
    x = emnist_images.numpy().astype(np.float32) / 255
    boxes = np.array([ink_box(im) for im in x])  # (N, 4)
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert abs(np.median(sides) - EMNIST_BOX_SIZE) <= 1
    centres = (boxes[:, :2] + boxes[:, 2:] - 1) / 2
    assert np.allclose(centres.mean(0), (FIELD_SIZE - 1) / 2, atol=0.3)


def test_emnist_recipe_reproduces_emnist_images_better_than_mnists(emnist_images: torch.Tensor) -> None:
    """Re-preprocessing a stored EMNIST image with its own recipe changes it little; MNIST's, a lot."""
    x = emnist_images[:100].numpy()
    stored = x.astype(np.float32) / 255
    own = np.stack([preprocess_emnist(im) for im in x])
    other = np.stack([preprocess(im) for im in x])

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    assert corr(own, stored) > 0.85 and corr(own, stored) > corr(other, stored) + 0.2
