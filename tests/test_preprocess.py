"""Preprocessing invariants: the same digit gives the same model input however it was drawn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageDraw

from hwr.preprocess import (
    BOX_SIZE,
    FIELD_SIZE,
    MNIST_STROKE_WIDTH,
    EmptyDrawingError,
    estimate_stroke_width,
    preprocess,
)


def draw_seven(size: int = 400, width: int = 24, offset=(0, 0), scale: float = 1.0, ink=0, paper=255, mode="L") -> Image.Image:
    """A '7' drawn with a round brush: the kind of input the app sends."""
    img = Image.new(mode, (size, size), paper)
    d = ImageDraw.Draw(img)
    s = size / 400 * scale
    ox, oy = offset
    pts = [(120, 100), (280, 100), (190, 320)]
    pts = [(ox + size / 2 + (x - 200) * s, oy + size / 2 + (y - 200) * s) for x, y in pts]
    d.line(pts, fill=ink, width=max(1, int(width * s)), joint="curve")
    for x, y in pts:
        r = width * s / 2
        d.ellipse([x - r, y - r, x + r, y + r], fill=ink)
    return img


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0.3, b > 0.3
    return float((a & b).sum() / max((a | b).sum(), 1))


def blurred_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of the two images after a 3x3 box blur: 1-px shifts of 2-px strokes barely count."""
    blur = lambda x: torch.nn.functional.avg_pool2d(torch.from_numpy(x)[None, None], 3, 1, 1)[0, 0].numpy().ravel()
    return float(np.corrcoef(blur(a), blur(b))[0, 1])


def test_output_shape_range_and_mnist_geometry():
    x = preprocess(draw_seven())
    assert x.shape == (FIELD_SIZE, FIELD_SIZE) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.9
    rows, cols = np.nonzero(x > 0.05)
    # longer side scaled to the 20 px box (+1 for anti-aliasing / dilation fringe)
    assert max(np.ptp(rows), np.ptp(cols)) + 1 in range(BOX_SIZE - 1, BOX_SIZE + 2)
    ys, xs = np.mgrid[:FIELD_SIZE, :FIELD_SIZE]
    cy, cx = (x * ys).sum() / x.sum(), (x * xs).sum() / x.sum()
    assert abs(cy - 14.0) <= 0.75 and abs(cx - 14.0) <= 0.75  # mass centre at the field centre


def test_translation_and_scale_invariance():
    base = preprocess(draw_seven())
    assert iou(base, preprocess(draw_seven(offset=(-90, 60)))) > 0.85
    assert iou(base, preprocess(draw_seven(scale=0.5))) > 0.75
    assert iou(base, preprocess(draw_seven(size=800))) > 0.85


def test_polarity_light_on_dark_equals_dark_on_light():
    a = preprocess(draw_seven(ink=0, paper=255))
    b = preprocess(draw_seven(ink=255, paper=0))
    assert np.abs(a - b).max() < 1e-5


def test_transparent_background_equals_white_background():
    white = preprocess(draw_seven(mode="RGBA", ink=(0, 0, 0, 255), paper=(255, 255, 255, 255)))
    transparent = preprocess(draw_seven(mode="RGBA", ink=(0, 0, 0, 255), paper=(0, 0, 0, 0)))
    assert np.abs(white - transparent).max() < 1e-5
    # ink colour does not matter on a transparent canvas
    red = preprocess(draw_seven(mode="RGBA", ink=(255, 0, 0, 255), paper=(0, 0, 0, 0)))
    assert np.abs(white - red).max() < 1e-5


def test_rgb_grey_and_rgba_agree():
    grey = preprocess(draw_seven())
    rgb = preprocess(draw_seven().convert("RGB"))
    rgba = preprocess(np.asarray(draw_seven().convert("RGBA")))
    assert np.abs(grey - rgb).max() < 1e-5 and np.abs(grey - rgba).max() < 1e-5


@pytest.mark.parametrize("width", [3, 8, 16, 40])
def test_stroke_thickness_is_normalised(width):
    """Thin and fat versions of the same drawing give nearly the same model input."""
    ref = preprocess(draw_seven(width=12))
    x = preprocess(draw_seven(width=width))
    assert blurred_correlation(ref, x) > 0.9
    measured = estimate_stroke_width(torch.from_numpy(x > 0.5).float())
    assert abs(measured - MNIST_STROKE_WIDTH) < 0.8


def test_sketchpad_dict_with_composite_and_without():
    img = np.asarray(draw_seven(mode="RGBA", ink=(0, 0, 0, 255), paper=(255, 255, 255, 255)))
    ref = preprocess(img)
    assert np.abs(preprocess({"background": None, "layers": [], "composite": img}) - ref).max() < 1e-5
    # composite None: background + layers composited here
    bg = np.full_like(img, 255)
    layer = np.asarray(draw_seven(mode="RGBA", ink=(0, 0, 0, 255), paper=(0, 0, 0, 0)))
    out = preprocess({"background": bg, "layers": [layer], "composite": None})
    assert np.abs(out - ref).max() < 1e-5


