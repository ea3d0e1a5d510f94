"""Soft shrinkage: the continuous three-piece nonlinearity ``u - clamp(u, -λ, λ)``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import NodeContext, PiecewiseRule, merge_copies, per_copy
from .registry import register_rule
from .switching import Switch


@register_rule(nn.Softshrink, F.softshrink)
class SoftshrinkRule(PiecewiseRule):
    r"""``σ(u) = u + λ`` for ``u < -λ``, ``0`` on ``[-λ, λ]``, ``u - λ`` for ``u > λ``.

    Continuous piecewise-affine and non-decreasing, but not convex (the slope drops from
    1 to 0 at ``-λ``): a difference of two MASOs, ``max(0, u - λ) - max(0, -u - λ)``.
    Code: 0 below ``-λ``, 1 inside, 2 above ``λ``; switching functions ``u ± λ``.
    """

    description = "soft shrinkage u − clamp(u, −λ, λ): three pieces, not convex"
    convex = False
    monotone = True

    def _lambda(self, ctx: NodeContext) -> float:
        if ctx.module is not None:
            return float(ctx.module.lambd)
        return float(ctx.args[1] if len(ctx.args) > 1 else ctx.kwargs.get("lambd", 0.5))

    def code(self, ctx: NodeContext) -> torch.Tensor:
        lam = self._lambda(ctx)
        u = ctx.u
        return (1 + (u > lam).to(torch.int8) - (u < -lam).to(torch.int8)).to(torch.int8)

    def apply(self, ctx: NodeContext, code: torch.Tensor, K: int, bias: bool):
        lam = self._lambda(ctx) if bias else 0.0
        t = per_copy(ctx.u, K)
        c = code.unsqueeze(1)
        lam_t = torch.tensor(lam, dtype=t.dtype)
        shift = torch.where(c == 0, lam_t, -lam_t)
        return merge_copies(torch.where(c == 1, torch.zeros((), dtype=t.dtype), t + shift))

    def vjp(self, ctx: NodeContext, code: torch.Tensor, K: int, grad: torch.Tensor):
        g = per_copy(grad, K)
        keep = code.unsqueeze(1) != 1
        return [merge_copies(torch.where(keep, g, torch.zeros((), dtype=g.dtype)))]

    def switching(self, ctx: NodeContext) -> Switch:
        lam = self._lambda(ctx)
        return Switch.breakpoints(ctx, self, [-lam, lam])

    @classmethod
    def examples(cls):
        yield (nn.Sequential(nn.Linear(3, 6), nn.Softshrink(0.4), nn.Linear(6, 4),
                             nn.Softshrink(), nn.Linear(4, 2)), 2 * torch.randn(8, 3))

        class Functional(nn.Module):
            def __init__(self):
                super().__init__()
                self.a, self.b = nn.Linear(2, 5), nn.Linear(5, 2)

            def forward(self, x):
                return self.b(F.softshrink(self.a(x), 0.3) + F.softshrink(self.a(x)))

        yield Functional(), 2 * torch.randn(7, 2)
