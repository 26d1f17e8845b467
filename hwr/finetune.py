"""Fine-tune a checkpoint on user corrections without forgetting MNIST.

Recipe (defaults in FinetuneConfig):
- corrections go through the model's own preprocessing (the same path as inference);
- a held-out part of them (20 %) measures the gain; the rest is oversampled (x2) and augmented;
- replay: 3 MNIST training images per oversampled correction are mixed into every epoch, so the
  model keeps what it knew; BatchNorm statistics stay those of the parent;
- a few epochs (3) at a low learning rate (2e-4 peak, OneCycle; 3e-4 lost 0.14 MNIST points with 100 corrections);
(Chosen on bench/finetune_pendigits.py with 1,000 corrections: oversample 4 / replay 1 lost 0.16 points
of MNIST, oversample 2 / replay 3 lost 0.06; BENCHMARKS.md has the runs.)
- a gate: if MNIST test accuracy falls by more than 0.3 points, the result is marked as failed and
  callers do not save it unless forced.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from hwr.augment import augment_for
from hwr.checkpoint import load_checkpoint
from hwr.data import ImageDataset, dataset_of, load_dataset
from hwr.evaluate import evaluate
from hwr.preprocess import preprocess_for
from hwr.training import seed_everything, train_one_epoch

log = logging.getLogger(__name__)

ProgressFn = Callable[[float, str], None]


@dataclass
class FinetuneConfig:
    epochs: int = 3
    lr: float = 2e-4
    batch_size: int = 128
    weight_decay: float = 5e-4
    label_smoothing: float = 0.05
    oversample: int = 2  # each training correction appears this many times an epoch (augmented each time)
    replay_ratio: float = 3.0  # MNIST training images mixed in per (oversampled) correction image
    holdout_frac: float = 0.2  # share of corrections held out to measure the gain
    max_mnist_drop: float = 0.3  # gate: largest allowed fall of MNIST test accuracy, in points
    seed: int = 0
    freeze_batchnorm: bool = True  # keep BatchNorm statistics of the parent (see BENCHMARKS.md)


@dataclass
class FinetuneResult:
    model: nn.Module
    metadata: dict[str, Any]  # the parent's metadata, updated for the new model
    before: dict[str, float | None]
    after: dict[str, float | None]
    n_corrections: int
    n_train: int
    n_holdout: int
    gate_passed: bool
    reason: str
    seconds: float = 0.0
    holdout_ids: list[str] = field(default_factory=list)


def load_corrections(
    corrections_dir: str | Path, classes: list[str], preprocess_spec: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Corrections -> (images (N, 28, 28) uint8, labels (N,) int64, ids), through inference preprocessing
    (`preprocess_spec`: the checkpoint's "preprocess" entry, naming its recipe).

    Samples whose label is not one of the model's classes, or that no longer preprocess (e.g. a
    corrupt file), are skipped with a warning.
    """
    from hwr.corrections import CorrectionStore

    index = {c: i for i, c in enumerate(classes)}
    images, labels, ids = [], [], []
    for s in CorrectionStore(corrections_dir).samples():
        if s.label not in index:
            log.warning("skipping correction %s: label %r is not a class of this model", s.id, s.label)
            continue
        try:
            x = preprocess_for(str(s.path), preprocess_spec)
        except ValueError as exc:
            log.warning("skipping correction %s: %s", s.id, exc)
            continue
        images.append(np.round(x * 255).astype(np.uint8))
        labels.append(index[s.label])
        ids.append(s.id)
    if not images:
        return torch.zeros(0, 28, 28, dtype=torch.uint8), torch.zeros(0, dtype=torch.long), []
    return torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.long), ids


