"""Tests for maxaffine.convex: input-convex MLPs, structural proof and numerical midpoint test."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import maxaffine
from maxaffine.convex import InputConvexMLP, is_convex, midpoint_check, project_
from maxaffine.errors import InputError

CONVEX_ACTS = [nn.ReLU, lambda: nn.LeakyReLU(0.3), nn.Softplus, nn.CELU, nn.ELU]


def _convex_sequential(seed, widths, act_index):
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        lin = nn.Linear(a, b).double()
        if k > 0:
            with torch.no_grad():
                lin.weight.abs_()
        layers.append(lin)
        if k < len(widths) - 2:
            layers.append(CONVEX_ACTS[act_index]())
    return nn.Sequential(*layers)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000),
       widths=st.lists(st.integers(1, 12), min_size=3, max_size=5),
       act_index=st.integers(0, len(CONVEX_ACTS) - 1))
def test_nonnegative_later_weights_are_convex(seed, widths, act_index):
    net = _convex_sequential(seed, widths, act_index)
    X = torch.randn(32, widths[0], dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    report = is_convex(net, X, n_pairs=128, seed=seed)
    assert report.structural and report.numerical.passed
    assert report.convex and bool(report) and report.status == "proved"
    assert report.numerical.max_gap <= 1e-9


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), width=st.integers(2, 10), d=st.integers(1, 5),
       unit=st.integers(0, 9))
def test_one_large_negative_later_weight_is_found(seed, width, d, unit):
    net = _convex_sequential(seed, [d, width, 1], 0)
    k = unit % width
    with torch.no_grad():
        # unit k's kink is the hyperplane x_1 = 0 through the data mean; the sampled pairs are
        # symmetric about it, so half of the far pairs straddle it. A weight -M with M far above
        # the convex slack of the other terms makes each straddling pair a violation:
        # gap >= M min(|x_1(a)|, |x_1(b)|) / 2 - (convex slack)
        net[0].weight[k] = 0.0
        net[0].weight[k, 0] = 1.0
        net[0].bias[k] = 0.0
        slack = (net[2].weight.abs().sum() * (net[0].weight.abs().sum(1).max() + 1)).item()
        net[2].weight[0, k] = -1e4 * max(slack, 1.0)
    X = torch.randn(64, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    report = is_convex(net, X, n_pairs=256, seed=seed)
    assert not report.structural and report.reasons[0].path == "2"
    assert not report.numerical.passed and report.status == "disproved" and not report
    a, b = report.numerical.worst
    f = lambda t: net(t[None]).item()
    assert f((a + b) / 2) > (f(a) + f(b)) / 2


@pytest.mark.parametrize("act", [nn.Sigmoid, nn.Tanh, nn.GELU, nn.SiLU, nn.SELU,
                                 lambda: nn.LeakyReLU(1.5), lambda: nn.ELU(2.0)])
def test_non_convex_activations_are_rejected_structurally(act):
    net = nn.Sequential(nn.Linear(3, 8), act(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
    with torch.no_grad():
        net[2].weight.abs_()
        net[4].weight.abs_()
    report = is_convex(net)
    assert not report.structural and not report.convex
    assert [r.path for r in report.reasons] == ["1"]


def test_decreasing_activation_allowed_first_but_not_later():
    first = nn.Sequential(nn.Linear(2, 6), nn.LeakyReLU(-1.0), nn.Linear(6, 1))  # |u|: convex
    with torch.no_grad():
        first[2].weight.abs_()
    assert is_convex(first).structural
    later = nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 6), nn.LeakyReLU(-1.0),
                          nn.Linear(6, 1))
    with torch.no_grad():
        later[2].weight.abs_()
        later[4].weight.abs_()
    report = is_convex(later)
    assert not report.structural and report.reasons[0].path == "3"


def test_conv_pooling_and_unknown_modules():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 2, 1),
                        nn.Softplus(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    with torch.no_grad():
        net[3].weight.abs_()
        net[7].weight.abs_()
    X = torch.randn(16, 1, 8, 8, dtype=torch.float64)
    report = is_convex(net, X, n_pairs=64)
    assert report.convex and report.numerical.passed
    assert is_convex(net).numerical is None  # conv first: no default inputs
    class Custom(nn.Module):
        def forward(self, x):
            return x**2
    # truly convex (squares combined with nonnegative weights), so no random probe can
    # disprove it and the unknown module leaves it unverified (with a random sign on the
    # last layer the numerical check rightly says "disproved" for some initialisations)
    squares = nn.Sequential(nn.Linear(2, 2), Custom(), nn.Linear(2, 1))
    with torch.no_grad():
        squares[2].weight.abs_()
    rep = is_convex(squares)
    assert rep.status == "unverified" and "unknown" in rep.reasons[0].reason


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "softplus"])
@pytest.mark.parametrize("nonneg", ["softplus", "clamp"])
def test_input_convex_mlp_is_convex_and_stays_convex_after_training(activation, nonneg):
    torch.manual_seed(0)
    net = InputConvexMLP(3, [16, 8], 2, activation=activation, nonneg=nonneg).double()
    X = torch.randn(128, 3, dtype=torch.float64)
    assert is_convex(net, X).convex
    # fit a non-convex target; constraints must survive the optimizer steps
    y = torch.sin(3 * X[:, :2])
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(40):
        loss = ((net(X) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if nonneg == "clamp":
            project_(net)
    report = is_convex(net, X, n_pairs=256)
    assert report.convex, str(report)


def test_clamp_mode_without_projection_is_caught_and_project_fixes_it():
    net = InputConvexMLP(2, 8, 1, nonneg="clamp", skip=False).double()
    with torch.no_grad():
        net.layers[0].weight[0, 0] = -1.0
    report = is_convex(net, n_pairs=64)
    assert not report.structural and report.reasons[0].path == "layers.0"
    project_(net)
    assert is_convex(net, n_pairs=64).structural
    seq = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    project_(seq)
    assert (seq[2].weight >= 0).all() and is_convex(seq).convex


def test_bad_arguments():
    with pytest.raises(InputError, match="activation"):
        InputConvexMLP(2, 4, 1, activation="tanh")
    with pytest.raises(InputError, match="negative_slope"):
        InputConvexMLP(2, 4, 1, activation="leaky_relu", negative_slope=2.0)
    with pytest.raises(InputError, match="positive sizes"):
        InputConvexMLP(2, [], 1)
    with pytest.raises(InputError, match="project_"):
        project_(InputError)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="example_input"):
        midpoint_check(nn.Linear(2, 1), torch.randn(2))
    with pytest.raises(InputError, match="NaN"):
        midpoint_check(nn.Linear(2, 1), torch.full((3, 2), float("nan")))
    with pytest.raises(InputError, match="Module"):
        is_convex("not a model")  # type: ignore[arg-type]


class _ResidualConvex(nn.Module):
    """Residual sums, concatenation, a size-dependent view and functional ops: convex when
    the weights after the first layer are non-negative."""

    def __init__(self, negative: bool = False):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(8, 2)
        self.skip = nn.Linear(3, 2)  # from the input: any sign
        with torch.no_grad():
            self.b.weight.abs_()
            self.c.weight.abs_()
            if negative:
                self.b.weight[0, 0] = -1.0

    def forward(self, x):
        h = F.relu(self.a(x))
        h = h + torch.relu(self.b(h)) * 0.5
        g = torch.cat([h, torch.maximum(h, torch.abs(self.a(x)))], dim=1)
        return self.c(g.view(x.size(0), -1)) - self.skip(x)


def test_any_traced_graph_is_proved_by_asking_the_rules():
    X = torch.randn(32, 3, dtype=torch.float64)
    net = _ResidualConvex().double()
    for inputs in (None, X):
        report = is_convex(net, inputs, n_pairs=64)
        assert report.structural, str(report)
    assert is_convex(net, X, n_pairs=64).status == "proved"
    tr = maxaffine.trace(net, X)
    assert is_convex(tr, X, n_pairs=64).status == "proved"
    bad = is_convex(_ResidualConvex(negative=True).double(), X, n_pairs=64)
    assert not bad.structural and [r.path for r in bad.reasons] == ["b"]
    assert "negative weight" in bad.reasons[0].reason


def test_every_obstacle_is_listed_and_the_first_layer_may_be_anything():
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 4), nn.Hardtanh(),
                        nn.Linear(4, 1))
    with torch.no_grad():
        net[4].weight.abs_()
        net[2].weight.fill_(-1.0)
    report = is_convex(net)
    assert [r.path for r in report.reasons] == ["2", "3"]
    assert not is_convex(net, n_pairs=256).convex


def test_a_rule_passed_with_rules_is_asked_too():
    class Square(nn.Module):
        def forward(self, x):
            return x * x

    from maxaffine.layers.refused import RefusedRule

    class SquareRule(RefusedRule):
        convex = True
        monotone = False

    net = nn.Sequential(nn.Linear(2, 3), Square(), nn.Linear(3, 1))
    with torch.no_grad():
        net[2].weight.abs_()
    assert "not affine" in is_convex(net).reasons[0].reason  # x * x under the product rule
    report = is_convex(net, rules={Square: SquareRule()})
    assert report.structural and report.status == "proved"
    later = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), Square(), nn.Linear(3, 1))
    with torch.no_grad():
        later[3].weight.abs_()
    assert [r.path for r in is_convex(later, rules={Square: SquareRule()}).reasons] == ["2"]
