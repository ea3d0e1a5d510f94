"""Tracing: general graphs, error collection, custom rules."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import maxaffine
from maxaffine.layers import AffineRule, PiecewiseRule


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.GELU()

    def forward(self, x):
        return torch.tanh(self.act(self.fc(x)))


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(3, 4)
        self.block = Block()
        self.norm = nn.LayerNorm(4)
        self.bn = nn.BatchNorm1d(4)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = self.norm(self.block(F.relu(self.stem(x))))
        return F.softmax(self.head(self.drop(self.bn(h))), dim=1)


def test_unsupported_layers_are_all_listed_with_paths_and_fixes():
    with pytest.raises(maxaffine.UnsupportedLayerError) as info:
        maxaffine.trace(Mixed().eval(), torch.randn(3, 3))
    err = info.value
    paths = {o.path for o in err.offenders}
    assert {"block.act", "norm"} <= paths
    assert any(p.endswith("tanh") and p.startswith("block") for p in paths)
    assert any("softmax" in p for p in paths)
    assert len(err.offenders) == 4
    text = str(err)
    assert "GELU" in text and "LayerNorm" in text and "maxaffine.legendre" in text


def test_training_mode_lists_every_module():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Dropout(), nn.Linear(4, 1))
    with pytest.raises(maxaffine.TrainingModeError) as info:
        maxaffine.trace(net.train(), torch.randn(5, 3))
    assert [o.path for o in info.value.offenders] == ["1", "3"]
    assert "eval()" in str(info.value)
    maxaffine.trace(net.eval(), torch.randn(5, 3))  # fine in eval mode


def test_general_graph_with_functional_calls():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(3, 6), nn.Linear(3, 6), nn.Linear(9, 2)

        def forward(self, x):
            h = torch.cat([F.relu(self.a(x)), torch.abs(self.b(x))], 1)
            m = h.view(x.size(0), 3, 4).max(2)[0]
            return self.c(torch.flatten(torch.cat([m, h[:, :6]], 1), 1))

    net = Net().double()
    x = torch.randn(4, 3, dtype=torch.float64)
    tr = maxaffine.trace(net, x)
    assert tr.piecewise == ("relu", "abs_1", "max_1")
    torch.testing.assert_close(tr.forward(x), net(x))


def test_untraceable_forward_is_reported():
    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(maxaffine.UnsupportedLayerError, match="torch.fx could not trace"):
        maxaffine.trace(Branchy(), torch.randn(2, 3))


def test_batch_mixing_is_refused():
    class Mix(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)

        def forward(self, x):
            return self.a(x).mean(0, keepdim=True).expand(x.size(0), 3)

    with pytest.raises(maxaffine.UnsupportedLayerError, match="batch"):
        maxaffine.trace(Mix(), torch.randn(4, 3))


def test_custom_rule_via_register_and_rules_mapping():
    class Twice(nn.Module):
        def forward(self, x):
            return 2 * x

    class Clip0(nn.Module):  # max(u, 0) written by hand
        def forward(self, x):
            return x.clamp_min(0.0)

    net = nn.Sequential(nn.Linear(2, 3), Twice(), nn.Linear(3, 1)).double()
    x = torch.randn(4, 2, dtype=torch.float64)
    # without a rule, Twice is traced through (its forward is a scalar multiply)
    assert maxaffine.trace(net, x).piecewise == ()

    class TwiceRule(AffineRule):
        def apply(self, ctx, code, K, bias):
            return 2 * ctx.u

    tr = maxaffine.trace(net, x, rules={Twice: TwiceRule})
    assert any(n.op.endswith("Twice") for n in tr.nodes if n.kind == "var")
    torch.testing.assert_close(maxaffine.affine_map(tr, x)(x), net(x).detach())

    class HalfRelu(PiecewiseRule):
        def code(self, ctx):
            return ctx.u > 0

        def apply(self, ctx, code, K, bias):
            t = ctx.u.reshape(-1, K, *ctx.u.shape[1:])
            return (t * code.unsqueeze(1)).reshape(ctx.u.shape)

    net2 = nn.Sequential(nn.Linear(2, 3), Clip0(), nn.Linear(3, 1)).double()
    tr2 = maxaffine.trace(net2, x, rules={Clip0: HalfRelu()})
    assert tr2.piecewise == ("1",)
    torch.testing.assert_close(maxaffine.affine_map(tr2, x).A,
                               maxaffine.testing.jacobian_oracle(net2, x))


def test_wrong_custom_rule_is_caught():
    class Twice(nn.Module):
        def forward(self, x):
            return 2 * x

    class Wrong(AffineRule):
        def apply(self, ctx, code, K, bias):
            return 3 * ctx.u

    with pytest.raises(maxaffine.MaxAffineError, match="does not reproduce"):
        maxaffine.trace(nn.Sequential(nn.Linear(2, 2), Twice()), torch.randn(3, 2),
                        rules={Twice: Wrong})


def test_supported_layers_and_repr():
    table = maxaffine.supported_layers()
    assert table["nn.ReLU"].startswith("piecewise (convex")
    assert table["nn.Hardtanh"].startswith("piecewise (continuous, not convex")
    tr = maxaffine.trace(nn.Sequential(nn.Linear(2, 3), nn.ReLU()), torch.randn(2, 2))
    assert "nn.ReLU" in repr(tr)


def test_affine_prefix_and_frontier():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 6), nn.Linear(4, 6)
            self.c = nn.Linear(6, 3)

        def forward(self, x):
            h = self.a(x) + 0.5 * self.b(x)  # affine in x, two branches
            return self.c(torch.relu(h)) + self.b(x).sum(1, keepdim=True)

    tr = maxaffine.trace(Branchy().eval(), torch.randn(2, 4))
    prefix, frontier = tr.affine_prefix()
    fx_of = {n.fx_node.name: n.fx_node for n in tr.nodes}
    targets = sorted(str(fx_of[n].target) for n in prefix)
    # by hand: the input, both branches (b twice), 0.5*b(x), their sum and b(x).sum(1)
    assert len(prefix) == 7 and targets.count("b") == 2 and "c" not in targets
    assert "sum" in targets and "x" in targets and "a" in targets
    # the rest of the network reads the prefix at h (the ReLU's input) and at the sum term
    assert len(frontier) == 2
    relu = next(n for n in tr.nodes if n.piecewise)
    assert relu.fx_node.args[0].name == frontier[0]
    assert fx_of[frontier[1]].target == "sum"
