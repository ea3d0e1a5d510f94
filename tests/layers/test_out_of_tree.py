"""A piecewise rule defined outside the library, passed with ``rules=``, works everywhere."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import maxaffine
from maxaffine.layers import NodeContext, PiecewiseRule
from maxaffine.layers.base import merge_copies, per_copy
from maxaffine.layers.switching import Switch
from maxaffine.testing import RuleCheckError, check_rule, jacobian_oracle


class Bend(nn.Module):
    """``max(u, 2u - 1)``: slope 1 below 1, slope 2 above (convex, increasing)."""

    def forward(self, x):
        return torch.maximum(x, 2 * x - 1)


class BendRule(PiecewiseRule):
    """Two pieces per unit; code ``1[u > 1]``. Only the contract, no built-in parent."""

    monotone = True

    def code(self, ctx: NodeContext) -> torch.Tensor:
        return ctx.u > 1

    def apply(self, ctx: NodeContext, code, K: int, bias: bool):
        t = per_copy(ctx.u, K)
        c = code.unsqueeze(1)
        out = torch.where(c, 2 * t - (1 if bias else 0), t)
        return merge_copies(out)

    def switching(self, ctx: NodeContext) -> Switch:
        return Switch.breakpoints(ctx, self, [1.0])

    def pieces(self, ctx, A_pre, b_pre):
        A = torch.stack([A_pre, 2 * A_pre], dim=2)
        B = torch.stack([b_pre, 2 * b_pre - 1], dim=2)
        return A, B, lambda code: code.flatten(1).long()

    @classmethod
    def examples(cls):
        torch.manual_seed(0)
        yield nn.Sequential(nn.Linear(3, 6), Bend(), nn.Linear(6, 2)), 2 * torch.randn(8, 3)


RULES = {Bend: BendRule()}


def _net():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(2, 5), Bend(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 1))
    return net.double(), 2 * torch.randn(6, 2, dtype=torch.float64)


def test_the_out_of_tree_rule_passes_check_rule():
    report = check_rule(BendRule, rules=RULES)
    assert {"switching", "partition_slice", "partition_path", "pieces"} <= set(report.checked)
    with pytest.raises(RuleCheckError, match="no example network uses the rule"):
        check_rule(BendRule)  # not registered: the examples do not reach it


def test_the_out_of_tree_rule_works_in_every_analysis():
    net, x = _net()
    tr = maxaffine.trace(net, x, RULES)
    assert tr.piecewise == ("1", "3")
    m = maxaffine.affine_map(tr, x)
    torch.testing.assert_close(m.A, jacobian_oracle(net, x), rtol=1e-10, atol=1e-10)
    codes = maxaffine.codes(tr, x)
    assert torch.equal(codes["1"], net[0](x) > 1)
    S = maxaffine.maso(tr, "1", x[:1])
    torch.testing.assert_close(S.evaluate(x), net[1](net[0](x)))
    # the slice's region count has a closed form: 5 lines u_k = 1 in general position in
    # the plane, then the ReLU layer cuts further; verify() checks every region by sampling
    part = maxaffine.partition_slice(tr, maxaffine.Slice.box((-3, 3, -3, 3)), progress=False,
                                     layers=["1"])
    lines = net[0].weight.detach().numpy(), net[0].bias.detach().numpy()
    grid = np.stack(np.meshgrid(np.linspace(-3, 3, 400), np.linspace(-3, 3, 400)), -1)
    cells = {tuple(c) for c in (grid.reshape(-1, 2) @ lines[0].T + lines[1] > 1)}
    assert part.n_regions >= len(cells) and part.n_regions <= 1 + 5 + math.comb(5, 2)
    full = maxaffine.partition_slice(tr, maxaffine.Slice.box((-3, 3, -3, 3)), progress=False)
    full.verify(n_samples=500)
    path = maxaffine.partition_path(tr, x[:3])
    assert path.n_pieces >= 1
    lc = maxaffine.local_complexity(tr, x, radius=0.5, n_vertices=4, seed=0, per_layer=True)
    assert set(lc.layers) == {"1", "3", "output"}
    report = maxaffine.is_convex(net, x, rules=RULES)
    assert report.numerical is not None
    assert not report.structural or report.numerical.passed
