"""The digit verifier (hwr.verifier) and its inputs (hwr.segment.candidate_views): views, training
targets, a tiny model's train/save/load round trip, safe loading, and how `read` uses it."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import hwr.recognizer as recognizer_module
from hwr import Recognizer
from hwr.checkpoint import CheckpointError
from hwr.pendigits import load_pendigits, pools_by_writer, render_number
from hwr.preprocess import to_ink
from hwr.segment import VIEW_SIZE, build_lattice, candidate_views, choose, whole_marks
from hwr.checkpoint import make_metadata, save_checkpoint
from hwr.model import build_model
from hwr.verifier import (
    CLASSES,
    DEFAULT_VERIFIER_CHECKPOINT,
    NOT_A_DIGIT,
    RECIPE,
    VERIFIER_CONFIG,
    TEST_WRITERS,
    TRAIN_WRITERS,
    TUNE_WRITERS,
    DigitVerifier,
    VerifierTraining,
    make_examples,
    read_cut_pieces,
    save_verifier,
    soft_targets,
    train_verifier,
    whole_targets,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
STROKE = 14


def two_touching_zeros() -> tuple[np.ndarray, np.ndarray]:
    """Two ellipses whose inks touch (one blob) and the owner map (1 = left, 2 = right)."""
    left, right = Image.new("L", (800, 300), 0), Image.new("L", (800, 300), 0)
    ImageDraw.Draw(left).ellipse((200, 80, 290, 220), outline=255, width=STROKE)
    ImageDraw.Draw(right).ellipse((284, 80, 374, 220), outline=255, width=STROKE)
    a, b = np.asarray(left), np.asarray(right)
    owner = np.where(b > a, 2, np.where(a > 0, 1, 0)).astype(np.uint8)
    grey = 255 - np.maximum(a, b)  # dark ink on white
    return to_ink(grey).ink, owner


def test_views_shape_range_and_own_ink_inside_all_ink() -> None:
    ink, _ = two_touching_zeros()
    lattice = build_lattice(ink)
    views = candidate_views(ink, lattice)
    assert views.shape == (len(lattice.candidates), 2, VIEW_SIZE, VIEW_SIZE)
    assert views.dtype == np.float32 and np.isfinite(views).all()
    assert views.min() >= 0 and views.max() <= 1
    assert (views[:, 0] <= views[:, 1] + 1e-5).all()  # a candidate's ink is part of all the ink
    assert (views[:, 0].sum(axis=(1, 2)) > 0).all()


def whole_index(lattice) -> int:
    """The candidate that is the whole first cluster (all its slices)."""
    ends = lattice.cluster_starts[1:] + [len(lattice.slices)]
    return next(i for i, c in enumerate(lattice.candidates) if c.first == 0 and c.last == ends[0])


def test_views_are_at_the_drawings_scale() -> None:
    """Drawn twice as large, the same digits give (nearly) the same views: the window follows the
    digit height, unlike a model input which always fills its field."""
    ink, _ = two_touching_zeros()
    big = np.asarray(Image.fromarray(ink).resize((1600, 600), Image.Resampling.BILINEAR))
    views = {}
    for name, image in (("small", ink), ("big", big)):
        lattice = build_lattice(image)
        views[name] = candidate_views(image, lattice)[whole_index(lattice)]  # (2, 28, 28)
    assert np.abs(views["small"] - views["big"]).mean() < 0.05


def test_targets_one_for_clean_cuts_zero_for_the_pair_and_pieces() -> None:
    ink, owner = two_touching_zeros()
    lattice = build_lattice(ink)
    targets = whole_targets(lattice, owner)
    assert targets.shape == (len(lattice.candidates),) and ((targets >= 0) & (targets <= 1)).all()
    assert targets[whole_index(lattice)] == 0.0  # two digits in one candidate
    assert targets.max() >= 0.8  # some cut separates one 0 (nearly) cleanly
    narrow = [i for i, c in enumerate(lattice.candidates) if c.box[2] - c.box[0] < 30]
    assert all(targets[i] == 0.0 for i in narrow)  # slivers are not digits


def test_target_is_zero_for_a_candidate_that_swallows_a_thin_neighbour() -> None:
    """A "1" touching a "0" has about a quarter of the pair's ink: by purity alone the pair would be
    three quarters one "0" (target ~0.5). Holding (nearly) all of another drawn digit makes it 0."""
    one, zero = Image.new("L", (800, 300), 0), Image.new("L", (800, 300), 0)
    ImageDraw.Draw(one).line((180, 80, 180, 220), fill=255, width=STROKE)
    ImageDraw.Draw(zero).ellipse((185, 80, 305, 220), outline=255, width=STROKE)
    a, b = np.asarray(one), np.asarray(zero)
    owner = np.where(b > a, 2, np.where(a > 0, 1, 0)).astype(np.uint8)
    ink = to_ink(255 - np.maximum(a, b)).ink
    lattice = build_lattice(ink)
    assert len(lattice.cluster_starts) == 1  # one blob of ink
    targets, owners = whole_targets(lattice, owner, return_owner=True)
    pair = whole_index(lattice)
    assert owners[pair] == 2  # most of its ink is the "0" ...
    assert targets[pair] == 0.0  # ... but it holds the whole "1" too
    assert targets[owners == 1].max() >= 0.75 and targets[owners == 2].max() >= 0.95  # (nearly) clean cuts exist


def test_choose_with_a_verifier_splits_where_it_says() -> None:
    ink, owner = two_touching_zeros()
    lattice = build_lattice(ink)
    targets = whole_targets(lattice, owner)
    confident = np.full(len(lattice.candidates), 0.99)  # a recognizer sure of everything
    chosen = choose(lattice, confident, np.maximum(targets, 1e-3))
    assert len(chosen) == 2
    assert all(targets[k] >= 0.8 for k in chosen)  # the two best cuts (the ellipses overlap a little)


def test_tiny_verifier_trains_saves_and_loads(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    views = rng.integers(0, 256, (64, 2, VIEW_SIZE, VIEW_SIZE), dtype=np.uint8)
    targets = rng.random(64).astype(np.float32)
    labels = rng.integers(-1, 10, 64)
    model = train_verifier(views, targets, labels, VerifierTraining(epochs=1, batch_size=16), torch.device("cpu"))
    path = save_verifier(model, tmp_path / "v.safetensors", "tiny", {"kind": "test"}, {})
    loaded = DigitVerifier.load(path)
    ink, _ = two_touching_zeros()
    lattice = build_lattice(ink)
    p = loaded.score(ink, lattice)
    assert p.shape == (len(lattice.candidates),)
    assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
    with torch.inference_mode():
        x = torch.from_numpy(views[:4].astype(np.float32) / 255)
        assert torch.allclose(model(x), loaded.model(x))


def test_a_digit_model_is_not_a_verifier(checkpoint_path: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a digit-verifier"):
        DigitVerifier.load(checkpoint_path)
    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError):
        DigitVerifier.load(bad)


def test_the_bundled_verifier_is_used_by_default(checkpoint_path: Path) -> None:
    assert DEFAULT_VERIFIER_CHECKPOINT.is_file()
    rec = Recognizer.load(checkpoint_path)
    assert isinstance(rec.verifier, DigitVerifier)
    meta = rec.verifier.metadata
    # Two networks averaged (hwr.model.Ensemble): one trained without, one with the "intact" targets.
    assert meta["model"]["members"] == 2 and meta["training"]["kind"] == "ensemble"
    members = meta["training"]["members"]
    assert all(m["writers"] == f"pendigits {TRAIN_WRITERS.start}-{TRAIN_WRITERS.stop - 1}" for m in members)
    assert [m.get("intact", False) for m in members] == [False, True]


def test_a_broken_verifier_file_falls_back_to_the_rules(
    checkpoint_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "digit-verifier.safetensors"
    bad.write_bytes(b"not a checkpoint")
    monkeypatch.setattr(recognizer_module, "DEFAULT_VERIFIER_CHECKPOINT", bad)
    rec = Recognizer.load(checkpoint_path)
    ink, _ = two_touching_zeros()
    with caplog.at_level(logging.WARNING, logger="hwr.recognizer"):
        reading = rec.read(np.rint(255 * (1 - ink)).astype(np.uint8))
    assert rec.verifier is None
    assert "without a digit verifier" in caplog.text
    assert len(reading.digits) >= 1


def test_writer_sets_are_disjoint() -> None:
    train, tune, test = set(TRAIN_WRITERS), set(TUNE_WRITERS), set(TEST_WRITERS)
    assert not (train & tune or train & test or tune & test)
    assert train | tune | test == set(range(1, 31))


def test_render_number_owner_map(data_dir: Path) -> None:
    digits = load_pendigits(data_dir)[:40]
    drawing = render_number(digits[:4], np.random.default_rng(0), touching=True)
    owner = drawing.owner
    assert owner.shape == drawing.image.shape[:2]
    assert set(np.unique(owner)) <= {0, 1, 2, 3, 4}
    ink = to_ink(drawing.image).ink > 0.25
    assert (owner[ink] > 0).mean() > 0.99  # every ink pixel belongs to a digit
    for k, (x0, y0, x1, y1) in enumerate(drawing.boxes, start=1):
        ys, xs = np.nonzero((owner == k) & ink)
        assert xs.min() >= x0 - 1 and xs.max() < x1 + 1 and ys.min() >= y0 - 1 and ys.max() < y1 + 1


def test_make_examples_from_pendigits(data_dir: Path) -> None:
    pools = pools_by_writer(load_pendigits(data_dir), TRAIN_WRITERS)
    assert set(pools) == set(TRAIN_WRITERS)
    views, targets, labels = make_examples(pools, 4, seed=0)
    assert views.dtype == np.uint8 and views.shape[1:] == (2, VIEW_SIZE, VIEW_SIZE)
    assert len(views) == len(targets) == len(labels) > 0
    assert (targets == 1).any() and (targets == 0).any()
    assert labels.min() >= -1 and labels.max() < NOT_A_DIGIT
    assert (labels[targets > 0] >= 0).all()  # a candidate that is (mostly) a digit names that digit


def test_soft_targets_put_the_whole_target_on_the_digit() -> None:
    y = soft_targets(np.array([1.0, 0.25, 0.0, 0.7], np.float32), np.array([3, 7, -1, -1]))
    assert y.shape == (4, len(CLASSES))
    assert torch.allclose(y.sum(dim=1), torch.ones(4))
    assert y[0, 3] == 1.0 and y[0, NOT_A_DIGIT] == 0.0
    assert y[1, 7] == 0.25 and y[1, NOT_A_DIGIT] == 0.75
    assert y[2, NOT_A_DIGIT] == 1.0 and y[3, NOT_A_DIGIT] == 1.0  # no drawn digit: not a digit


def test_the_bundled_verifier_names_digits(data_dir: Path) -> None:
    """On clean single digits of writers it never saw, the verifier says "one digit" and names it."""
    verifier = DigitVerifier.load()
    digits = [d for d in load_pendigits(data_dir) if d.writer in TEST_WRITERS][::50]
    rng = np.random.default_rng(0)
    named = whole = 0
    for d in digits:
        ink = to_ink(render_number([d], rng).image).ink
        lattice = build_lattice(ink)
        k = whole_index(lattice)
        p = verifier.probabilities(ink, lattice)[k]
        whole += 1 - p[NOT_A_DIGIT] >= 0.5
        named += CLASSES[int(p[:NOT_A_DIGIT].argmax())] == d.label
    assert whole / len(digits) > 0.95 and named / len(digits) > 0.9


def test_an_old_two_class_verifier_gets_a_clear_error(tmp_path: Path) -> None:
    config = dataclasses.replace(VERIFIER_CONFIG, num_classes=2)
    meta = make_metadata(name="old", config=config, classes=["digit", "not a digit"],
                         normalization={"mean": 0.0, "std": 1.0}, preprocess={"recipe": RECIPE}, training={}, metrics={})
    path = save_checkpoint(build_model(config), meta, tmp_path / "old.safetensors")
    with pytest.raises(CheckpointError, match="retrain it"):
        DigitVerifier.load(path)


def test_train_py_verifier_dry_run_and_combine(data_dir: Path, tmp_path: Path) -> None:
    def train_py(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "train.py", *args, "--data-dir", str(data_dir)],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)

    out = tmp_path / "v.safetensors"
    proc = train_py("--verifier", "--dry-run", "--no-verifier-intact", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    training = DigitVerifier.load(out).metadata["training"]
    assert training["kind"] == "digit-verifier" and training["intact"] is False
    both = tmp_path / "pair.safetensors"
    proc = train_py("--combine", str(out), str(out), "--dry-run", "--out", str(both))
    assert proc.returncode == 0, proc.stderr
    pair = DigitVerifier.load(both)  # an ensemble of verifiers is a verifier
    assert pair.metadata["model"]["members"] == 2 and "pendigits-13-15-clear-candidates" in pair.metadata["metrics"]
    ink, _ = two_touching_zeros()
    lattice = build_lattice(ink)
    single = DigitVerifier.load(out)
    assert np.allclose(pair.probabilities(ink, lattice), single.probabilities(ink, lattice), atol=1e-5)  # same member twice


def test_intact_off_gives_the_first_members_targets() -> None:
    """Without the intact term a pair that is mostly one digit keeps a positive target (how the first
    member of the bundled verifier was trained); with it, the target is 0."""
    one, zero = Image.new("L", (800, 300), 0), Image.new("L", (800, 300), 0)
    ImageDraw.Draw(one).line((180, 80, 180, 220), fill=255, width=STROKE)
    ImageDraw.Draw(zero).ellipse((185, 80, 305, 220), outline=255, width=STROKE)
    a, b = np.asarray(one), np.asarray(zero)
    owner = np.where(b > a, 2, np.where(a > 0, 1, 0)).astype(np.uint8)
    lattice = build_lattice(to_ink(255 - np.maximum(a, b)).ink)
    pair = whole_index(lattice)
    assert whole_targets(lattice, owner, intact=False)[pair] > 0.0
    assert whole_targets(lattice, owner)[pair] == 0.0


def test_whole_marks_are_separate_marks_read_whole() -> None:
    ink, _ = two_touching_zeros()  # one blob, cut into slices
    canvas = np.zeros((300, 800), np.float32)
    canvas[:, :] = ink
    canvas[100:200, 600:612] = 1.0  # a separate "1"
    lattice = build_lattice(canvas)
    marks = whole_marks(lattice)
    assert marks.shape == (len(lattice.candidates),)
    for k, c in enumerate(lattice.candidates):
        first, last = lattice.slices[c.first], lattice.slices[c.last - 1]
        uncut = first.left is None and last.right is None and first.atom == last.atom
        assert marks[k] == uncut
    assert marks.sum() == 2  # the "1", and the blob taken whole
    assert (~marks).sum() >= 2  # pieces of the blob


def test_read_cut_pieces_keeps_whole_marks_and_mixes_in_the_verifier_for_pieces() -> None:
    digit = np.array([[0.6, 0.4] + [0.0] * 8, [0.6, 0.4] + [0.0] * 8], np.float32)  # (2, 10): "0" or "1"?
    verifier = np.zeros((2, len(CLASSES)), np.float32)
    verifier[:, 1], verifier[:, NOT_A_DIGIT] = 0.45, 0.5  # the verifier says "1" (and half "not a digit")
    verifier[:, 0] = 0.05
    out = read_cut_pieces(digit, verifier, np.array([True, False]))
    assert np.array_equal(out[0], digit[0])  # a whole mark: the digit model's reading, untouched
    assert out[1].argmax() == 1 and np.isclose(out[1].sum(), 1.0)  # a cut piece: the verifier tips it
    assert np.allclose(read_cut_pieces(digit, verifier, np.array([False, False]), weight=0.0), digit)
    assert np.isfinite(read_cut_pieces(np.eye(10, dtype=np.float32)[:2], np.zeros((2, 11), np.float32), np.zeros(2, bool))).all()


def test_read_mixes_the_verifier_only_into_cut_pieces(checkpoint_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A single digit's reading is exactly `predict`'s; with the naming weight at 0, `read` of touching
    digits is the digit model's own reading of the pieces."""
    rec = Recognizer.load(checkpoint_path)
    image = np.full((300, 300), 255, np.uint8)
    image[60:240, 140:156] = 0
    single, whole = rec.read(image).digits[0], rec.predict(image)
    assert single.label == whole.label and single.probabilities == pytest.approx(whole.probabilities, abs=1e-6)
    ink, _ = two_touching_zeros()
    drawing = np.rint(255 * (1 - ink)).astype(np.uint8)
    mixed = rec.read(drawing)
    monkeypatch.setattr(recognizer_module, "NAMING_WEIGHT", 0.0)
    plain = rec.read(drawing)
    assert mixed.text and plain.text  # both read something; the probabilities of cut pieces differ
    if len(mixed.digits) == len(plain.digits) == 2:
        assert any(a.probabilities != pytest.approx(b.probabilities) for a, b in zip(mixed.digits, plain.digits))


