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

from hwr.model import ink_moments
from hwr.preprocess import FIELD_CENTRE

# Where MNIST's centre of mass sits, pixel index: where preprocessing puts a drawing's (measured 14.00, 14.01).
MNIST_CENTRE = FIELD_CENTRE[0]
DEFAULT_FLAG_PROB = 0.5  # share of 1s given a flag (add_flags); the bundled model's recipe
# The bundled recipe's flags, from the flags people draw: on the pendigits 1s (771 of 779 have one) a
# flag is 0.36-0.85 of the 1's height (median 0.57) and leaves the stem at 10-42 degrees (median 24),
# on stems slanted 0-22 degrees. (Measured on the strokes; MNIST training never sees pendigits. The
# bundled model's second stage, fine-tuning on pendigits writers 1-12, is README's model card.)
DEFAULT_FLAG_LENGTH = (0.35, 0.85)
DEFAULT_FLAG_ANGLE = (10.0, 45.0)
DEFAULT_FLAG_FROM_STEM = True
DEFAULT_FLAG_RECENTRE = True  # a drawn flagged 1 is centred by mass by preprocessing; so is its twin here


@dataclass
class AugmentConfig:
    rotate_deg: float = 12.0
    scale: tuple[float, float] = (0.85, 1.12)
    shear: float = 0.15  # shear factor, both axes
    shift_px: float = 2.5  # in 28 px field pixels
    thickness: tuple[float, float] = (-0.5, 0.6)  # <0: partial erosion, >0: partial dilation (1 = one 3x3 step)
    flag_classes: tuple[int, ...] = ()  # class indices that may get a European-style flag (add_flags)
    flag_prob: float = 0.0  # share of those images that get one
    flag_length: tuple[float, float] = DEFAULT_FLAG_LENGTH  # flag length, as a share of the ink height
    flag_angle_deg: tuple[float, float] = DEFAULT_FLAG_ANGLE  # flag direction, degrees (see flag_from_stem)
    flag_recentre: bool = DEFAULT_FLAG_RECENTRE  # move a flagged 1's centre of mass back to the field's centre
    flag_from_stem: bool = DEFAULT_FLAG_FROM_STEM  # flag_angle_deg is from the 1's stem, not from the horizontal




def augment_for(
    classes: list[str],
    flag_prob: float = DEFAULT_FLAG_PROB,
    flag_angle_deg: tuple[float, float] = DEFAULT_FLAG_ANGLE,
    flag_length: tuple[float, float] = DEFAULT_FLAG_LENGTH,
    flag_recentre: bool = DEFAULT_FLAG_RECENTRE,
    flag_from_stem: bool = DEFAULT_FLAG_FROM_STEM,
) -> AugmentConfig:
    """The augmentation recipe for a dataset: flags go on the class "1" when it has one."""
    return AugmentConfig(flag_classes=(classes.index("1"),) if "1" in classes else (), flag_prob=flag_prob,
                         flag_angle_deg=flag_angle_deg, flag_length=flag_length, flag_recentre=flag_recentre,
                         flag_from_stem=flag_from_stem)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) * (hi - lo) + lo


def centre_of_mass_offset(x: torch.Tensor, centre: float = MNIST_CENTRE) -> torch.Tensor:
    """x (B, 1, H, W) -> (B, 2): each image's centre of mass (col, row) minus `centre`, in pixels
    (0 for a blank image)."""
    ink = x[:, 0]  # (B, H, W)
    total = ink.sum(dim=(1, 2))  # (B,)
    rows = torch.arange(x.shape[-2], dtype=x.dtype, device=x.device)
    cols = torch.arange(x.shape[-1], dtype=x.dtype, device=x.device)
    cy = (ink.sum(dim=2) * rows).sum(dim=1) / total.clamp(min=1e-6)
    cx = (ink.sum(dim=1) * cols).sum(dim=1) / total.clamp(min=1e-6)
    offset = torch.stack([cx - centre, cy - centre], dim=1)
    return torch.where((total > 0).unsqueeze(1), offset, torch.zeros_like(offset))


def random_affine(
    x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator | None = None, recentre: torch.Tensor | None = None
) -> torch.Tensor:
    """x (B, 1, H, W) float in [0, 1] -> same shape, each image with its own random affine map.

    recentre (B, 2), optional: pixels (col, row) by which to move each image's content back
    towards the centre before the random map (used after a flag has moved a 1's centre of mass).
    """
    b, dev = x.shape[0], x.device
    angle = _uniform(b, -cfg.rotate_deg, cfg.rotate_deg, g, dev) * (math.pi / 180)
    scale = _uniform(b, *cfg.scale, g, dev)
    shx = _uniform(b, -cfg.shear, cfg.shear, g, dev)
    shy = _uniform(b, -cfg.shear, cfg.shear, g, dev)
    # affine_grid maps output coords -> input coords in [-1, 1] units; one pixel = 2 / W.
    tx = _uniform(b, -cfg.shift_px, cfg.shift_px, g, dev) * (2.0 / x.shape[-1])
    ty = _uniform(b, -cfg.shift_px, cfg.shift_px, g, dev) * (2.0 / x.shape[-2])
    if recentre is not None:  # output (0, 0), the field's centre, samples the input's centre of mass
        tx = tx + recentre[:, 0] * (2.0 / x.shape[-1])
        ty = ty + recentre[:, 1] * (2.0 / x.shape[-2])
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


