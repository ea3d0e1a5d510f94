"""Pooling: max-pooling and maxout (MASOs with one piece per window element), averaging."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import Offender
from .activation import MaximumRule
from .base import AffineRule, NodeContext, PiecewiseRule, merge_copies, per_copy
from .registry import register_rule
from .switching import Switch


def _tuple(v, n: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def _window_table(in_spatial: Sequence[int], positions: Sequence[torch.Tensor]) -> torch.Tensor:
    """Flattened input indices of every pooling window, -1 where a window slot is padding.

    Parameters
    ----------
    in_spatial : spatial input shape (L,) / (H, W) / (D, H, W)
    positions : per spatial dim, a long tensor (out_d, R_d) of input coordinates (-1 invalid)

    Returns
    -------
    Tensor, shape (prod(out), prod(R_d)).
    """
    table = torch.zeros((1, 1), dtype=torch.long, device="cpu")
    valid = torch.ones((1, 1), dtype=torch.bool, device="cpu")
    for size, pos in zip(in_spatial, positions):
        ok = (pos >= 0) & (pos < size)
        # cartesian product: (O, R) x (o, r) -> (O*o, R*r)
        table = (table[:, None, :, None] * size + pos.clamp(0, size - 1)[None, :, None, :])
        valid = valid[:, None, :, None] & ok[None, :, None, :]
        table = table.reshape(table.shape[0] * table.shape[1], -1)
        valid = valid.reshape(valid.shape[0] * valid.shape[1], -1)
    return torch.where(valid, table, torch.full_like(table, -1))


def _unit_table(spatial_table: torch.Tensor, channels: int, in_spatial_numel: int) -> torch.Tensor:
    """Expand a per-channel window table to all channels: (C*O, R) indices of flattened (C, *S)."""
    offsets = (torch.arange(channels, device=spatial_table.device) * in_spatial_numel)[:, None, None]
    full = torch.where(spatial_table[None] >= 0, spatial_table[None] + offsets,
                       torch.full_like(spatial_table[None], -1))
    return full.reshape(-1, spatial_table.shape[1])


def _pieces_from_table(table: torch.Tensor, A_pre: torch.Tensor, b_pre: torch.Tensor):
    """Gather MASO pieces (B, K, R, D), (B, K, R) for windows given as unit indices."""
    table = table.to(A_pre.device)
    safe = table.clamp(min=0)
    A = A_pre[:, safe]  # (B, K, R, D)
    Bv = b_pre[:, safe]
    pad = table < 0
    A = torch.where(pad[None, :, :, None], torch.zeros((), dtype=A.dtype, device=A.device), A)
    Bv = torch.where(pad[None], torch.full((), -math.inf, dtype=Bv.dtype, device=Bv.device), Bv)
    return A, Bv


class MaxPoolRule(PiecewiseRule):
    """Max-pooling: each output unit is the max over its window; code = torch's argmax index."""

    description = "max over each window; code = argmax index (torch's tie-breaking)"
    monotone = True

    def _dims(self, ctx: NodeContext) -> int:
        return ctx.u.dim() - 2

    def _params(self, ctx: NodeContext) -> dict:
        raise NotImplementedError

    def code(self, ctx: NodeContext) -> torch.Tensor:
        nd = self._dims(ctx)
        fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd]
        return fn(ctx.u, **self._params(ctx), return_indices=True)[1]

    def apply(self, ctx: NodeContext, code: torch.Tensor, K: int, bias: bool):
        t = per_copy(ctx.u, K)
        B, _, C = t.shape[:3]
        flat = t.reshape(B, K, C, -1)
        idx = code.reshape(B, 1, C, -1).expand(B, K, C, -1)
        return merge_copies(flat.gather(-1, idx).reshape(B, K, C, *code.shape[2:]))

    def vjp(self, ctx: NodeContext, code: torch.Tensor, K: int, grad: torch.Tensor):
        g = per_copy(grad, K)
        B, _, C = g.shape[:3]
        in_shape = ctx.u.shape[1:]
        out = torch.zeros((B, K, C, math.prod(in_shape[1:])), dtype=grad.dtype, device=grad.device)
        idx = code.reshape(B, 1, C, -1).expand(B, K, C, -1)
        out.scatter_add_(-1, idx, g.reshape(B, K, C, -1))
        return [merge_copies(out.reshape(B, K, *in_shape))]

    def window_positions(self, ctx: NodeContext, in_spatial, out_spatial) -> list[torch.Tensor]:
        p = self._params(ctx)
        nd = len(in_spatial)
        k = _tuple(p["kernel_size"], nd)
        s = _tuple(p["stride"] or p["kernel_size"], nd)
        pad = _tuple(p["padding"], nd)
        dil = _tuple(p["dilation"], nd)
        return [torch.arange(o, device="cpu")[:, None] * s[i] - pad[i]
                + torch.arange(k[i], device="cpu")[None] * dil[i]
                for i, o in enumerate(out_spatial)]

    def unit_table(self, ctx: NodeContext) -> torch.Tensor:
        """(K, R) flattened pre-activation indices of every output unit's window (-1: padding)."""
        in_shape = ctx.u.shape[1:]
        out_spatial = self.code(ctx.replace((ctx.u[:1],) + ctx.args[1:])).shape[2:]
        positions = self.window_positions(ctx, in_shape[1:], out_spatial)
        table = _window_table(in_shape[1:], positions)
        # built on the host (small index arithmetic), used where the activations are
        return _unit_table(table, in_shape[0], math.prod(in_shape[1:])).to(ctx.u.device)

    def switching(self, ctx: NodeContext) -> Switch:
        return Switch.argmax(ctx, self, self.unit_table(ctx))

    def pieces(self, ctx: NodeContext, A_pre, b_pre):
        table = self.unit_table(ctx)
        A, Bv = _pieces_from_table(table, A_pre, b_pre)
        S = math.prod(ctx.u.shape[2:])
        C = ctx.u.shape[1]

        def code_to_piece(code: torch.Tensor) -> torch.Tensor:
            chosen = code.flatten(2) + (torch.arange(C, device=code.device) * S)[None, :, None]
            return (table[None] == chosen.reshape(code.shape[0], -1, 1)).long().argmax(-1)

        return A, Bv, code_to_piece


