"""train.py --dry-run end to end, determinism, and the evaluate CLI on its output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hwr.checkpoint import read_metadata

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def mnist_dir(data_dir):
    if not (data_dir / "MNIST" / "raw").is_dir():
        pytest.skip(f"MNIST not found under {data_dir}")
    return data_dir


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_dry_run_trains_one_batch_and_writes_a_loadable_checkpoint(mnist_dir, tmp_path):
    out = tmp_path / "dry.safetensors"
    res = run("train.py", "--dry-run", "--no-progress", "--data-dir", str(mnist_dir), "--out", str(out), "--seed", "1")
    assert res.returncode == 0, res.stderr
    assert out.exists()
    meta = read_metadata(out)
    assert meta["training"]["dry_run"] is True and meta["classes"] == [str(d) for d in range(10)]
    ev = run("-m", "hwr.evaluate", "--checkpoint", str(out), "--data-dir", str(mnist_dir), "--json", "--plot", str(tmp_path / "plots"))
    assert ev.returncode == 0, ev.stderr
    report = json.loads(ev.stdout)
    for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "per_class", "confusion"):
        assert key in report
    assert (tmp_path / "plots" / "confusion.png").exists() and (tmp_path / "plots" / "mistakes.png").exists()


def test_same_seed_same_weights(mnist_dir, tmp_path):
    from safetensors.torch import load_file

    outs = []
    for i in range(2):
        out = tmp_path / f"d{i}.safetensors"
        res = run("train.py", "--dry-run", "--no-progress", "--data-dir", str(mnist_dir), "--out", str(out), "--seed", "3")
        assert res.returncode == 0, res.stderr
        outs.append(load_file(str(out)))
    assert all((outs[0][k] == outs[1][k]).all() for k in outs[0])


def test_missing_data_gives_clear_error(tmp_path):
    res = run("train.py", "--dry-run", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "x.safetensors"))
    # Without internet torchvision cannot download: a clear error, not a traceback.
    if res.returncode == 0:
        pytest.skip("this machine downloaded MNIST")
    assert res.returncode == 2 and "MNIST not found" in res.stderr and "Traceback" not in res.stderr


def test_evaluate_cli_on_missing_checkpoint(tmp_path):
    res = run("-m", "hwr.evaluate", "--checkpoint", str(tmp_path / "nope.safetensors"), "--data-dir", str(tmp_path))
    assert res.returncode == 2 and "nope.safetensors" in res.stderr and "Traceback" not in res.stderr


def test_help_states_defaults():
    res = run("train.py", "--help")
    assert res.returncode == 0
    for flag in ("--dataset", "--data-dir", "--arch", "--epochs", "--batch-size", "--lr", "--seed", "--device", "--out", "--dry-run"):
        assert flag in res.stdout
    assert res.stdout.count("default") >= 10


def test_torchrun_two_processes_on_the_cpu(mnist_dir, tmp_path):
    """DDP with gloo: each rank trains its shard, only rank 0 writes the checkpoint and prints."""
    out = tmp_path / "ddp.safetensors"
    res = run("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py", "--dry-run",
              "--no-progress", "--device", "cpu", "--data-dir", str(mnist_dir), "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("saved ") == 1 and "2 process(es)" in res.stdout
    meta = read_metadata(out)
    assert meta["training"]["world_size"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["ddp.safetensors"]


def test_presets_set_defaults_and_flags_still_win():
    sys.path.insert(0, str(REPO))
    import train

    fast = train.parse_args(["--preset", "fast"])
    assert (fast.widths, fast.epochs, fast.batch_size, fast.lr, fast.no_augment) == ((16, 32, 64), 1, 256, 0.01, True)
    assert train.parse_args(["--preset", "fast", "--epochs", "4", "--widths", "8,8,8"]).epochs == 4
    assert train.parse_args(["--preset", "fast", "--widths", "8,8,8"]).widths == (8, 8, 8)
    bundled = train.parse_args([])
    assert (bundled.widths, bundled.epochs, bundled.lr, bundled.no_augment) == ((32, 64, 128), 15, 3e-3, False)


def test_fast_preset_dry_run_records_its_architecture_and_rebuilds(mnist_dir, tmp_path):
    from hwr import Recognizer

    out = tmp_path / "fast.safetensors"
    res = run("train.py", "--preset", "fast", "--dry-run", "--bf16", "--no-progress", "--data-dir", str(mnist_dir),
              "--out", str(out), "--stop-at", "0.5")
    assert res.returncode == 0, res.stderr
    meta = read_metadata(out)
    assert meta["model"]["widths"] == [16, 32, 64] and meta["training"]["preset"] == "fast"
    assert meta["training"]["bf16"] is True
    r = Recognizer.load(out)  # the checkpoint alone rebuilds the smaller network
    p = r.predict(np.pad(np.ones((20, 4)), 4))  # a bar: ink on a blank border
    assert abs(sum(p.probabilities.values()) - 1) < 1e-5


def test_combine_makes_a_measured_ensemble_checkpoint(mnist_dir, tmp_path):
    members = []
    for seed in ("1", "2"):
        out = tmp_path / f"m{seed}.safetensors"
        res = run("train.py", "--preset", "fast", "--dry-run", "--no-progress", "--data-dir", str(mnist_dir), "--out", str(out), "--seed", seed)
        assert res.returncode == 0, res.stderr
        members.append(str(out))
    out = tmp_path / "ens.safetensors"
    res = run("train.py", "--combine", *members, "--dry-run", "--data-dir", str(mnist_dir), "--out", str(out))
    assert res.returncode == 0, res.stderr
    meta = read_metadata(out)
    assert meta["model"]["members"] == 2 and meta["training"]["member_files"] == members
    assert 0.0 <= meta["metrics"]["mnist-test"]["accuracy"] <= 1.0
    res = run("train.py", "--combine", members[0], "--out", str(tmp_path / "one.safetensors"))
    assert res.returncode == 2 and "at least two" in res.stderr and not (tmp_path / "one.safetensors").exists()
