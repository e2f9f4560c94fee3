"""Batch augmentations a recipe names (`Recipe.augment`), applied to each training batch in torch.

Each takes an NCHW batch and the training loop's generator and returns a new batch, so a run is
the same under the same seed, and resume continues the same random stream.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from edgecnn.errors import EdgecnnError

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
AUGMENTS: dict[str, Augment] = {}


def register(fn: Augment) -> Augment:
    if fn.__name__ in AUGMENTS:
        raise ValueError(f"augmentation {fn.__name__!r} is registered twice")
    AUGMENTS[fn.__name__] = fn
    return fn


def get_augment(name: str) -> Augment:
    if name not in AUGMENTS:
        raise EdgecnnError(f"unknown augmentation {name!r} (accepted: {', '.join(sorted(AUGMENTS))})")
    return AUGMENTS[name]


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen, dtype=torch.float64)


def random_affine(
    x: torch.Tensor,
    gen: torch.Generator,
    width_shift: float = 0.0,
    height_shift: float = 0.0,
    shear: float = 0.0,
    zoom: float = 0.0,
) -> torch.Tensor:
    """Keras ImageDataGenerator's random shift, shear and zoom, per image, by affine_grid/grid_sample.

    As Keras draws them: shifts uniform in ±`width_shift`/±`height_shift` of the image size, a
    shear angle uniform in ±`shear` *degrees*, independent zooms for rows and columns uniform in
    [1 − `zoom`, 1 + `zoom`] (above 1 shows more of the image, smaller); output pixels map to
    input pixels by shift·shear·zoom about the image center; bilinear sampling, edges repeated
    (Keras' default fill_mode="nearest").
    """
    n, _, h, w = x.shape
    tr = _uniform(n, -height_shift, height_shift, gen) * h  # Keras' tx: rows
    tc = _uniform(n, -width_shift, width_shift, gen) * w  # Keras' ty: columns
    angle = torch.deg2rad(_uniform(n, -shear, shear, gen))
    zr, zc = _uniform(n, 1 - zoom, 1 + zoom, gen), _uniform(n, 1 - zoom, 1 + zoom, gen)
    # input (row, col) = A · output (row, col) + t, both about the center; A = shear · zoom
    a_rr, a_rc = zr, -torch.sin(angle) * zc
    a_cr, a_cc = torch.zeros_like(zr), torch.cos(angle) * zc
    # affine_grid wants (x = col, y = row) in [-1, 1] with align_corners=True: pixel · 2 / (size − 1)
    sr, sc = 2 / max(h - 1, 1), 2 / max(w - 1, 1)
    theta = torch.stack(
        [
            torch.stack([a_cc, a_cr * sc / sr, tc * sc], dim=1),
            torch.stack([a_rc * sr / sc, a_rr, tr * sr], dim=1),
        ],
        dim=1,
    ).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


@register
def shift_shear_zoom(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Seed 003's ImageDataGenerator(width_shift_range=0.2, height_shift_range=0.2, shear_range=0.2, zoom_range=0.2)."""
    return random_affine(x, gen, width_shift=0.2, height_shift=0.2, shear=0.2, zoom=0.2)

