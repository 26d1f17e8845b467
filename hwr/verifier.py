"""Is this candidate one whole digit, and which? A small CNN that tells `hwr.segment.choose` where digits end.

The digit recognizer alone cannot split touching digits: it is confident on pieces (half a "0"
reads as a "1") and on pairs squeezed into one field. The verifier looks at each candidate of
`hwr.segment.build_lattice` in context (`hwr.segment.candidate_views`: its own ink and all the ink
around it, at the drawing's digit scale) and gives the probability of each digit and of "not a
digit" (a piece of one, or a digit plus a piece of its neighbour); P(one whole digit) is
1 - P(not a digit). Naming the digit is part of its training because it makes a better judge of
where digits end: trained on the same candidates, a two-class verifier (digit / not a digit) let
`read` get 83.0 % of 300 touching 4-digit numbers by writers 13-15 exactly, this one 85.7 %
(BENCHMARKS.md, "Whole numbers").

Training data comes from the segmenter itself: numbers drawn with `hwr.pendigits.render_number`
from the digits of pendigits writers TRAIN_WRITERS (touching and not), cut into candidates by
`build_lattice`, each labelled with the drawn digit that gave most of its ink and by how much of
it is that one digit (`whole_targets`). Writers TUNE_WRITERS tune `hwr.segment`'s constants;
writers TEST_WRITERS are what `bench/multidigit.py --writers 16-30` reports. Train with
`python train.py --verifier`. The bundled verifier is two such networks averaged (`hwr.model.Ensemble`,
`train.py --combine`): one trained with `--no-verifier-intact`, one with the default targets.

`read_cut_pieces` and `choose_digits` are how `Recognizer.read` uses it: the split it keeps, and
the verifier's naming mixed into the reading of pieces cut out of touching ink.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from hwr.checkpoint import load_checkpoint, make_metadata, save_checkpoint
from hwr.data import MNIST_CLASSES
from hwr.model import ModelConfig, build_model, inference_copy
from hwr.pendigits import PenDigit, pools_by_writer, render_number
from hwr.preprocess import INK_THRESHOLD, as_array, to_ink
from hwr.segment import VERIFIED_DIGIT_BONUS, Lattice, build_lattice, candidate_views, choose, whole_marks

log = logging.getLogger(__name__)

DEFAULT_VERIFIER_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "digit-verifier.safetensors"
CLASSES = [*MNIST_CLASSES, "not a digit"]  # outputs 0-9: exactly one digit, that one; output 10: anything else
NOT_A_DIGIT = len(CLASSES) - 1
RECIPE = "segment-views"  # the checkpoint's "preprocess": hwr.segment.candidate_views
# Pendigits writers (1..30) by use; disjoint so that the reported figures are on unseen people.
TRAIN_WRITERS = range(1, 13)
TUNE_WRITERS = range(13, 16)
TEST_WRITERS = range(16, 31)
TARGET_RAMP = (0.55, 0.9)  # see `whole_targets`
LENGTHS = (1, 2, 3, 4, 5, 6)  # digits per training number, drawn uniformly
# How much the verifier's naming counts when a piece cut out of touching ink is read (`read_cut_pieces`);
# chosen on 1,000 touching 4-digit numbers by writers 13-15 (BENCHMARKS.md, "Whole numbers").
NAMING_WEIGHT = 0.5
VERIFIER_CONFIG = ModelConfig(arch="cnn", num_classes=len(CLASSES), widths=(16, 32, 64), dropout=0.1, in_channels=2)


def whole_targets(
    lattice: Lattice, owner: np.ndarray, return_owner: bool = False, intact: bool = True
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """(N,) float32 in [0, 1] per candidate: how much it is one whole digit, the training target
    (with return_owner, also (N,) int64: the drawn digit, 1-based, that gave most of its ink; 0 = none).

    owner: (H, W) the drawn digit (1-based; 0 = none) of each ink-map pixel (`NumberDrawing.owner`).
    For the drawn digit that gave most of the candidate's ink: purity = its share of the candidate's
    ink, coverage = the share of its ink the candidate holds; and intact = 1 - the largest share of
    any other drawn digit's ink the candidate holds. m = min(purity, coverage, intact) is 1 for a
    perfect cut; the target rises linearly from 0 at m = TARGET_RAMP[0] to 1 at m = TARGET_RAMP[1].
    Purity alone would let a candidate swallow a neighbour of little ink: a "1" is a tenth or so of
    the ink of a "10", so "10" read as one "0" kept targets up to 0.6 and the verifier learnt to
    call such pairs one digit (most of the touching numbers the choice got wrong lost a digit that
    way, on writers 13-15); intact is 0 for it. With intact=False, m = min(purity, coverage) (how
    the first member of the bundled verifier was trained; see `VerifierTraining.intact`).
    A graded target (rather than yes/no) teaches the verifier to rank near-identical cuts: touching
    digits cannot always be cut cleanly (their best candidates have a median m of 0.91, measured
    on writers 13-15), and the choice needs the best of them to win."""
    ink_owner = np.where(lattice_ink_mask(lattice, owner.shape), owner, 0)
    totals = np.bincount(ink_owner.ravel(), minlength=256)
    lo, hi = TARGET_RAMP
    targets = np.zeros(len(lattice.candidates), np.float32)
    owners = np.zeros(len(lattice.candidates), np.int64)
    for i, c in enumerate(lattice.candidates):
        x0, y0 = max(c.box[0] - 1, 0), max(c.box[1] - 1, 0)
        h, w = c.ink.shape
        mine = ink_owner[y0 : y0 + h, x0 : x0 + w][c.ink > INK_THRESHOLD]
        counts = np.bincount(mine[mine > 0], minlength=256)
        if counts.sum() == 0:
            continue
        d = int(counts.argmax())
        shares = counts / np.maximum(totals, 1)  # (256,) share of each drawn digit's ink held here
        whole_others = 1.0 - np.delete(shares, [0, d]).max() if intact else 1.0
        m = min(counts[d] / counts.sum(), shares[d], whole_others)
        targets[i], owners[i] = np.clip((m - lo) / (hi - lo), 0.0, 1.0), d
    return (targets, owners) if return_owner else targets


def lattice_ink_mask(lattice: Lattice, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the pixels some slice of the lattice holds (the ink that was not dropped)."""
    mask = np.zeros(shape, bool)
    for c in lattice.candidates:
        x0, y0 = max(c.box[0] - 1, 0), max(c.box[1] - 1, 0)
        h, w = c.ink.shape
        mask[y0 : y0 + h, x0 : x0 + w] |= c.ink > INK_THRESHOLD
    return mask


