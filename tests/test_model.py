"""Models: shapes, parameter budgets, no NaNs."""

from __future__ import annotations

import pytest
import torch

from hwr.model import CompactCNN, Ensemble, ModelConfig, SeedNet, build_model, count_parameters, deslant, fold_batchnorm, inference_copy


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


def slanted_bar(shear: float, size: int = 28) -> torch.Tensor:
    """(1, 1, size, size): a 3 px wide bar from (row 4) to (row 23) that leans by `shear` px per row."""
    x = torch.zeros(1, 1, size, size)
    for row in range(4, 24):
        col = round(14 + shear * (13.5 - row))  # top to the right when shear > 0, like italic writing
        x[0, 0, row, col - 1 : col + 2] = 1.0
    return x


def column_spread(x: torch.Tensor) -> float:
    """Standard deviation of the ink's column index: 0 for a perfectly vertical bar."""
    ink = x[0, 0]
    cols = torch.arange(ink.shape[1], dtype=ink.dtype).view(1, -1)
    mean = (ink * cols).sum() / ink.sum()
    return float(((ink * (cols - mean) ** 2).sum() / ink.sum()).sqrt())


@pytest.mark.parametrize("shear", [-0.6, -0.3, 0.3, 0.6])
def test_deslant_stands_a_slanted_stroke_upright_in_place(shear):
    x = slanted_bar(shear)
    y = deslant(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    upright = column_spread(slanted_bar(0.0))  # 0.82: a vertical 3 px bar
    assert column_spread(y) < upright + 0.2 < column_spread(x)  # (nearly) vertical now
    rows = torch.arange(28, dtype=torch.float32).view(-1, 1)
    centre_row = lambda t: float((t[0, 0] * rows).sum() / t[0, 0].sum())
    assert abs(centre_row(y) - centre_row(x)) < 0.5  # a horizontal shear moves nothing up or down
    assert abs(float(y.sum() - x.sum())) / float(x.sum()) < 0.05  # ink is kept, not cut off


def test_deslant_leaves_upright_and_blank_images_alone_and_ignores_normalisation():
    upright = slanted_bar(0.0)
    assert torch.allclose(deslant(upright), upright, atol=1e-5)
    blank = torch.zeros(2, 1, 28, 28)
    assert torch.equal(deslant(blank), blank)
    x = slanted_bar(0.5)
    mean, std = 0.1307, 0.3081  # MNIST's normalisation: the model sees normalised inputs
    assert torch.allclose(deslant((x - mean) / std) * std + mean, deslant(x), atol=1e-5)


@pytest.mark.parametrize("arch", ["cnn", "seed"])
def test_deslant_is_a_parameter_free_switch_of_the_config(arch):
    plain, slanted = build_model(ModelConfig(arch=arch)), build_model(ModelConfig(arch=arch, deslant=True))
    assert plain.state_dict().keys() == slanted.state_dict().keys()  # same weights file either way
    slanted.load_state_dict(plain.state_dict())
    plain.eval(), slanted.eval()
    x = slanted_bar(0.5)
    assert torch.allclose(slanted(x), plain(deslant(x)), atol=1e-5)
    # configs saved before the switch existed rebuild without it
    assert ModelConfig.from_dict({"arch": arch, "num_classes": 10}).deslant is False


def test_ensemble_averages_its_members_probabilities():
    net = build_model(ModelConfig(widths=(4, 4, 8), members=3)).eval()
    assert isinstance(net, Ensemble) and len(net.members) == 3
    assert count_parameters(net) == 3 * count_parameters(build_model(ModelConfig(widths=(4, 4, 8))))
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        out = net(x)  # (5, 10) log mean probabilities
        mean = torch.stack([m(x).softmax(dim=1) for m in net.members]).mean(dim=0)
    assert out.shape == (5, 10) and torch.isfinite(out).all()
    assert torch.allclose(out.softmax(dim=1), mean, atol=1e-6)
    assert torch.allclose(out.exp().sum(dim=1), torch.ones(5), atol=1e-5)  # already log-probabilities


def test_ensemble_trains_through_cross_entropy():
    net = build_model(ModelConfig(widths=(4, 4, 8), members=2))
    loss = torch.nn.functional.cross_entropy(net(torch.randn(4, 1, 28, 28)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_ensemble_config_round_trip_and_bad_member_count():
    c = ModelConfig(members=2)
    assert ModelConfig.from_dict(c.to_dict()) == c
    assert ModelConfig.from_dict({k: v for k, v in ModelConfig().to_dict().items() if k != "members"}).members == 1
    with pytest.raises(ValueError, match="members"):
        build_model(ModelConfig(members=0))


@pytest.mark.parametrize("members", [1, 2])
def test_fold_batchnorm_gives_the_same_outputs_and_leaves_the_model_alone(members):
    net = build_model(ModelConfig(widths=(4, 4, 8), members=members))
    for m in net.modules():  # non-trivial running statistics and affine parameters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.data.uniform_(0.5, 2)
    net.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the original is untouched
    x = torch.randn(6, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(net(x), folded(x), atol=1e-4)
        assert torch.allclose(net(x), folded.to(memory_format=torch.channels_last)(x), atol=1e-4)


def test_inference_copy_predicts_as_the_model_in_eval_mode_and_leaves_it_training():
    """evaluate() measures through inference_copy while train.py keeps training the original."""
    net = build_model(ModelConfig(widths=(4, 4, 8), members=2))
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fast = inference_copy(net)
    assert net.training and not fast.training  # the original's mode is not changed
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    x = torch.randn(6, 1, 28, 28)
    with torch.no_grad():
        out = fast(x)
        assert out.shape == (6, 10) and torch.isfinite(out).all()
        assert torch.allclose(net.eval()(x), out, atol=1e-4)