@register_rule(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
class MaxPoolModuleRule(MaxPoolRule):
    def check(self, ctx, path):
        if ctx.module.return_indices:
            return Offender(path, type(ctx.module).__name__, "return_indices=True returns a tuple",
                            "use return_indices=False (maxaffine computes the indices as VQ codes)")
        return None

    def _params(self, ctx):
        m = ctx.module
        return {"kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding,
                    "dilation": m.dilation, "ceil_mode": m.ceil_mode}

    @classmethod
    def examples(cls):
        yield (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(2, 3, 2), nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
                             nn.Flatten(), nn.Linear(12, 3)), torch.randn(3, 1, 8, 8))
        yield (nn.Sequential(nn.Conv1d(1, 2, 3), nn.MaxPool1d(3, stride=2, dilation=2), nn.Flatten()),
               torch.randn(4, 1, 13))
        yield nn.Sequential(nn.MaxPool3d(2), nn.Flatten()), torch.randn(2, 2, 4, 4, 4)


@register_rule(F.max_pool1d, F.max_pool2d, F.max_pool3d)
class MaxPoolFunctionalRule(MaxPoolRule):
    _names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")

    def _params(self, ctx):
        p = {"kernel_size": None, "stride": None, "padding": 0, "dilation": 1, "ceil_mode": False}
        p.update(zip(self._names, ctx.args[1:]))
        p.update({k: v for k, v in ctx.kwargs.items() if k in p})
        return p

    def check(self, ctx, path):
        if ctx.kwargs.get("return_indices"):
            return Offender(path, "max_pool", "return_indices=True returns a tuple",
                            "drop return_indices (maxaffine computes the indices as VQ codes)")
        return None

    @classmethod
    def examples(cls):
        class FP(nn.Module):
            def __init__(self):
                super().__init__()
                self.c = nn.Conv2d(1, 2, 3)

            def forward(self, x):
                return torch.flatten(F.max_pool2d(self.c(x), 2, stride=1), 1)

        yield FP(), torch.randn(2, 1, 6, 6)


@register_rule(nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
               F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d)
