"""Turn any drawing into the model's 28x28 input, the way MNIST itself was made.

MNIST recipe (LeCun et al., http://yann.lecun.com/exdb/mnist/): the NIST digits were size-normalised
to fit a 20x20 box keeping their aspect ratio (anti-aliased, hence grey levels), then placed in a
28x28 field so that their centre of mass sits at the centre of the field.

We add one step MNIST did not need: stroke-thickness normalisation. A 25 px round brush on a
400 px canvas and a 2 px pen give the same digit very different stroke widths after scaling to
20 px; we bring every drawing to MNIST's typical stroke width before the final downscale.

The pipeline (all in `preprocess`):
    any input -> ink map (H, W) float32 in [0, 1], 1 = ink     (`to_ink`)
              -> crop to ink, scale longer side to WORK_SIZE, binarise
              -> dilate / erode to MNIST stroke width          (`normalise_stroke_width`)
              -> anti-aliased resize, longer side 20 px        (MNIST)
              -> paste into 28x28 with centre of mass at the centre (MNIST)

A second recipe, "emnist" (`preprocess_emnist`), shares everything up to the stroke width and then
frames the character as EMNIST did (Cohen et al. 2017): bounding box centred in a square frame with
a 2 px border, so the longer side fills 24 of the 28 px. Checkpoints record their recipe
(`recipe_metadata`); `preprocess_for` applies the one a checkpoint names.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

log = logging.getLogger(__name__)

# Bump when the output of `preprocess` changes for the same input: corrections record it.
PREPROCESS_VERSION = "mnist-v1"
EMNIST_PREPROCESS_VERSION = "emnist-v1"

FIELD_SIZE = 28  # MNIST field, pixels
BOX_SIZE = 20  # MNIST: the longer side of the digit is scaled to 20 px
# Where MNIST puts the centre of mass, in pixel-index coordinates (row, col). MNIST's description says
# "the centre of the 28x28 field"; measured on the 60,000 training images the mean is (14.00, 14.01):
# the original code shifted the mass centre to index 14, not 13.5.
FIELD_CENTRE = (14.0, 14.0)

WORK_SIZE = 80  # longer side (px) at which the stroke width is normalised: 4x the 20 px box
# MNIST's typical stroke width, in pixels of the 20 px box: the median of 2*area/perimeter over
# every 30th MNIST training digit (binarised at 0.5 after a 4x bilinear upscale) is 1.87 px (10th-90th
# percentile 1.3-2.6); tests/test_preprocess.py::test_stroke_width_constant_matches_mnist recomputes it.
MNIST_STROKE_WIDTH = 1.9
INK_THRESHOLD = 0.25  # a pixel is ink when its ink value exceeds this (after polarity and alpha)
# EMNIST recipe (Cohen et al. 2017, "EMNIST: an extension of MNIST to handwritten letters", sec. II-A):
# the NIST character's region of interest is centred in a square frame keeping its aspect ratio,
# with a 2 px border, then the frame is downsampled to 28x28. So the longer side fills 24 of 28 px
# and the bounding box (not the centre of mass) is centred. Measured on emnist-byclass-test
# (every 58th image, ink > 0.25): longer side median 23 px (10th-90th percentile 22-24), bounding
# box centre row 13.51 = the field's centre; tests/test_preprocess_emnist.py recomputes these.
EMNIST_BORDER = 2  # px of the 28 px field
EMNIST_BOX_SIZE = FIELD_SIZE - 2 * EMNIST_BORDER  # 24 px: the longer side of the character
# EMNIST's typical stroke width in field pixels, measured as MNIST_STROKE_WIDTH was (2*area/perimeter
# after a 4x bilinear upscale, binarised at 0.5): median 2.34 px over every 58th emnist-byclass-test
# image (MNIST's is 1.99 on the same estimator applied to the 28 px field).
EMNIST_STROKE_WIDTH = 2.35
MAX_WORK_SIDE = 1024  # larger inputs are block-reduced first, so work is bounded for any size

# Inputs we refuse to decode whole: larger than this many pixels (decompression bombs).
MAX_DECODE_PIXELS = 8192 * 8192


class EmptyDrawingError(ValueError):
    """The drawing contains no ink: there is nothing to recognise."""

    def __init__(self, message: str = "The drawing is empty: draw a digit first.") -> None:
        super().__init__(message)


@dataclass(frozen=True)
class InkMap:
    """Ink intensity in [0, 1] (1 = full ink) and the factor by which the input was reduced."""

    ink: np.ndarray  # (H, W) float32
    reduction: int = 1


# ---------------------------------------------------------------------------------------------
# Input decoding: anything -> numpy array (H, W) or (H, W, C)
# ---------------------------------------------------------------------------------------------


def load_image_file(path: str | Path | bytes | io.BytesIO) -> Image.Image:
    """Open an image file (or bytes) safely: the size is checked before decoding whole."""
    try:
        source = io.BytesIO(path) if isinstance(path, bytes) else path
        img = Image.open(source)
    except FileNotFoundError:
        raise ValueError(f"Image file not found: {path}") from None
    except Image.DecompressionBombError:  # PIL refuses it from the header, before decoding
        raise ValueError(f"Image too large: more than {MAX_DECODE_PIXELS:,} pixels.") from None
    except Exception as exc:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError)
        raise ValueError(f"Not a readable image file ({type(exc).__name__}: {exc}).") from None
    w, h = img.size
    if w * h > MAX_DECODE_PIXELS:
        raise ValueError(f"Image too large: {w}x{h} pixels (limit {MAX_DECODE_PIXELS:,} pixels).")
    try:
        img.load()
    except Exception as exc:
        raise ValueError(f"Image file is truncated or corrupt ({type(exc).__name__}: {exc}).") from None
    return img


def pil_to_array(img: Image.Image) -> np.ndarray:
    """PIL image of any mode -> numpy (H, W) or (H, W, C), keeping alpha where there is one."""
    mode = img.mode
    if mode in ("1", "L", "LA", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "I", "F"):
        if mode == "1":
            img = img.convert("L")
        arr = np.asarray(img)
        if mode.startswith("I;16"):
            arr = arr.astype(np.uint16)
        return arr
    if mode in ("P", "PA"):
        return np.asarray(img.convert("RGBA"))
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(img.convert("RGB"))
    if mode in ("La", "RGBa"):
        return np.asarray(img.convert("RGBA" if mode == "RGBa" else "LA"))
    try:
        return np.asarray(img.convert("RGBA"))
    except Exception as exc:
        raise ValueError(f"Unsupported image mode {mode!r}.") from exc


def _from_sketchpad(value: dict) -> Any:
    """The dict a Gradio Sketchpad/ImageEditor returns -> the image to read.

    Gradio 6 gives {"background", "layers", "composite"}; `composite` may be None (e.g. nothing
    drawn, or a client sent only layers). Then we composite background and layers ourselves.
    """
    composite = value.get("composite")
    if composite is not None:
        return composite
    layers = value.get("layers")
    if layers is None:
        layers = []
    elif not isinstance(layers, (list, tuple)):
        raise ValueError(f"A Sketchpad value's \"layers\" must be a list of images, not a {type(layers).__name__}.")
    parts = [value.get("background"), *layers]
    images = [_to_rgba_image(p) for p in parts if p is not None]
    if not images:
        raise EmptyDrawingError()
    size = images[0].size
    canvas = Image.new("RGBA", size, (0, 0, 0, 0))
    for im in images:
        if im.size != size:
            im = im.resize(size)
        canvas.alpha_composite(im)
    return canvas


def _to_rgba_image(x: Any) -> Image.Image:
    if isinstance(x, Image.Image):
        img = x
    elif isinstance(x, (str, Path)):
        img = load_image_file(x)
    else:
        arr = _as_numeric_array(x)
        if arr.ndim not in (2, 3):
            raise ValueError("A Sketchpad layer must be a 2-D or 3-D image array.")
        arr = _to_hwc(arr)  # (H, W) or (H, W, 2-4): what PIL can make an image of
        try:
            img = Image.fromarray(to_uint8(arr))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"A Sketchpad layer of shape {arr.shape} is not an image.") from exc
    return img.convert("RGBA")


def _as_numeric_array(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:
        raise ValueError(f"Cannot read an image from a {type(x).__name__}.") from exc
    if np.iscomplexobj(arr):
        raise ValueError("Cannot read an image from complex numbers.")
    if arr.dtype.kind not in "biuf":  # bool, int, uint, float; not object, str, bytes, datetime, timedelta
        raise ValueError(f"Cannot read an image from an array of dtype {arr.dtype}.")
    return arr


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Any numeric (H, W[, C]) array -> uint8 0..255, reading values as `preprocess` does.

    Converted in row chunks, so a large input never needs a whole float copy.
    """
    if arr.dtype == np.uint8:
        return arr
    offset, scale = _dtype_scale(arr)
    out = np.empty(arr.shape, np.uint8)
    for r in range(0, arr.shape[0], 256):
        with np.errstate(all="ignore"):
            chunk = (arr[r : r + 256].astype(np.float32) - np.float32(offset)) * np.float32(255.0 / scale)
        out[r : r + 256] = np.clip(np.rint(chunk), 0, 255).astype(np.uint8)
    return out


