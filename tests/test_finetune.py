"""Fine-tuning on corrections: the loop runs end to end, measures, gates and records its parent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from hwr.checkpoint import load_checkpoint, read_metadata
from hwr.corrections import CorrectionStore
from hwr.data import ImageDataset
from hwr.finetune import FinetuneConfig, finetune, split_holdout

REPO = Path(__file__).resolve().parent.parent
CLASSES = [str(d) for d in range(10)]


def bar_drawing(vertical: bool, shift: int) -> np.ndarray:
    img = Image.new("L", (120, 120), 255)
    d = ImageDraw.Draw(img)
    if vertical:
        d.line([(60 + shift, 20), (60 + shift, 100)], fill=0, width=8)
    else:
        d.line([(20, 60 + shift), (100, 60 + shift)], fill=0, width=8)
    return np.asarray(img)


def fake_mnist(n: int = 64) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    return ImageDataset("mnist-fake", torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g),
                        torch.randint(0, 10, (n,), generator=g), list(CLASSES))


@pytest.fixture
def store_with_corrections(tmp_path):
    store = CorrectionStore(tmp_path / "corr", classes=CLASSES)
    for i in range(10):
        store.add(bar_drawing(True, i - 5), "1")
        store.add(bar_drawing(False, i - 5), "7")
    return store


def tiny_checkpoint(path):
    from tests.test_checkpoint import tiny_checkpoint as make

    make(path)
    return path


def test_split_holdout_is_seeded_and_disjoint():
    a, b = split_holdout(50, 0.2, 0)
    assert len(b) == 10 and not set(a) & set(b) and sorted([*a, *b]) == list(range(50))
    assert (split_holdout(50, 0.2, 0)[1] == b).all()
    assert len(split_holdout(3, 0.2, 0)[1]) == 0


def test_finetune_learns_corrections_and_records_parent(tmp_path, store_with_corrections):
    # An untrained parent: its BatchNorm statistics mean nothing, so they are trained here (the default
    # freezes them, which is right for a trained parent; see test_frozen_batchnorm_keeps_statistics).
    ckpt = tiny_checkpoint(tmp_path / "parent.safetensors")
    steps = []
    result = finetune(ckpt, store_with_corrections.root, tmp_path, FinetuneConfig(epochs=6, lr=1e-2, batch_size=16, max_mnist_drop=100.0,
                                      oversample=4, replay_ratio=1.0, freeze_batchnorm=False),
                      progress=lambda f, m: steps.append(f), replay=fake_mnist(), mnist_test=fake_mnist())
    assert result.n_corrections == 20 and result.n_holdout == 4 and result.n_train == 16
    assert result.after["holdout_accuracy"] >= result.before["holdout_accuracy"]
    assert result.after["holdout_accuracy"] == 1.0
    assert result.gate_passed and steps[-1] == 1.0 and steps == sorted(steps)
    assert result.metadata["parent"] == "tiny"
    assert result.metadata["training"]["n_corrections"] == 20
    assert set(result.metadata["finetune"]) >= {"before", "after", "gate_passed"}


def test_gate_fails_when_mnist_drops(tmp_path, store_with_corrections):
    ckpt = tiny_checkpoint(tmp_path / "parent.safetensors")
    # A gate that allows a *rise* only: any non-improvement fails.
    result = finetune(ckpt, store_with_corrections.root, tmp_path, FinetuneConfig(epochs=1, max_mnist_drop=-100.0),
                      replay=fake_mnist(), mnist_test=fake_mnist())
    assert not result.gate_passed and "gate" in result.reason


def test_no_corrections_is_a_clear_error(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "parent.safetensors")
    with pytest.raises(ValueError, match="No usable corrections"):
        finetune(ckpt, tmp_path / "empty", tmp_path, replay=fake_mnist(), mnist_test=fake_mnist())


def test_train_py_fine_tune_cli(tmp_path, store_with_corrections, data_dir):
    if not (data_dir / "MNIST" / "raw").is_dir():
        pytest.skip("MNIST not in data dir")
    ckpt = tiny_checkpoint(tmp_path / "parent.safetensors")
    out = tmp_path / "child.safetensors"
    cmd = [sys.executable, "train.py", "--init-from", str(ckpt), "--corrections", str(store_with_corrections.root),
           "--data-dir", str(data_dir), "--out", str(out), "--dry-run", "--no-progress"]
    res = subprocess.run(cmd + ["--max-mnist-drop", "-100"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 3 and "NOT written" in res.stdout and not out.exists()
    res = subprocess.run(cmd + ["--max-mnist-drop", "100"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    meta = read_metadata(out)
    assert meta["parent"] == "tiny" and meta["name"] == "child"
    assert "before" in meta["finetune"] and "mnist_accuracy" in meta["finetune"]["after"]
    load_checkpoint(out)


def test_frozen_batchnorm_keeps_statistics(tmp_path, store_with_corrections):
    from hwr.checkpoint import load_checkpoint

    ckpt = tiny_checkpoint(tmp_path / "parent.safetensors")
    parent, _ = load_checkpoint(ckpt)
    result = finetune(ckpt, store_with_corrections.root, tmp_path, FinetuneConfig(epochs=1, max_mnist_drop=100.0),
                      replay=fake_mnist(), mnist_test=fake_mnist())
    before = {k: v for k, v in parent.state_dict().items() if "running" in k}
    after = result.model.state_dict()
    assert before and all(torch.equal(v, after[k]) for k, v in before.items())
    assert not torch.equal(parent.state_dict()["head.weight"], after["head.weight"])  # but it learnt


def test_an_ensemble_fine_tunes_as_one_model(tmp_path, store_with_corrections):
    """A `train.py --combine` checkpoint fine-tunes like any other: both members learn, their
    BatchNorm statistics stay, and the child is again a two-member ensemble."""
    from hwr.checkpoint import combine_checkpoints, save_checkpoint

    a, b = tiny_checkpoint(tmp_path / "a.safetensors"), tiny_checkpoint(tmp_path / "b.safetensors")
    pair, meta = combine_checkpoints([a, b], "pair")
    save_checkpoint(pair, meta, tmp_path / "pair.safetensors")
    result = finetune(tmp_path / "pair.safetensors", store_with_corrections.root, tmp_path,
                      FinetuneConfig(epochs=1, max_mnist_drop=100.0), replay=fake_mnist(), mnist_test=fake_mnist())
    before, after = pair.state_dict(), result.model.state_dict()
    assert result.metadata["model"]["members"] == 2 and result.metadata["parent"] == "pair"
    assert all(torch.equal(v, after[k]) for k, v in before.items() if "running" in k)
    assert not torch.equal(before["members.0.head.weight"], after["members.0.head.weight"])
    assert not torch.equal(before["members.1.head.weight"], after["members.1.head.weight"])
