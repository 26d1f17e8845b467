"""Models: pure nn.Modules plus a small config. No I/O here (see hwr/checkpoint.py).

Two architectures:
- `seed`: exactly the network of the original PyTorch MNIST tutorial (pytorch/examples mnist/main.py),
  kept as the reference baseline.
- `cnn` (default): a compact BatchNorm CNN, ~0.29 M parameters, that reaches 99.6+ % on MNIST.

Either can be an **ensemble**: `members` identical networks (trained apart, e.g. with other seeds)
whose probabilities are averaged (`Ensemble`); averaging networks that err on different drawings
is the plainest way to make fewer mistakes on writers none of them saw.

Either can start with `deslant`, a parameter-free layer that shears each input upright (the classic
MNIST "deskewing"). It lives in the model so that training, evaluation, fine-tuning and the app can
never disagree about it: a checkpoint's config says whether its model deslants.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval


@dataclass
class ModelConfig:
    arch: str = "cnn"  # "cnn" or "seed"
    num_classes: int = 10
    # cnn only: channels of the three stages (28 -> 14 -> 7 -> 3 px)
    widths: tuple[int, int, int] = (32, 64, 128)
    dropout: float = 0.1
    deslant: bool = False  # shear every input upright first (see `deslant`); no parameters
    in_channels: int = 1  # cnn only: input planes (1 for a drawing; hwr.verifier's views have 2)
    members: int = 1  # > 1: an `Ensemble` of this many networks of this config, probabilities averaged

    def to_dict(self) -> dict:
        """JSON-ready: tuples become lists, so a saved and re-read config compares equal."""
        d = asdict(self)
        d["widths"] = list(d["widths"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "widths" in known:
            known["widths"] = tuple(known["widths"])
        return cls(**known)


MAX_SHEAR = 1.0  # at most 45 degrees of slant is removed: beyond that it is more likely a stroke than a slant


def ink_moments(ink: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """ink (B, H, W), background 0 -> (total, cx, cy, sxy, syy), each (B,): the ink's mass (at least
    1e-6), its centre of mass in pixels, and the unnormalised second moments sum(ink * dx * dy) and
    sum(ink * dy * dy) about that centre. The slant (x pixels per y pixel) is sxy / syy."""
    _, h, w = ink.shape
    total = ink.sum(dim=(1, 2)).clamp(min=1e-6)  # (B,)
    ys = torch.arange(h, dtype=ink.dtype, device=ink.device).view(1, h, 1)
    xs = torch.arange(w, dtype=ink.dtype, device=ink.device).view(1, 1, w)
    cy = (ink * ys).sum(dim=(1, 2)) / total  # (B,) centre of mass, pixels
    cx = (ink * xs).sum(dim=(1, 2)) / total
    dy, dx = ys - cy.view(-1, 1, 1), xs - cx.view(-1, 1, 1)
    return total, cx, cy, (ink * dx * dy).sum(dim=(1, 2)), (ink * dy * dy).sum(dim=(1, 2))


def deslant(x: torch.Tensor, max_shear: float = MAX_SHEAR) -> torch.Tensor:
    """Shear each image horizontally about its centre of mass so that its ink has no slant.

    x (B, 1, H, W), ink brighter than the background; works on [0, 1] and on normalised inputs alike,
    since the background is taken as each image's minimum. The slant is cov(x, y) / var(y) of the
    ink, the moment-based deskewing long used on MNIST; a blank image is returned unchanged.
    """
    b, _, h, w = x.shape
    ink = x[:, 0] - x[:, 0].amin(dim=(1, 2), keepdim=True)  # (B, H, W), background 0
    total, _, cy, sxy, syy = ink_moments(ink)
    var_y, cov_xy = syy / total, sxy / total
    shear = (cov_xy / var_y.clamp(min=1e-6)).clamp(-max_shear, max_shear)  # (B,) x-pixels per y-pixel
    # affine_grid maps each output position to the input position it samples, in [-1, 1] units:
    # x_in = x_out + shear * (y_out - cy), so the row through the centre of mass stays where it is.
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, 0, 1] = shear * (h / w)
    theta[:, 0, 2] = -shear * (h / w) * ((cy + 0.5) * (2.0 / h) - 1.0)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # "border" repeats the edge pixels, which are background in a 28x28 MNIST-style field
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class SeedNet(nn.Module):
    """The tutorial network: conv 1->32 3x3, conv 32->64 3x3, max-pool 2, dropout 0.25,
    fc 9216->128, dropout 0.5, fc 128->num_classes."""

    def __init__(self, num_classes: int = 10, deslant: bool = False) -> None:
        super().__init__()
        self.deslant_input = deslant
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28) -> (B, C) logits
        if self.deslant_input:
            x = deslant(x)
        x = F.relu(self.conv1(x))  # (B, 32, 26, 26)
        x = F.relu(self.conv2(x))  # (B, 64, 24, 24)
        x = F.max_pool2d(x, 2)  # (B, 64, 12, 12)
        x = torch.flatten(self.dropout1(x), 1)  # (B, 9216)
        x = self.dropout2(F.relu(self.fc1(x)))  # (B, 128)
        return self.fc2(x)  # the tutorial returns log_softmax; we return logits for CrossEntropyLoss


def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 conv (no bias: BatchNorm has one) + BatchNorm + ReLU, size-preserving."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class CompactCNN(nn.Module):
    """Three stages of two conv-BN-ReLU blocks, each followed by 2x2 max-pool; global pooling; linear."""

    def __init__(
        self, num_classes: int = 10, widths: tuple[int, int, int] = (32, 64, 128), dropout: float = 0.1, deslant: bool = False,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        self.deslant_input = deslant
        w1, w2, w3 = widths
        self.features = nn.Sequential(
            conv_bn(in_channels, w1), conv_bn(w1, w1), nn.MaxPool2d(2),  # (B, w1, 14, 14)
            conv_bn(w1, w2), conv_bn(w2, w2), nn.MaxPool2d(2),  # (B, w2, 7, 7)
            conv_bn(w2, w3), conv_bn(w3, w3), nn.MaxPool2d(2),  # (B, w3, 3, 3)
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(w3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in_channels, 28, 28) -> (B, C) logits
        if self.deslant_input:
            x = deslant(x)
        x = self.features(x)
        x = x.amax(dim=(2, 3))  # (B, w3): global max pool keeps the strongest stroke evidence
        return self.head(self.dropout(x))


class Ensemble(nn.Module):
    """Networks of one config whose class probabilities are averaged.

    The output is the log of the members' mean probability, so softmax of it is that mean (what
    `hwr.inference` and the app show) and cross-entropy on it trains the members together (what
    fine-tuning does). Each member is a whole network: `members.0.*`, `members.1.*` in a checkpoint.
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("An ensemble needs at least one member.")
        self.members = nn.ModuleList(members)
        self.deslant_input = getattr(members[0], "deslant_input", False)  # members share one config

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, 28, 28) -> (B, C) log mean probabilities
        log_probs = torch.stack([m(x).log_softmax(dim=1) for m in self.members])  # (M, B, C)
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))