def augment_batch(
    x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator | None = None, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """Flags (for cfg.flag_classes), thickness jitter, then a random affine map. x (B, 1, 28, 28) in [0, 1].

    A flagged image is moved so that its centre of mass is back at the field's centre, as the
    MNIST preprocessing of a drawn flagged 1 would place it (cfg.flag_recentre).
    """
    recentre = None
    if cfg.flag_classes and cfg.flag_prob > 0 and labels is not None:
        eligible = torch.isin(labels, torch.tensor(cfg.flag_classes, device=labels.device))
        chosen = torch.rand(len(labels), generator=g, device=x.device) < cfg.flag_prob
        flagged = eligible & chosen
        x = add_flags(x, flagged, g, cfg.flag_length, cfg.flag_angle_deg, cfg.flag_from_stem)
        if cfg.flag_recentre:
            recentre = centre_of_mass_offset(x) * flagged.unsqueeze(1)
    return random_affine(random_thickness(x, cfg, g), cfg, g, recentre).clamp_(0.0, 1.0)


def stem_angle(x: torch.Tensor) -> torch.Tensor:
    """x (B, 1, H, W) -> (B,) radians below horizontal, pointing left, of each image's main axis
    going down: pi/2 for an upright stroke, less for one whose top leans right. From the ink's
    second moments (the slant cov(x, y) / var(y), as in hwr.model.deslant)."""
    _, _, _, sxy, syy = ink_moments(x[:, 0])
    slant = sxy / syy.clamp(min=1e-6)  # x px per y px
    return torch.atan2(torch.ones_like(slant), -slant)


def add_flags(
    x: torch.Tensor,
    which: torch.Tensor,
    g: torch.Generator | None = None,
    length: tuple[float, float] = DEFAULT_FLAG_LENGTH,
    angle_deg: tuple[float, float] = DEFAULT_FLAG_ANGLE,
    from_stem: bool = DEFAULT_FLAG_FROM_STEM,
) -> torch.Tensor:
    """Draw a European-style flag on the images where `which` is True: a short stroke going down-left
    from the top of the ink. For the digit 1: MNIST's writers (US Census staff and students) almost
    never wrote it, but many people do, and without it a flagged 1 reads as a 7.

    x (B, 1, H, W) in [0, 1]; which (B,) bool. The flag is `length` of the ink height long, leaves
    the top `angle_deg` away from the stem (from_stem; else below the horizontal), ~2.4 px wide; it is
    added before the thickness and affine augmentation. Defaults: DEFAULT_FLAG_* (measured on the
    flags people draw). The first recipe (25-45 % long, 15-50 degrees below the horizontal, no
    re-centring) gave 97.54 % on pendigits renders; see BENCHMARKS.md.
    """
    b, _, h, w = x.shape
    dev = x.device
    ink = x[:, 0] > 0.5  # (B, H, W)
    rows = ink.any(dim=2)  # (B, H)
    has_ink = rows.any(dim=1) & which
    if not bool(has_ink.any()):
        return x
    ar = torch.arange(h, device=dev)
    top = torch.where(rows, ar, h).amin(dim=1).clamp(max=h - 1)  # (B,) first ink row
    bottom = torch.where(rows, ar, -1).amax(dim=1).clamp(min=0)
    band = ((ar.view(1, h) >= top.view(b, 1)) & (ar.view(1, h) <= top.view(b, 1) + 1)).view(b, h, 1) & ink
    cols = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, w)
    x0 = (band * cols).sum(dim=(1, 2)) / band.sum(dim=(1, 2)).clamp(min=1)  # (B,) centre of the top ink
    y0 = top.float()
    length = _uniform(b, *length, g, dev) * (bottom - top).float().clamp(min=4)
    angle = _uniform(b, *angle_deg, g, dev) * (math.pi / 180)
    if from_stem:  # angle_deg is measured from the 1's own stem, so a slanted 1 keeps a visible flag
        angle = (stem_angle(x) - angle).clamp(min=5 * math.pi / 180)
    x1, y1 = x0 - length * torch.cos(angle), y0 + length * torch.sin(angle)
    # Distance of every pixel to the segment (x0, y0)-(x1, y1): (B, H, W).
    py = torch.arange(h, device=dev, dtype=torch.float32).view(1, h, 1)
    px = cols
    dx, dy = (x1 - x0).view(b, 1, 1), (y1 - y0).view(b, 1, 1)
    t = (((px - x0.view(b, 1, 1)) * dx + (py - y0.view(b, 1, 1)) * dy) / (dx * dx + dy * dy).clamp(min=1e-6)).clamp(0, 1)
    dist = torch.hypot(px - (x0.view(b, 1, 1) + t * dx), py - (y0.view(b, 1, 1) + t * dy))
    flag = (1.7 - dist).clamp(0, 1) * has_ink.view(b, 1, 1)  # ~2.4 px wide with soft edges
    return torch.maximum(x, flag.unsqueeze(1))
