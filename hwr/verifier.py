"""Is this candidate one whole digit? A small CNN that tells `hwr.segment.choose` where digits end.

The digit recognizer alone cannot split touching digits: it is confident on pieces (half a "0"
reads as a "1") and on pairs squeezed into one field. The verifier looks at each candidate of
`hwr.segment.build_lattice` in context (`hwr.segment.candidate_views`: its own ink and all the ink
around it, at the drawing's digit scale) and gives the probability that it is exactly one digit,
neither a piece of one nor a digit plus a piece of its neighbour.

Training data comes from the segmenter itself: numbers drawn with `hwr.pendigits.render_number`
from the digits of pendigits writers TRAIN_WRITERS (touching and not), cut into candidates by
`build_lattice`, each labelled by how much of it is one drawn digit (`whole_targets`).
Writers TUNE_WRITERS tune `hwr.segment`'s constants; writers TEST_WRITERS are what
`bench/multidigit.py --writers 16-30` reports. Train with `python train.py --verifier`.
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
from hwr.model import ModelConfig, build_model
from hwr.pendigits import PenDigit, pools_by_writer, render_number
from hwr.preprocess import INK_THRESHOLD, as_array, to_ink
from hwr.segment import Lattice, build_lattice, candidate_views

log = logging.getLogger(__name__)

DEFAULT_VERIFIER_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "digit-verifier.safetensors"
CLASSES = ["digit", "not a digit"]  # output 0: the candidate is exactly one digit
RECIPE = "segment-views"  # the checkpoint's "preprocess": hwr.segment.candidate_views
# Pendigits writers (1..30) by use; disjoint so that the reported figures are on unseen people.
TRAIN_WRITERS = range(1, 13)
TUNE_WRITERS = range(13, 16)
TEST_WRITERS = range(16, 31)
TARGET_RAMP = (0.55, 0.9)  # see `whole_targets`
LENGTHS = (1, 2, 3, 4, 5, 6)  # digits per training number, drawn uniformly
VERIFIER_CONFIG = ModelConfig(arch="cnn", num_classes=2, widths=(16, 32, 64), dropout=0.1, in_channels=2)


def whole_targets(
    lattice: Lattice, owner: np.ndarray, return_owner: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """(N,) float32 in [0, 1] per candidate: how much it is one whole digit, the training target
    (with return_owner, also (N,) int64: the drawn digit, 1-based, that gave most of its ink; 0 = none).

    owner: (H, W) the drawn digit (1-based; 0 = none) of each ink-map pixel (`NumberDrawing.owner`).
    For the drawn digit that gave most of the candidate's ink: purity = its share of the candidate's
    ink, coverage = the share of its ink the candidate holds. m = min(purity, coverage) is 1 for a
    perfect cut; the target rises linearly from 0 at m = TARGET_RAMP[0] to 1 at m = TARGET_RAMP[1].
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
        m = min(counts[d] / counts.sum(), counts[d] / max(totals[d], 1))
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
    pools: dict[int, list[PenDigit]], n_numbers: int, seed: int, progress: Callable[[int], None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw n_numbers numbers (half with every neighbour touching) from `pools` (writer -> digits);
    return (views (N, 2, 28, 28) uint8, targets (N,) float32) of all their candidates."""
    rng = np.random.default_rng(seed)
    writers = sorted(pools)
    views, targets = [], []
    for k in range(n_numbers):
        pool = pools[writers[int(rng.integers(len(writers)))]]
        n = int(rng.choice(LENGTHS))
        drawing = render_number([pool[int(i)] for i in rng.integers(0, len(pool), n)], rng, touching=bool(k % 2))
        ink = to_ink(as_array(drawing.image)).ink  # (H, W); 800x300 is never reduced
        lattice = build_lattice(ink)
        views.append(np.rint(255 * candidate_views(ink, lattice)).astype(np.uint8))
        targets.append(whole_targets(lattice, drawing.owner))
        if progress and (k + 1) % 1000 == 0:
            progress(k + 1)
    return np.concatenate(views), np.concatenate(targets)


@dataclass
class VerifierTraining:
    """How the bundled verifier was trained (train.py --verifier's defaults)."""

    epochs: int = 8
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 5e-4
    seed: int = 0


def train_verifier(
    views: np.ndarray, targets: np.ndarray, cfg: VerifierTraining, device: torch.device,
    progress: Callable[[int, float], None] | None = None,
) -> nn.Module:
    """Train a fresh verifier on (N, 2, 28, 28) uint8 views and their (N,) targets in [0, 1]
    (`whole_targets`); returns it in eval mode."""
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    model = build_model(VERIFIER_CONFIG).to(device)
    x_all = torch.from_numpy(views)  # (N, 2, 28, 28) uint8: one tensor in memory, scaled per batch
    y_all = torch.from_numpy(targets)
    steps = max(1, len(y_all) // cfg.batch_size) * cfg.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.2)
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(y_all), generator=generator)
        total = 0.0
        for b in range(len(y_all) // cfg.batch_size):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            x = x_all[idx].to(device).float().div_(255)  # (B, 2, 28, 28)
            flip = torch.rand(len(idx), generator=generator) < 0.5  # mirror images: same answer
            x[flip.to(device)] = x[flip.to(device)].flip(-1)
            y = y_all[idx].to(device)  # (B,) P(one whole digit) targets
            loss = F.cross_entropy(model(x), torch.stack([y, 1 - y], dim=1))  # soft targets
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        if progress:
            progress(epoch + 1, total / max(1, len(y_all) // cfg.batch_size))
    return model.eval()


@torch.inference_mode()
def whole_probabilities(model: nn.Module, views: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """(N, 2, 28, 28) views in [0, 1] (float) -> (N,) P(the candidate is one whole digit)."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(views), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(views[i : i + batch_size], np.float32)).to(device)
        out.append(torch.softmax(model(x).float(), dim=1)[:, 0].cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def accuracy(model: nn.Module, views: np.ndarray, targets: np.ndarray) -> float:
    """Share of (uint8) views with a clear target (0 or 1) that the verifier gets right at 0.5."""
    clear = (targets == 0) | (targets == 1)
    p = whole_probabilities(model, views[clear].astype(np.float32) / 255)
    return float(np.mean((p >= 0.5) == (targets[clear] == 1))) if clear.any() else float("nan")


def verifier_metadata(name: str, training: dict, metrics: dict) -> dict:
    """Checkpoint metadata of a verifier: its config, classes and the views it reads."""
    return make_metadata(
        name=name, config=VERIFIER_CONFIG, classes=CLASSES, normalization={"mean": 0.0, "std": 1.0},
        preprocess={"recipe": RECIPE}, training=training, metrics=metrics,
    )


class DigitVerifier:
    """A loaded verifier: candidate views in, P(one whole digit) out."""

    def __init__(self, model: nn.Module, metadata: dict) -> None:
        self.model = model.eval()
        self.metadata = metadata

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> "DigitVerifier":
        """Load a verifier checkpoint (safetensors; default: the bundled one). Raises CheckpointError."""
        from hwr.checkpoint import CheckpointError

        model, meta = load_checkpoint(path or DEFAULT_VERIFIER_CHECKPOINT, device)
        if meta.get("preprocess", {}).get("recipe") != RECIPE or list(meta["classes"]) != CLASSES:
            raise CheckpointError(f"{path or DEFAULT_VERIFIER_CHECKPOINT}: not a digit-verifier checkpoint.")
        return cls(model, meta)

    def score(self, ink: np.ndarray, lattice: Lattice) -> np.ndarray:
        """(N,) P(one whole digit) for each candidate of `lattice` (built from the ink map `ink`)."""
        return whole_probabilities(self.model, candidate_views(ink, lattice))


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
    train_x, train_y = make_examples(
        pools_by_writer(digits, TRAIN_WRITERS), n_numbers, cfg.seed,
        progress=lambda k: say(f"drawn {k}/{n_numbers} numbers ({time.perf_counter() - start:.0f} s)"),
    )
    val_x, val_y = make_examples(pools_by_writer(digits, TUNE_WRITERS), n_val, cfg.seed + 1)
    say(f"{len(train_y):,} candidates to train on, {len(val_y):,} to validate "
        f"({time.perf_counter() - start:.0f} s); training {cfg.epochs} epoch(s) on {device}")
    model = train_verifier(
        train_x, train_y, cfg, device,
        progress=lambda e, loss: say(f"epoch {e}/{cfg.epochs}  loss {loss:.4f}  ({time.perf_counter() - start:.0f} s)"),
    )
    val_acc = accuracy(model, val_x, val_y)
    seconds = time.perf_counter() - start
    say(f"validation (writers {TUNE_WRITERS.start}-{TUNE_WRITERS.stop - 1}): {100 * val_acc:.2f} % of clear "
        f"candidates right; {seconds:.0f} s in all")
    training = {
        "kind": "digit-verifier", "numbers": n_numbers, "n_train": len(train_y), "seed": cfg.seed,
        "writers": f"pendigits {TRAIN_WRITERS.start}-{TRAIN_WRITERS.stop - 1}", "epochs": cfg.epochs,
        "lr": cfg.lr, "batch_size": cfg.batch_size, "target_ramp": list(TARGET_RAMP),
        "seconds": round(seconds, 1), "device": str(device),
    }
    metrics = {f"pendigits-{TUNE_WRITERS.start}-{TUNE_WRITERS.stop - 1}-clear-candidates": {"accuracy": val_acc}}
    return save_verifier(model, out, Path(out).stem, training, metrics)
