"""The rule contract: declared properties, the registry's inverse, honest refusals and errors."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import maxaffine
from maxaffine.convex import InputConvexMLP
from maxaffine.errors import InputError, NotConvexError, UnsupportedLayerError
from maxaffine.layers import REGISTRY, PiecewiseRule, register_rule, unregister_rule
from maxaffine.testing import jacobian_oracle


def test_unregister_rule_removes_keys_and_returns_them_for_restoring():
    class Twice(nn.Module):
        def forward(self, x):
            return 2 * x

    @register_rule(Twice, "Tensor.twice_for_test")
    class TwiceRule(PiecewiseRule):
        pass

    assert Twice in REGISTRY and "Tensor.twice_for_test" in REGISTRY
    removed = unregister_rule("Tensor.twice_for_test")
    assert list(removed) == ["Tensor.twice_for_test"] and Twice in REGISTRY
    removed = unregister_rule(TwiceRule)  # a rule class stands for its remaining keys
    assert list(removed) == [Twice] and Twice not in REGISTRY
    with pytest.raises(InputError, match="no rule is registered"):
        unregister_rule(Twice)
    before = dict(REGISTRY)
    removed = unregister_rule(nn.ReLU)
    try:
        assert list(removed) == [nn.ReLU]
        with pytest.raises(UnsupportedLayerError, match="no rule for this op"):
            maxaffine.trace(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), torch.randn(3, 2))
    finally:  # restore the registry in its order (the layer table follows it)
        REGISTRY.clear()
        REGISTRY.update(before)
    assert maxaffine.unregister_rule is unregister_rule


@pytest.mark.parametrize("module", [nn.Hardshrink(0.3), nn.Threshold(0.1, -2.0)])
def test_discontinuous_piecewise_ops_are_refused_as_discontinuous(module):
    net = nn.Sequential(nn.Linear(2, 3), module)
    with pytest.raises(UnsupportedLayerError, match="discontinuous") as info:
        maxaffine.trace(net, torch.randn(4, 2))
    assert "smooth" not in str(info.value)


def test_functional_discontinuous_ops_are_refused_too():
    class Net(nn.Module):
        def forward(self, x):
            return F.hardshrink(x, 0.5) + F.threshold(x, 0.0, 1.0)

    with pytest.raises(UnsupportedLayerError, match="discontinuous"):
        maxaffine.trace(Net(), torch.randn(4, 2))


def test_not_convex_error_keeps_its_deprecated_name_catching():
    net = nn.Sequential(nn.Linear(2, 4), nn.Hardtanh(), nn.Linear(4, 1)).double()
    x = torch.randn(3, 2, dtype=torch.float64)
    with pytest.warns(DeprecationWarning, match="NotConvexError"):
        old = maxaffine.errors.NotPiecewiseLinearError
    assert old is NotConvexError and maxaffine.NotConvexError is NotConvexError
    with pytest.raises(old, match="not convex"):
        maxaffine.maso(net, "1", x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(NotConvexError):
            maxaffine.maso(net, "1", x)


def test_refused_rules_declare_a_reason_and_a_fix():
    for rule in REGISTRY.values():
        if rule.refused:
            assert rule.reason and rule.description, type(rule).__name__


def test_parametrized_weights_are_read_as_the_parent_module():
    net = InputConvexMLP(3, [5, 4], 2).double()  # softplus-parametrized weights
    x = torch.randn(6, 3, dtype=torch.float64)
    m = maxaffine.affine_map(net, x)
    torch.testing.assert_close(m.A, jacobian_oracle(net, x), rtol=1e-10, atol=1e-10)
