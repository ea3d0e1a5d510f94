"""Penalty objects for train(penalty=...), refusal of silent no-op penalties, transforms,
set_num_threads.

Oracle for the objects: the same training run with the equivalent plain callable and an
identically seeded generator gives bit-identical logged losses.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import maxaffine
from maxaffine.errors import InputError
from maxaffine.regularizers import (
    HessianPenalty,
    OrthogonalityPenalty,
    hessian_penalty,
    orthogonality_penalty,
)
from maxaffine.training import train
from maxaffine.transforms import circular_shift, shift_rotate


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.rand(24, 1, 4, 4, generator=g), torch.randint(0, 3, (24,), generator=g)


def _losses(penalty, **kw):
    X, y = _data()
    return train(_net(), X, y, epochs=2, batch_size=8, seed=0, progress=False, penalty=penalty,
                 **kw).column("loss")[1:]  # epoch 0 logs no training loss (NaN)


def test_orthogonality_object_equals_the_callable():
    g = torch.Generator().manual_seed(5)
    plain = _losses(lambda m, xb, yb: orthogonality_penalty(m, xb, n_probes=2, generator=g,
                                                             return_outputs=True),
                    penalty_weight=0.3, penalty_returns_outputs=True)
    obj = _losses(OrthogonalityPenalty(weight=0.3, n_probes=2, seed=5))
    assert obj == plain
    assert obj != _losses(None)  # the penalty changed training


def test_hessian_object_equals_the_callable():
    aug = lambda xb, g: shift_rotate(xb, g, max_shift=1, max_degrees=15)
    g = torch.Generator().manual_seed(2)

    def plain_pen(m, xb, yb):
        with torch.no_grad():
            xa = aug(xb, g)
        return hessian_penalty(m, xb, xa, generator=g, return_outputs=True)

    plain = _losses(plain_pen, penalty_weight=0.5, penalty_returns_outputs=True)
    obj = _losses(HessianPenalty(aug, weight=0.5, seed=2))
    assert obj == plain
    # penalty_weight given explicitly overrides the object's weight
    assert _losses(HessianPenalty(aug, weight=0.1, seed=2), penalty_weight=0.5) == plain


def test_silent_no_op_penalties_are_refused():
    with pytest.raises(InputError, match="penalty_weight=0"):
        _losses(lambda m, xb, yb: torch.zeros(()))
    with pytest.raises(InputError, match="HessianPenalty"):
        _losses(hessian_penalty, penalty_weight=1.0)
    with pytest.raises(InputError, match="OrthogonalityPenalty"):
        _losses(orthogonality_penalty, penalty_weight=1.0)
    with pytest.raises(InputError, match="weight"):
        OrthogonalityPenalty(weight=0)
    with pytest.raises(InputError, match="augment"):
        HessianPenalty(None)


def test_transforms():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 2, 6, 7, generator=g, dtype=torch.float64)
    assert torch.allclose(shift_rotate(x, g, max_shift=0, max_degrees=0), x, atol=1e-12)
    # a pure whole-pixel shift moves the image content by that many pixels
    y = shift_rotate(x, torch.Generator().manual_seed(3), max_shift=1, max_degrees=0)
    for n in range(5):
        ok = [torch.allclose(y[n, :, max(0, a):6 + min(0, a), max(0, b):7 + min(0, b)],
                             x[n, :, max(0, -a):6 - max(0, a), max(0, -b):7 - max(0, b)],
                             atol=1e-12)
              for a in (-1, 0, 1) for b in (-1, 0, 1)]
        assert any(ok)
    s = torch.arange(10.0).repeat(3, 1, 1)
    z = circular_shift(s, torch.Generator().manual_seed(1), max_shift=2)
    for n in range(3):
        assert any(torch.equal(z[n, 0], torch.roll(s[n, 0], k)) for k in range(-2, 3))
    with pytest.raises(InputError, match="add a batch dimension"):
        shift_rotate(x[0], g)
    with pytest.raises(InputError, match="add a batch dimension"):
        circular_shift(torch.zeros(10), g)


def test_set_num_threads():
    before = torch.get_num_threads()
    try:
        maxaffine.set_num_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        maxaffine.set_num_threads(before)
    with pytest.raises(InputError):
        maxaffine.set_num_threads(0)
    assert not math.isnan(before)


def test_shape_errors_say_add_a_batch_dimension():
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(72, 3))
    with pytest.raises(InputError, match=r"add a batch dimension to a single input \(x\[None\]\)"):
        maxaffine.affine_map(cnn, torch.randn(1, 8, 8))
    x = torch.randn(3, 1, 1, 8, 8)  # three "anchors" sliced as batches of one
    slc = maxaffine.Slice.through(x[0], x[1], x[2])
    with pytest.raises(InputError, match=r"x\[0\], not x\[0:1\]"):
        maxaffine.partition_slice(cnn, slc, progress=False)
