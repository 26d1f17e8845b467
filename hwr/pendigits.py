"""Real stylus trajectories of digits (UCI pendigits, UNIPEN format), rendered as canvas drawings.

Data: the UCI "Pen-Based Recognition of Handwritten Digits" original trajectories
(Alpaydin & Alimoglu, 1998), file ``pendigits/pendigits-orig.tra`` under the data root: 7,494
digits by 30 writers, written with a stylus inside boxes of about 500x500 tablet pixels, sampled
every 100 ms; tablet y grows upwards. See ``shared/data/pendigits/DATA.md``.

File layout, as found in the data (UNIPEN):

    .SEGMENT DIGIT 6-7 ? "4"      # components (pen-down strokes) 6..7 of the file form a "4"
    .COMMENT 4 12 224             # label, writer id (1..30), the writer's sample number (1..250)
    .PEN_DOWN
     267  333                     # x y, tablet pixels
     ...
    .PEN_UP
    .DT 100                       # time gap (ms) before the next component: ignored

The ``.SEGMENT`` number is not a digit index but the range of pen-down components (numbered from
0 across the whole file) that make up the digit; here each digit's components directly follow its
``.SEGMENT`` line.

Rendering imitates a browser canvas drawing: a black round brush (line segments between
consecutive points, round caps and joins), anti-aliased, on a white or a transparent canvas.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw

log = logging.getLogger(__name__)

PENDIGITS_FILE = Path("pendigits") / "pendigits-orig.tra"  # relative to the data root (data README)
# DATA.md: "Pen-Based Recognition of Handwritten Digits", training part: 7,494 digits, writers 1..30.
EXPECTED_DIGITS = 7494
EXPECTED_WRITERS = 30

# The distribution of browser drawings we want to be robust to (from the issue): "a black round
# brush on white or on a transparent canvas; canvases of 280 to 800 px; the digit 35 to 85 % of the
# canvas height, anywhere on it; brush width 2 to 6 % of the canvas".
RANDOM_CANVAS_SIDE = (280, 800)  # px, inclusive, square canvases
RANDOM_HEIGHT_FRAC = (0.35, 0.85)
RANDOM_BRUSH_FRAC = (0.02, 0.06)

Background = Literal["white", "transparent"]
BACKGROUNDS: tuple[str, ...] = ("white", "transparent")
# Blank border (canvas px) kept around the ink: PIL rounds shapes to whole (supersampled) pixels,
# so the ink can reach about one pixel past its exact outline.
MARGIN_PX = 2.0

_SEGMENT_RE = re.compile(r'^\.SEGMENT\s+DIGIT\s+([0-9,\-\s]+?)\s+\S+\s+"([^"]*)"\s*$')


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no truth value; compare by identity
class PenDigit:
    """One pendigits sample: its label, writer id (1..30), position in the file and strokes.

    ``index`` is the 0-based position of the digit in the file; ``sample`` is the writer's own
    sample number from the ``.COMMENT`` line (1..250). Each stroke is a read-only (N, 2) float64
    array of tablet (x, y) points, y growing upwards.
    """

    label: str
    writer: int
    index: int
    strokes: tuple[np.ndarray, ...]
    sample: int = 0


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def _component_indices(spec: str, where: str) -> list[int]:
    """Parse a UNIPEN component list such as ``"3"``, ``"6-7"`` or ``"1,3-4"``."""
    out: list[int] = []
    for part in spec.replace(" ", "").split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            a = int(lo)
            b = int(hi) if sep else a
        except ValueError:
            raise ValueError(f"{where}: bad component range {spec!r}") from None
        if b < a:
            raise ValueError(f"{where}: bad component range {spec!r}")
        out.extend(range(a, b + 1))
    if not out:
        raise ValueError(f"{where}: empty component range {spec!r}")
    return out


def parse_unipen_digits(text: str, source: str = "<text>") -> list[PenDigit]:
    """Parse UNIPEN text holding ``.SEGMENT DIGIT`` blocks into `PenDigit` objects (strict)."""
    components: list[np.ndarray] = []
    # (label, component indices, writer, sample, line number) per segment
    segments: list[tuple[str, list[int], int | None, int | None, int]] = []
    current: list[tuple[float, float]] | None = None

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        where = f"{source}:{lineno}"
        if not line:
            continue
        if line.startswith("."):
            keyword = line.split(None, 1)[0]
            if keyword == ".SEGMENT":
                m = _SEGMENT_RE.match(line)
                if m is None:
                    raise ValueError(f"{where}: unrecognised .SEGMENT line {line!r}")
                segments.append((m.group(2), _component_indices(m.group(1), where), None, None, lineno))
            elif keyword == ".COMMENT":
                if not segments:
                    continue  # a file-level comment
                fields = line.split()[1:]
                if len(fields) != 3 or not all(f.lstrip("-").isdigit() for f in fields):
                    raise ValueError(f"{where}: expected '.COMMENT label writer sample', got {line!r}")
                label, comps, _, _, seg_line = segments[-1]
                if fields[0] != label:
                    raise ValueError(f"{where}: .COMMENT label {fields[0]!r} != segment label {label!r}")
                segments[-1] = (label, comps, int(fields[1]), int(fields[2]), seg_line)
            elif keyword == ".PEN_DOWN":
                if current is not None:
                    raise ValueError(f"{where}: .PEN_DOWN inside a stroke")
                current = []
            elif keyword == ".PEN_UP":
                if current is None:
                    raise ValueError(f"{where}: .PEN_UP without .PEN_DOWN")
                if not current:
                    raise ValueError(f"{where}: empty stroke")
                stroke = np.asarray(current, dtype=np.float64).reshape(-1, 2)
                stroke.setflags(write=False)
                components.append(stroke)
                current = None
            # .DT, .INCLUDE, .LEXICON, .HIERARCHY and other keywords carry nothing we use.
            continue
        if current is None:
            raise ValueError(f"{where}: point outside .PEN_DOWN/.PEN_UP: {line!r}")
        parts = line.split()
        if len(parts) < 2:
            raise ValueError(f"{where}: expected 'x y', got {line!r}")
        try:
            current.append((float(parts[0]), float(parts[1])))
        except ValueError:
            raise ValueError(f"{where}: expected 'x y', got {line!r}") from None
    if current is not None:
        raise ValueError(f"{source}: file ends inside a stroke")

    digits: list[PenDigit] = []
    for index, (label, comps, writer, sample, seg_line) in enumerate(segments):
        where = f"{source}:{seg_line}"
        if writer is None or sample is None:
            raise ValueError(f"{where}: segment without '.COMMENT label writer sample'")
        if comps[-1] >= len(components):
            raise ValueError(f"{where}: segment refers to component {comps[-1]}, file has {len(components)}")
        strokes = tuple(components[i] for i in comps)
        digits.append(PenDigit(label=label, writer=writer, index=index, strokes=strokes, sample=sample))
    return digits


@functools.lru_cache(maxsize=4)
def _load_cached(path: Path, mtime_ns: int, size: int) -> tuple[PenDigit, ...]:
    digits = parse_unipen_digits(path.read_text(encoding="ascii"), source=str(path))
    writers = {d.writer for d in digits}
    log.info("parsed %d pendigits digits by %d writers from %s", len(digits), len(writers), path)
    if len(digits) != EXPECTED_DIGITS or len(writers) != EXPECTED_WRITERS:
        log.warning(
            "%s: %d digits / %d writers, the UCI file has %d / %d",
            path, len(digits), len(writers), EXPECTED_DIGITS, EXPECTED_WRITERS,
        )
    return tuple(digits)


def pendigits_path(data_dir: str | Path) -> Path:
    """The path of ``pendigits-orig.tra`` under a data root (which need not exist)."""
    return Path(data_dir) / PENDIGITS_FILE


def load_pendigits(data_dir: str | Path) -> list[PenDigit]:
    """Load all digits of ``<data_dir>/pendigits/pendigits-orig.tra`` (parsed once per file)."""
    path = pendigits_path(data_dir).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(
            f"pendigits data not found: {path} does not exist. Point the data root "
            f"(e.g. HWR_DATA_DIR) at the folder that holds pendigits/pendigits-orig.tra."
        )
    st = path.stat()
    return list(_load_cached(path, st.st_mtime_ns, st.st_size))


def parse_writers(text: str) -> set[int] | None:
    """A writers option: 'all' -> None (every writer); '13-30' -> {13, ..., 30}; '7' -> {7}."""
    if text == "all":
        return None
    lo, _, hi = text.partition("-")
    try:
        first, last = int(lo), int(hi or lo)
    except ValueError:
        raise ValueError(f"writers must be 'all' or a range such as 13-30, got {text!r}") from None
    if not 1 <= first <= last <= EXPECTED_WRITERS:
        raise ValueError(f"writers must lie within 1-{EXPECTED_WRITERS}, got {text!r}")
    return set(range(first, last + 1))


def pools_by_writer(digits: Iterable[PenDigit], writers: Iterable[int] | None = None) -> dict[int, list[PenDigit]]:
    """writer -> that writer's digits (in file order), for the writers given (None: every writer)."""
    keep = None if writers is None else set(writers)
    pools: dict[int, list[PenDigit]] = {}
    for d in digits:
        if keep is None or d.writer in keep:
            pools.setdefault(d.writer, []).append(d)
    return pools