class AdaptiveMaxPoolRule(MaxPoolRule):
    description = "adaptive max over windows of varying size; code = argmax index"

    def _output_size(self, ctx):
        if ctx.module is not None:
            return ctx.module.output_size
        return ctx.args[1] if len(ctx.args) > 1 else ctx.kwargs["output_size"]

    def check(self, ctx, path):
        ri = ctx.module.return_indices if ctx.module is not None else ctx.kwargs.get("return_indices")
        if ri:
            return Offender(path, "adaptive_max_pool", "return_indices=True returns a tuple",
                            "drop return_indices (maxaffine computes the indices as VQ codes)")
        return None

    def code(self, ctx):
        nd = self._dims(ctx)
        fn = {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d}[nd]
        return fn(ctx.u, self._output_size(ctx), return_indices=True)[1]

    def window_positions(self, ctx, in_spatial, out_spatial):
        positions = []
        for size, out in zip(in_spatial, out_spatial):
            o = torch.arange(out, device="cpu")
            start = (o * size) // out
            end = ((o + 1) * size + out - 1) // out
            width = int((end - start).max())
            pos = start[:, None] + torch.arange(width, device="cpu")[None]
            positions.append(torch.where(pos < end[:, None], pos, torch.full_like(pos, -1)))
        return positions

    @classmethod
    def examples(cls):
        yield (nn.Sequential(nn.Conv2d(1, 2, 2), nn.AdaptiveMaxPool2d((2, 3)), nn.Flatten()),
               torch.randn(3, 1, 7, 6))
        yield nn.Sequential(nn.AdaptiveMaxPool1d(3), nn.Flatten()), torch.randn(2, 2, 8)


@register_rule(torch.max, "Tensor.max", torch.amax, "Tensor.amax")
class MaxoutRule(PiecewiseRule):
    """Maxout: max over one dimension (``x.max(dim)``, ``torch.amax(x, dim)``).

    ``torch.max(a, b)`` with two tensors is the elementwise maximum (see MaximumRule).
    Code: argmax along the dimension (ties go to the first maximal element)."""

    description = "maxout x.max(dim) / amax(x, dim); code = argmax (first on ties)"
    monotone = True
    _maximum = MaximumRule()

    def is_maximum(self, ctx) -> bool:
        """True when the node is the two-tensor elementwise ``torch.max(a, b)``."""
        return len(ctx.args) > 1 and isinstance(ctx.args[1], torch.Tensor)

    def dim_keepdim(self, ctx) -> tuple[int, bool]:
        """The reduced dimension (non-negative, batch included) and ``keepdim``."""
        dim = ctx.args[1] if len(ctx.args) > 1 else ctx.kwargs.get("dim")
        keep = ctx.args[2] if len(ctx.args) > 2 else ctx.kwargs.get("keepdim", False)
        if isinstance(dim, (tuple, list)):
            dim = dim[0]
        return int(dim) % ctx.u.dim(), bool(keep)

    def unit_table(self, ctx: NodeContext) -> torch.Tensor:
        """(K, R) flattened input indices compared by each of the K output units."""
        dim, _ = self.dim_keepdim(ctx)
        shape = ctx.u.shape[1:]
        table = torch.arange(math.prod(shape)).reshape(shape).movedim(dim - 1, -1)
        return table.reshape(-1, shape[dim - 1])

    def switching(self, ctx: NodeContext) -> Switch | None:
        if self.is_maximum(ctx):
            return self._maximum.switching(ctx)
        return Switch.argmax(ctx, self, self.unit_table(ctx))

    def check(self, ctx, path):
        if self.is_maximum(ctx):
            return None
        dim = ctx.args[1] if len(ctx.args) > 1 else ctx.kwargs.get("dim")
        if dim is None or (isinstance(dim, (tuple, list)) and len(dim) != 1):
            return Offender(path, "max", "max without a single dim reduces the batch dimension",
                            "take the max over one non-batch dimension: x.max(dim=1)")
        if int(dim[0] if isinstance(dim, (tuple, list)) else dim) % ctx.u.dim() == 0:
            return Offender(path, "max", "max over the batch dimension mixes samples",
                            "take the max over a non-batch dimension")
        return None

    def code(self, ctx):
        if self.is_maximum(ctx):
            return self._maximum.code(ctx)
        dim, keep = self.dim_keepdim(ctx)
        return ctx.u.argmax(dim, keepdim=keep)

    def apply(self, ctx, code, K, bias):
        if self.is_maximum(ctx):
            return self._maximum.apply(ctx, code, K, bias)
        dim, keep = self.dim_keepdim(ctx)
        t = per_copy(ctx.u, K)
        idx = code if keep else code.unsqueeze(dim)
        idx = idx.unsqueeze(1).expand(t.shape[0], K, *idx.shape[1:])
        out = t.gather(dim + 1, idx)
        if not keep:
            out = out.squeeze(dim + 1)
        return merge_copies(out)

    def pieces(self, ctx, A_pre, b_pre):
        if self.is_maximum(ctx):
            return self._maximum.pieces(ctx, A_pre, b_pre)
        A, Bv = _pieces_from_table(self.unit_table(ctx), A_pre, b_pre)
        return A, Bv, lambda code: code.flatten(1).long()

    @classmethod
    def examples(cls):
        class Maxout(nn.Module):
            def __init__(self):
                super().__init__()
                self.a, self.b = nn.Linear(3, 12), nn.Linear(4, 2)

            def forward(self, x):
                h = self.a(x).view(-1, 4, 3).max(dim=2)[0]
                g = torch.amax(self.a(x).view(x.size(0), 3, 4), dim=1)
                return self.b(h) + self.b(torch.max(g, h)) + self.b(self.a(x).reshape(-1, 4, 3).max(2).values)

        yield Maxout(), torch.randn(5, 3)


