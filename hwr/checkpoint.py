"""Checkpoints: safetensors weights + JSON metadata inside the same file. Safe by construction.

A checkpoint is one `.safetensors` file. Its header metadata holds one key, "hwr", a JSON object with
everything needed to rebuild and use the model (see `make_metadata`). Loading reads tensors with
safetensors (no pickle, no code execution) and checks them against the rebuilt model; any problem
raises `CheckpointError` naming the file and what is wrong.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from hwr.fileio import atomic_write
from hwr.model import Ensemble, ModelConfig, build_model

METADATA_KEY = "hwr"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "name", "model", "classes", "normalization", "preprocess")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or does not match what it claims to be."""


def make_metadata(
    *,
    name: str,
    config: ModelConfig,
    classes: list[str],
    normalization: dict[str, float],
    preprocess: dict[str, Any],
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    parent: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Everything needed to rebuild, use and understand a model."""
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "model": config.to_dict(),
        "classes": list(classes),
        "normalization": dict(normalization),  # x_model = (x - mean) / std, x in [0, 1], 1 = ink
        "preprocess": dict(preprocess),
        "training": training or {},
        "metrics": metrics or {},
        "parent": parent,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        **extra,
    }


def save_checkpoint(model: nn.Module, metadata: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write weights + metadata atomically (temp file in the same folder, fsync, os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    missing = [k for k in REQUIRED_KEYS if k not in metadata]
    if missing:
        raise ValueError(f"metadata lacks {missing}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, save(tensors, metadata={METADATA_KEY: json.dumps(metadata)}))
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Read only the JSON metadata of a checkpoint (cheap: the header, not the weights)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found.")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a valid safetensors file (truncated or corrupt?): {exc}") from None
    if raw is None:
        raise CheckpointError(f"{path}: no '{METADATA_KEY}' metadata; not an hwr checkpoint.")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: metadata is not valid JSON: {exc}") from None
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: metadata lacks required keys {missing}.")
    if meta["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {meta['format_version']} is newer than this code supports.")
    return meta


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model described by the metadata and load its weights. Returns (model in eval mode, metadata)."""
    path = Path(path)
    meta = read_metadata(path)
    try:
        config = ModelConfig.from_dict(meta["model"])
        model = build_model(config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild the model from its metadata: {exc}") from None
    if config.num_classes != len(meta["classes"]):
        raise CheckpointError(
            f"{path}: the model has {config.num_classes} outputs but metadata lists {len(meta['classes'])} classes."
        )
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read weights (truncated or corrupt?): {exc}") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong_shape = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or unexpected or wrong_shape:
        detail = "; ".join(
            s
            for s in (
                f"missing {missing[:5]}" if missing else "",
                f"unexpected {unexpected[:5]}" if unexpected else "",
                f"wrong shape {wrong_shape[:5]}" if wrong_shape else "",
            )
            if s
        )
        raise CheckpointError(f"{path}: weights do not match architecture {config.arch!r}: {detail}.")
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path}: weights contain NaN or infinite values in {bad[:5]}.")
    model.load_state_dict(tensors)
    return model.to(device).eval(), meta


# What members of one ensemble must share: the same outputs, inputs and preprocessing.
SHARED_KEYS = ("classes", "normalization", "preprocess")


def combine_checkpoints(paths: list[str | os.PathLike], name: str) -> tuple[Ensemble, dict[str, Any]]:
    """Load single-network checkpoints of one config and make them one `Ensemble` (probabilities
    averaged). Returns (model in eval mode, metadata: the members' config with `members` = their
    number, and each member's training under training["members"]; metrics are left to the caller
    to measure). Raises CheckpointError when a file is bad or the members do not match."""
    if len(paths) < 2:
        raise CheckpointError("An ensemble needs at least two checkpoints.")
    loaded = [load_checkpoint(p) for p in paths]
    first_path, (_, first) = paths[0], loaded[0]
    config = ModelConfig.from_dict(first["model"])
    for path, (_, meta) in zip(paths, loaded):
        if ModelConfig.from_dict(meta["model"]).members != 1:
            raise CheckpointError(f"{path}: already an ensemble; combine single networks.")
        if ModelConfig.from_dict(meta["model"]) != config:
            raise CheckpointError(f"{path}: model config {meta['model']} differs from {first_path}'s {first['model']}.")
        for key in SHARED_KEYS:
            if meta[key] != first[key]:
                raise CheckpointError(f"{path}: its {key} differs from {first_path}'s; members must share it.")
    model = Ensemble([m for m, _ in loaded]).eval()
    training = dict(first.get("training", {}))
    metadata = make_metadata(
        name=name, config=ModelConfig.from_dict({**config.to_dict(), "members": len(paths)}),
        classes=first["classes"], normalization=first["normalization"], preprocess=first["preprocess"],
        training={
            "kind": "ensemble", "dataset": training.get("dataset"), "test_set": training.get("test_set"),
            "n_train": training.get("n_train"), "member_files": [str(p) for p in paths],
            "members": [meta.get("training", {}) for _, meta in loaded],
        },
    )
    return model, metadata