def test_pendigits_corrections_store(data_dir: Path, tmp_path: Path) -> None:
    """bench/pendigits_corrections.py: single renders plus digits cut from numbers, labelled right."""
    from hwr.corrections import CorrectionStore

    sys.path.insert(0, str(REPO_ROOT / "bench"))
    import pendigits_corrections

    digits = [d for d in load_pendigits(data_dir) if d.writer == 1]
    store = CorrectionStore(tmp_path / "c", classes=[str(d) for d in range(10)])
    saved = pendigits_corrections.add_number_digits(store, digits, 4, np.random.default_rng(0))
    assert saved > 0
    counts = store.counts()
    assert sum(counts.values()) == saved and set(counts) <= set("0123456789")


def test_lattice_ceiling_finds_the_right_split() -> None:
    """bench/lattice_ceiling.py: a path boxing each drawn digit exists for two touching zeros."""
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    import lattice_ceiling

    ink, owner = two_touching_zeros()
    lattice = build_lattice(ink)
    boxes = []
    for k in (1, 2):
        ys, xs = np.nonzero(owner == k)
        boxes.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    assert lattice_ceiling.path_exists(lattice, boxes, lambda k, i: True)
    assert not lattice_ceiling.path_exists(lattice, boxes, lambda k, i: False)
    both = (boxes[0][0], boxes[0][1], boxes[1][2], boxes[1][3])
    assert lattice_ceiling.path_exists(lattice, [both], lambda k, i: True)  # the pair read as one
    assert not lattice_ceiling.path_exists(lattice, boxes + [both], lambda k, i: True)  # 3 of 2


