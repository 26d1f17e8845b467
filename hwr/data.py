"""Datasets as whole uint8 tensors in memory (airbench-style: no DataLoader, no per-image PIL work).

The data root is a flag everywhere, defaulting to $HWR_DATA_DIR, else ./data. torchvision reads the
official files from <root>/MNIST/raw and downloads them when they are absent (on a machine with
internet).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

MNIST_CLASSES = [str(d) for d in range(10)]
# Mean and std of the 60,000 MNIST training images scaled to [0, 1]; the values every MNIST example
# uses (pytorch/examples mnist/main.py), and what tests/test_data.py recomputes.
MNIST_NORMALIZATION = {"mean": 0.1307, "std": 0.3081}
DATASETS = ("mnist",)


def default_data_dir() -> Path:
    """$HWR_DATA_DIR if set, else ./data."""
    return Path(os.environ.get("HWR_DATA_DIR") or "data")


@dataclass
class ImageDataset:
    """A whole split in memory: images (N, 28, 28) uint8 (ink = 255), labels (N,) int64."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __len__(self) -> int:
        return int(self.labels.numel())


def load_mnist(data_dir: str | os.PathLike, train: bool, download: bool = True) -> ImageDataset:
    """MNIST as uint8 tensors. Downloads into data_dir when the files are absent and download=True."""
    from torchvision.datasets import MNIST  # heavy import, only where needed

    root = Path(data_dir)
    try:
        ds = MNIST(root=str(root), train=train, download=download)
    except RuntimeError as exc:
        raise FileNotFoundError(
            f"MNIST not found under {root / 'MNIST' / 'raw'} and could not be downloaded: {exc}"
        ) from None
    split = "train" if train else "test"
    return ImageDataset(f"mnist-{split}", ds.data.clone(), ds.targets.clone().long(), list(MNIST_CLASSES))


def load_dataset(name: str, data_dir: str | os.PathLike, train: bool, download: bool = True) -> ImageDataset:
    """Load a named dataset split. Only "mnist" for now."""
    if name == "mnist":
        return load_mnist(data_dir, train, download)
    raise ValueError(f"Unknown dataset {name!r}; choose from {DATASETS}.")
