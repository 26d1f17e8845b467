"""Batched augmentation: shapes, ranges, determinism, and that flags go only where asked."""

from __future__ import annotations

import math

import torch

from hwr.augment import (
    DEFAULT_FLAG_LENGTH,
    DEFAULT_FLAG_PROB,
    AugmentConfig,
    add_flags,
    augment_batch,
    augment_for,
    centre_of_mass_offset,
    random_affine,
    random_thickness,
    stem_angle,
)


def bars(n: int = 8) -> torch.Tensor:
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 4:24, 13:15] = 1.0  # a vertical stroke: an MNIST-like "1"
    return x


def test_augment_keeps_shape_range_and_is_seeded():
    x = bars()
    cfg = augment_for([str(d) for d in range(10)])
    labels = torch.ones(8, dtype=torch.long)
    a = augment_batch(x, cfg, torch.Generator().manual_seed(0), labels)
    b = augment_batch(x, cfg, torch.Generator().manual_seed(0), labels)
    assert a.shape == x.shape and torch.isfinite(a).all() and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, augment_batch(x, cfg, torch.Generator().manual_seed(1), labels))


def test_identity_affine_and_thickness_ranges():
    x = bars()
    still = AugmentConfig(rotate_deg=0, scale=(1, 1), shear=0, shift_px=0, thickness=(0, 0))
    assert torch.allclose(random_affine(x, still), x, atol=1e-5)
    assert torch.allclose(random_thickness(x, still), x)
    fat = random_thickness(x, AugmentConfig(thickness=(1, 1)))
    thin = random_thickness(x, AugmentConfig(thickness=(-1, -1)))
    assert fat.sum() > x.sum() > thin.sum()


def test_flags_only_on_chosen_images_and_left_of_the_top():
    x = bars(4)
    which = torch.tensor([True, False, True, False])
    y = add_flags(x, which, torch.Generator().manual_seed(0))
    assert torch.equal(y[1], x[1]) and torch.equal(y[3], x[3])
    for i in (0, 2):
        added = (y[i, 0] - x[i, 0]) > 0.5
        assert added.any()
        rows, cols = added.nonzero(as_tuple=True)
        assert cols.float().mean() < 13  # the flag goes left of the stroke
        assert rows.float().mean() < 14  # in the upper half
    assert torch.equal(add_flags(torch.zeros(2, 1, 28, 28), torch.ones(2, dtype=torch.bool)), torch.zeros(2, 1, 28, 28))


def test_flag_classes_follow_the_dataset():
    assert augment_for([str(d) for d in range(10)]).flag_classes == (1,)
    assert augment_for(["a", "b"]).flag_classes == ()


def slanted_bars(n: int = 2, lean_px: float = 6.0) -> torch.Tensor:
    """A stroke whose top leans `lean_px` to the right of its bottom: a slanted "1"."""
    x = torch.zeros(n, 1, 28, 28)
    for row in range(4, 24):
        col = round(14 - lean_px / 2 + lean_px * (23 - row) / 19)
        x[:, :, row, col - 1 : col + 1] = 1.0
    return x


def test_stem_angle_is_upright_for_a_vertical_stroke_and_less_for_a_leaning_one():
    upright = stem_angle(bars(1))
    leaning = stem_angle(slanted_bars(1))
    assert torch.allclose(upright, torch.tensor([math.pi / 2]), atol=1e-4)
    assert math.radians(60) < leaning.item() < math.radians(85)  # ~17 degrees off the vertical


def test_flag_from_stem_on_an_upright_1_is_the_complementary_angle_from_the_horizontal():
    x, which = bars(2), torch.ones(2, dtype=torch.bool)
    from_stem = add_flags(x, which, torch.Generator().manual_seed(0), (0.5, 0.5), (30, 30), from_stem=True)
    from_horizontal = add_flags(x, which, torch.Generator().manual_seed(0), (0.5, 0.5), (60, 60), from_stem=False)
    assert torch.allclose(from_stem, from_horizontal, atol=1e-4)


def test_flag_from_stem_follows_a_slanted_stem():
    """On a stem leaning right, a flag 30 degrees from the stem is flatter than 60 below horizontal."""
    x, which = slanted_bars(1), torch.ones(1, dtype=torch.bool)
    flag = add_flags(x, which, torch.Generator().manual_seed(0), (0.5, 0.5), (30, 30), from_stem=True) - x
    rows, cols = (flag[0, 0] > 0.5).nonzero(as_tuple=True)
    drop = (rows.max() - rows.min()).item()
    run = (cols.max() - cols.min()).item()
    expected = math.degrees(stem_angle(x).item()) - 30  # below the horizontal
    assert abs(math.degrees(math.atan2(drop, run)) - expected) < 8


def test_flag_recentre_puts_a_flagged_1s_centre_of_mass_back_at_the_centre():
    still = dict(rotate_deg=0, scale=(1, 1), shear=0, shift_px=0, thickness=(0, 0), flag_classes=(1,), flag_prob=1.0,
                 flag_length=(0.8, 0.8), flag_angle_deg=(20, 20))
    labels = torch.ones(2, dtype=torch.long)
    x = bars(2)
    assert centre_of_mass_offset(x).abs().max() < 0.6  # the bar alone is centred
    moved = augment_batch(x, AugmentConfig(**still, flag_recentre=False), torch.Generator().manual_seed(0), labels)
    back = augment_batch(x, AugmentConfig(**still, flag_recentre=True), torch.Generator().manual_seed(0), labels)
    assert centre_of_mass_offset(moved)[:, 0].max() < -1.0  # the flag pulls the mass left
    assert centre_of_mass_offset(back).abs().max() < 0.5


def test_the_default_recipe_uses_the_measured_flags():
    cfg = augment_for([str(d) for d in range(10)])
    assert cfg.flag_prob == DEFAULT_FLAG_PROB and cfg.flag_length == DEFAULT_FLAG_LENGTH
    assert cfg.flag_from_stem and cfg.flag_recentre
