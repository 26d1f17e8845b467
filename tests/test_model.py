"""Models: shapes, parameter budgets, no NaNs."""

from __future__ import annotations

import pytest
import torch

from hwr.model import CompactCNN, ModelConfig, SeedNet, build_model, count_parameters


def test_seed_is_exactly_the_tutorial_network():
    net = SeedNet()
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes == {
        "conv1.weight": (32, 1, 3, 3), "conv1.bias": (32,),
        "conv2.weight": (64, 32, 3, 3), "conv2.bias": (64,),
        "fc1.weight": (128, 9216), "fc1.bias": (128,),
        "fc2.weight": (10, 128), "fc2.bias": (10,),
    }
    assert net.dropout1.p == 0.25 and net.dropout2.p == 0.5


def test_default_cnn_is_compact():
    net = build_model(ModelConfig())
    assert isinstance(net, CompactCNN)
    assert count_parameters(net) <= 1_000_000


@pytest.mark.parametrize("arch", ["cnn", "seed"])
@pytest.mark.parametrize("classes", [10, 26, 62])
def test_forward_shapes_and_finite(arch, classes):
    net = build_model(ModelConfig(arch=arch, num_classes=classes)).eval()
    out = net(torch.randn(5, 1, 28, 28))
    assert out.shape == (5, classes) and torch.isfinite(out).all()


def test_unknown_arch_raises():
    with pytest.raises(ValueError, match="Unknown architecture"):
        build_model(ModelConfig(arch="resnet"))


def test_config_round_trip():
    c = ModelConfig(arch="cnn", num_classes=26, widths=(8, 16, 32))
    assert ModelConfig.from_dict(c.to_dict()) == c