def make_examples(
    pools: dict[int, list[PenDigit]], n_numbers: int, seed: int, progress: Callable[[int], None] | None = None,
    intact: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw n_numbers numbers (half with every neighbour touching) from `pools` (writer -> digits);
    return, for all their candidates, (views (N, 2, 28, 28) uint8, targets (N,) float32 how much
    each is one digit, labels (N,) int64 the class index of the drawn digit that gave most of its
    ink, -1 for none). intact: see `whole_targets`."""
    rng = np.random.default_rng(seed)
    writers = sorted(pools)
    views, targets, labels = [], [], []
    for k in range(n_numbers):
        pool = pools[writers[int(rng.integers(len(writers)))]]
        n = int(rng.choice(LENGTHS))
        chosen = [pool[int(i)] for i in rng.integers(0, len(pool), n)]
        drawing = render_number(chosen, rng, touching=bool(k % 2))
        ink = to_ink(as_array(drawing.image)).ink  # (H, W); 800x300 is never reduced
        lattice = build_lattice(ink)
        views.append(np.rint(255 * candidate_views(ink, lattice)).astype(np.uint8))
        t, owners = whole_targets(lattice, drawing.owner, return_owner=True, intact=intact)
        targets.append(t)
        labels.append(np.array([CLASSES.index(chosen[o - 1].label) if o > 0 else -1 for o in owners], np.int64))
        if progress and (k + 1) % 1000 == 0:
            progress(k + 1)
    return np.concatenate(views), np.concatenate(targets), np.concatenate(labels)


def soft_targets(targets: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N,) whole targets and (N,) labels (-1 = none) -> (N, len(CLASSES)) class probabilities:
    `target` on the candidate's digit, the rest on "not a digit"."""
    t, y = torch.as_tensor(targets, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.int64)
    has = y >= 0
    t = torch.where(has, t, torch.zeros_like(t))
    out = torch.zeros(len(t), len(CLASSES))
    out[has, y[has]] = t[has]
    out[:, NOT_A_DIGIT] = 1 - t
    return out


def read_cut_pieces(digit_probs: np.ndarray, verifier_probs: np.ndarray, whole_mark: np.ndarray,
                    weight: float = NAMING_WEIGHT) -> np.ndarray:
    """Digit probabilities of each candidate for `hwr.segment.choose` and the reading.

    digit_probs (N, 10): the digit model's; verifier_probs (N, 11): the verifier's (`CLASSES`);
    whole_mark (N,) bool (`hwr.segment.whole_marks`). A separate mark keeps the digit model's
    reading: it sees the whole digit, at full resolution. A piece cut out of touching ink is read as
    p_model x p_verifier^weight, renormalised (p_verifier over the ten digits): the digit model sees
    only the piece, with no idea whether a stroke it lacks went to the neighbour or a sliver it holds
    came from one, while the verifier sees the ink around it. Returns (N, 10), rows summing to 1."""
    digits = verifier_probs[:, :NOT_A_DIGIT]  # (N, 10)
    digits = digits / np.clip(digits.sum(axis=1, keepdims=True), 1e-12, None)
    log_p = np.log(np.clip(digit_probs, 1e-12, 1.0)) + weight * np.log(np.clip(digits, 1e-12, 1.0))
    mixed = np.exp(log_p - log_p.max(axis=1, keepdims=True))
    mixed /= mixed.sum(axis=1, keepdims=True)
    return np.where(np.asarray(whole_mark, bool)[:, None], digit_probs, mixed).astype(np.float32)


def choose_digits(
    lattice: Lattice, digit_probs: np.ndarray, readable: np.ndarray, verifier_probs: np.ndarray | None,
    naming_weight: float = NAMING_WEIGHT, bonus: float = VERIFIED_DIGIT_BONUS,
) -> tuple[list[int], np.ndarray]:
    """The candidates `Recognizer.read` keeps (`hwr.segment.choose`), left to right, and every
    candidate's class probabilities as read.

    digit_probs (N, C) and readable (N,): `Recognizer.score_candidates`; verifier_probs (N, 11) or
    None (no verifier: the hand-made rules); naming_weight: `read_cut_pieces`' weight, 0 to read
    with the digit model alone (it must be 0 for a model whose classes are not the ten digits)."""
    whole = None
    if verifier_probs is not None:
        whole = 1.0 - verifier_probs[:, NOT_A_DIGIT]  # P(one whole digit)
        if naming_weight > 0:
            digit_probs = read_cut_pieces(digit_probs, verifier_probs, whole_marks(lattice), naming_weight)
    confidences = np.where(readable, digit_probs.max(axis=1), 0.0)
    return choose(lattice, confidences, whole, bonus), digit_probs


@dataclass
class VerifierTraining:
    """How the bundled verifier was trained (train.py --verifier's defaults)."""

    epochs: int = 8
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 5e-4
    seed: int = 0
    # Targets that also require a candidate to leave the other digits whole (`whole_targets`). The
    # bundled verifier averages one network trained each way (BENCHMARKS.md, "Whole numbers").
    intact: bool = True


def train_verifier(
    views: np.ndarray, targets: np.ndarray, labels: np.ndarray, cfg: VerifierTraining, device: torch.device,
    progress: Callable[[int, float], None] | None = None,
) -> nn.Module:
    """Train a fresh verifier on (N, 2, 28, 28) uint8 views, their (N,) targets in [0, 1]
    (`whole_targets`) and (N,) digit labels (-1 = none); returns it in eval mode."""
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    model = build_model(VERIFIER_CONFIG).to(device)
    x_all = torch.from_numpy(views)  # (N, 2, 28, 28) uint8: one tensor in memory, scaled per batch
    y_all = soft_targets(targets, labels)  # (N, 11)
    steps = max(1, len(y_all) // cfg.batch_size) * cfg.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.2)
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(y_all), generator=generator)
        total = 0.0
        for b in range(len(y_all) // cfg.batch_size):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            x = x_all[idx].to(device).float().div_(255)  # (B, 2, 28, 28); no mirroring: digits are not symmetric
            y = y_all[idx].to(device)  # (B, 11) soft targets
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        if progress:
            progress(epoch + 1, total / max(1, len(y_all) // cfg.batch_size))
    return model.eval()


@torch.inference_mode()
def class_probabilities(model: nn.Module, views: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """(N, 2, 28, 28) views in [0, 1] (float) -> (N, len(CLASSES)) probabilities."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(views), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(views[i : i + batch_size], np.float32)).to(device)
        out.append(torch.softmax(model(x).float(), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)


def accuracy(model: nn.Module, views: np.ndarray, targets: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """On (uint8) views with a clear target (0 or 1): the share the verifier gets right at 0.5
    ("whole"), and among the whole digits the share whose digit it names right ("digit")."""
    clear = (targets == 0) | (targets == 1)
    if not clear.any():
        return {"whole": float("nan"), "digit": float("nan")}
    p = class_probabilities(model, views[clear].astype(np.float32) / 255)
    whole = targets[clear] == 1
    out = {"whole": float(np.mean((1 - p[:, NOT_A_DIGIT] >= 0.5) == whole))}
    out["digit"] = float(np.mean(p[whole, :NOT_A_DIGIT].argmax(1) == labels[clear][whole])) if whole.any() else float("nan")
    return out


def verifier_metadata(name: str, training: dict, metrics: dict) -> dict:
    """Checkpoint metadata of a verifier: its config, classes and the views it reads."""
    return make_metadata(
        name=name, config=VERIFIER_CONFIG, classes=CLASSES, normalization={"mean": 0.0, "std": 1.0},
        preprocess={"recipe": RECIPE}, training=training, metrics=metrics,
    )


class DigitVerifier:
    """A loaded verifier: candidate views in, P(one whole digit) (and of which digit) out."""

    def __init__(self, model: nn.Module, metadata: dict) -> None:
        self.model = model.eval()
        self._inference_model = inference_copy(model)  # faster, as the Recognizer's
        self.metadata = metadata

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> "DigitVerifier":
        """Load a verifier checkpoint (safetensors; default: the bundled one). Raises CheckpointError."""
        from hwr.checkpoint import CheckpointError

        model, meta = load_checkpoint(path or DEFAULT_VERIFIER_CHECKPOINT, device)
        if meta.get("preprocess", {}).get("recipe") != RECIPE:
            raise CheckpointError(f"{path or DEFAULT_VERIFIER_CHECKPOINT}: not a digit-verifier checkpoint.")
        if list(meta["classes"]) != CLASSES:
            raise CheckpointError(f"{path or DEFAULT_VERIFIER_CHECKPOINT}: a digit verifier with classes "
                                  f"{meta['classes']}, not {CLASSES}; retrain it with `python train.py --verifier`.")
        return cls(model, meta)

    def probabilities(self, ink: np.ndarray, lattice: Lattice) -> np.ndarray:
        """(N, len(CLASSES)) for each candidate of `lattice` (built from the ink map `ink`): P(it is
        exactly that digit), and last P(not a digit)."""
        return class_probabilities(self._inference_model, candidate_views(ink, lattice))

    def score(self, ink: np.ndarray, lattice: Lattice) -> np.ndarray:
        """(N,) P(one whole digit) for each candidate of `lattice` (built from the ink map `ink`)."""
        return 1.0 - self.probabilities(ink, lattice)[:, NOT_A_DIGIT]


def save_verifier(model: nn.Module, path: str | os.PathLike, name: str, training: dict, metrics: dict) -> Path:
    """Write a verifier checkpoint (safetensors + metadata, atomically)."""
    return save_checkpoint(model, verifier_metadata(name, training, metrics), path)


def train_bundled_verifier(
    digits: list[PenDigit], out: str | os.PathLike, n_numbers: int, cfg: VerifierTraining,
    device: torch.device, dry_run: bool = False, say: Callable[[str], None] = log.info,
) -> Path:
    """The whole recipe of `checkpoints/digit-verifier.safetensors`: draw n_numbers numbers from
    TRAIN_WRITERS' digits, train, measure on 300 numbers of TUNE_WRITERS, save to `out`."""
    start = time.perf_counter()
    n_val = 2 if dry_run else 300
    train_x, train_y, train_labels = make_examples(
        pools_by_writer(digits, TRAIN_WRITERS), n_numbers, cfg.seed,
        progress=lambda k: say(f"drawn {k}/{n_numbers} numbers ({time.perf_counter() - start:.0f} s)"), intact=cfg.intact,
    )
    val_x, val_y, val_labels = make_examples(pools_by_writer(digits, TUNE_WRITERS), n_val, cfg.seed + 1, intact=cfg.intact)
    say(f"{len(train_y):,} candidates to train on, {len(val_y):,} to validate "
        f"({time.perf_counter() - start:.0f} s); training {cfg.epochs} epoch(s) on {device}")
    model = train_verifier(
        train_x, train_y, train_labels, cfg, device,
        progress=lambda e, loss: say(f"epoch {e}/{cfg.epochs}  loss {loss:.4f}  ({time.perf_counter() - start:.0f} s)"),
    )
    metrics = validation_metrics(model, val_x, val_y, val_labels)
    seconds = time.perf_counter() - start
    say(f"validation {describe_metrics(metrics)}; {seconds:.0f} s in all")
    training = {
        "kind": "digit-verifier", "numbers": n_numbers, "n_train": len(train_y), "seed": cfg.seed,
        "writers": f"pendigits {TRAIN_WRITERS.start}-{TRAIN_WRITERS.stop - 1}", "epochs": cfg.epochs,
        "lr": cfg.lr, "batch_size": cfg.batch_size, "target_ramp": list(TARGET_RAMP), "intact": cfg.intact,
        "seconds": round(seconds, 1), "device": str(device),
    }
    return save_verifier(model, out, Path(out).stem, training, metrics)


TUNE_KEY = f"pendigits-{TUNE_WRITERS.start}-{TUNE_WRITERS.stop - 1}"  # how metrics on the tuning writers are named


def validation_metrics(model: nn.Module, views: np.ndarray, targets: np.ndarray, labels: np.ndarray) -> dict:
    """A verifier's checkpoint metrics on examples of TUNE_WRITERS (`make_examples`)."""
    acc = accuracy(model, views, targets, labels)
    return {f"{TUNE_KEY}-clear-candidates": {"accuracy": acc["whole"]},
            f"{TUNE_KEY}-whole-digits-named": {"accuracy": acc["digit"]}}


def describe_metrics(metrics: dict) -> str:
    """One line for `validation_metrics`' result."""
    return (f"(writers {TUNE_WRITERS.start}-{TUNE_WRITERS.stop - 1}): "
            f"{100 * metrics[f'{TUNE_KEY}-clear-candidates']['accuracy']:.2f} % of clear candidates right, "
            f"{100 * metrics[f'{TUNE_KEY}-whole-digits-named']['accuracy']:.2f} % of whole digits named right")


def measure_verifier(model: nn.Module, digits: list[PenDigit], n_numbers: int = 300, seed: int = 1) -> dict:
    """`validation_metrics` on n_numbers fresh numbers of TUNE_WRITERS (how `train.py --combine`
    measures an ensemble of verifiers; the default targets, seed and count are its members')."""
    views, targets, labels = make_examples(pools_by_writer(digits, TUNE_WRITERS), n_numbers, seed)
    return validation_metrics(model, views, targets, labels)
