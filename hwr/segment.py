"""Split a drawing of several digits into one candidate per digit, left to right.

Pure functions on an ink map (H, W) float32 in [0, 1] (1 = ink), as `hwr.preprocess.to_ink` makes.
No model here: the recognizer's scores come in as an array (see `Lattice` and `choose`).

How a drawing is split (each step is a function below):

1. **Connected components** of the ink mask (8-connected; `label_components`, run-length
   union-find in numpy, a few ms for an 800x300 canvas).
2. **Specks**: components much smaller than the largest one are attached to the nearest component
   when close to it (a dot-like fragment, a broken stroke) and dropped otherwise (`clean_specks`).
3. **Atoms**: components that overlap strongly along x belong to one digit (a "5" whose hat was
   drawn apart, a "4" in two strokes) and are merged (`merge_overlapping`).
4. **Cut points**: an atom much wider than a digit of its height may hold several touching digits;
   the minima of its vertical ink profile are candidate cuts (`candidate_cuts`). Each cut runs
   along a minimum-ink path from top to bottom (`cut_path`), so slanted, slightly overlapping
   neighbours separate cleanly.
5. **Candidates** (`build_lattice`): the slices between cuts, in x order, and every run of up to
   consecutive slices no wider than `MAX_DIGIT_WIDTH` digit heights inside one cluster of x-overlapping atoms (so a
   merge the overlap test missed, or a cut that was not needed, can still be undone).
6. **Choice** (`choose`): dynamic programming picks the sequence of candidates that covers every
   slice once and maximises a sum of per-candidate scores. With a digit verifier (`hwr.verifier`,
   the default in `Recognizer.read`), a candidate scores its log(recognizer confidence) plus
   log P(one whole digit) from the verifier, which looks at the candidate and the ink around it
   (`candidate_views`), plus a bonus per digit. Without one, hand-made rules stand in: log
   confidence minus geometric penalties (cutting through ink, a digit much wider than the digit
   height, merging marks that sit side by side), and an atom is only cut when there is a reason
   (`atom_keeps_whole`): it is very wide for its height, much wider than the drawing's other marks,
   or the recognizer is unsure of it read whole.

Every candidate carries its own ink crop (other digits' pixels removed) that goes through the same
`hwr.preprocess.ink_to_model_input` as a single digit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from hwr.preprocess import INK_THRESHOLD

# --- Tuning constants: chosen by hand on 120 + 120 four-digit numbers drawn by `render_number` with
# seed 1 (gaps and touching), not on the seed-0 drawings that BENCHMARKS.md reports. ---
SPECK_SIZE = 0.15  # a component whose longer side is < this x the tallest component's height is a speck
SPECK_ATTACH_DISTANCE = 0.12  # ... attached to a component within this x that height, else dropped
MERGE_OVERLAP = 0.6  # merge two components when their x-overlap is >= this x the narrower's width
MERGE_MIN_OVERLAP = 0.12  # ... and >= this x the tallest component's height
WIDE_ASPECT = 0.85  # an atom wider than this x the digit height may hold touching digits: try cuts
MIN_SLICE_WIDTH = 0.08  # cuts stay this x the digit height away from the atom's ends
CUT_SPACING = 0.08  # ... and this x the digit height away from each other
CUT_MAX_DRIFT = 0.15  # a cut path strays at most this x the digit height from its column
MAX_CUTS_PER_HEIGHT = 9.0  # at most this many candidate cuts per digit height of atom width
MAX_DIGIT_WIDTH = 1.5  # a candidate of several slices is at most this x the digit height wide
CUT_COST = 0.3  # log-score cost of each stroke a cut crosses
MAX_WIDTH = 0.8  # a candidate wider than this x the digit height is penalised ...
WIDE_COST = 6.0  # ... by this much per digit height of excess width
KEEP_ASPECT = 1.6  # an atom at most this wide for its height ...
KEEP_CONFIDENCE = 0.8  # ... and read whole with at least this confidence is never cut
MIN_ATOMS_FOR_WIDTH = 3  # with at least this many atoms, one no wider than ...
KEEP_WIDTH_RATIO = 1.6  # ... this x their median width is one digit: never cut
SEPARATE_OVERLAP = 0.3  # two atoms overlapping along x by less than this (of the narrower) ...
SEPARATE_COST = 1.5  # ... cost this much to read as one digit
# With a verifier (tuned like the constants above, on writers 13-15, see hwr/verifier.py):
VERIFIED_PENALTY_WEIGHT = 0.0  # the geometric penalties count this much
VERIFIED_CONFIDENCE_WEIGHT = 1.0  # log recognizer confidence counts this much
VERIFIED_DIGIT_BONUS = 1.5  # added per digit read: offsets the sum of logs' bias towards fewer digits (tuned on writers 13-15)
MAX_PIECES = 40  # more separate marks than this is not a number: refuse rather than be slow


class TooManyPiecesError(ValueError):
    """The drawing has too many separate marks to be read as one number."""


Box = tuple[int, int, int, int]  # (x0, y0, x1, y1), x1/y1 exclusive, in ink-map pixels


@dataclass
class Atom:
    """One or more components taken as (part of) the same digit(s)."""

    components: list[int]  # label ids (1-based) in the label image
    box: Box


@dataclass
class Slice:
    """The pixels of one atom between two cuts (a cut is a path: one column per row)."""

    atom: int  # index into Lattice.atoms
    left: np.ndarray | None  # (H,) first column of the slice in each row; None = the atom's left end
    right: np.ndarray | None  # (H,) column after the slice in each row; None = the atom's right end
    left_cost: float = 0.0  # penalty of the cut on the left (0 at an atom's end)


@dataclass
class Candidate:
    """A possible digit: consecutive slices, its box and its own ink (other pixels removed)."""

    first: int  # slice indices [first, last)
    last: int
    box: Box
    ink: np.ndarray = field(repr=False)  # (h, w) float32: the ink map cropped to `box`, masked
    penalty: float = 0.0  # geometric penalty (>= 0) added to -log confidence


@dataclass
class Lattice:
    """Everything `choose` needs: slices in x order, cluster boundaries and candidate digits."""

    atoms: list[Atom]
    slices: list[Slice]
    candidates: list[Candidate]
    # slice indices where a new cluster starts: no candidate spans one of these boundaries
    cluster_starts: list[int]
    height: float = 0.0  # the drawing's typical digit height in ink-map pixels (`digit_height`)


# ---------------------------------------------------------------------------------------------
# 1. Connected components
# ---------------------------------------------------------------------------------------------


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean (H, W) mask -> (labels (H, W) int32, 0 = none; count).

    Works on horizontal runs: runs in neighbouring rows that touch are joined by a vectorised
    union-find (hooking to the smaller root, then pointer jumping), so the Python-level work does
    not grow with the number of pixels.
    """
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    labels = np.zeros((h, w), np.int32)
    padded = np.zeros((h, w + 2), np.int8)
    padded[:, 1:-1] = mask
    d = np.diff(padded, axis=1)  # (H, W+1): +1 where a run starts, -1 after it ends
    rows, starts = np.nonzero(d == 1)
    _, ends = np.nonzero(d == -1)  # same row-major order as the starts: exclusive ends
    n = rows.size
    if n == 0:
        return labels, 0
    # Runs of row r touch runs of row r+1 with start <= end_a and end >= start_a (8-connected).
    stride = w + 2
    key_s = rows.astype(np.int64) * stride + starts
    key_e = rows.astype(np.int64) * stride + ends
    lo = np.searchsorted(key_e, (rows + 1).astype(np.int64) * stride + starts, side="left")
    hi = np.searchsorted(key_s, (rows + 1).astype(np.int64) * stride + ends, side="right")
    counts = np.maximum(hi - lo, 0)
    a = np.repeat(np.arange(n), counts)
    b = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    parent = np.arange(n)
    while a.size:
        pa, pb = parent[a], parent[b]
        if np.array_equal(pa, pb):
            break
        low = np.minimum(pa, pb)
        np.minimum.at(parent, pa, low)
        np.minimum.at(parent, pb, low)
        while True:  # pointer jumping: every run points at its root
            nxt = parent[parent]
            if np.array_equal(nxt, parent):
                break
            parent = nxt
    roots, comp = np.unique(parent, return_inverse=True)
    lengths = ends - starts
    flat_start = rows.astype(np.int64) * w + starts
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    labels.reshape(-1)[np.repeat(flat_start, lengths) + offsets] = np.repeat(comp + 1, lengths)
    return labels, int(roots.size)