def split_by_writer(
    digits: Iterable[PenDigit], test_writers: Iterable[int]
) -> tuple[list[PenDigit], list[PenDigit]]:
    """Split into (train, test): the test part holds every digit whose writer is in test_writers."""
    test_set = {int(w) for w in test_writers}
    train: list[PenDigit] = []
    test: list[PenDigit] = []
    for d in digits:
        (test if d.writer in test_set else train).append(d)
    missing = test_set - {d.writer for d in test}
    if missing:
        log.warning("split_by_writer: no digits for test writers %s", sorted(missing))
    return train, test


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    scale: float  # canvas px per tablet px
    centre: tuple[float, float]  # tablet (x, y) of the trajectory's bounding-box centre
    half_extent: tuple[float, float]  # half width / height of the ink (brush included), canvas px
    brush_px: float


def _layout(
    digit: PenDigit, width: int, height: int, height_frac: float, brush_frac: float
) -> _Layout:
    """Scale the digit to height_frac of the canvas height, shrinking it if the ink would not fit."""
    points = np.concatenate(digit.strokes, axis=0)
    lo, hi = points.min(axis=0), points.max(axis=0)
    w, h = float(hi[0] - lo[0]), float(hi[1] - lo[1])
    brush = brush_frac * height
    target = height_frac * height
    if h > 0:
        scale = target / h
    elif w > 0:
        scale = target / w
    else:
        scale = 0.0  # a single dot
    # Fully inside: ink extent (trajectory + brush) plus MARGIN_PX on each side.
    if w > 0:
        scale = min(scale, max(width - brush - 2 * MARGIN_PX, 0.0) / w)
    if h > 0:
        scale = min(scale, max(height - brush - 2 * MARGIN_PX, 0.0) / h)
    centre = (float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2)
    half = (scale * w / 2 + brush / 2 + MARGIN_PX, scale * h / 2 + brush / 2 + MARGIN_PX)
    return _Layout(scale=scale, centre=centre, half_extent=half, brush_px=brush)


