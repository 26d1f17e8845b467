"""EMNIST: every split loads upright with the right classes and labels.

Synthetic idx files, written in the official (transposed) layout under tmp_path, stand in for the
splits that are not kept offline; the real byclass and mnist test files (../shared/data/EMNIST/raw)
check orientation, class balance and label mapping on the real thing.
"""

from __future__ import annotations

import string
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from hwr.data import DATASETS, dataset_of, load_dataset, normalization_of
from hwr.emnist import (
    SPLIT_CLASSES,
    SPLITS,
    TEST_LETTERS_TRAIN_FRACTION,
    read_mapping,
    split_classes,
)

LETTERS = list(string.ascii_lowercase)
BALANCED = list(string.digits + string.ascii_uppercase) + list("abdefghnqrt")
BYCLASS = list(string.digits + string.ascii_uppercase + string.ascii_lowercase)


# ---------------------------------------------------------------------------------------------
# Synthetic files in the official layout
# ---------------------------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file as the official ones: big-endian magic (0x0000 08 ndim) and sizes, then uint8 data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def l_shape(i: int) -> np.ndarray:
    """An upright, asymmetric (28, 28) uint8 image: an "L" (left bar, bottom bar), plus a tag pixel row i."""
    img = np.zeros((28, 28), np.uint8)
    img[4:24, 6:9] = 255  # vertical bar on the left
    img[21:24, 6:22] = 255  # horizontal bar at the bottom
    img[1, i % 28] = 200  # which image this is
    return img


def write_split(root: Path, split: str, part: str, labels: list[int]) -> np.ndarray:
    """Official-layout files for one split under root/EMNIST/raw; returns the upright images."""
    raw = root / "EMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    upright = np.stack([l_shape(i) for i in range(len(labels))])  # (N, 28, 28)
    write_idx(raw / f"emnist-{split}-{part}-images-idx3-ubyte", upright.transpose(0, 2, 1))  # stored transposed
    write_idx(raw / f"emnist-{split}-{part}-labels-idx1-ubyte", np.array(labels, np.uint8))
    return upright


def stored_labels(split: str, n: int) -> list[int]:
    """n labels cycling over a split's stored label values (letters: 1..26)."""
    first = 1 if split == "letters" else 0
    return [first + i % len(SPLIT_CLASSES[split]) for i in range(n)]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("train", [True, False])
def test_every_split_loads_upright_with_its_classes(tmp_path: Path, split: str, train: bool) -> None:
    part = "train" if train else "test"
    labels = stored_labels(split, 64)
    upright = write_split(tmp_path, split, part, labels)
    data = load_dataset(f"emnist-{split}", tmp_path, train=train, download=False)
    assert data.name == f"emnist-{split}-{part}"
    assert data.images.dtype == torch.uint8 and data.images.shape == (64, 28, 28)
    assert torch.equal(data.images, torch.from_numpy(upright))  # transposed back: upright
    offset = 1 if split == "letters" else 0
    assert data.labels.tolist() == [y - offset for y in labels]
    expected = {"letters": LETTERS, "balanced": BALANCED, "bymerge": BALANCED, "byclass": BYCLASS}
    assert data.classes == expected.get(split, list(string.digits))


def test_class_counts_per_split() -> None:
    counts = {s: len(SPLIT_CLASSES[s]) for s in SPLITS}
    assert counts == {"digits": 10, "letters": 26, "balanced": 47, "byclass": 62, "bymerge": 47, "mnist": 10}


def test_mapping_file_names_the_classes(tmp_path: Path) -> None:
    raw = tmp_path / "EMNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "emnist-letters-mapping.txt").write_text("".join(f"{i + 1} {65 + i} {97 + i}\n" for i in range(26)))
    (raw / "emnist-balanced-mapping.txt").write_text("".join(f"{i} {ord(c)}\n" for i, c in enumerate(BALANCED)))
    assert split_classes("letters", tmp_path) == LETTERS
    assert split_classes("balanced", tmp_path) == BALANCED
    assert split_classes("bymerge", tmp_path) == BALANCED  # no file: the official table
    (raw / "bad-mapping.txt").write_text("0 48\nnot a line\n")
    with pytest.raises(ValueError, match="not a 'label code' line"):
        read_mapping(raw / "bad-mapping.txt", "digits")


def test_labels_that_do_not_fit_the_classes_are_refused(tmp_path: Path) -> None:
    write_split(tmp_path, "digits", "test", [0, 1, 12])
    with pytest.raises(ValueError, match="do not fit"):
        load_dataset("emnist-digits", tmp_path, train=False, download=False)


def test_missing_split_is_a_clear_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="emnist-letters-train-images-idx3-ubyte"):
        load_dataset("emnist-letters", tmp_path, train=True, download=False)


