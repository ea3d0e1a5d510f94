"""Conformance checks run automatically over every registered rule (and its examples).

``maxaffine.testing.check_rule`` runs every capability against its oracle; the first test
below keeps the original, direct assertions."""

import pytest
import torch

import maxaffine
from maxaffine.layers import REGISTRY, key_name
from maxaffine.layers.refused import RefusedRule
from maxaffine.testing import CAPABILITIES, check_rule, jacobian_oracle

RULES = sorted({type(r) for r in REGISTRY.values() if not isinstance(r, RefusedRule)},
               key=lambda c: c.__name__)


@pytest.mark.parametrize("rule", RULES, ids=lambda c: c.__name__)
def test_rule_conformance(rule):
    torch.manual_seed(0)
    examples = list(rule.examples())
    assert examples, f"{rule.__name__} has no examples: every rule must ship test modules"
    for net, x in examples:
        net = net.eval().double()
        x = x.double()
        tr = maxaffine.trace(net, x)
        # the rules reproduce the model exactly
        torch.testing.assert_close(tr.forward(x), net(x), rtol=1e-12, atol=1e-12)
        m = maxaffine.affine_map(tr, x)
        y = net(x).reshape(len(x), -1).detach()
        # f(x) = A[x] x + b[x] to 1e-10 relative (float64)
        rel = (m(x) - y).norm() / y.norm().clamp_min(1e-300)
        assert rel < 1e-10
        # A[x] equals the autograd Jacobian (random inputs are almost surely off boundaries)
        torch.testing.assert_close(m.A, jacobian_oracle(net, x).detach(), rtol=1e-10, atol=1e-10)
        # matrix-free products agree with the materialised A (both accumulation directions)
        lazy = maxaffine.affine_map(tr, x, materialize=False)
        v = torch.randn(len(x), *tr.in_shape, dtype=torch.float64)
        u = torch.randn(len(x), tr.n_outputs, dtype=torch.float64)
        torch.testing.assert_close(lazy.jvp(v), torch.einsum("ncd,nd->nc", m.A, v.flatten(1)))
        torch.testing.assert_close(lazy.vjp(u).flatten(1), torch.einsum("nc,ncd->nd", u, m.A))


def test_every_key_has_a_named_rule():
    names = [key_name(k) for k in REGISTRY]
    assert len(names) == len(set(names)), "two registry keys print the same name"
    supported = maxaffine.supported_layers()
    for expected in ["nn.Linear", "nn.Conv2d", "nn.BatchNorm2d", "nn.MaxPool2d", "nn.ReLU",
                     "nn.LeakyReLU", "nn.PReLU", "torch.abs", "nn.Hardtanh", "nn.ReLU6",
                     "torch.cat", "operator.add", "Tensor.view", "nn.AdaptiveAvgPool2d",
                     "nn.AdaptiveMaxPool2d", "nn.Dropout", "nn.Identity", "nn.Flatten"]:
        assert expected in supported, expected
    assert "nn.GELU" not in supported


@pytest.mark.parametrize("rule", RULES, ids=lambda c: c.__name__)
def test_check_rule_passes_on_every_registered_rule(rule):
    report = check_rule(rule)
    common = {"trace", "affine_map", "transpose", "partition_path", "local_complexity",
              "is_convex"}
    assert common <= set(report.checked), report
    if rule.kind == "piecewise":
        assert {"code", "switching", "partition_slice"} <= set(report.checked), report
    assert set(report.checked) <= set(CAPABILITIES)


def test_every_piecewise_rule_declares_its_switching():
    # the registry as collected (doctests elsewhere may register throw-away rules later)
    for rule in (r for r in RULES if r.kind == "piecewise"):
        assert "switching" in check_rule(rule, partitions=False).checked, rule.__name__