def build_model(config: ModelConfig) -> nn.Module:
    if config.members < 1:
        raise ValueError(f"members must be at least 1, not {config.members}.")
    if config.members > 1:
        return Ensemble([build_model(replace(config, members=1)) for _ in range(config.members)])
    if config.arch == "seed":
        return SeedNet(config.num_classes, config.deslant)
    if config.arch == "cnn":
        return CompactCNN(config.num_classes, tuple(config.widths), config.dropout, config.deslant, config.in_channels)
    raise ValueError(f"Unknown architecture {config.arch!r}; expected 'cnn' or 'seed'.")


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An inference copy of `model` (eval mode) with each BatchNorm folded into the convolution
    before it: one op instead of two, the same outputs up to float rounding (~1e-7). The original
    is left as it is (it can still be fine-tuned and saved)."""
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for i in range(len(module) - 1):
            conv, bn = module[i], module[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module[i], module[i + 1] = fuse_conv_bn_eval(conv, bn), nn.Identity()
    return folded


def inference_copy(model: nn.Module) -> nn.Module:
    """`fold_batchnorm(model)` in channels_last memory: what every forward pass that does not train
    runs (on this 2-core CPU the MNIST test set goes ~1.8x faster, with the same predictions)."""
    return fold_batchnorm(model).to(memory_format=torch.channels_last)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