def test_byclass_views_on_synthetic_files(tmp_path: Path) -> None:
    labels = list(range(62)) * 2  # every byclass class twice: 20 digits, 104 letters
    write_split(tmp_path, "byclass", "test", labels)
    digits = load_dataset("emnist-byclass-digits", tmp_path, train=False, download=False)
    assert digits.classes == list(string.digits) and digits.labels.tolist() == list(range(10)) * 2
    letters = load_dataset("emnist-byclass-letters", tmp_path, train=False, download=False)
    # Upper case (10..35) and lower case (36..61) fold into a..z.
    assert letters.classes == LETTERS and letters.labels.tolist() == (list(range(26)) * 2) * 2
    train = load_dataset("emnist-byclass-test-letters", tmp_path, train=True, download=False)
    val = load_dataset("emnist-byclass-test-letters", tmp_path, train=False, download=False)
    assert (train.name, val.name) == ("emnist-byclass-test-letters-train", "emnist-byclass-test-letters-validation")
    assert len(train) == int(104 * TEST_LETTERS_TRAIN_FRACTION) and len(train) + len(val) == 104
    # By index: training is the first 85 % of the letters in file order, validation the rest.
    assert torch.equal(torch.cat([train.images, val.images]), letters.images)
    assert torch.equal(torch.cat([train.labels, val.labels]), letters.labels)


def test_dataset_names() -> None:
    assert {f"emnist-{s}" for s in SPLITS} <= set(DATASETS) and "mnist" in DATASETS
    assert dataset_of("emnist-letters-train") == "emnist-letters"
    assert dataset_of("emnist-byclass-test-letters-validation") == "emnist-byclass-test-letters"
    assert dataset_of("mnist-train") == "mnist" and dataset_of("mnist") == "mnist"


def test_normalization_of() -> None:
    images = torch.tensor([[[0, 255]]], dtype=torch.uint8).expand(2, 28, 2)
    norm = normalization_of(images)
    assert norm["mean"] == 0.5 and abs(norm["std"] - 0.5) < 0.01


# ---------------------------------------------------------------------------------------------
# The real test splits (../shared/data/EMNIST/raw)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emnist_dir(data_dir: Path) -> Path:
    raw = data_dir / "EMNIST" / "raw"
    if not (raw / "emnist-byclass-test-images-idx3-ubyte").is_file():
        pytest.skip(f"EMNIST byclass test files not found under {raw}")
    return data_dir


@pytest.fixture(scope="module")
def byclass_test(emnist_dir: Path):
    return load_dataset("emnist-byclass", emnist_dir, train=False, download=False)


def test_real_byclass_test_split(byclass_test, emnist_dir: Path) -> None:
    assert len(byclass_test) == 116_323 and byclass_test.classes == BYCLASS  # from the official mapping file
    counts = torch.bincount(byclass_test.labels, minlength=62)
    assert int(counts.sum()) == 116_323 and int(counts[:10].sum()) == 57_918
    assert int(counts.min()) > 0  # every class present
    # byclass is unbalanced, as NIST's writing is: digits ~5,600-6,400 each, letters far fewer.
    assert int(counts[:10].min()) > 5000 and int(counts[10:].max()) < 5000
    assert split_classes("mnist", emnist_dir) == list(string.digits)


def test_real_mnist_split_is_balanced(emnist_dir: Path) -> None:
    data = load_dataset("emnist-mnist", emnist_dir, train=False, download=False)
    assert len(data) == 10_000 and data.classes == list(string.digits)
    assert torch.bincount(data.labels, minlength=10).tolist() == [1000] * 10


def class_means(images: torch.Tensor, labels: torch.Tensor, n: int) -> torch.Tensor:
    x = images.float() / 255
    return torch.stack([x[labels == k].mean(0) for k in range(n)])  # (n, 28, 28)


def test_real_images_are_upright(byclass_test, data_dir: Path) -> None:
    """Digit means match MNIST's upright and not transposed; an upper-case L has its bar at the bottom."""
    if not (data_dir / "MNIST" / "raw").is_dir():
        pytest.skip("MNIST not in data dir")
    from hwr.data import load_mnist

    mnist = load_mnist(data_dir, train=False, download=False)
    ref = class_means(mnist.images, mnist.labels, 10)
    digits = byclass_test.labels < 10
    ours = class_means(byclass_test.images[digits], byclass_test.labels[digits], 10)

    def corr(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])

    for d in range(10):
        if d in (0, 8):  # nearly symmetric about the diagonal: transposition barely changes them
            continue
        upright, transposed = corr(ours[d], ref[d]), corr(ours[d].T, ref[d])
        assert upright > transposed + 0.05, (d, upright, transposed)
    capital_l = byclass_test.classes.index("L")
    mean_l = class_means(byclass_test.images, byclass_test.labels, 62)[capital_l]
    assert float(mean_l[20:].sum()) > 2 * float(mean_l[:8].sum())  # the foot of the L is at the bottom
    assert float(mean_l[:, :14].sum()) > float(mean_l[:, 14:].sum())  # its stem on the left


def test_real_views_sizes(emnist_dir: Path) -> None:
    digits = load_dataset("emnist-byclass-digits", emnist_dir, train=False, download=False)
    assert len(digits) == 57_918 and digits.classes == list(string.digits)
    train = load_dataset("emnist-byclass-test-letters", emnist_dir, train=True, download=False)
    val = load_dataset("emnist-byclass-test-letters", emnist_dir, train=False, download=False)
    assert len(train) + len(val) == 116_323 - 57_918 and len(train) == int(58_405 * TEST_LETTERS_TRAIN_FRACTION)
    assert train.classes == LETTERS and set(val.labels.tolist()) == set(range(26))