def _check_render_args(
    canvas_size: tuple[int, int], height_frac: float, brush_frac: float, background: str, supersample: int
) -> tuple[int, int]:
    width, height = (int(v) for v in canvas_size)
    if width < 1 or height < 1:
        raise ValueError(f"canvas_size must be positive, got {canvas_size}")
    if not 0 < height_frac <= 1:
        raise ValueError(f"height_frac must be in (0, 1], got {height_frac}")
    if not 0 < brush_frac < 1:
        raise ValueError(f"brush_frac must be in (0, 1), got {brush_frac}")
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
    if int(supersample) != supersample or supersample < 1:
        raise ValueError(f"supersample must be a positive integer, got {supersample}")
    return width, height


def _draw_strokes(
    digit: PenDigit,
    size: tuple[int, int],
    scale: float,
    centre: tuple[float, float],
    position: tuple[float, float],
    brush_px: float,
    ss: int,
) -> np.ndarray:
    """Draw the strokes with a round brush; (H, W) uint8 coverage (255 = ink), size = (W, H).

    The trajectory point `centre` (tablet px) lands at `position` (canvas px), scaled by `scale`
    canvas px per tablet px, y flipped. Drawn at ss times the size and box-averaged down.
    """
    width, height = size
    px, py = position
    big_w, big_h = width * ss, height * ss
    line_width = max(1, round(brush_px * ss))
    # PIL fills the pixels of both ends of an ellipse's box: shrink the box by half a pixel on each
    # side so the dots are as wide as the lines.
    radius = line_width / 2 - 0.5
    mask = Image.new("L", (big_w, big_h), 0)
    draw = ImageDraw.Draw(mask)
    for stroke in digit.strokes:
        # Canvas coordinates in supersampled pixels; pixel i covers [i, i+1), so centres are at +0.5.
        xs = (px + scale * (stroke[:, 0] - centre[0])) * ss - 0.5
        ys = (py - scale * (stroke[:, 1] - centre[1])) * ss - 0.5
        pts = list(zip(xs.tolist(), ys.tolist()))
        if len(pts) >= 2:
            draw.line(pts, fill=255, width=line_width)
        for x, y in pts:  # round caps and joins; a one-point stroke becomes a dot
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    if ss > 1:
        mask = mask.reduce(ss)  # box average of ss x ss blocks: anti-aliasing
    return np.asarray(mask, dtype=np.uint8)