def split_holdout(n: int, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of range(n) into (train, holdout) indices; holdout is empty below 5 samples."""
    order = np.random.default_rng(seed).permutation(n)
    k = int(round(n * frac)) if n >= 5 else 0
    return np.sort(order[k:]), np.sort(order[:k])


def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, classes: list[str], norm: dict, device: torch.device) -> float | None:
    if len(labels) == 0:
        return None
    return evaluate(model, images, labels, classes, norm, device=device)["accuracy"]


def finetune(
    init_from: str | Path,
    corrections_dir: str | Path,
    data_dir: str | Path,
    config: FinetuneConfig | None = None,
    device: str | torch.device = "cpu",
    progress: ProgressFn | None = None,
    replay: ImageDataset | None = None,
    mnist_test: ImageDataset | None = None,
) -> FinetuneResult:
    """Fine-tune `init_from` on the corrections in `corrections_dir`; measure before and after.

    `replay` / `mnist_test` may be passed in (already loaded) to skip reading them from data_dir.
    Raises ValueError when there is nothing to train on.
    """
    cfg = config or FinetuneConfig()
    device = torch.device(device)
    report = progress or (lambda f, msg: None)
    start = time.perf_counter()
    generator = seed_everything(cfg.seed)

    model, meta = load_checkpoint(init_from, device)
    classes, norm = list(meta["classes"]), meta["normalization"]
    report(0.0, "reading corrections")
    images, labels, ids = load_corrections(corrections_dir, classes, meta["preprocess"])
    if len(labels) == 0:
        raise ValueError(f"No usable corrections in {corrections_dir}: save some first.")
    train_idx, hold_idx = split_holdout(len(labels), cfg.holdout_frac, cfg.seed)
    if len(train_idx) == 0:
        raise ValueError("Too few corrections to train on.")
    hold_x, hold_y = images[hold_idx], labels[hold_idx]

    parent_dataset = meta.get("training", {}).get("dataset") or "mnist-train"  # e.g. "emnist-letters-train"
    dataset = dataset_of(parent_dataset)  # e.g. "emnist-letters"
    report(0.05, "loading MNIST" if dataset == "mnist" else f"loading {dataset}")
    replay = replay or load_dataset(dataset, data_dir, train=True)
    mnist_test = mnist_test or load_dataset(dataset, data_dir, train=False)

    report(0.1, "measuring the model before fine-tuning")
    model.eval()
    before = {
        "holdout_accuracy": _accuracy(model, hold_x, hold_y, classes, norm, device),
        "mnist_accuracy": _accuracy(model, mnist_test.images, mnist_test.labels, classes, norm, device),
    }

    # Training set: oversampled corrections + a fresh replay sample of the original data.
    corr_x = images[train_idx].repeat(cfg.oversample, 1, 1)  # (k*N, 28, 28)
    corr_y = labels[train_idx].repeat(cfg.oversample)
    n_replay = int(round(len(corr_y) * cfg.replay_ratio))
    pick = torch.randint(len(replay), (n_replay,), generator=generator)
    train_x = torch.cat([corr_x, replay.images[pick]]).to(device)
    train_y = torch.cat([corr_y, replay.labels[pick]]).to(device)
    batch_size = min(cfg.batch_size, len(train_y))

    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = max(1, len(train_y) // batch_size) * cfg.epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=steps, pct_start=0.2)
    for epoch in range(cfg.epochs):
        report(0.15 + 0.75 * epoch / cfg.epochs, f"fine-tuning, epoch {epoch + 1}/{cfg.epochs}")
        train_one_epoch(
            model, optimizer, scheduler, train_x, train_y, batch_size=batch_size, norm=norm,
            augment=augment_for(classes), label_smoothing=cfg.label_smoothing, generator=generator,
            freeze_batchnorm=cfg.freeze_batchnorm,
        )

    report(0.9, "measuring the model after fine-tuning")
    model.eval()
    after = {
        "holdout_accuracy": _accuracy(model, hold_x, hold_y, classes, norm, device),
        "mnist_accuracy": _accuracy(model, mnist_test.images, mnist_test.labels, classes, norm, device),
    }
    drop = 100 * (before["mnist_accuracy"] - after["mnist_accuracy"])
    gate_passed = drop <= cfg.max_mnist_drop
    test_set = "MNIST test" if dataset == "mnist" else mnist_test.name  # what the gate measured
    test_key = "mnist-test" if dataset == "mnist" else mnist_test.name  # its key in metadata["metrics"]
    reason = (
        f"{test_set} accuracy {100 * before['mnist_accuracy']:.2f} % -> {100 * after['mnist_accuracy']:.2f} % "
        f"({-drop:+.2f} points; the gate allows a fall of at most {cfg.max_mnist_drop:.2f})"
    )
    seconds = time.perf_counter() - start
    report(1.0, "done")
    new_meta = dict(meta)
    new_meta.update(
        parent=meta["name"],
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        torch_version=torch.__version__,
        training={
            "kind": "finetune", "parent": meta["name"], "parent_training": meta.get("training", {}),
            "corrections_dir": str(corrections_dir), "n_corrections": len(labels),
            "n_train_corrections": len(train_idx), "n_holdout": len(hold_idx), "n_replay": n_replay,
            "dataset": parent_dataset, "n_train": meta.get("training", {}).get("n_train"),
            "config": asdict(cfg), "seconds": round(seconds, 1), "device": str(device),
        },
        finetune={"before": before, "after": after, "gate_passed": gate_passed, "reason": reason},
        metrics={**meta.get("metrics", {}), test_key: {"accuracy": after["mnist_accuracy"]}},
    )
    return FinetuneResult(
        model.eval(), new_meta, before, after, len(labels), len(train_idx), len(hold_idx),
        gate_passed, reason, seconds, [ids[i] for i in hold_idx],
    )