def component_boxes(labels: np.ndarray, count: int) -> tuple[list[Box], np.ndarray]:
    """Bounding boxes (x0, y0, x1, y1) and pixel counts of labels 1..count."""
    ys, xs = np.nonzero(labels)
    ids = labels[ys, xs] - 1
    x0 = np.full(count, np.iinfo(np.int64).max)
    y0 = np.full(count, np.iinfo(np.int64).max)
    x1 = np.zeros(count, np.int64)
    y1 = np.zeros(count, np.int64)
    np.minimum.at(x0, ids, xs)
    np.minimum.at(y0, ids, ys)
    np.maximum.at(x1, ids, xs + 1)
    np.maximum.at(y1, ids, ys + 1)
    areas = np.bincount(ids, minlength=count)
    return [(int(x0[i]), int(y0[i]), int(x1[i]), int(y1[i])) for i in range(count)], areas


# ---------------------------------------------------------------------------------------------
# 2-3. Specks and atoms
# ---------------------------------------------------------------------------------------------


def _union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def box_distance(a: Box, b: Box) -> float:
    """Euclidean distance between two boxes (0 when they overlap)."""
    dx = max(a[0] - b[2], b[0] - a[2], 0)
    dy = max(a[1] - b[3], b[1] - a[3], 0)
    return math.hypot(dx, dy)


