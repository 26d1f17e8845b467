"""EMNIST (Cohen et al. 2017, https://arxiv.org/abs/1702.05373): the six official splits, upright,
with their class names, plus three views made from the byclass split.

Files: torchvision's EMNIST loader reads the official idx files from <root>/EMNIST/raw/
(emnist-<split>-<train|test>-<images|labels>-idx<3|1>-ubyte) and downloads the whole official zip
there when they are absent (on a machine with internet). It only checks that the two files of the
requested split exist, so a folder holding some splits loads those offline.

Orientation: the official files store every image transposed relative to MNIST (column-major), and
torchvision returns them that way; every loader here transposes, so images are upright.

Labels: letters are stored as 1..26 (0 is unused); they become 0..25 here. The other splits'
labels index their class list directly. Class names come from the official mapping file
(emnist-<split>-mapping.txt: "label ascii-code [ascii-code]") when it is in the raw folder, else from
the official tables below (the same as the mapping files).

Views built from byclass (names of our own, not official splits):
    emnist-byclass-digits        byclass images of digits only, classes 0-9 (57,918 in the test split)
    emnist-byclass-letters       byclass letters, case folded into 26 classes a-z (as EMNIST Letters)
    emnist-byclass-test-letters  the letters of the byclass TEST split, case folded, split by index:
                                 train=True gives the first 85 % in file order, train=False the rest.
                                 For machines without internet, where only the test files exist.
"""

from __future__ import annotations

import logging
import os
import string
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SPLITS = ("digits", "letters", "balanced", "byclass", "bymerge", "mnist")
# Balanced and bymerge merge the 15 letters whose upper and lower case look alike (c i j k l m o p s
# u v w x y z) into the upper case; the 11 others keep a lower-case class (Cohen et al. 2017, fig. 2).
MERGED_LOWER_KEPT = "abdefghnqrt"
SPLIT_CLASSES: dict[str, list[str]] = {
    "digits": list(string.digits),
    "mnist": list(string.digits),
    "letters": list(string.ascii_lowercase),  # case-insensitive; stored as labels 1..26
    "balanced": list(string.digits + string.ascii_uppercase + MERGED_LOWER_KEPT),  # 47
    "bymerge": list(string.digits + string.ascii_uppercase + MERGED_LOWER_KEPT),  # 47
    "byclass": list(string.digits + string.ascii_uppercase + string.ascii_lowercase),  # 62
}
LABEL_OFFSET = {"letters": 1}  # stored label - offset = class index

# Our byclass views (see the module docstring).
BYCLASS_VIEWS = ("byclass-digits", "byclass-letters", "byclass-test-letters")
TEST_LETTERS_TRAIN_FRACTION = 0.85  # emnist-byclass-test-letters: first 85 % train, last 15 % validation
DATASETS = tuple(f"emnist-{s}" for s in SPLITS + BYCLASS_VIEWS)


def raw_folder(data_dir: str | os.PathLike) -> Path:
    """Where the official files live: <data_dir>/EMNIST/raw (torchvision's layout)."""
    return Path(data_dir) / "EMNIST" / "raw"


def read_mapping(path: str | os.PathLike, split: str) -> list[str]:
    """Class names from an official mapping file ("label code [code]" lines), in label order.

    Letters lines carry the upper- and lower-case codes ("1 65 97"): the lower case names the class.
    """
    names: dict[int, str] = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            label, codes = int(parts[0]), [int(p) for p in parts[1:]]
            names[label - LABEL_OFFSET.get(split, 0)] = chr(codes[-1])
        except (ValueError, IndexError):
            raise ValueError(f"{path}:{n}: not a 'label code' line: {line!r}") from None
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"{path}: labels are not consecutive: {sorted(names)[:5]}...")
    return [names[i] for i in range(len(names))]


