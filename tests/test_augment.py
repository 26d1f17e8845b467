"""Batched augmentation: shapes, ranges, determinism, and that flags go only where asked."""

from __future__ import annotations

import torch

from hwr.augment import AugmentConfig, add_flags, augment_batch, augment_for, random_affine, random_thickness


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
