"""Batch augmentations (edgecnn/augment.py): Keras ImageDataGenerator semantics, determinism under the seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgecnn.errors import EdgecnnError
from edgecnn.train.augment import AUGMENTS, get_augment, random_affine


def _keras_reference(image: np.ndarray, tx: float, ty: float, shear_deg: float, zx: float, zy: float) -> np.ndarray:
    """keras_preprocessing's apply_affine_transform (fill_mode nearest, order 1) on one CHW image, via scipy."""
    from scipy import ndimage

    shear = np.deg2rad(shear_deg)
    matrix = (
        np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
        @ np.array([[1, -np.sin(shear), 0], [0, np.cos(shear), 0], [0, 0, 1]])
        @ np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
    )
    h, w = image.shape[1:]
    o_x, o_y = h / 2 - 0.5, w / 2 - 0.5
    matrix = np.array([[1, 0, o_x], [0, 1, o_y], [0, 0, 1]]) @ matrix @ np.array([[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1]])
    return np.stack([ndimage.affine_transform(c, matrix[:2, :2], matrix[:2, 2], order=1, mode="nearest") for c in image])


def test_random_affine_is_keras_apply_affine_transform():
    x = torch.from_numpy(np.random.default_rng(0).random((4, 3, 20, 30), dtype=np.float32))
    out = random_affine(x, torch.Generator().manual_seed(7), width_shift=0.2, height_shift=0.2, shear=25.0, zoom=0.2)
    draw = torch.Generator().manual_seed(7)  # the same draws, in random_affine's order
    u = [torch.rand(4, generator=draw, dtype=torch.float64).numpy() for _ in range(5)]
    tx, ty = (u[0] * 0.4 - 0.2) * 20, (u[1] * 0.4 - 0.2) * 30  # rows, columns
    shear, zx, zy = u[2] * 50 - 25, 0.8 + 0.4 * u[3], 0.8 + 0.4 * u[4]
    for i in range(4):
        ref = _keras_reference(x[i].numpy(), tx[i], ty[i], shear[i], zx[i], zy[i])
        np.testing.assert_allclose(out[i].numpy(), ref, atol=1e-5)


def test_augmentation_is_deterministic_under_the_seed():
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    aug = get_augment("shift_shear_zoom")
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    c = aug(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and not torch.equal(a, x)


def test_zero_ranges_are_the_identity():
    x = torch.rand(2, 3, 9, 12)
    assert torch.allclose(random_affine(x, torch.Generator().manual_seed(0)), x, atol=1e-6)


def test_unknown_augmentation_lists_the_known_ones():
    with pytest.raises(EdgecnnError, match="unknown augmentation 'flip'.*shift_shear_zoom"):
        get_augment("flip")
    assert "shift_shear_zoom" in AUGMENTS
