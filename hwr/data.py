"""Datasets as whole uint8 tensors in memory (airbench-style: no DataLoader, no per-image PIL work).

The data root is a flag everywhere, defaulting to $HWR_DATA_DIR, else ./data. torchvision reads the
official files from <root>/MNIST/raw and <root>/EMNIST/raw and downloads them when they are absent
(on a machine with internet). EMNIST's splits and views are described in hwr/emnist.py.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from hwr.emnist import DATASETS as EMNIST_DATASETS
from hwr.emnist import load_emnist

log = logging.getLogger(__name__)

MNIST_CLASSES = [str(d) for d in range(10)]
# Mean and std of the 60,000 MNIST training images scaled to [0, 1]; the values every MNIST example
# uses (pytorch/examples mnist/main.py), and what tests/test_data.py recomputes.
MNIST_NORMALIZATION = {"mean": 0.1307, "std": 0.3081}
DATASETS = ("mnist",) + EMNIST_DATASETS
SPLIT_PARTS = ("train", "test", "validation")  # the suffixes of ImageDataset names


def dataset_of(split_name: str) -> str:
    """The dataset name of a loaded split's name: "emnist-letters-train" -> "emnist-letters"."""
    return split_name.rsplit("-", 1)[0] if split_name.rsplit("-", 1)[-1] in SPLIT_PARTS else split_name


def normalization_of(images: torch.Tensor) -> dict[str, float]:
    """Mean and std of uint8 images scaled to [0, 1] (how a model's input is normalised)."""
    x = images.float().div_(255.0)
    return {"mean": round(float(x.mean()), 4), "std": round(float(x.std()), 4)}


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
    """Load a named dataset split (one of DATASETS): train=True its training part, else its test part.

    Images are upright (N, 28, 28) uint8 with ink = 255; labels index `classes`. The returned name
    is "<name>-<part>", e.g. "mnist-test", "emnist-letters-train".
    """
    if name == "mnist":
        return load_mnist(data_dir, train, download)
    if name in EMNIST_DATASETS:
        images, labels, classes, part = load_emnist(name, data_dir, train, download)
        return ImageDataset(f"{name}-{part}", images, labels, classes)
    raise ValueError(f"Unknown dataset {name!r}; choose from {DATASETS}.")
