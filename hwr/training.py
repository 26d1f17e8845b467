"""The training loop, shared by `train.py` (from scratch) and fine-tuning (hwr/finetune.py)."""

from __future__ import annotations

import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from hwr.augment import AugmentConfig, augment_batch


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but no CUDA device is available")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch and return the generator that drives shuffling and augmentation."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def to_unit_batch(batch_u8: torch.Tensor) -> torch.Tensor:
    """(B, 28, 28) uint8 -> (B, 1, 28, 28) float in [0, 1] (before augmentation)."""
    return (batch_u8.float() / 255.0).unsqueeze(1)


def normalise(x: torch.Tensor, norm: dict[str, float]) -> torch.Tensor:
    """(B, 1, 28, 28) in [0, 1] -> normalised, channels_last (faster convolutions on the CPU)."""
    return ((x - norm["mean"]) / norm["std"]).contiguous(memory_format=torch.channels_last)


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int,
    norm: dict[str, float],
    augment: AugmentConfig | None,
    label_smoothing: float,
    generator: torch.Generator,
    max_batches: int | None = None,
    progress: str | None = None,
    rank: int = 0,
    world_size: int = 1,
    freeze_batchnorm: bool = False,
    bf16: bool = False,
) -> dict[str, float]:
    """One pass over (images uint8 (N, 28, 28), labels (N,)) on their device. Returns mean loss and accuracy.

    Under DDP (world_size > 1) each rank trains on its own 1/world_size shard of the epoch; the
    generator must be seeded alike on every rank so that the shards do not overlap.
    bf16: run the forward pass under bfloat16 autocast (fast on GPUs; the weights stay float32).
    """
    model.train()
    if freeze_batchnorm:  # fine-tuning: keep the running statistics learnt on the full training set
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    order = torch.randperm(len(labels), generator=generator).to(images.device)
    order = order[rank::world_size]  # DDP: every rank draws the same permutation and takes its own shard
    n_batches = len(order) // batch_size  # drop the last partial batch: BatchNorm dislikes tiny ones
    if max_batches is not None:
        n_batches = min(n_batches, max_batches)
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(range(n_batches), desc=progress, disable=progress is None, leave=False, file=sys.stdout)
    for b in bar:
        idx = order[b * batch_size : (b + 1) * batch_size]
        x = to_unit_batch(images[idx])  # (B, 1, 28, 28)
        y = labels[idx]
        if augment is not None:
            x = augment_batch(x, augment, generator if x.device.type == "cpu" else None, y)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(normalise(x, norm))
        loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total_loss += loss.item() * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
        if b % 20 == 0:
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.4f}")
    return {"loss": total_loss / max(seen, 1), "accuracy": correct / max(seen, 1)}