@pytest.mark.parametrize(
    "blank",
    [
        np.zeros((400, 400), np.uint8),
        np.full((400, 400, 3), 255, np.uint8),
        np.zeros((400, 400, 4), np.uint8),  # fully transparent
        Image.new("RGBA", (300, 300), (255, 255, 255, 255)),
        {"background": None, "layers": [], "composite": None},
        np.full((50, 50), 0.5, np.float32),
    ],
)
def test_blank_raises_empty_drawing_error(blank):
    with pytest.raises(EmptyDrawingError):
        preprocess(blank)


def test_empty_drawing_error_is_a_value_error():
    assert issubclass(EmptyDrawingError, ValueError)


@pytest.mark.parametrize("size", [3, 5, 28, 400, 4000])
def test_sizes_from_3_to_4000(size):
    a = np.zeros((size, size), np.uint8)
    a[size // 4 : max(size // 4 + 1, 3 * size // 4), size // 2] = 255  # a vertical bar (a '1')
    x = preprocess(a)
    assert x.shape == (28, 28) and np.isfinite(x).all() and x.max() > 0.5


@pytest.mark.parametrize("size", [1, 2])
def test_tiny_images_are_blank_or_valid(size):
    """With 1 or 2 px a side every pixel is on the border, so it is the paper: blank, not a crash."""
    for value in (0, 255):
        with pytest.raises(EmptyDrawingError):
            preprocess(np.full((size, size), value, np.uint8))


def test_huge_canvas_keeps_thin_strokes():
    """Block reduction of huge inputs must not lose a 3 px stroke."""
    a = np.full((9000, 9000), 255, np.uint8)
    a[2000:7000, 4500:4503] = 0
    a[2000:2003, 3000:4503] = 0
    x = preprocess(a)
    assert x.max() > 0.9


@pytest.mark.parametrize("dtype", [np.float32, np.float64, bool, np.uint16, np.int32, np.int8, np.float16])
def test_dtypes(dtype):
    a = np.zeros((100, 100), np.float64)
    a[20:80, 45:55] = 1.0
    if dtype == np.uint16:
        arr = (a * 65535).astype(np.uint16)
    elif dtype == bool:
        arr = a.astype(bool)
    elif dtype in (np.int32, np.int8):
        arr = (a * np.iinfo(dtype).max).astype(dtype)
    else:
        arr = a.astype(dtype)
    ref = preprocess(a)
    assert np.abs(preprocess(arr) - ref).max() < 1e-3


def test_float_0_255_and_channels_first_tensor():
    a = np.zeros((100, 100), np.float32)
    a[20:80, 45:55] = 255.0
    ref = preprocess(a / 255.0)
    assert np.abs(preprocess(a) - ref).max() < 1e-5
    t = torch.from_numpy(np.stack([a, a, a]) / 255.0)  # (3, H, W) like a torchvision tensor
    assert np.abs(preprocess(t) - ref).max() < 1e-5


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_raise_clear_value_error(bad):
    a = np.zeros((50, 50), np.float32)
    a[10:40, 20:25] = 1.0
    a[0, 0] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        preprocess(a)


@pytest.mark.parametrize(
    "bad",
    [np.zeros(()), np.zeros(10), np.zeros((0, 5)), np.zeros((2, 3, 4, 5)), np.zeros((10, 10, 7)), "not-a-file.png",
     b"not an image", np.array([["a", "b"]]), None, 3.5],
)
def test_non_images_raise_value_error(bad):
    with pytest.raises(ValueError):
        preprocess(bad)


def test_pil_modes(tmp_path):
    seven = draw_seven()
    ref = preprocess(seven)
    for mode in ["1", "P", "LA", "I;16", "I", "F", "CMYK", "RGB"]:
        img = seven.convert(mode) if mode != "I;16" else Image.fromarray(np.asarray(seven).astype(np.uint16) * 257)
        assert iou(preprocess(img), ref) > 0.9, mode
    path = tmp_path / "seven.png"
    seven.save(path)
    assert np.abs(preprocess(str(path)) - ref).max() < 1e-5
    assert np.abs(preprocess(path.read_bytes()) - ref).max() < 1e-5


def test_truncated_file_raises_value_error(tmp_path):
    path = tmp_path / "cut.png"
    draw_seven().save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated|corrupt|readable"):
        preprocess(str(path))


@settings(max_examples=150, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.uint16, np.int16, np.float32, np.float64, np.bool_]),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=40),
    )
)
def test_arbitrary_arrays_give_input_or_clear_value_error(arr):
    try:
        x = preprocess(arr)
    except ValueError as exc:
        assert str(exc), "a ValueError must carry a message"
        return
    assert x.shape == (28, 28) and x.dtype == np.float32 and np.isfinite(x).all()
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_stroke_width_constant_matches_mnist(data_dir):
    """MNIST_STROKE_WIDTH is MNIST's median stroke width, measured the same way as at inference."""
    if not (data_dir / "MNIST" / "raw").is_dir():
        pytest.skip("MNIST not in data dir")
    import torch.nn.functional as F

    from hwr.data import load_mnist

    images = load_mnist(data_dir, train=True, download=False).images[::300].float() / 255
    widths = []
    for img in images:
        up = F.interpolate(img[None, None], scale_factor=4, mode="bilinear", align_corners=False)[0, 0]
        widths.append(estimate_stroke_width((up > 0.5).float()) / 4)
    assert abs(float(np.median(widths)) - MNIST_STROKE_WIDTH) < 0.1