class _ReducingAffineRule(AffineRule):
    monotone = True  # non-negative averages and sums

    def check(self, ctx, path):
        dim = ctx.args[1] if len(ctx.args) > 1 else ctx.kwargs.get("dim")
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        if dim is None or any(int(d) % ctx.u.dim() == 0 for d in dims):
            return Offender(path, getattr(ctx.node.target, "__name__", str(ctx.node.target)),
                            "reduction over the batch dimension mixes samples",
                            "reduce over non-batch dimensions only, e.g. x.mean((2, 3))")
        return None

    def apply(self, ctx, code, K, bias):
        return ctx.call()


@register_rule(torch.mean, "Tensor.mean", torch.sum, "Tensor.sum")
class MeanSumRule(_ReducingAffineRule):
    description = "mean or sum over non-batch dimensions"

    @classmethod
    def examples(cls):
        class GAP(nn.Module):
            def __init__(self):
                super().__init__()
                self.c, self.l = nn.Conv2d(1, 3, 2), nn.Linear(3, 2)

            def forward(self, x):
                h = torch.relu(self.c(x))
                return self.l(h.mean((2, 3))) + torch.sum(h, dim=(2, 3))[:, :2]

        yield GAP(), torch.randn(3, 1, 5, 5)


@register_rule(nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
               nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, F.avg_pool1d, F.avg_pool2d,
               F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
               nn.Upsample, F.interpolate)
class AveragingRule(AffineRule):
    """Average pooling and (nearest/linear) upsampling: linear maps without bias."""

    description = "average pooling, adaptive average pooling, upsampling"

    def is_monotone(self, ctx):
        # averages and nearest/linear interpolation have non-negative weights; the cubic
        # kernel has negative lobes
        return (self._mode(ctx) != "bicubic",)

    def _mode(self, ctx) -> str | None:
        if isinstance(ctx.module, nn.Upsample):
            return ctx.module.mode
        if ctx.node.target is F.interpolate:
            return ctx.kwargs.get("mode", ctx.args[3] if len(ctx.args) > 3 else "nearest")
        return None

    def apply(self, ctx, code, K, bias):
        return ctx.call()

    @classmethod
    def examples(cls):
        yield (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AvgPool2d(2, padding=1),
                             nn.AdaptiveAvgPool2d(2), nn.Upsample(scale_factor=2), nn.Flatten(),
                             nn.Linear(32, 2)), torch.randn(3, 1, 9, 9))
        yield (nn.Sequential(nn.Conv1d(1, 2, 2), nn.ReLU(), nn.AvgPool1d(2), nn.AdaptiveAvgPool1d(2),
                             nn.Flatten()), torch.randn(3, 1, 9))