def as_array(image: Any) -> np.ndarray:
    """Anything `preprocess` accepts -> numpy array (H, W) grey or (H, W, C), C in {2, 3, 4}."""
    if isinstance(image, dict):
        image = _from_sketchpad(image)
    if isinstance(image, (str, Path, bytes)):
        image = load_image_file(image)
    if isinstance(image, Image.Image):
        w, h = image.size
        if w * h > MAX_DECODE_PIXELS:
            raise ValueError(f"Image too large: {w}x{h} pixels (limit {MAX_DECODE_PIXELS:,}).")
        image = pil_to_array(image)
    arr = _as_numeric_array(image)
    return _to_hwc(arr)


def _to_hwc(arr: np.ndarray) -> np.ndarray:
    """Accept (H, W), (H, W, C) and channels-first (C, H, W); return (H, W) or (H, W, C)."""
    if arr.ndim == 3 and arr.shape[0] in (1, 2, 3, 4) and arr.shape[-1] not in (1, 2, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # (C, H, W) -> (H, W, C), e.g. a torch tensor
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        pass
    elif arr.ndim == 3 and arr.shape[-1] in (2, 3, 4):
        pass
    else:
        raise ValueError(
            f"Expected an image of shape (H, W) or (H, W, C) with C in 1..4, got shape {arr.shape}."
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"The image has no pixels (shape {arr.shape}).")
    return arr


# ---------------------------------------------------------------------------------------------
# Ink extraction: (H, W[, C]) array of any dtype -> ink map in [0, 1]
# ---------------------------------------------------------------------------------------------


def _dtype_scale(arr: np.ndarray) -> tuple[float, float]:
    """(offset, scale) mapping the array's values to [0, 1]: x01 = (x - offset) / scale."""
    if arr.dtype == bool:
        return 0.0, 1.0
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)  # negative values clip to 0 (no ink / transparent)
        if arr.itemsize == 1:
            return 0.0, float(info.max)
        # Wider integers often hold 8-, 12- or 16-bit data (PIL's "I" mode holds 0..255): scale by
        # the smallest usual full range that contains the actual maximum.
        hi = float(arr.max()) if arr.size else 0.0
        return 0.0, next((float(r) for r in (255, 4095, 65535) if hi <= r), float(info.max))
    # floats: [0, 1] as is; [0, 255] as 8-bit; anything else min..max
    with np.errstate(all="ignore"):
        lo, hi = float(np.min(arr)), float(np.max(arr))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("The image contains NaN or infinite values.")
    if lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    if lo >= 0.0 and hi <= 255.0:
        return 0.0, 255.0
    return lo, max(hi - lo, 1e-12)