def split_classes(split: str, data_dir: str | os.PathLike | None = None) -> list[str]:
    """The class names of an official split: its mapping file if present, else the official table."""
    if split not in SPLIT_CLASSES:
        raise ValueError(f"Unknown EMNIST split {split!r}; choose from {SPLITS}.")
    if data_dir is not None:
        mapping = raw_folder(data_dir) / f"emnist-{split}-mapping.txt"
        if mapping.is_file():
            classes = read_mapping(mapping, split)
            if classes != SPLIT_CLASSES[split]:
                log.warning("%s differs from the official table; using the file.", mapping)
            return classes
    return list(SPLIT_CLASSES[split])


def load_split(
    split: str, data_dir: str | os.PathLike, train: bool, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """An official split as (images (N, 28, 28) uint8 upright, labels (N,) int64 0-based, class names).

    Reads <data_dir>/EMNIST/raw through torchvision; downloads the official zip when the files are
    absent and `download` is True. Raises FileNotFoundError when they cannot be had.
    """
    from torchvision.datasets import EMNIST  # heavy import, only where needed

    if split not in SPLITS:
        raise ValueError(f"Unknown EMNIST split {split!r}; choose from {SPLITS}.")
    part = "train" if train else "test"
    try:
        ds = EMNIST(root=str(data_dir), split=split, train=train, download=download)
    except (RuntimeError, OSError) as exc:  # not found offline; URLError is an OSError
        raise FileNotFoundError(
            f"EMNIST {split} {part} not found under {raw_folder(data_dir)} "
            f"(emnist-{split}-{part}-images-idx3-ubyte) and could not be downloaded: {exc}"
        ) from None
    images = ds.data.transpose(1, 2).contiguous()  # (N, 28, 28): the files are transposed
    labels = ds.targets.long() - LABEL_OFFSET.get(split, 0)
    classes = split_classes(split, data_dir)
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
        raise ValueError(
            f"EMNIST {split} {part}: labels {int(labels.min())}..{int(labels.max())} do not fit "
            f"its {len(classes)} classes."
        )
    return images, labels, classes


def fold_case(labels: torch.Tensor, classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """byclass-style labels -> (mask of letters, their labels in 0..25 = a..z, case folded)."""
    lower = torch.tensor([ord(c.lower()) - ord("a") if c.isalpha() else -1 for c in classes])
    folded = lower[labels]
    keep = folded >= 0
    return keep, folded[keep]


def byclass_test_letters_slice(n: int, train: bool) -> slice:
    """emnist-byclass-test-letters: the first 85 % of the n letters (file order) train, the rest validate."""
    cut = int(n * TEST_LETTERS_TRAIN_FRACTION)
    return slice(0, cut) if train else slice(cut, n)


def load_emnist(
    name: str, data_dir: str | os.PathLike, train: bool, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor, list[str], str]:
    """A dataset of DATASETS -> (images uint8 upright, labels, classes, split name for ImageDataset).

    The split name is "train"/"test", or "train"/"validation" for emnist-byclass-test-letters.
    """
    if name not in DATASETS:
        raise ValueError(f"Unknown EMNIST dataset {name!r}; choose from {DATASETS}.")
    view = name.removeprefix("emnist-")
    part = "train" if train else "test"
    if view in SPLITS:
        return (*load_split(view, data_dir, train, download), part)
    if view == "byclass-test-letters":  # only the test file is read, whatever `train` says
        images, labels, classes = load_split("byclass", data_dir, False, download)
    else:
        images, labels, classes = load_split("byclass", data_dir, train, download)
    if view == "byclass-digits":
        keep = labels < 10  # byclass classes 0..9 are the digits
        return images[keep], labels[keep], classes[:10], part
    keep, folded = fold_case(labels, classes)
    letters = list(string.ascii_lowercase)
    if view == "byclass-letters":
        return images[keep], folded, letters, part
    images = images[keep]
    pick = byclass_test_letters_slice(len(folded), train)
    return images[pick].clone(), folded[pick].clone(), letters, "train" if train else "validation"