def render(
    digit: PenDigit,
    canvas_size: tuple[int, int] = (400, 400),
    height_frac: float = 0.6,
    brush_frac: float = 0.04,
    center: tuple[float, float] | None = None,
    background: Background = "white",
    supersample: int = 2,
) -> np.ndarray:
    """Draw the digit as a browser canvas would; returns (H, W, 4) uint8 RGBA.

    canvas_size is (W, H) in px. The trajectory is scaled (aspect kept, y flipped so the digit is
    upright) to height_frac of the canvas height (less if it would not fit) and drawn with a black
    round brush brush_frac * H px wide. center is where the trajectory's bounding-box centre goes,
    in canvas fractions (x, y from the top left); None centres it; it is clamped so the ink stays
    inside the canvas (always possible unless the brush is wider than the canvas). "white" gives opaque black-on-white; "transparent" gives black ink whose
    alpha is the coverage on a (0, 0, 0, 0) background. Anti-aliased by drawing at supersample
    times the size and averaging down.
    """
    width, height = _check_render_args(canvas_size, height_frac, brush_frac, background, supersample)
    ss = int(supersample)
    lay = _layout(digit, width, height, height_frac, brush_frac)

    cx, cy = (0.5, 0.5) if center is None else (float(center[0]), float(center[1]))
    px = _clamp(cx * width, lay.half_extent[0], width - lay.half_extent[0])
    py = _clamp(cy * height, lay.half_extent[1], height - lay.half_extent[1])

    alpha = _draw_strokes(digit, (width, height), lay.scale, lay.centre, (px, py), lay.brush_px, ss)

    out = np.empty((height, width, 4), dtype=np.uint8)
    if background == "white":
        out[..., :3] = (255 - alpha)[..., None]
        out[..., 3] = 255
    else:
        out[..., :3] = 0
        out[..., 3] = alpha
    return out


def _clamp(value: float, lo: float, hi: float) -> float:
    if lo > hi:  # the ink is larger than the canvas: centre it
        return (lo + hi) / 2
    return min(max(value, lo), hi)


def random_render(
    digit: PenDigit, rng: np.random.Generator, background: Background = "white"
) -> np.ndarray:
    """Render with a random browser-like geometry (see RANDOM_* constants); (S, S, 4) uint8 RGBA.

    Square canvas of RANDOM_CANVAS_SIDE px, digit RANDOM_HEIGHT_FRAC of the canvas height, brush
    RANDOM_BRUSH_FRAC of the canvas, placed uniformly among the positions where the ink fits.
    """
    side = int(rng.integers(RANDOM_CANVAS_SIDE[0], RANDOM_CANVAS_SIDE[1] + 1))
    height_frac = float(rng.uniform(*RANDOM_HEIGHT_FRAC))
    brush_frac = float(rng.uniform(*RANDOM_BRUSH_FRAC))
    u, v = rng.random(2)
    lay = _layout(digit, side, side, height_frac, brush_frac)
    hx, hy = lay.half_extent
    cx = (hx + u * max(side - 2 * hx, 0.0)) / side
    cy = (hy + v * max(side - 2 * hy, 0.0)) / side
    return render(
        digit,
        canvas_size=(side, side),
        height_frac=height_frac,
        brush_frac=brush_frac,
        center=(cx, cy),
        background=background,
    )



# ---------------------------------------------------------------------------------------------
# Numbers: several digits on one wide canvas
# ---------------------------------------------------------------------------------------------