def x_overlap(a: Box, b: Box) -> float:
    """Overlap of two boxes along x, as a fraction of the narrower one's width."""
    inter = min(a[2], b[2]) - max(a[0], b[0])
    return max(inter, 0) / max(min(a[2] - a[0], b[2] - b[0]), 1)


def clean_specks(boxes: list[Box]) -> list[list[int]]:
    """Group component indices: specks join the nearest big component when close, else are dropped.

    Returns one list of component indices (0-based) per big component, specks appended.
    """
    tallest = max(b[3] - b[1] for b in boxes)
    big = [i for i, b in enumerate(boxes) if max(b[2] - b[0], b[3] - b[1]) >= SPECK_SIZE * tallest]
    groups = {i: [i] for i in big}
    for i, b in enumerate(boxes):
        if i in groups:
            continue
        nearest = min(big, key=lambda j: box_distance(b, boxes[j]))
        if box_distance(b, boxes[nearest]) <= SPECK_ATTACH_DISTANCE * tallest:
            groups[nearest].append(i)
    return list(groups.values())


def merge_overlapping(groups: list[list[int]], boxes: list[Box]) -> list[Atom]:
    """Merge groups whose boxes overlap along x by >= MERGE_OVERLAP of the narrower and by at least
    MERGE_MIN_OVERLAP of the tallest component's height (so a thin "1" that slightly overlaps its
    neighbour stays apart); sorted by x. Smaller overlaps are left to `choose`."""
    tallest = max(b[3] - b[1] for b in boxes)
    min_px = MERGE_MIN_OVERLAP * tallest
    atoms = []
    for g in groups:
        box = boxes[g[0]]
        for i in g[1:]:
            box = _union(box, boxes[i])
        atoms.append(Atom([i + 1 for i in g], box))
    merged = True
    while merged:
        merged = False
        atoms.sort(key=lambda a: (a.box[0] + a.box[2]) / 2)
        for i in range(len(atoms) - 1):
            for j in range(i + 1, len(atoms)):
                a, b = atoms[i].box, atoms[j].box
                if x_overlap(a, b) >= MERGE_OVERLAP and min(a[2], b[2]) - max(a[0], b[0]) >= min_px:
                    atoms[i] = Atom(atoms[i].components + atoms[j].components, _union(atoms[i].box, atoms[j].box))
                    del atoms[j]
                    merged = True
                    break
            if merged:
                break
    return atoms


