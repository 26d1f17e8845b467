"""Batched augmentation as tensor ops on the device (airbench-style: whole batches, no per-image loop).

Random affine (rotation, scale, shear, shift) through one affine_grid + grid_sample call, and
stroke-thickness jitter through fractional max-pool dilation / erosion, so the model sees the range
of stroke widths that drawings produce even after preprocessing normalises them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    rotate_deg: float = 12.0
    scale: tuple[float, float] = (0.85, 1.12)
    shear: float = 0.15  # shear factor, both axes
    shift_px: float = 2.5  # in 28 px field pixels
    thickness: tuple[float, float] = (-0.5, 0.6)  # <0: partial erosion, >0: partial dilation (1 = one 3x3 step)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) * (hi - lo) + lo


def random_affine(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator | None = None) -> torch.Tensor:
    """x (B, 1, H, W) float in [0, 1] -> same shape, each image with its own random affine map."""
    b, dev = x.shape[0], x.device
    angle = _uniform(b, -cfg.rotate_deg, cfg.rotate_deg, g, dev) * (math.pi / 180)
    scale = _uniform(b, *cfg.scale, g, dev)
    shx = _uniform(b, -cfg.shear, cfg.shear, g, dev)
    shy = _uniform(b, -cfg.shear, cfg.shear, g, dev)
    # affine_grid maps output coords -> input coords in [-1, 1] units; one pixel = 2 / W.
    tx = _uniform(b, -cfg.shift_px, cfg.shift_px, g, dev) * (2.0 / x.shape[-1])
    ty = _uniform(b, -cfg.shift_px, cfg.shift_px, g, dev) * (2.0 / x.shape[-2])
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos + shx * sin, -sin + shx * cos, tx], dim=1),
            torch.stack([sin + shy * cos, cos + shy * -sin, ty], dim=1),
        ],
        dim=1,
    )  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_thickness(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator | None = None) -> torch.Tensor:
    """Blend each image towards its 3x3 dilation or erosion by a random amount (fractional stroke width)."""
    b = x.shape[0]
    amount = _uniform(b, *cfg.thickness, g, x.device).view(b, 1, 1, 1)
    dilated = F.max_pool2d(x, 3, stride=1, padding=1)
    eroded = -F.max_pool2d(-x, 3, stride=1, padding=1)
    target = torch.where(amount >= 0, dilated, eroded)
    return x + amount.abs().clamp(max=1.0) * (target - x)


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator | None = None) -> torch.Tensor:
    """Thickness jitter, then a random affine map. x (B, 1, 28, 28) in [0, 1]."""
    return random_affine(random_thickness(x, cfg, g), cfg, g).clamp_(0.0, 1.0)