NUMBER_CANVAS = (800, 300)  # (W, H) px: the app's "Number" canvas
NUMBER_HEIGHT_FRAC = (0.35, 0.65)  # the tallest digit's height, as a fraction of the canvas height
NUMBER_SIZE_SPREAD = (0.75, 1.0)  # each digit's height relative to the tallest ("random sizes")
NUMBER_BASELINE_JITTER = 0.06  # each digit's bottom moves up or down by up to this x its height
NUMBER_BRUSH_FRAC = (0.06, 0.14)  # one brush per number, as a fraction of the digit height
NUMBER_GAP = (-0.05, 0.40)  # gap between neighbours' inks, in nominal digit widths (issue 8)
NUMBER_TOUCH_OVERLAP = (0.0, 0.05)  # touching: pushed together this much past first contact
NOMINAL_DIGIT_WIDTH = 0.6  # a nominal digit width as a fraction of its height (for the gaps)
_INK_ALPHA = 64  # coverage above which a pixel counts as ink (INK_THRESHOLD = 0.25 of 255)


@dataclass(frozen=True, eq=False)
class NumberDrawing:
    """Several pendigits digits drawn side by side on one canvas, with the truth about them."""

    image: np.ndarray  # (H, W, 4) uint8 RGBA
    label: str  # e.g. "2026"
    boxes: tuple[tuple[int, int, int, int], ...]  # each digit's ink box (x0, y0, x1, y1), canvas px
    touching: tuple[bool, ...]  # per neighbour pair: do their inks touch (one connected blob)?
    # (H, W) uint8: which digit (1-based, left to right) put the most ink on each pixel; 0 = none
    owner: np.ndarray | None = None


