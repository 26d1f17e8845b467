"""Tests for hwr.pendigits: the UNIPEN parser and the browser-canvas renderer."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwr.pendigits import (
    PENDIGITS_FILE,
    RANDOM_BRUSH_FRAC,
    RANDOM_CANVAS_SIDE,
    PenDigit,
    load_pendigits,
    parse_unipen_digits,
    random_render,
    render,
    split_by_writer,
)

SYNTHETIC = """\
.INCLUDE        dene.doc

.LEXICON "0" "1" "2" "3" "4" "5" "6" "7" "8" "9"
.HIERARCHY      DIGIT

.SEGMENT DIGIT    0 ? "1"
.COMMENT 1 7  12
.PEN_DOWN
 100  400
 110  300
 120  100
.PEN_UP
.DT 100

.SEGMENT DIGIT    1-2 ? "4"
.COMMENT 4 3  250
.PEN_DOWN
 200  400
 100  200
 300  200
.PEN_UP
.DT 100
.PEN_DOWN
 250  300
.PEN_UP
.DT 100
"""


def make_digit(*strokes: list[tuple[float, float]], label: str = "0") -> PenDigit:
    arrays = tuple(np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes)
    return PenDigit(label=label, writer=1, index=0, strokes=arrays)


# An upright "T" in tablet coordinates (y up): the bar is at the top (high y).
T_DIGIT = make_digit([(0, 0), (0, 100)], [(-50, 100), (50, 100)], label="7")


def ink_of(rgba: np.ndarray) -> np.ndarray:
    """Ink coverage in [0, 1] for either background."""
    if (rgba[..., 3] == 255).all():
        return 1.0 - rgba[..., 0].astype(np.float64) / 255
    return rgba[..., 3].astype(np.float64) / 255


def ink_bbox(rgba: np.ndarray, threshold: float = 0.0) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) inclusive of pixels with ink above threshold."""
    rows, cols = np.nonzero(ink_of(rgba) > threshold)
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------


def test_parse_synthetic_file(tmp_path: Path) -> None:
    path = tmp_path / PENDIGITS_FILE
    path.parent.mkdir(parents=True)
    path.write_text(SYNTHETIC)
    digits = load_pendigits(tmp_path)
    assert [d.label for d in digits] == ["1", "4"]
    assert [d.writer for d in digits] == [7, 3]
    assert [d.sample for d in digits] == [12, 250]
    assert [d.index for d in digits] == [0, 1]
    assert [len(d.strokes) for d in digits] == [1, 2]
    np.testing.assert_array_equal(digits[0].strokes[0], [[100, 400], [110, 300], [120, 100]])
    assert digits[1].strokes[1].shape == (1, 2)  # a one-point stroke survives parsing
    assert all(s.dtype == np.float64 and not s.flags.writeable for d in digits for s in d.strokes)


@pytest.mark.parametrize(
    "bad",
    [
        SYNTHETIC.replace(".COMMENT 1 7  12\n", ""),  # no writer
        SYNTHETIC.replace(".COMMENT 1 7", ".COMMENT 2 7"),  # label disagrees
        SYNTHETIC.replace("1-2 ?", "1-3 ?"),  # refers to a missing component
        SYNTHETIC.replace(" 250  300\n", " 250  300\n.PEN_UP\n 1 2\n"),  # point outside a stroke
    ],
)
def test_parse_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_unipen_digits(bad)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="pendigits-orig.tra"):
        load_pendigits(tmp_path / "nowhere")


def test_split_by_writer() -> None:
    digits = [PenDigit(label="1", writer=w, index=i, strokes=T_DIGIT.strokes) for i, w in enumerate([1, 2, 3, 2])]
    train, test = split_by_writer(digits, [2])
    assert [d.index for d in train] == [0, 2]
    assert [d.index for d in test] == [1, 3]


