"""Data augmentations for training and for the Hessian penalty (batched, seeded).

Each transform takes a batch and a ``torch.Generator`` and returns the augmented batch of
the same shape, so it plugs into ``train(augment=...)`` and
``HessianPenalty(augment=...)`` alike; the experiments use these.

>>> import torch
>>> from maxaffine.transforms import shift_rotate
>>> x = torch.rand(4, 1, 8, 8)
>>> shift_rotate(x, torch.Generator().manual_seed(0)).shape
torch.Size([4, 1, 8, 8])
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .errors import InputError


def shift_rotate(xb: torch.Tensor, generator: torch.Generator, *, max_shift: int = 1,
                 max_degrees: float = 10.0) -> torch.Tensor:
    """Random whole-pixel shifts up to ±``max_shift`` and rotations up to ±``max_degrees``.

    Images (B, C, H, W); bilinear resampling with zero padding, one ``affine_grid`` /
    ``grid_sample`` call for the whole batch. ``max_shift=0, max_degrees=0`` is the identity.
    """
    if xb.dim() != 4:
        raise InputError(f"shift_rotate takes a batch of images (B, C, H, W); got shape "
                         f"{tuple(xb.shape)} (add a batch dimension for a single image)")
    B, _, H, W = xb.shape
    ang = (torch.rand(B, generator=generator) * 2 - 1) * math.radians(max_degrees)
    sh = torch.randint(-max_shift, max_shift + 1, (B, 2), generator=generator).to(xb.dtype)
    cos, sin = torch.cos(ang).to(xb.dtype), torch.sin(ang).to(xb.dtype)
    theta = torch.zeros(B, 2, 3, dtype=xb.dtype)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    # grid coordinates span [-1, 1] over W (H) pixels: one pixel = 2 / W (2 / H)
    theta[:, 0, 2] = sh[:, 0] * 2.0 / W
    theta[:, 1, 2] = sh[:, 1] * 2.0 / H
    grid = nn.functional.affine_grid(theta.to(xb.device), list(xb.shape), align_corners=False)
    return nn.functional.grid_sample(xb, grid, align_corners=False, padding_mode="zeros")


def circular_shift(xb: torch.Tensor, generator: torch.Generator, *,
                   max_shift: int = 1) -> torch.Tensor:
    """Random circular shifts of signals (B, *, L) by up to ±``max_shift`` samples."""
    if xb.dim() < 2:
        raise InputError(f"circular_shift takes a batch of signals (B, *, L); got shape "
                         f"{tuple(xb.shape)} (add a batch dimension for a single signal)")
    B = xb.shape[0]
    L = xb.shape[-1]
    s = torch.randint(-max_shift, max_shift + 1, (B,), generator=generator).to(xb.device)
    idx = (torch.arange(L, device=xb.device)[None] - s[:, None]) % L
    flat = xb.reshape(B, -1, L)
    return flat.gather(2, idx[:, None].expand_as(flat)).reshape(xb.shape)


__all__ = ["circular_shift", "shift_rotate"]