def _digit_tile(digit: PenDigit, height_px: float, brush_px: float) -> np.ndarray:
    """The digit drawn `height_px` tall (trajectory) with a round brush, cropped to its ink; (h, w) uint8."""
    points = np.concatenate(digit.strokes, axis=0)
    lo, hi = points.min(axis=0), points.max(axis=0)
    w, h = float(hi[0] - lo[0]), float(hi[1] - lo[1])
    extent = h if h > 0 else w
    scale = height_px / extent if extent > 0 else 0.0
    pad = brush_px / 2 + MARGIN_PX
    size = (int(np.ceil(scale * w + 2 * pad)), int(np.ceil(scale * h + 2 * pad)))
    centre = (float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2)
    alpha = _draw_strokes(digit, size, scale, centre, (size[0] / 2, size[1] / 2), brush_px, 2)
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    return alpha[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _row_extents(tile: np.ndarray, top: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Leftmost and rightmost ink column of each canvas row (tile placed at `top`, x = 0); -1/inf where none."""
    left = np.full(height, np.inf)
    right = np.full(height, -np.inf)
    ink = tile > _INK_ALPHA
    rows = np.flatnonzero(ink.any(axis=1))
    for r in rows:
        cols = np.flatnonzero(ink[r])
        if 0 <= top + r < height:
            left[top + r], right[top + r] = cols[0], cols[-1]
    return left, right


def _contact_offset(right_of_left: np.ndarray, left_of_right: np.ndarray) -> float | None:
    """The x offset of the right tile (relative to canvas x 0) at which its ink first touches the left ink.

    8-connected contact: some row (or neighbouring row) has right_tile_col + offset <= left_col + 1.
    """
    both = np.isfinite(right_of_left) & np.isfinite(left_of_right)
    if not both.any():
        return None
    # allow contact across neighbouring rows (diagonal adjacency)
    r = right_of_left.copy()
    r[1:] = np.maximum(r[1:], right_of_left[:-1])
    r[:-1] = np.maximum(r[:-1], right_of_left[1:])
    ok = np.isfinite(r) & np.isfinite(left_of_right)
    return float(np.max(r[ok] + 1 - left_of_right[ok]))


def render_number(
    digits: list[PenDigit],
    rng: np.random.Generator,
    *,
    touching: bool = False,
    canvas_size: tuple[int, int] = NUMBER_CANVAS,
    background: Background = "white",
) -> NumberDrawing:
    """Draw digits left to right on one canvas, as someone writing a number would.

    Random within the number: each digit's size (NUMBER_SIZE_SPREAD of the tallest), its baseline
    (NUMBER_BASELINE_JITTER), and, with touching=False, the gap between neighbours' inks
    (NUMBER_GAP nominal digit widths: from a 5 % overlap to 40 % of a width; slanted digits may
    still touch, which `NumberDrawing.touching` records). With touching=True every digit is pushed
    against its left neighbour until their inks touch, then NUMBER_TOUCH_OVERLAP further. The
    whole number is shrunk if needed to fit the canvas, and placed at random on it.
    """
    if not digits:
        raise ValueError("render_number needs at least one digit")
    width, height = (int(v) for v in canvas_size)
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
    tallest = float(rng.uniform(*NUMBER_HEIGHT_FRAC)) * height
    sizes = rng.uniform(*NUMBER_SIZE_SPREAD, size=len(digits))
    brush_frac = float(rng.uniform(*NUMBER_BRUSH_FRAC))
    jitter = rng.uniform(-NUMBER_BASELINE_JITTER, NUMBER_BASELINE_JITTER, size=len(digits))
    gaps = rng.uniform(*(NUMBER_TOUCH_OVERLAP if touching else NUMBER_GAP), size=len(digits))
    # Shrink so that the widest possible layout fits: widths from each trajectory's aspect ratio.
    aspects = []
    for d in digits:
        pts = np.concatenate(d.strokes, axis=0)
        ext = pts.max(axis=0) - pts.min(axis=0)
        aspects.append(float(ext[0] / ext[1]) if ext[1] > 0 else 1.0)
    unit = NOMINAL_DIGIT_WIDTH * tallest
    est_width = sum(tallest * s * a + brush_frac * tallest for s, a in zip(sizes, aspects))
    est_width += (len(digits) - 1) * max(NUMBER_GAP[1], 0.0) * unit
    shrink = min(1.0, (width - 2 * 8) / max(est_width, 1.0), (height - 2 * 8) / (tallest * (1 + 2 * NUMBER_BASELINE_JITTER) + brush_frac * tallest))
    tallest *= shrink
    unit *= shrink
    brush = brush_frac * tallest

    tiles = [_digit_tile(d, tallest * s, brush) for d, s in zip(digits, sizes)]
    top_band = int(np.ceil(tallest * NUMBER_BASELINE_JITTER + brush)) + 2
    baseline = top_band + int(np.ceil(tallest * (1 + NUMBER_BASELINE_JITTER)))  # in a layout frame
    frame_h = baseline + top_band
    tops = [int(round(baseline - t.shape[0] + j * t.shape[0])) for t, j in zip(tiles, jitter)]
    xs: list[int] = [0]
    contacts: list[bool] = []
    for i in range(1, len(tiles)):
        prev_l, prev_r = _row_extents(tiles[i - 1], tops[i - 1], frame_h)
        cur_l, _ = _row_extents(tiles[i], tops[i], frame_h)
        prev_r = prev_r + xs[i - 1]
        touch_at = _contact_offset(prev_r, cur_l)
        if touching and touch_at is not None:
            x = int(np.floor(touch_at - gaps[i] * unit))
        else:
            x = int(round(xs[i - 1] + tiles[i - 1].shape[1] + gaps[i] * unit))
        xs.append(x)
        contacts.append(touch_at is not None and x <= touch_at)
    left_edge = min(xs)
    right_edge = max(x + t.shape[1] for x, t in zip(xs, tiles))
    total_w = right_edge - left_edge
    min_top = min(tops)
    max_bottom = max(t + tile.shape[0] for t, tile in zip(tops, tiles))
    total_h = max_bottom - min_top
    if total_w > width or total_h > height:
        raise ValueError(f"number does not fit the canvas ({total_w}x{total_h} > {width}x{height})")
    ox = int(rng.integers(0, width - total_w + 1)) - left_edge
    oy = int(rng.integers(0, height - total_h + 1)) - min_top
    alpha = np.zeros((height, width), np.uint8)
    owner = np.zeros((height, width), np.uint8)
    boxes = []
    for k, (x, t, tile) in enumerate(zip(xs, tops, tiles)):
        x0, y0 = x + ox, t + oy
        region = alpha[y0 : y0 + tile.shape[0], x0 : x0 + tile.shape[1]]
        owner[y0 : y0 + tile.shape[0], x0 : x0 + tile.shape[1]][tile > region] = k + 1
        np.maximum(region, tile, out=region)  # ink over ink, as on a canvas
        ink = tile > _INK_ALPHA
        rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
        boxes.append((x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1))
    out = np.empty((height, width, 4), np.uint8)
    if background == "white":
        out[..., :3] = (255 - alpha)[..., None]
        out[..., 3] = 255
    else:
        out[..., :3] = 0
        out[..., 3] = alpha
    label = "".join(d.label for d in digits)
    return NumberDrawing(out, label, tuple(boxes), tuple(contacts), owner)