# ---------------------------------------------------------------------------------------------
# The real data (skipped without it)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pendigits(data_dir: Path) -> list[PenDigit]:
    if not (data_dir / PENDIGITS_FILE).is_file():
        pytest.skip(f"{data_dir / PENDIGITS_FILE} not found")
    return load_pendigits(data_dir)


def test_real_data_counts(pendigits: list[PenDigit]) -> None:
    assert len(pendigits) == 7494
    assert {d.writer for d in pendigits} == set(range(1, 31))
    per_label = Counter(d.label for d in pendigits)
    assert set(per_label) == set("0123456789")
    assert all(715 <= n <= 785 for n in per_label.values()), per_label
    assert len({(d.writer, d.sample) for d in pendigits}) == 7494  # (writer, sample) is unique
    train, test = split_by_writer(pendigits, range(26, 31))
    assert len(train) + len(test) == 7494 and {d.writer for d in test} == set(range(26, 31))


def test_real_data_renders_inside(pendigits: list[PenDigit]) -> None:
    rng = np.random.default_rng(1)
    for i in rng.choice(len(pendigits), size=8, replace=False):
        img = random_render(pendigits[i], rng, background="transparent")
        assert img[..., 3].any()
        assert not img[0].any() and not img[-1].any() and not img[:, 0].any() and not img[:, -1].any()


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def test_render_shape_dtype() -> None:
    img = render(T_DIGIT, canvas_size=(300, 200))
    assert img.shape == (200, 300, 4) and img.dtype == np.uint8


def test_white_and_transparent_backgrounds() -> None:
    white = render(T_DIGIT, canvas_size=(120, 120), background="white")
    clear = render(T_DIGIT, canvas_size=(120, 120), background="transparent")
    # white: opaque, grey levels only, white corners, black ink
    assert (white[..., 3] == 255).all()
    assert (white[..., 0] == white[..., 1]).all() and (white[..., 1] == white[..., 2]).all()
    assert tuple(white[0, 0]) == (255, 255, 255, 255)
    assert white[..., 0].min() == 0
    # transparent: black ink whose alpha is the coverage, fully transparent elsewhere
    assert (clear[..., :3] == 0).all()
    assert tuple(clear[0, 0]) == (0, 0, 0, 0)
    assert clear[..., 3].max() == 255
    # the same drawing: alpha == 255 - grey
    np.testing.assert_array_equal(clear[..., 3], 255 - white[..., 0])
    # anti-aliased: some partial coverage
    assert ((clear[..., 3] > 0) & (clear[..., 3] < 255)).any()


def test_upright() -> None:
    img = render(T_DIGIT, canvas_size=(200, 200))
    ink = ink_of(img) > 0.5
    top, bottom, _, _ = ink_bbox(img, 0.5)
    top_width = ink[top + 2].sum()
    bottom_width = ink[bottom - 2].sum()
    assert top_width > 3 * bottom_width  # the bar of the T is at the top


def test_stroke_going_up_ends_higher() -> None:
    # One stroke: up the tablet (y grows upwards), then to the right. Its end must be at the top
    # right of the canvas: y flipped, x not mirrored.
    digit = make_digit([(0, 0), (0, 100), (60, 100)])
    ink = ink_of(render(digit, canvas_size=(200, 200))) > 0.5
    rows, cols = np.nonzero(ink)
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    assert ink[top + 2, right - 5]  # the last segment runs along the top
    assert not ink[bottom - 2, right - 5]
    assert ink[bottom - 2, left + 5]  # the start is at the bottom left


def test_one_point_stroke_draws_a_dot() -> None:
    img = render(make_digit([(5, 5)]), canvas_size=(100, 100), brush_frac=0.1, supersample=4)
    ink = ink_of(img)
    area = ink.sum()
    assert area == pytest.approx(np.pi * 5**2, rel=0.25)  # a disc of diameter 10 px
    rows, cols = np.nonzero(ink > 0.5)
    assert rows.mean() == pytest.approx(49.5, abs=1) and cols.mean() == pytest.approx(49.5, abs=1)