def test_tune_reading_bench_replays_the_choice(data_dir: Path) -> None:
    """bench/tune_reading.py: the tuning writers only, and one line per (bonus, naming) pair."""
    proc = subprocess.run(
        [sys.executable, "bench/tune_reading.py", "--data-dir", str(data_dir), "--seeds", "3", "--four", "2",
         "--per-length", "0", "--bonus", "1.5", "--naming", "0,0.5"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.strip().startswith("bonus")]
    assert len(rows) == 2 and all("touching" in r and "% of 2" in r for r in rows)
    assert "writers 13-15" in proc.stdout


def test_multidigit_counts_misread_numbers_by_writer() -> None:
    """bench/multidigit.py: the writers with most misread numbers, per set, most first."""
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    import multidigit

    recs = [{"writer": w, "exact": ok} for w, ok in [(28, False), (28, False), (28, True), (21, False), (16, True)]]
    worst = multidigit.wrong_by_writer({"gaps": recs, "touching": []})
    assert worst["gaps"] == [{"writer": 28, "numbers": 3, "wrong": 2}, {"writer": 21, "numbers": 1, "wrong": 1}]
    assert worst["touching"] == []


def test_pendigits_accuracy_names_the_writers_with_most_errors(data_dir: Path) -> None:
    """bench/pendigits_accuracy.py: a recognizer that reads every 1 as 7 is wrong on each writer's 1s."""
    from types import SimpleNamespace

    sys.path.insert(0, str(REPO_ROOT / "bench"))
    import pendigits_accuracy

    digits = [d for d in load_pendigits(data_dir) if d.writer in (1, 2)][:60]
    ones = Counter(d.writer for d in digits if d.label == "1")
    assert ones  # the sample holds 1s to misread

    class ReadsOnesAsSevens:
        """Answers in the order evaluate() renders the digits: the true label, but 7 for a 1."""

        def __init__(self) -> None:
            self.labels = iter("7" if d.label == "1" else d.label for d in digits)

        def predict_batch(self, images: list) -> list:
            return [SimpleNamespace(label=next(self.labels)) for _ in images]

    result = pendigits_accuracy.evaluate(ReadsOnesAsSevens(), digits, "white", seed=0, batch_size=16)
    assert {w["writer"]: w["wrong"] for w in result["writers_most_wrong"]} == dict(ones)
    assert all(w["n"] == sum(d.writer == w["writer"] for d in digits) for w in result["writers_most_wrong"])


def test_personal_finetune_splits_each_class_and_keeps_the_rest_apart(data_dir: Path) -> None:
    """bench/personal_finetune.py: K corrections per class from one writer, never measured on."""
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    import personal_finetune

    own = [d for d in load_pendigits(data_dir) if d.writer == 28]
    corrected, rest = personal_finetune.split_own_digits(own, 3, seed=0)
    assert sorted(Counter(d.label for d in corrected).values()) == [3] * 10
    assert len(corrected) + len(rest) == len(own)
    assert not {id(d) for d in corrected} & {id(d) for d in rest}
