"""partition_slice: the snapping tolerance's accepted range, and codes on regions where a unit
is identically zero (the library's tie convention at interior points)."""

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

import maxaffine
from maxaffine.errors import InputError
from maxaffine.partition.partition import TOL_RANGE


def _mlp(widths, seed, zero_bias=False):
    torch.manual_seed(seed)
    layers = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    net = nn.Sequential(*layers[:-1]).double().eval()
    if zero_bias:
        with torch.no_grad():
            for m in net:
                if isinstance(m, nn.Linear):
                    m.bias.zero_()
    return net


def _invariants(net, part):
    """Areas sum to the domain; stored codes equal maxaffine.codes at interior points."""
    dom = part.slice.area
    assert abs(part.areas.sum() - dom) <= 1e-9 * dom  # relative 1e-9: float64 shoelace sums
    assert part.areas.min() > 0
    model = maxaffine.codes(net, part.slice.points(part.interior))
    for k in part.layers:
        assert torch.equal(part.codes[k].reshape(part.n_regions, -1),
                           model[k].reshape(part.n_regions, -1)), k


@pytest.mark.parametrize("tol", [0, 0.0, -1e-12, float("nan"), float("inf"), 1e-3, 1e-4,
                                 1e-8, 1e-16, True, "1e-12", 1j])
def test_tol_outside_range_is_refused_naming_the_range(tol):
    net = _mlp([2, 4, 1], 0)
    with pytest.raises(InputError, match=r"tol must be a finite number in \[1e-15, 1e-09\]"):
        maxaffine.partition_slice(net, maxaffine.Slice.box((-2, 2, -2, 2)), tol=tol,
                                  progress=False)
    with pytest.raises(InputError, match="tol must be"):
        maxaffine.partition_path(net, torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), tol=tol)


@pytest.mark.parametrize("tol", [TOL_RANGE[0], 1e-13, 1e-12, 1e-10, TOL_RANGE[1]])
@pytest.mark.parametrize("widths,seed,expected", [([2, 4, 1], 0, 10), ([2, 16, 16, 3], 1, None)])
def test_every_accepted_tol_keeps_the_invariants(tol, widths, seed, expected):
    net = _mlp(widths, seed)
    slc = maxaffine.Slice.box((-2, 2, -2, 2))
    part = maxaffine.partition_slice(net, slc, tol=tol, progress=False)
    assert part.complete and part.tolerance == tol
    if expected is not None:
        assert part.n_regions == expected
    else:  # the same regions as the default tolerance: nothing in this net is that thin
        assert part.n_regions == maxaffine.partition_slice(net, slc, progress=False).n_regions
    _invariants(net, part)
    part.verify(1000)


def test_zero_bias_net_codes_follow_the_models_tie_convention():
    # the reproducer: a unit identically zero on region 0 (both first-layer units off, zero
    # biases) has code False there, as 1[u > 0] gives for u = 0
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2), nn.ReLU(),
                        nn.Linear(2, 1)).double().eval()
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.bias.zero_()
    part = maxaffine.partition_slice(net, maxaffine.Slice.box((-2, 2, -2, 2)), progress=False)
    assert part.n_regions == 6
    _invariants(net, part)
    r = part.locate(part.interior)
    assert np.array_equal(r, np.arange(part.n_regions))
    part.verify(2000)


@pytest.mark.parametrize("seed", range(6))
def test_zero_bias_and_integer_weight_nets(seed):
    net = _mlp([2, 6, 6, 6, 2], seed, zero_bias=True)
    if seed % 2:
        with torch.no_grad():
            for m in net:
                if isinstance(m, nn.Linear):
                    m.weight.copy_(torch.round(3 * m.weight))
    part = maxaffine.partition_slice(net, maxaffine.Slice.box((-2, 2, -2, 2)), progress=False)
    _invariants(net, part)
    part.verify(2000)


def test_default_tol_is_inside_the_range():
    import inspect

    tol = inspect.signature(maxaffine.partition_slice).parameters["tol"].default
    assert TOL_RANGE[0] <= tol <= TOL_RANGE[1] and math.isfinite(tol)
