"""Checkpoints: round trips with tiny models, and clear errors for every kind of bad file."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from hwr.checkpoint import CheckpointError, load_checkpoint, make_metadata, read_metadata, save_checkpoint
from hwr.model import ModelConfig, build_model, count_parameters
from hwr.recognizer import DEFAULT_CHECKPOINT, Recognizer


def tiny_checkpoint(path, arch="cnn", classes=None, deslant=False):
    classes = classes or [str(d) for d in range(10)]
    config = ModelConfig(arch=arch, num_classes=len(classes), widths=(4, 4, 8), deslant=deslant)
    torch.manual_seed(0)
    model = build_model(config)
    meta = make_metadata(
        name="tiny", config=config, classes=classes, normalization={"mean": 0.1307, "std": 0.3081},
        preprocess={"recipe": "mnist", "stroke_width": 1.9}, metrics={"mnist-test": {"accuracy": 0.1}},
    )
    save_checkpoint(model, meta, path)
    return model, meta


@pytest.mark.parametrize("arch", ["cnn", "seed"])
def test_round_trip_gives_identical_outputs(tmp_path, arch):
    path = tmp_path / "m.safetensors"
    model, meta = tiny_checkpoint(path, arch)
    loaded, meta2 = load_checkpoint(path)
    assert meta2 == meta
    x = torch.randn(3, 1, 28, 28)
    model.eval()
    with torch.no_grad():
        out = loaded(x)
        assert out.shape == (3, 10) and torch.isfinite(out).all()
        assert torch.allclose(model(x), out)
    assert not loaded.training


def test_metadata_has_everything_to_rebuild_and_use(tmp_path):
    path = tmp_path / "m.safetensors"
    tiny_checkpoint(path)
    meta = read_metadata(path)
    for key in ("model", "classes", "normalization", "preprocess", "training", "metrics", "parent", "created", "torch_version"):
        assert key in meta
    assert meta["model"]["arch"] == "cnn"


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "m.safetensors"
    tiny_checkpoint(path)
    tiny_checkpoint(path)  # overwrite
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_missing_file_names_the_file(tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(CheckpointError, match="nope.safetensors.*not found"):
        load_checkpoint(path)


@pytest.mark.parametrize("keep", [0, 7, 100, 0.5, 0.99])
def test_truncated_file_names_the_file(tmp_path, keep):
    path = tmp_path / "cut.safetensors"
    tiny_checkpoint(path)
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep
    path.write_bytes(data[:n])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        load_checkpoint(path)


def test_garbage_and_pickle_files_are_refused_without_unpickling(tmp_path):
    path = tmp_path / "evil.safetensors"
    torch.save({"x": torch.zeros(1)}, path)  # a pickle: must never be unpickled
    with pytest.raises(CheckpointError, match="evil.safetensors"):
        load_checkpoint(path)
    path.write_bytes(b"\x00" * 1000)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_mismatched_weights_name_the_problem(tmp_path):
    path = tmp_path / "m.safetensors"
    _, meta = tiny_checkpoint(path)
    # metadata claims a wider model than the weights hold
    bad_meta = dict(meta, model=dict(meta["model"], widths=[8, 8, 16]))
    model = build_model(ModelConfig.from_dict(meta["model"]))
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata={"hwr": json.dumps(bad_meta)})
    with pytest.raises(CheckpointError, match="do not match.*wrong shape"):
        load_checkpoint(path)


def test_wrong_class_count_and_missing_metadata(tmp_path):
    path = tmp_path / "m.safetensors"
    _, meta = tiny_checkpoint(path)
    model = build_model(ModelConfig.from_dict(meta["model"]))
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"hwr": json.dumps(dict(meta, classes=["a", "b"]))})
    with pytest.raises(CheckpointError, match="10 outputs but metadata lists 2"):
        load_checkpoint(path)
    save_file(tensors, str(path))
    with pytest.raises(CheckpointError, match="not an hwr checkpoint"):
        load_checkpoint(path)
    save_file(tensors, str(path), metadata={"hwr": "{not json"})
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)


def test_nan_weights_are_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    model, meta = tiny_checkpoint(path)
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    save_checkpoint(model, meta, path)
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(path)


def test_recognizer_on_tiny_checkpoint(tmp_path):
    path = tmp_path / "m.safetensors"
    tiny_checkpoint(path)
    r = Recognizer.load(path)
    img = np.zeros((64, 64), np.uint8)
    img[10:50, 30:34] = 255
    p = r.predict(img)
    assert p.label in r.classes
    assert list(p.probabilities) == sorted(p.probabilities, key=p.probabilities.get, reverse=True)
    assert abs(sum(p.probabilities.values()) - 1) < 1e-5
    assert p.model_input.shape == (28, 28) and p.model_input.dtype == np.float32
    batch = r.predict_batch([img, img[::-1]])
    assert len(batch) == 2 and batch[0].label == p.label


def test_deslanting_model_rebuilds_from_its_checkpoint_and_shows_what_it_saw(tmp_path):
    path = tmp_path / "slant.safetensors"
    model, _ = tiny_checkpoint(path, deslant=True)
    r = Recognizer.load(path)
    assert r.model.deslant_input is True
    img = np.zeros((200, 200), np.uint8)
    for row in range(20, 180):  # an italic stroke: top to the right
        col = int(100 + 0.5 * (100 - row))
        img[row, col - 6 : col + 6] = 255
    p = r.predict(img)
    cols = np.arange(28)
    spread = lambda x: float(np.sqrt((x * (cols - (x * cols).sum() / x.sum()) ** 2).sum() / x.sum()))
    preprocessed = r.preprocess(img)
    assert spread(p.model_input) < 0.6 * spread(preprocessed)  # model_input is the upright view
    assert p.model_input.dtype == np.float32 and 0 <= p.model_input.min() and p.model_input.max() <= 1


def test_bundled_checkpoint_size_and_parameters():
    if not DEFAULT_CHECKPOINT.exists():
        pytest.skip("bundled checkpoint not trained yet")
    assert DEFAULT_CHECKPOINT.stat().st_size <= 5 * 1024 * 1024
    model, meta = load_checkpoint(DEFAULT_CHECKPOINT)
    assert count_parameters(model) <= 1_000_000
    assert meta["training"]["dataset"] == "mnist-train" and meta["training"]["n_train"] == 60000


def test_combined_checkpoints_round_trip_as_one_ensemble(tmp_path):
    from hwr.checkpoint import combine_checkpoints
    from hwr.model import Ensemble

    a, _ = tiny_checkpoint(tmp_path / "a.safetensors")
    torch.manual_seed(1)
    b = build_model(ModelConfig(widths=(4, 4, 8)))
    save_checkpoint(b, dict(read_metadata(tmp_path / "a.safetensors"), name="b"), tmp_path / "b.safetensors")
    model, meta = combine_checkpoints([tmp_path / "a.safetensors", tmp_path / "b.safetensors"], "pair")
    assert isinstance(model, Ensemble) and meta["model"]["members"] == 2 and meta["name"] == "pair"
    assert meta["training"]["kind"] == "ensemble" and len(meta["training"]["members"]) == 2
    save_checkpoint(model, meta, tmp_path / "pair.safetensors")
    loaded, meta2 = load_checkpoint(tmp_path / "pair.safetensors")
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        mean = (a.eval()(x).softmax(1) + b.eval()(x).softmax(1)) / 2
        assert torch.allclose(loaded(x).softmax(1), mean, atol=1e-6)
    assert Recognizer.load(tmp_path / "pair.safetensors").predict(np.eye(40)).label in meta["classes"]


def test_combine_refuses_members_that_do_not_match(tmp_path):
    from hwr.checkpoint import combine_checkpoints

    tiny_checkpoint(tmp_path / "a.safetensors")
    tiny_checkpoint(tmp_path / "letters.safetensors", classes=[chr(c) for c in range(97, 123)])
    tiny_checkpoint(tmp_path / "seed.safetensors", arch="seed")
    with pytest.raises(CheckpointError, match="at least two"):
        combine_checkpoints([tmp_path / "a.safetensors"], "x")
    with pytest.raises(CheckpointError, match="config"):
        combine_checkpoints([tmp_path / "a.safetensors", tmp_path / "seed.safetensors"], "x")
    with pytest.raises(CheckpointError, match="config|classes"):
        combine_checkpoints([tmp_path / "a.safetensors", tmp_path / "letters.safetensors"], "x")
    (tmp_path / "broken.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken"):
        combine_checkpoints([tmp_path / "a.safetensors", tmp_path / "broken.safetensors"], "x")