def test_height_brush_and_aspect() -> None:
    square = make_digit([(0, 0), (0, 200), (200, 200), (200, 0), (0, 0)])
    img = render(square, canvas_size=(400, 400), height_frac=0.5, brush_frac=0.05, supersample=4)
    top, bottom, left, right = ink_bbox(img, 0.5)
    height, width = bottom - top + 1, right - left + 1
    assert height == pytest.approx(0.5 * 400 + 0.05 * 400, abs=2)  # digit height + one brush width
    assert width == pytest.approx(height, abs=2)  # aspect kept
    ink = ink_of(img) > 0.5
    assert ink[(top + bottom) // 2, left : left + 40].sum() == pytest.approx(20, abs=2)  # brush 5 %


def test_wide_digit_is_shrunk_to_fit() -> None:
    flat = make_digit([(0, 0), (600, 10)])
    img = render(flat, canvas_size=(100, 100), height_frac=0.8, brush_frac=0.05)
    assert img[..., 0].min() < 128
    assert (img[0] == 255).all() and (img[-1] == 255).all() and (img[:, 0] == 255).all() and (img[:, -1] == 255).all()


@pytest.mark.parametrize("center", [(0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.3, 0.7), None])
def test_centre_is_clamped_inside(center: tuple[float, float] | None) -> None:
    img = render(T_DIGIT, canvas_size=(150, 100), height_frac=0.8, brush_frac=0.06, center=center)
    alpha = 255 - img[..., 0]
    assert alpha.any()
    assert not alpha[0].any() and not alpha[-1].any() and not alpha[:, 0].any() and not alpha[:, -1].any()


def test_center_places_the_digit() -> None:
    img = render(T_DIGIT, canvas_size=(200, 200), height_frac=0.3, center=(0.25, 0.75))
    top, bottom, left, right = ink_bbox(img, 0.5)
    assert (top + bottom) / 2 == pytest.approx(150, abs=3)
    assert (left + right) / 2 == pytest.approx(50, abs=3)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        render(T_DIGIT, background="black")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        render(T_DIGIT, height_frac=0)
    with pytest.raises(ValueError):
        render(T_DIGIT, supersample=0)


def test_random_render_deterministic_and_in_range() -> None:
    a = [random_render(T_DIGIT, np.random.default_rng(7)) for _ in range(2)]
    np.testing.assert_array_equal(a[0], a[1])
    rng = np.random.default_rng(3)
    sides = []
    for background in ("white", "transparent", "white", "transparent", "white"):
        img = random_render(T_DIGIT, rng, background=background)
        side = img.shape[0]
        sides.append(side)
        assert img.shape == (side, side, 4)
        assert RANDOM_CANVAS_SIDE[0] <= side <= RANDOM_CANVAS_SIDE[1]
        top, bottom, _, _ = ink_bbox(img, 0.5)
        ink_height = (bottom - top + 1) / side  # digit height plus one brush width
        assert 0.35 + RANDOM_BRUSH_FRAC[0] - 0.02 <= ink_height <= 0.85 + RANDOM_BRUSH_FRAC[1] + 0.02
        assert (img[..., 3] == 255).all() == (background == "white")
    assert len(set(sides)) > 1


@settings(max_examples=20, deadline=None)
@given(
    points=st.lists(
        st.tuples(st.floats(-1000, 1000), st.floats(-1000, 1000)), min_size=1, max_size=8
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_render_ink_always_inside(points: list[tuple[float, float]], seed: int) -> None:
    img = random_render(make_digit(points), np.random.default_rng(seed), background="transparent")
    alpha = img[..., 3]
    assert alpha.any()
    assert not alpha[0].any() and not alpha[-1].any() and not alpha[:, 0].any() and not alpha[:, -1].any()
