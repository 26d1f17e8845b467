"""train.py and hwr.evaluate on EMNIST: synthetic official-layout files for the splits not kept offline,
the real byclass test file for the offline letters set."""

from __future__ import annotations

import json
import string
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hwr.checkpoint import read_metadata
from hwr.evaluate import labels_for_model
from tests.test_emnist import stored_labels, write_split

REPO = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def fake_emnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """letters and balanced, train and test, 300 / 100 images each, in the official layout."""
    root = tmp_path_factory.mktemp("emnist")
    for split in ("letters", "balanced"):
        write_split(root, split, "train", stored_labels(split, 300))
        write_split(root, split, "test", stored_labels(split, 100))
    return root


@pytest.mark.parametrize("split, n_classes", [("letters", 26), ("balanced", 47)])
def test_dry_run_on_an_emnist_split(fake_emnist: Path, tmp_path: Path, split: str, n_classes: int) -> None:
    out = tmp_path / f"{split}.safetensors"
    res = run("train.py", "--dataset", f"emnist-{split}", "--dry-run", "--no-progress",
              "--data-dir", str(fake_emnist), "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    meta = read_metadata(out)
    assert len(meta["classes"]) == meta["model"]["num_classes"] == n_classes
    assert meta["preprocess"]["recipe"] == "emnist" and meta["preprocess"]["version"] == "emnist-v1"
    assert meta["training"]["dataset"] == f"emnist-{split}-train" and meta["training"]["test_set"] == f"emnist-{split}-test"
    assert meta["normalization"] != {"mean": 0.1307, "std": 0.3081}  # measured on this data
    assert "data_note" not in meta  # an official split: nothing to warn about
    if split == "letters":
        assert meta["classes"] == list(string.ascii_lowercase)
        ev = run("-m", "hwr.evaluate", "--checkpoint", str(out), "--dataset", "emnist-letters",
                 "--data-dir", str(fake_emnist), "--json", "--preprocess")
        assert ev.returncode == 0, ev.stderr[-2000:]
        report = json.loads(ev.stdout)
        assert report["n"] == 100 and report["input"] == "preprocessed" and report["dataset"] == "emnist-letters-test"
        # A letters model cannot be scored on digits: a clear error, no traceback.
        write_split(fake_emnist, "mnist", "test", stored_labels("mnist", 20))
        bad = run("-m", "hwr.evaluate", "--checkpoint", str(out), "--dataset", "emnist-mnist", "--data-dir", str(fake_emnist))
        assert bad.returncode == 2 and "has no class for 0" in bad.stderr and "Traceback" not in bad.stderr


def test_default_out_never_overwrites_the_digit_model() -> None:
    sys.path.insert(0, str(REPO))
    try:
        import train
    finally:
        sys.path.remove(str(REPO))
    assert train.parse_args([]).out == "checkpoints/mnist-cnn.safetensors"
    assert train.parse_args(["--dataset", "emnist-letters"]).out == "checkpoints/emnist-letters-cnn.safetensors"
    assert train.recipe_for("mnist") == "mnist" and train.recipe_for("emnist-byclass") == "emnist"


def test_missing_emnist_split_is_a_clear_error(tmp_path: Path) -> None:
    # The data root exists but holds no EMNIST: offline, torchvision cannot download it either.
    res = run("train.py", "--dataset", "emnist-digits", "--dry-run", "--data-dir", str(tmp_path),
              "--out", str(tmp_path / "x.safetensors"))
    if res.returncode == 0:
        pytest.skip("this machine downloaded EMNIST")
    assert res.returncode == 2 and "EMNIST digits train not found" in res.stderr and "Traceback" not in res.stderr


def test_labels_for_model_matches_by_name() -> None:
    labels = torch.tensor([0, 1, 2])
    assert labels_for_model(labels, ["a", "b", "c"], ["a", "b", "c"]) is labels
    assert labels_for_model(labels, ["c", "a", "b"], ["a", "b", "c", "d"]).tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match="no class for x"):
        labels_for_model(labels, ["a", "b", "x"], ["a", "b", "c"])


def test_dry_run_on_the_offline_letters_says_so(data_dir: Path, tmp_path: Path) -> None:
    if not (data_dir / "EMNIST" / "raw" / "emnist-byclass-test-images-idx3-ubyte").is_file():
        pytest.skip("EMNIST byclass test files not in data dir")
    out = tmp_path / "letters.safetensors"
    res = run("train.py", "--dataset", "emnist-byclass-test-letters", "--dry-run", "--no-progress",
              "--data-dir", str(data_dir), "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    meta = read_metadata(out)
    assert meta["training"]["dataset"] == "emnist-byclass-test-letters-train" and meta["training"]["n_train"] == 49_644
    assert meta["training"]["test_set"] == "emnist-byclass-test-letters-validation"
    assert "byclass TEST split" in meta["data_note"] and "first 85%" in meta["data_note"]