def _unit(channel: np.ndarray, offset: float, scale: float) -> np.ndarray:
    """One channel (or a grey image) -> float32 in [0, 1]."""
    with np.errstate(all="ignore"):  # huge float ranges overflow harmlessly to inf, then clip
        x = (channel.astype(np.float32) - np.float32(offset)) / np.float32(scale)
    if channel.dtype == np.uint8 and offset == 0.0 and scale == 255.0:
        return x  # already within [0, 1]: skip a pass over the image
    return np.clip(x, 0.0, 1.0)


def _grey_and_alpha(
    chunk: np.ndarray, offset: float, scale: float, need_grey: bool = True
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(H, W[, C]) -> (grey, alpha) float32 in [0, 1]; alpha None without an alpha channel, grey None
    when not needed (a transparent canvas's ink is its alpha). Channel by channel, so that no float
    copy of the whole (H, W, C) image is made (the bulk of `predict`'s preprocessing time)."""
    if chunk.ndim == 2:
        return _unit(chunk, offset, scale), None
    c = chunk.shape[-1]
    alpha = _unit(chunk[..., c - 1], offset, scale) if c in (2, 4) else None
    if not need_grey:
        return None, alpha
    if c == 2:  # grey + alpha
        return _unit(chunk[..., 0], offset, scale), alpha
    r, g, b = (_unit(chunk[..., i], offset, scale) for i in range(3))
    return r * 0.299 + g * 0.587 + b * 0.114, alpha  # ITU-R 601 luma, as PIL's "L"


def to_ink(image: Any) -> InkMap:
    """Any accepted input -> ink map (H', W') float32 in [0, 1].

    Background is decided from the border pixels: transparent (alpha mostly 0) means ink is
    alpha; otherwise the border's median grey is the paper, and ink is how far a pixel is from it
    (so dark-on-light and light-on-dark both work). Inputs over MAX_WORK_SIDE are block-reduced
    (max over blocks, so thin strokes survive) in row chunks, so memory stays bounded.
    """
    arr = as_array(image)
    h, w = arr.shape[:2]
    offset, scale = _dtype_scale(arr)
    # Background from the border (a 1 px frame; cheap even for huge images).
    frame = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]], axis=0)[None]  # (1, N[, C])
    grey_b, alpha_b = _grey_and_alpha(frame, offset, scale)
    transparent = alpha_b is not None and float(np.median(alpha_b)) < 0.5
    paper = float(np.median(grey_b))
    light_paper = paper >= 0.5

    def ink_of(chunk: np.ndarray) -> np.ndarray:
        grey, alpha = _grey_and_alpha(chunk, offset, scale, need_grey=not transparent)
        if transparent:
            return alpha
        if alpha is not None:  # opaque background with some translucent pixels: over the paper
            grey = grey * alpha + paper * (1.0 - alpha)
        if light_paper:
            return np.clip((paper - grey) / max(paper, 1e-6), 0.0, 1.0)
        return np.clip((grey - paper) / max(1.0 - paper, 1e-6), 0.0, 1.0)

    f = max(1, math.ceil(max(h, w) / MAX_WORK_SIDE))
    if f == 1:
        return InkMap(ink_of(arr).astype(np.float32), 1)
    # Block-max reduce in chunks of rows: never hold the full float image in memory.
    out_h, out_w = math.ceil(h / f), math.ceil(w / f)
    out = np.zeros((out_h, out_w), np.float32)
    rows_per_chunk = f * 64
    for r0 in range(0, h, rows_per_chunk):
        ink = ink_of(arr[r0 : r0 + rows_per_chunk])
        ch, cw = ink.shape
        padded = np.zeros((math.ceil(ch / f) * f, out_w * f), np.float32)
        padded[:ch, :cw] = ink
        block = padded.reshape(padded.shape[0] // f, f, out_w, f).max(axis=(1, 3))
        out[r0 // f : r0 // f + block.shape[0]] = block
    return InkMap(out, f)


# ---------------------------------------------------------------------------------------------
# Geometry: crop, stroke width, MNIST box and centre of mass
# ---------------------------------------------------------------------------------------------


def ink_bbox(ink: np.ndarray, threshold: float = INK_THRESHOLD) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) of pixels above threshold, bottom/right exclusive; None if blank."""
    mask = ink > threshold
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Anti-aliased bilinear resize of a (H, W) tensor (antialias matters when shrinking)."""
    return F.interpolate(x[None, None], size=size, mode="bilinear", antialias=True, align_corners=False)[0, 0]


def estimate_stroke_width(mask: np.ndarray | torch.Tensor) -> float:
    """Mean stroke width (px) of a binary mask: 2 * area / perimeter.

    For a stroke of width w and length L, area = w*L and perimeter ~ 2*L. The perimeter is counted
    as 4-neighbour ink/background edges, which overcounts diagonal boundaries by up to ~27 %; the
    same estimator measured MNIST_STROKE_WIDTH, so the bias cancels.
    """
    m = torch.as_tensor(mask, dtype=torch.float32)
    area = float(m.sum())
    if area == 0:
        return 0.0
    p = F.pad(m, (1, 1, 1, 1))
    perimeter = float((p[1:, :] != p[:-1, :]).sum() + (p[:, 1:] != p[:, :-1]).sum())
    return 2.0 * area / max(perimeter, 1.0)


def _dilate(m: torch.Tensor, r: int) -> torch.Tensor:
    return F.max_pool2d(m[None, None], 2 * r + 1, stride=1, padding=r)[0, 0]


def _disk_dilate(m: torch.Tensor, r: int) -> torch.Tensor:
    """Dilate by a disk of radius r: r unit-cross steps alternated with square steps (octagon)."""
    out = m
    for i in range(r):
        if i % 2 == 0:  # cross (4-neighbour) step
            p = F.pad(out, (1, 1, 1, 1))
            out = torch.maximum(
                torch.maximum(p[1:-1, 1:-1], torch.maximum(p[:-2, 1:-1], p[2:, 1:-1])),
                torch.maximum(p[1:-1, :-2], p[1:-1, 2:]),
            )
        else:  # square step
            out = _dilate(out, 1)
    return out


def _erode(mask: torch.Tensor, r: int) -> torch.Tensor:
    return 1.0 - _disk_dilate(1.0 - mask, r)


def normalise_stroke_width(mask: torch.Tensor, target: float) -> torch.Tensor:
    """Dilate thin or erode fat strokes of a binary (H, W) mask towards `target` px width.

    The radius (target - width) / 2 is fractional: we blend the masks morphed by floor(radius) and
    floor(radius) + 1, so the width changes smoothly rather than in 2 px steps.
    """
    radius = (target - estimate_stroke_width(mask)) / 2.0
    morph = _disk_dilate if radius > 0 else _erode
    r0, frac = divmod(abs(radius), 1.0)
    r0 = int(r0)
    if r0 == 0 and frac < 0.05:
        return mask
    lo = morph(mask, r0) if r0 else mask
    hi = morph(lo, 1)
    out = lo + frac * (hi - lo)
    # Never erode a stroke away: keep the original where erosion would leave almost nothing.
    if radius < 0 and float((out > 0.5).sum()) < 0.25 * float(mask.sum()):
        return mask
    return out


def _place_by_centre_of_mass(digit: torch.Tensor) -> torch.Tensor:
    """Paste an (h, w) digit (h, w <= 20) into a 28x28 field with its mass centre at FIELD_CENTRE."""
    h, w = digit.shape
    total = float(digit.sum())
    ys = torch.arange(h, dtype=torch.float32)
    xs = torch.arange(w, dtype=torch.float32)
    cy = float((digit.sum(1) * ys).sum()) / total
    cx = float((digit.sum(0) * xs).sum()) / total
    # Integer shift as MNIST did; clamped so no ink falls off the field.
    top = min(max(int(round(FIELD_CENTRE[0] - cy)), 0), FIELD_SIZE - h)
    left = min(max(int(round(FIELD_CENTRE[1] - cx)), 0), FIELD_SIZE - w)
    field = torch.zeros(FIELD_SIZE, FIELD_SIZE)
    field[top : top + h, left : left + w] = digit
    return field


def _normalised_work_image(ink: np.ndarray, target_width: float | None) -> torch.Tensor:
    """Ink map (H, W) -> binary crop (h, w) float32 with its longer side ~WORK_SIZE, strokes brought
    to `target_width` work pixels (None: left as drawn). Shared by every recipe. Raises EmptyDrawingError."""
    box = ink_bbox(ink)
    if box is None:
        raise EmptyDrawingError()
    t, l, b, r = box
    crop = torch.from_numpy(np.ascontiguousarray(ink[t:b, l:r], dtype=np.float32))  # (h, w)
    h, w = crop.shape
    scale = WORK_SIZE / max(h, w)
    work_hw = (max(1, round(h * scale)), max(1, round(w * scale)))
    work = (_resize(crop, work_hw) > 0.5).float()  # binary, as the NIST source images were
    if work.sum() == 0:  # a very faint, tiny mark: keep whatever is brightest
        work = (_resize(crop, work_hw) >= _resize(crop, work_hw).max() * 0.5).float()
    if target_width is not None:
        pad = WORK_SIZE // 4  # room for dilation without clipping
        work = F.pad(work, (pad, pad, pad, pad))
        work = normalise_stroke_width(work, target_width)
        box2 = ink_bbox(work.numpy(), 0.01)
        assert box2 is not None
        t2, l2, b2, r2 = box2
        work = work[t2:b2, l2:r2]
    return work


def ink_to_model_input(ink: np.ndarray, stroke_width: float | None = MNIST_STROKE_WIDTH) -> np.ndarray:
    """Ink map (H, W) in [0, 1] -> (28, 28) float32 in [0, 1], MNIST-style. Raises EmptyDrawingError."""
    target = None if stroke_width is None else stroke_width * WORK_SIZE / BOX_SIZE
    work = _normalised_work_image(ink, target)
    h, w = work.shape
    scale = BOX_SIZE / max(h, w)
    digit = _resize(work, (max(1, round(h * scale)), max(1, round(w * scale)))).clamp_(0.0, 1.0)
    if float(digit.sum()) <= 0.0:
        raise EmptyDrawingError()
    return _place_by_centre_of_mass(digit).numpy().astype(np.float32)


def emnist_ink_to_model_input(ink: np.ndarray, stroke_width: float | None = EMNIST_STROKE_WIDTH) -> np.ndarray:
    """Ink map (H, W) in [0, 1] -> (28, 28) float32 in [0, 1], EMNIST-style. Raises EmptyDrawingError.

    The character's bounding box is centred in a square frame (aspect ratio kept) with a border of
    EMNIST_BORDER / FIELD_SIZE of the frame on every side, and the frame is resized to 28x28.
    """
    target = None if stroke_width is None else stroke_width * WORK_SIZE / EMNIST_BOX_SIZE
    work = _normalised_work_image(ink, target)  # (h, w), longer side ~WORK_SIZE
    h, w = work.shape
    # Square frame in work pixels: the character spans EMNIST_BOX_SIZE of FIELD_SIZE field pixels.
    side = max(1, round(max(h, w) * FIELD_SIZE / EMNIST_BOX_SIZE))
    top, left = (side - h) // 2, (side - w) // 2
    frame = torch.zeros(side, side)
    frame[top : top + h, left : left + w] = work
    field = _resize(frame, (FIELD_SIZE, FIELD_SIZE)).clamp_(0.0, 1.0)  # (28, 28)
    if float(field.sum()) <= 0.0:
        raise EmptyDrawingError()
    return field.numpy().astype(np.float32)


def preprocess(image: Any, stroke_width: float | None = MNIST_STROKE_WIDTH) -> np.ndarray:
    """Any drawing -> the model's (28, 28) float32 input in [0, 1] (1 = ink), MNIST-style.

    Accepts numpy arrays / torch tensors (H, W), (H, W, C) or (C, H, W) of any numeric dtype; PIL
    images of any mode; file paths or bytes; and the dict a Gradio 6 Sketchpad returns. Raises
    EmptyDrawingError for a blank drawing and ValueError (with a readable message) for input that
    is not an image. `stroke_width=None` skips thickness normalisation.
    """
    return ink_to_model_input(to_ink(image).ink, stroke_width)


def preprocess_emnist(image: Any, stroke_width: float | None = EMNIST_STROKE_WIDTH) -> np.ndarray:
    """Any drawing -> the model's (28, 28) float32 input in [0, 1] (1 = ink), EMNIST-style.

    Accepts what `preprocess` accepts and raises what it raises; only the framing differs (see
    `emnist_ink_to_model_input`).
    """
    return emnist_ink_to_model_input(to_ink(image).ink, stroke_width)


# ---------------------------------------------------------------------------------------------
# Recipes: which framing a model was trained for, recorded in its checkpoint ("preprocess" key)
# ---------------------------------------------------------------------------------------------

RECIPES = ("mnist", "emnist")


class UnknownRecipeError(ValueError):
    """A checkpoint names a preprocessing recipe this code does not know."""


def recipe_metadata(recipe: str) -> dict[str, Any]:
    """The "preprocess" entry a checkpoint records for a recipe ("mnist" or "emnist")."""
    if recipe == "mnist":
        return {"recipe": "mnist", "version": PREPROCESS_VERSION, "field_size": FIELD_SIZE,
                "box_size": BOX_SIZE, "stroke_width": MNIST_STROKE_WIDTH}
    if recipe == "emnist":
        return {"recipe": "emnist", "version": EMNIST_PREPROCESS_VERSION, "field_size": FIELD_SIZE,
                "box_size": EMNIST_BOX_SIZE, "border": EMNIST_BORDER, "stroke_width": EMNIST_STROKE_WIDTH}
    raise UnknownRecipeError(f"Unknown preprocessing recipe {recipe!r}; known: {', '.join(RECIPES)}.")


def recipe_of(spec: Mapping[str, Any]) -> str:
    """The recipe named by a checkpoint's "preprocess" entry; "mnist" when it names none (older files)."""
    recipe = spec.get("recipe") or "mnist"
    if recipe not in RECIPES:
        raise UnknownRecipeError(f"Unknown preprocessing recipe {recipe!r}; known: {', '.join(RECIPES)}.")
    return str(recipe)


def ink_to_model_input_for(ink: np.ndarray, spec: Mapping[str, Any]) -> np.ndarray:
    """An ink map (H, W) in [0, 1] -> (28, 28) model input with the recipe a checkpoint records."""
    stroke_width = spec.get("stroke_width")
    if recipe_of(spec) == "emnist":
        return emnist_ink_to_model_input(ink, stroke_width=stroke_width)
    return ink_to_model_input(ink, stroke_width=stroke_width)


def preprocess_for(image: Any, spec: Mapping[str, Any]) -> np.ndarray:
    """Any drawing -> (28, 28) model input with the recipe a checkpoint records (its "preprocess" entry).

    The stroke width is the recorded one (None or absent: no thickness normalisation, as before).
    """
    stroke_width = spec.get("stroke_width")
    if recipe_of(spec) == "emnist":
        return preprocess_emnist(image, stroke_width=stroke_width)
    return preprocess(image, stroke_width=stroke_width)
