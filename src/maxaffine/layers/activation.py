"""Piecewise-affine nonlinearities: ReLU, LeakyReLU, PReLU, abs, Hardtanh/ReLU6/clamp, maximum."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import NodeContext, PiecewiseRule, merge_copies, per_copy
from .registry import register_rule
from .switching import Switch


class TwoSlopeRule(PiecewiseRule):
    """``σ(u) = s₊ u`` where ``u > 0`` and ``s₋ u`` elsewhere; code ``q = 1[u > 0]``.

    A MASO (convex) when ``s₋ ≤ s₊``: pieces ``(s₋ W_k, s₋ c_k)`` and ``(s₊ W_k, s₊ c_k)``.
    """

    def slopes(self, ctx: NodeContext) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        """Negative-side and positive-side slopes, broadcastable to ``u`` (B, *shape)."""
        raise NotImplementedError

    def code(self, ctx: NodeContext) -> torch.Tensor:
        return ctx.u > 0

    def sign_code(self, ctx: NodeContext) -> bool:
        return type(self).code is TwoSlopeRule.code

    def switching(self, ctx: NodeContext) -> Switch:
        code_of = None
        if self.sign_code(ctx):  # u > 0, without building a node context
            ushape = tuple(ctx.u.shape[1:])
            code_of = lambda Z: torch.from_numpy(Z > 0).reshape((len(Z),) + ushape)
        return Switch.breakpoints(ctx, self, [0.0], code_of=code_of)

    def _slope_of(self, ctx: NodeContext, code: torch.Tensor, ndim: int) -> torch.Tensor:
        neg, pos = self.slopes(ctx)
        dtype = ctx.u.dtype
        if isinstance(neg, float) and isinstance(pos, float) and (neg, pos) == (0.0, 1.0):
            return code.to(dtype)
        neg = torch.as_tensor(neg, dtype=dtype, device=code.device)
        pos = torch.as_tensor(pos, dtype=dtype, device=code.device)
        return torch.where(code, pos, neg)

    def apply(self, ctx: NodeContext, code: torch.Tensor, K: int, bias: bool):
        slope = self._slope_of(ctx, code, ctx.u.dim())
        return merge_copies(per_copy(ctx.u, K) * slope.unsqueeze(1))

    def vjp(self, ctx: NodeContext, code: torch.Tensor, K: int, grad: torch.Tensor):
        slope = self._slope_of(ctx, code, grad.dim())
        return [merge_copies(per_copy(grad, K) * slope.unsqueeze(1))]

    def is_convex(self, ctx: NodeContext) -> bool:
        neg, pos = self.slopes(ctx)
        return bool(torch.all(torch.as_tensor(neg) <= torch.as_tensor(pos)))

    def is_monotone(self, ctx: NodeContext) -> tuple[bool]:
        neg, pos = self.slopes(ctx)
        return (bool(torch.all(torch.as_tensor(neg) >= 0) and torch.all(torch.as_tensor(pos) >= 0)),)

    def pieces(self, ctx: NodeContext, A_pre: torch.Tensor, b_pre: torch.Tensor):
        from ..errors import NotConvexError

        if not self.is_convex(ctx):
            raise NotConvexError(
                f"node {ctx.node.name}: negative-side slope exceeds positive-side slope, so the "
                f"unit is min(s₋u, s₊u), concave, not a max-affine spline; A[x], codes and "
                f"partitions are still exact"
            )
        neg, pos = self.slopes(ctx)
        shape = ctx.u.shape[1:]
        neg = torch.as_tensor(neg, dtype=A_pre.dtype, device=A_pre.device).expand(1, *shape).reshape(-1)
        pos = torch.as_tensor(pos, dtype=A_pre.dtype, device=A_pre.device).expand(1, *shape).reshape(-1)
        A = torch.stack([neg[:, None] * A_pre, pos[:, None] * A_pre], dim=2)
        B = torch.stack([neg * b_pre, pos * b_pre], dim=2)
        return A, B, lambda code: code.flatten(1).long()


@register_rule(nn.ReLU, F.relu, torch.relu, "Tensor.relu", torch.relu_, "Tensor.relu_")
class ReLURule(TwoSlopeRule):
    description = "max(0, u); code 1[u > 0]"

    def slopes(self, ctx):
        return 0.0, 1.0

    @classmethod
    def examples(cls):
        class Functional(nn.Module):
            def __init__(self):
                super().__init__()
                self.a, self.b = nn.Linear(4, 5), nn.Linear(5, 3)

            def forward(self, x):
                return self.b(F.relu(self.a(x)).relu() + torch.relu(self.a(x)))

        yield Functional(), torch.randn(4, 4)
        yield nn.Sequential(nn.Linear(3, 8), nn.ReLU(inplace=True), nn.Linear(8, 2)), torch.randn(5, 3)


@register_rule(nn.LeakyReLU, F.leaky_relu)
class LeakyReLURule(TwoSlopeRule):
    description = "max(νu, u) for ν ≤ 1 (min for ν > 1); code 1[u > 0]"

    def slopes(self, ctx):
        if ctx.module is not None:
            nu = ctx.module.negative_slope
        else:
            nu = ctx.args[1] if len(ctx.args) > 1 else ctx.kwargs.get("negative_slope", 0.01)
        return float(nu), 1.0

    @classmethod
    def examples(cls):
        yield (nn.Sequential(nn.Linear(3, 6), nn.LeakyReLU(0.2), nn.Linear(6, 6),
                             nn.LeakyReLU(1.5), nn.Linear(6, 2)), torch.randn(5, 3))

        class Functional(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Linear(3, 4)

            def forward(self, x):
                return F.leaky_relu(self.a(x), negative_slope=0.3)

        yield Functional(), torch.randn(3, 3)


@register_rule(nn.PReLU)
class PReLURule(TwoSlopeRule):
    description = "learned per-channel leaky slope; code 1[u > 0]"

    def slopes(self, ctx):
        w = ctx.module.weight
        u = ctx.u
        if u is None:  # no input at hand (convexity prover): the slopes themselves
            return w.detach(), 1.0
        if w.numel() > 1 and u.dim() > 1:
            w = w.reshape((1, -1) + (1,) * (u.dim() - 2))
        return w.detach().to(u.dtype), 1.0

    @classmethod
    def examples(cls):
        net = nn.Sequential(nn.Conv1d(2, 3, 3), nn.PReLU(3), nn.Flatten(), nn.Linear(9, 4),
                            nn.PReLU(), nn.Linear(4, 2))
        with torch.no_grad():
            net[1].weight.uniform_(-0.5, 0.9)
        yield net, torch.randn(4, 2, 5)


@register_rule(torch.abs, "Tensor.abs")
class AbsRule(TwoSlopeRule):
    description = "absolute value max(−u, u); code 1[u > 0]"

    def slopes(self, ctx):
        return -1.0, 1.0

    @classmethod
    def examples(cls):
        class Abs(nn.Module):
            def __init__(self):
                super().__init__()
                self.a, self.b = nn.Linear(3, 5), nn.Linear(5, 2)

            def forward(self, x):
                return self.b(torch.abs(self.a(x))).abs()

        yield Abs(), torch.randn(6, 3)


class ClampRule(PiecewiseRule):
    """``clamp(u, lo, hi)``: three pieces; code 0 below ``lo``, 1 inside, 2 above ``hi``.

    Continuous piecewise-affine but not convex (a difference of two max-affine splines)
    unless ``hi`` is absent, where it is ``max(lo, u)``.
    """

    convex = False
    monotone = True
    description = "clamp to [lo, hi]: continuous piecewise-affine, not convex"

    def bounds(self, ctx: NodeContext) -> tuple[float, float]:
        raise NotImplementedError

    def code(self, ctx: NodeContext) -> torch.Tensor:
        lo, hi = self.bounds(ctx)
        u = ctx.u
        return (1 + (u > hi).to(torch.int8) - (u < lo).to(torch.int8)).to(torch.int8)

    def switching(self, ctx: NodeContext) -> Switch:
        return Switch.breakpoints(ctx, self, self.bounds(ctx))

    def is_convex(self, ctx: NodeContext) -> bool:
        return not math.isfinite(self.bounds(ctx)[1])  # max(lo, u) alone is convex

    def apply(self, ctx: NodeContext, code: torch.Tensor, K: int, bias: bool):
        lo, hi = self.bounds(ctx)
        t = per_copy(ctx.u, K)
        c = code.unsqueeze(1)
        if bias:
            const = torch.where(c == 0, torch.as_tensor(lo, dtype=t.dtype, device=t.device),
                                torch.as_tensor(hi if math.isfinite(hi) else 0.0, dtype=t.dtype,
                                                device=t.device))
        else:
            const = torch.zeros((), dtype=t.dtype, device=t.device)
        return merge_copies(torch.where(c == 1, t, const))

    def vjp(self, ctx: NodeContext, code: torch.Tensor, K: int, grad: torch.Tensor):
        g = per_copy(grad, K)
        zero = torch.zeros((), dtype=g.dtype, device=g.device)
        return [merge_copies(torch.where(code.unsqueeze(1) == 1, g, zero))]

    def pieces(self, ctx: NodeContext, A_pre: torch.Tensor, b_pre: torch.Tensor):
        lo, hi = self.bounds(ctx)
        if math.isfinite(hi) or not math.isfinite(lo):
            return super().pieces(ctx, A_pre, b_pre)
        A = torch.stack([torch.zeros_like(A_pre), A_pre], dim=2)
        B = torch.stack([torch.full_like(b_pre, lo), b_pre], dim=2)
        return A, B, lambda code: code.flatten(1).long()


@register_rule(nn.Hardtanh, nn.ReLU6, F.hardtanh, F.relu6)
class HardtanhRule(ClampRule):
    description = "Hardtanh / ReLU6: clamp to [lo, hi], continuous piecewise-affine, not convex"

    def bounds(self, ctx):
        if ctx.module is not None:
            return float(ctx.module.min_val), float(ctx.module.max_val)
        if ctx.node.target is F.relu6:
            return 0.0, 6.0
        lo = ctx.args[1] if len(ctx.args) > 1 else ctx.kwargs.get("min_val", -1.0)
        hi = ctx.args[2] if len(ctx.args) > 2 else ctx.kwargs.get("max_val", 1.0)
        return float(lo), float(hi)

    @classmethod
    def examples(cls):
        yield (nn.Sequential(nn.Linear(3, 6), nn.Hardtanh(-0.5, 0.7), nn.Linear(6, 5),
                             nn.ReLU6(), nn.Linear(5, 2)), 3 * torch.randn(8, 3))

        class Functional(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Linear(2, 6)

            def forward(self, x):
                return F.hardtanh(self.a(x), -0.3, 0.4) + F.relu6(self.a(x) * 4)

        yield Functional(), 2 * torch.randn(7, 2)


@register_rule(torch.clamp, "Tensor.clamp", torch.clip, "Tensor.clip", torch.clamp_min,
               "Tensor.clamp_min", torch.clamp_max, "Tensor.clamp_max")
class TorchClampRule(ClampRule):
    description = "clamp(u, min, max) with constant bounds; max(lo, u) alone is convex"

    def check(self, ctx, path):
        from ..errors import Offender

        if any(isinstance(a, torch.Tensor) for a in list(ctx.args[1:]) + list(ctx.kwargs.values())):
            return Offender(path, "clamp", "tensor-valued bounds are not supported",
                            "use Python numbers as bounds, or torch.maximum/minimum")
        return None

    def bounds(self, ctx):
        name = getattr(ctx.node.target, "__name__", str(ctx.node.target))
        lo = hi = None
        if name.endswith("clamp_min"):
            lo = ctx.args[1] if len(ctx.args) > 1 else ctx.kwargs.get("min")
        elif name.endswith("clamp_max"):
            hi = ctx.args[1] if len(ctx.args) > 1 else ctx.kwargs.get("max")
        else:
            lo = ctx.args[1] if len(ctx.args) > 1 else ctx.kwargs.get("min")
            hi = ctx.args[2] if len(ctx.args) > 2 else ctx.kwargs.get("max")
        return (-math.inf if lo is None else float(lo)), (math.inf if hi is None else float(hi))

    @property
    def convex_for(self):  # pragma: no cover - documentation helper
        return "min only"

    @classmethod
    def examples(cls):
        class Clamps(nn.Module):
            def __init__(self):
                super().__init__()
                self.a, self.b = nn.Linear(2, 5), nn.Linear(5, 3)

            def forward(self, x):
                h = torch.clamp(self.a(x), min=-0.2) + self.a(x).clamp(-0.5, 0.5)
                return self.b(h).clamp_max(0.3) + self.b(h).clamp_min(0.1)

        yield Clamps(), 2 * torch.randn(6, 2)


@register_rule(torch.maximum, "Tensor.maximum")
class MaximumRule(PiecewiseRule):
    """``max(a, b)`` elementwise: two affine pieces; code ``1[a ≥ b]`` (ties to ``a``)."""

    description = "elementwise max(a, b) of two branches; code 1[a ≥ b]"
    monotone = True

    def code(self, ctx: NodeContext) -> torch.Tensor:
        return ctx.args[0] >= ctx.args[1]

    def switching(self, ctx: NodeContext) -> Switch:
        """One sign function ``a - b`` per output entry; code ``1[a - b >= 0]``."""
        a0, b0 = (torch.as_tensor(v) for v in ctx.args[:2])
        shape = tuple(torch.broadcast_shapes(a0.shape, b0.shape)[1:])
        U = math.prod(shape)
        flags = ctx.var[:2]

        def fn(ins):
            it = iter(ins)
            a, b = (next(it) if f else torch.as_tensor(v, dtype=ins[0].dtype,
                                                       device=ins[0].device)
                    for v, f in zip(ctx.args[:2], flags))
            d = torch.broadcast_to(a - b, (len(ins[0]),) + shape)
            return d.reshape(len(ins[0]), -1).numpy()

        return Switch.sign(ctx, self, fn, np.arange(U),
                           code_of=lambda Z: torch.from_numpy(Z >= 0).reshape((len(Z),) + shape))

    def apply(self, ctx: NodeContext, code: torch.Tensor, K: int, bias: bool):
        parts = []
        dtype = next(v.dtype for v, f in zip(ctx.args[:2], ctx.var[:2]) if f)
        for value, is_var in zip(ctx.args[:2], ctx.var[:2]):
            if is_var:
                parts.append(per_copy(value, K))
            else:
                v = torch.as_tensor(value, dtype=dtype, device=code.device)
                parts.append(v if bias else torch.zeros_like(v))
        a, b = parts
        out = torch.where(code.unsqueeze(1), a, b)
        return merge_copies(out.expand(code.shape[0], K, *out.shape[2:]))

    def pieces(self, ctx: NodeContext, A_pre, b_pre):
        from ..errors import NotConvexError

        raise NotConvexError(
            f"node {ctx.node.name}: the MASO view of a two-branch maximum needs both branches' "
            f"maps; stack the branches and use maxout (torch.amax over a dim) instead"
        )

    @classmethod
    def examples(cls):
        class Max2(nn.Module):
            def __init__(self):
                super().__init__()
                self.a, self.b, self.c = nn.Linear(3, 4), nn.Linear(3, 4), nn.Linear(4, 2)

            def forward(self, x):
                return self.c(torch.maximum(self.a(x), self.b(x)))

        yield Max2(), torch.randn(5, 3)