# ---------------------------------------------------------------------------------------------
# 4. Cuts
# ---------------------------------------------------------------------------------------------


def _window_extrema(values: np.ndarray, radius: int, lowest: bool) -> np.ndarray:
    """Columns where `values` is the lowest (or highest) within +-radius and not flat there."""
    pad = np.pad(values, radius, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(pad, 2 * radius + 1)  # (w, 2r+1)
    lo, hi = windows.min(axis=1), windows.max(axis=1)
    hit = values == (lo if lowest else hi)
    return np.flatnonzero(hit & (hi > lo))


def candidate_cuts(own: np.ndarray, digit_height: float) -> list[int]:
    """Columns (relative to `own`) where a wide atom's mask (h, w) may be cut, left to right.

    Three kinds of places where touching digits meet: minima of the vertical ink profile (a thin
    joint), valleys of the upper contour and peaks of the lower contour (two round digits touching
    side by side: their outlines dip towards the joint). At least MIN_SLICE_WIDTH * digit_height
    from the atom's ends and CUT_SPACING * digit_height from each other; none when the atom is not
    wider than WIDE_ASPECT * digit_height. Too many cuts are cheap (the choice can skip them); a
    missing one cannot be recovered.
    """
    h, w = own.shape
    if w <= WIDE_ASPECT * digit_height:
        return []
    margin = max(2, int(MIN_SLICE_WIDTH * digit_height))
    spacing = max(2, int(CUT_SPACING * digit_height))
    radius = max(1, spacing // 2)
    any_ink = own.any(axis=0)
    profile = own.sum(axis=0).astype(np.float32)  # (w,) ink pixels per column
    top = np.where(any_ink, own.argmax(axis=0), h).astype(np.float32)  # first ink row per column
    bottom = np.where(any_ink, h - 1 - own[::-1].argmax(axis=0), -1).astype(np.float32)
    found = np.concatenate([
        _window_extrema(profile, radius, lowest=True),
        _window_extrema(top, radius, lowest=False),  # the upper outline dips down
        _window_extrema(bottom, radius, lowest=True),  # the lower outline rises
    ])
    found = np.unique(found[(found >= margin) & (found < w - margin)])
    chosen: list[int] = []
    for c in found.tolist():  # left to right, at least `spacing` apart
        if not chosen or c - chosen[-1] >= spacing:
            chosen.append(c)
    limit = max(1, int(MAX_CUTS_PER_HEIGHT * w / digit_height))
    if len(chosen) > limit:
        chosen = [chosen[i] for i in np.linspace(0, len(chosen) - 1, limit).round().astype(int)]
    return chosen


def cut_path(own: np.ndarray, column: int, max_drift: int) -> np.ndarray:
    """A top-to-bottom path (one column per row) near `column` that crosses as little ink as possible.

    Dynamic programming over rows: each step moves at most one column left or right; crossing an
    ink pixel costs 1, drifting from `column` costs a little, and the path stays within max_drift.
    Returns (h,) int columns; pixels left of the path belong to the left slice.
    """
    h, w = own.shape
    lo, hi = max(column - max_drift, 0), min(column + max_drift + 1, w)
    cols = np.arange(lo, hi)
    ink = own[:, lo:hi].astype(np.float32)  # (h, n)
    drift = 0.02 * np.abs(cols - column).astype(np.float32)
    cost = ink[0] + drift
    back = np.zeros((h, cols.size), np.int8)
    big = np.float32(1e9)
    for r in range(1, h):
        left = np.concatenate([[big], cost[:-1]])
        right = np.concatenate([cost[1:], [big]])
        stack = np.stack([left, cost, right])  # (3, n): from column-1, same, column+1
        step = np.argmin(stack, axis=0)
        cost = stack[step, np.arange(cols.size)] + ink[r] + drift
        back[r] = step.astype(np.int8) - 1
    path = np.empty(h, np.int64)
    j = int(np.argmin(cost))
    for r in range(h - 1, -1, -1):
        path[r] = j
        j += int(back[r, j])
    return cols[path]


def crossings(own: np.ndarray, path: np.ndarray) -> int:
    """How many separate strokes a path crosses: runs of ink pixels along it."""
    on = own[np.arange(own.shape[0]), path].astype(np.int8)
    return int(np.count_nonzero(np.diff(np.concatenate([[0], on])) == 1))


# ---------------------------------------------------------------------------------------------
# 5. The lattice of candidates
# ---------------------------------------------------------------------------------------------


def find_atoms(ink: np.ndarray) -> tuple[np.ndarray, list[Atom]]:
    """Ink map (H, W) -> (label image, atoms sorted left to right). Empty list for a blank drawing."""
    labels, count = label_components(ink > INK_THRESHOLD)
    if count == 0:
        return labels, []
    boxes, _ = component_boxes(labels, count)
    groups = clean_specks(boxes)
    if len(groups) > MAX_PIECES:
        raise TooManyPiecesError(
            f"The drawing has {len(groups)} separate marks; a number can have at most {MAX_PIECES}."
        )
    return labels, merge_overlapping(groups, boxes)


def digit_height(atoms: list[Atom]) -> float:
    """The typical height of a digit in this drawing: the median height of the atoms."""
    return float(np.median([a.box[3] - a.box[1] for a in atoms]))


def _atom_mask(labels: np.ndarray, atom: Atom) -> np.ndarray:
    """(h, w) bool: the atom's own pixels within its box."""
    x0, y0, x1, y1 = atom.box
    return np.isin(labels[y0:y1, x0:x1], atom.components)


def _slices_of(atom_index: int, atom: Atom, own: np.ndarray, height: float) -> list[Slice]:
    """Cut one atom at its candidate cuts (left to right); one slice when it is not wide."""
    cuts = sorted(candidate_cuts(own, height))
    if not cuts:
        return [Slice(atom_index, None, None)]
    max_drift = max(2, int(CUT_MAX_DRIFT * height))
    paths = [cut_path(own, c, max_drift) for c in cuts]
    out: list[Slice] = []
    left: np.ndarray | None = None
    left_cost = 0.0
    for path in paths:
        out.append(Slice(atom_index, left, path, left_cost))
        left, left_cost = path, CUT_COST * crossings(own, path)
    out.append(Slice(atom_index, left, None, left_cost))
    return out


def _slice_mask(s: Slice, own: np.ndarray) -> np.ndarray:
    """(h, w) bool within the atom's box: the atom's pixels between the slice's two cuts."""
    h, w = own.shape
    cols = np.arange(w)[None, :]
    keep = np.ones((h, w), bool)
    if s.left is not None:
        keep &= cols >= s.left[:, None]
    if s.right is not None:
        keep &= cols < s.right[:, None]
    return own & keep


def _grow_into_background(own: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Add the 1-pixel rim of faint (below-threshold) pixels around `own`: the anti-aliased edge."""
    p = np.pad(own, 1)
    grown = p[1:-1, 1:-1].copy()
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            grown |= p[dy : dy + own.shape[0], dx : dx + own.shape[1]]
    return own | (grown & background)


def build_lattice(ink: np.ndarray) -> Lattice:
    """All candidate digits of a drawing (see the module docstring). Empty for a blank drawing."""
    labels, atoms = find_atoms(ink)
    if not atoms:
        return Lattice([], [], [], [])
    height = digit_height(atoms)
    masks = [_atom_mask(labels, a) for a in atoms]
    slices: list[Slice] = []
    slice_masks: list[np.ndarray] = []  # full-size (H, W) bool per slice
    cluster_starts: list[int] = []
    cluster_right = -1
    for i, (atom, own) in enumerate(zip(atoms, masks)):
        if atom.box[0] >= cluster_right:  # no x-overlap with anything before it: a new cluster
            cluster_starts.append(len(slices))
        cluster_right = max(cluster_right, atom.box[2])
        x0, y0, x1, y1 = atom.box
        for s in _slices_of(i, atom, own, height):
            full = np.zeros(labels.shape, bool)
            full[y0:y1, x0:x1] = _slice_mask(s, own)
            slices.append(s)
            slice_masks.append(full)
    background = labels == 0
    ends = cluster_starts[1:] + [len(slices)]
    # A single atom without specks dropped and without cuts: the candidate is the whole ink map,
    # so a single digit gets exactly the model input `preprocess` gives it.
    whole = len(slices) == 1 and len(atoms[0].components) == int(labels.max())
    candidates: list[Candidate] = []
    for start, end in zip(cluster_starts, ends):
        for first in range(start, end):
            own = np.zeros(labels.shape, bool)
            left = right = None
            for last in range(first + 1, end + 1):
                own |= slice_masks[last - 1]
                sl_cols = np.flatnonzero(slice_masks[last - 1].any(axis=0))
                if sl_cols.size:
                    left = sl_cols[0] if left is None else min(left, sl_cols[0])
                    right = sl_cols[-1] + 1 if right is None else max(right, sl_cols[-1] + 1)
                whole_atom = (
                    slices[first].left is None and slices[last - 1].right is None
                    and slices[first].atom == slices[last - 1].atom
                )  # always a candidate, however wide: an atom may be kept whole
                if last > first + 1 and right is not None and right - left > MAX_DIGIT_WIDTH * height and not whole_atom:
                    if slices[first].left is not None or slices[last - 1].atom != slices[first].atom:
                        break
                    continue  # wider than a digit, but this atom's whole may still come
                if right is not None:
                    candidate = _candidate(first, last, own, background, ink, height, mask=not whole)
                    candidate.penalty += _merge_penalty(atoms, slices[first:last])
                    candidates.append(candidate)
    return Lattice(atoms, slices, candidates, cluster_starts, height)


def _merge_penalty(atoms: list[Atom], run: list[Slice]) -> float:
    """SEPARATE_COST for each pair of consecutive atoms in a candidate that barely overlap along x
    (less than SEPARATE_OVERLAP of the narrower): separate marks side by side are separate digits."""
    ids = list(dict.fromkeys(s.atom for s in run))
    return SEPARATE_COST * sum(
        x_overlap(atoms[a].box, atoms[b].box) < SEPARATE_OVERLAP for a, b in zip(ids, ids[1:])
    )


def _candidate(
    first: int, last: int, own: np.ndarray, background: np.ndarray, ink: np.ndarray, height: float, mask: bool = True
) -> Candidate:
    """The candidate made of `own` (H, W) bool pixels: its box, masked ink crop and penalty."""
    rows, cols = np.flatnonzero(own.any(axis=1)), np.flatnonzero(own.any(axis=0))
    box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    x0, y0, x1, y1 = box
    # One pixel of margin keeps the anti-aliased rim; the ink of other digits is zeroed.
    X0, Y0 = max(x0 - 1, 0), max(y0 - 1, 0)
    X1, Y1 = min(x1 + 1, ink.shape[1]), min(y1 + 1, ink.shape[0])
    crop = ink[Y0:Y1, X0:X1].astype(np.float32)
    if mask:
        keep = _grow_into_background(own[Y0:Y1, X0:X1], background[Y0:Y1, X0:X1])
        crop = np.where(keep, crop, np.float32(0.0))
    penalty = WIDE_COST * max(0.0, (x1 - x0) / height - MAX_WIDTH)
    return Candidate(first, last, box, crop, penalty)


# ---------------------------------------------------------------------------------------------
# 6. The choice
# ---------------------------------------------------------------------------------------------


def atom_keeps_whole(lattice: Lattice, confidences: np.ndarray) -> list[bool]:
    """Per atom: True when it should be read as one digit without trying its cuts.

    The recognizer is confident on fragments too (half a "0" looks like a "1"), so an atom is only
    split when there is a reason: it is wider than KEEP_ASPECT times its height, or the recognizer
    is unsure of it read whole (confidence below KEEP_CONFIDENCE). And when the drawing has
    MIN_ATOMS_FOR_WIDTH separate atoms or more, one no wider than KEEP_WIDTH_RATIO times their
    median width is a single digit (two touching digits are about twice as wide as one).
    """
    whole_conf: dict[int, float] = {}
    first_slice: dict[int, int] = {}
    last_slice: dict[int, int] = {}
    for i, s in enumerate(lattice.slices):
        first_slice.setdefault(s.atom, i)
        last_slice[s.atom] = i + 1
    for k, c in enumerate(lattice.candidates):
        a = lattice.slices[c.first].atom
        if c.first == first_slice[a] and c.last == last_slice[a]:
            whole_conf[a] = float(confidences[k])
    widths = [a.box[2] - a.box[0] for a in lattice.atoms]
    # With several separate marks, their median width is a digit's width in this drawing.
    typical = float(np.median(widths)) if len(widths) >= MIN_ATOMS_FOR_WIDTH else None
    keep = []
    for a, atom in enumerate(lattice.atoms):
        x0, y0, x1, y1 = atom.box
        aspect = (x1 - x0) / max(y1 - y0, 1)
        narrow = typical is not None and x1 - x0 <= KEEP_WIDTH_RATIO * typical
        keep.append(narrow or (aspect <= KEEP_ASPECT and whole_conf.get(a, 0.0) >= KEEP_CONFIDENCE))
    return keep


def choose(
    lattice: Lattice, confidences: np.ndarray, whole: np.ndarray | None = None, bonus: float = VERIFIED_DIGIT_BONUS
) -> list[int]:
    """Indices of the candidates that best explain the drawing, left to right.

    confidences: (len(candidates),) the recognizer's top probability for each candidate (0 for a
    candidate it could not read). whole: (len(candidates),) a verifier's P(the candidate is one whole
    digit) (`hwr.verifier`), or None. Maximises, over sequences of candidates that cover every slice
    exactly once, the sum of each candidate's score:

    * without a verifier: log confidence - penalty - cost of the cut on its left; atoms that
      `atom_keeps_whole` are never cut (the hand-made rules stand in for a verifier);
    * with one: log confidence + log whole + bonus - VERIFIED_PENALTY_WEIGHT x (penalty + cut cost).
    """
    n = len(lattice.slices)
    if n == 0:
        return []
    if whole is not None:
        keep = [False] * len(lattice.atoms)  # the verifier decides where digits end
        log_whole = np.log(np.clip(np.asarray(whole, np.float64), 1e-9, 1.0))
        weight, conf_weight = VERIFIED_PENALTY_WEIGHT, VERIFIED_CONFIDENCE_WEIGHT
    else:
        keep = atom_keeps_whole(lattice, confidences)
        log_whole = np.zeros(len(lattice.candidates))
        weight, conf_weight, bonus = 1.0, 1.0, 0.0
    ending: dict[int, list[int]] = {}
    for k, c in enumerate(lattice.candidates):
        ending.setdefault(c.last, []).append(k)
    best = np.full(n + 1, -np.inf)
    best[0] = 0.0
    back = np.full(n + 1, -1)
    for j in range(1, n + 1):
        for k in ending.get(j, []):
            c = lattice.candidates[k]
            if not np.isfinite(best[c.first]):
                continue
            left, right = lattice.slices[c.first], lattice.slices[c.last - 1]
            if (left.left is not None and keep[left.atom]) or (right.right is not None and keep[right.atom]):
                continue  # this candidate would cut an atom that stays whole
            score = (
                best[c.first] + conf_weight * math.log(max(float(confidences[k]), 1e-9)) + log_whole[k]
                + bonus - weight * (c.penalty + left.left_cost)
            )
            if score > best[j]:
                best[j], back[j] = score, k
        if not np.isfinite(best[j]):
            # An unreadable slice (e.g. only faint pixels): skip it rather than fail the whole drawing.
            best[j], back[j] = best[j - 1], -1 - (j - 1)  # encodes "skip slice j-1"
    chosen: list[int] = []
    j = n
    while j > 0:
        k = int(back[j])
        if k >= 0:
            chosen.append(k)
            j = lattice.candidates[k].first
        else:
            j = -1 - k
    return chosen[::-1]


def whole_marks(lattice: Lattice) -> np.ndarray:
    """(len(candidates),) bool: True where a candidate is exactly one atom, uncut (a separate mark
    read whole); False for a piece cut out of touching ink, or several marks taken together."""
    out = np.zeros(len(lattice.candidates), bool)
    for k, c in enumerate(lattice.candidates):
        first, last = lattice.slices[c.first], lattice.slices[c.last - 1]
        out[k] = first.left is None and last.right is None and first.atom == last.atom
    return out


# ---------------------------------------------------------------------------------------------
# 7. Views for the digit verifier (hwr/verifier.py)
# ---------------------------------------------------------------------------------------------

VIEW_SIZE = 28  # each view is VIEW_SIZE x VIEW_SIZE, like a model input
VIEW_SPAN = 1.6  # ... of a square window this many digit heights wide, centred on the candidate


def _window(image: np.ndarray, origin: tuple[int, int], x0: float, y0: float, side: float) -> np.ndarray:
    """The square window [x0, x0+side) x [y0, y0+side) (ink-map coordinates) of `image`, whose top-left
    pixel sits at `origin` (x, y); zeros outside it; area-resized to (VIEW_SIZE, VIEW_SIZE)."""
    n = max(int(round(side)), 1)
    X0, Y0 = int(round(x0)) - origin[0], int(round(y0)) - origin[1]  # window origin in image pixels
    h, w = image.shape
    out = np.zeros((n, n), np.float32)
    sx0, sy0, sx1, sy1 = max(X0, 0), max(Y0, 0), min(X0 + n, w), min(Y0 + n, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - Y0 : sy1 - Y0, sx0 - X0 : sx1 - X0] = image[sy0:sy1, sx0:sx1]
    small = Image.fromarray(out, mode="F").resize((VIEW_SIZE, VIEW_SIZE), Image.Resampling.BOX)
    return np.asarray(small, np.float32)


def candidate_views(ink: np.ndarray, lattice: Lattice) -> np.ndarray:
    """(N, 2, VIEW_SIZE, VIEW_SIZE) float32 in [0, 1]: per candidate, its own ink (plane 0) and all the
    drawing's ink (plane 1) in a window VIEW_SPAN digit heights wide centred on the candidate's box.

    Unlike a model input (always scaled to fill its field), the window's scale is the drawing's
    digit height, so a verifier sees how big a candidate is next to the other digits, and whether
    ink goes on past its edges (a digit cut in two, or a neighbour half taken in)."""
    side = VIEW_SPAN * max(lattice.height, 1.0)
    views = np.zeros((len(lattice.candidates), 2, VIEW_SIZE, VIEW_SIZE), np.float32)
    for i, c in enumerate(lattice.candidates):
        x0, y0, x1, y1 = c.box
        wx, wy = (x0 + x1 - side) / 2, (y0 + y1 - side) / 2
        own_origin = (max(x0 - 1, 0), max(y0 - 1, 0))  # `Candidate.ink` keeps a 1-pixel margin
        views[i, 0] = _window(c.ink, own_origin, wx, wy, side)
        views[i, 1] = _window(ink, (0, 0), wx, wy, side)
    return np.clip(views, 0.0, 1.0)
