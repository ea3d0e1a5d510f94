"""Structure: identity, dropout (eval), reshapes, slicing, concatenation, sums and scalings."""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import Offender
from .base import AffineRule, NodeContext, ShapeRule
from .registry import register_rule


@register_rule(nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
               nn.AlphaDropout, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d,
               "Tensor.contiguous", "Tensor.clone", "Tensor.detach", torch.clone)
class IdentityRule(ShapeRule):
    """Identity (and dropout in eval mode)."""

    description = "identity (dropout only in eval mode)"

    def training_mode(self, ctx: NodeContext) -> bool:
        if ctx.module is not None:
            return isinstance(ctx.module, nn.modules.dropout._DropoutNd) and ctx.module.training
        if ctx.node.op == "call_function" and "dropout" in getattr(ctx.node.target, "__name__", ""):
            training = ctx.args[2] if len(ctx.args) > 2 else ctx.kwargs.get("training", True)
            return bool(training)
        return False

    def apply(self, ctx, code, K, bias):
        # a later .view() may rely on the layout .contiguous() promised
        return ctx.u.contiguous() if ctx.node.target == "contiguous" else ctx.u

    def vjp(self, ctx, code, K, grad):
        return [grad]

    @classmethod
    def examples(cls):
        class D(nn.Module):
            def __init__(self):
                super().__init__()
                self.l = nn.Linear(3, 3)

            def forward(self, x):
                return F.dropout(self.l(x).contiguous().clone(), 0.5, training=False)

        yield (nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.3), nn.ReLU(), nn.Identity(),
                             nn.Linear(4, 2)).eval(), torch.randn(4, 3))
        yield D(), torch.randn(2, 3)


@register_rule(nn.Flatten, nn.Unflatten, torch.flatten, "Tensor.flatten", "Tensor.view",
               "Tensor.reshape", torch.reshape, "Tensor.permute", torch.permute,
               "Tensor.transpose", torch.transpose, "Tensor.squeeze", torch.squeeze,
               "Tensor.unsqueeze", torch.unsqueeze, "Tensor.unflatten", torch.unflatten,
               "Tensor.expand", "Tensor.movedim", torch.movedim, F.pad, "Tensor.roll", torch.roll,
               "Tensor.flip", torch.flip, nn.ZeroPad2d, nn.ZeroPad1d, nn.ConstantPad2d,
               nn.PixelShuffle, nn.PixelUnshuffle, nn.ChannelShuffle)
class ReshapeRule(ShapeRule):
    """Rearrangements of entries that keep the batch dimension first.

    Padding with a non-zero constant is affine: its constant is dropped in the linear part."""

    description = "reshape/view/flatten/permute/transpose/squeeze/pad"

    def check(self, ctx, path):
        target = ctx.node.target
        # a module attribute named "flatten" (call_module target "flatten") is not the method
        if (ctx.node.op == "call_function" and target is torch.flatten) or (
                ctx.node.op == "call_method" and target == "flatten"):
            start = ctx.args[1] if len(ctx.args) > 1 else ctx.kwargs.get("start_dim", 0)
            if start == 0:
                return Offender(path, "flatten", "flatten(x) with start_dim=0 merges the batch",
                                "use torch.flatten(x, 1) or nn.Flatten()")
        if isinstance(ctx.module, nn.Flatten) and ctx.module.start_dim == 0:
            return Offender(path, "nn.Flatten", "start_dim=0 merges the batch", "use start_dim=1")
        if target is F.pad:
            mode = ctx.args[2] if len(ctx.args) > 2 else ctx.kwargs.get("mode", "constant")
            if mode != "constant":
                return None  # reflect/replicate/circular are linear too
        return None

    def _pad_value(self, ctx) -> float:
        if ctx.node.target is F.pad:
            mode = ctx.args[2] if len(ctx.args) > 2 else ctx.kwargs.get("mode", "constant")
            if mode == "constant":
                v = ctx.args[3] if len(ctx.args) > 3 else ctx.kwargs.get("value", 0.0)
                return float(v or 0.0)
        if isinstance(ctx.module, nn.modules.padding._ConstantPadNd):
            return float(ctx.module.value)
        return 0.0

    def apply(self, ctx, code, K, bias):
        value = self._pad_value(ctx)
        if value != 0.0 and not bias:
            if ctx.module is not None:
                padder = type(ctx.module)(ctx.module.padding, 0.0) if not isinstance(
                    ctx.module, (nn.ZeroPad1d, nn.ZeroPad2d)) else ctx.module
                return padder(ctx.u)
            args = list(ctx.args)
            kwargs = dict(ctx.kwargs)
            if len(args) > 3:
                args[3] = 0.0
            else:
                kwargs["value"] = 0.0
            return F.pad(*args, **kwargs)
        return ctx.call()

    @classmethod
    def examples(cls):
        class Shapes(nn.Module):
            def __init__(self):
                super().__init__()
                self.c = nn.Conv2d(2, 3, 2)
                self.l = nn.Linear(3 * 3 * 4, 2)

            def forward(self, x):
                h = F.pad(torch.relu(self.c(x)), (0, 1), value=0.5).permute(0, 2, 3, 1)
                h = h.transpose(1, 2).unsqueeze(1).squeeze(1).reshape(x.shape[0], -1)
                return self.l(h.view(-1, 3, 12).flatten(1)) + torch.flatten(h, 1)[:, :2]

        yield Shapes(), torch.randn(3, 2, 4, 4)
        yield (nn.Sequential(nn.Linear(4, 8), nn.Unflatten(1, (2, 2, 2)), nn.ReLU(),
                             nn.ConstantPad2d(1, -0.25), nn.Flatten()), torch.randn(3, 4))


@register_rule(operator.getitem)
class GetItemRule(ShapeRule):
    """Indexing/slicing that keeps the whole batch (``x[:, 3:]``, ``x[..., 0]``)."""

    description = "slicing that keeps the batch dimension"

    def check(self, ctx, path):
        if not isinstance(ctx.u, torch.Tensor):
            # an item of a tuple-valued op (attention, LSTM): that op is the one to report
            return None
        idx = ctx.args[1]
        first = idx[0] if isinstance(idx, tuple) and idx else idx
        if first is Ellipsis and isinstance(idx, tuple) and len(idx) > 1:
            return None
        if not (isinstance(first, slice) and first == slice(None)):
            return Offender(path, "getitem", f"indexing {idx!r} selects along the batch dimension",
                            "index with a full first slice, e.g. x[:, 3:]")
        if isinstance(idx, tuple) and any(isinstance(i, torch.Tensor) for i in idx):
            return Offender(path, "getitem", "tensor indices are not supported",
                            "use slices, or torch.gather with a constant index in a custom rule")
        return None

    def vjp(self, ctx, code, K, grad):
        out = torch.zeros(ctx.u.shape, dtype=grad.dtype, device=grad.device)
        out[ctx.args[1]] = grad
        return [out]

    @classmethod
    def examples(cls):
        class Slice(nn.Module):
            def __init__(self):
                super().__init__()
                self.l = nn.Linear(4, 6)

            def forward(self, x):
                h = torch.relu(self.l(x))
                return h[:, 1:4] + h[:, ::2] - h[..., :3]

        yield Slice(), torch.randn(4, 4)


def _split_args(ctx: NodeContext) -> list[tuple[object, bool]]:
    return list(zip(ctx.args[:2], ctx.var[:2]))


@register_rule(operator.add, operator.iadd, torch.add, "Tensor.add", operator.sub, operator.isub,
               torch.sub, "Tensor.sub", operator.neg, torch.neg, "Tensor.neg")
class AddRule(AffineRule):
    """Sums and differences of branches and constants (residual connections)."""

    description = "a ± b (residual additions), with constants as offsets"

    def apply(self, ctx, code, K, bias):
        target = ctx.node.target
        name = target if isinstance(target, str) else getattr(target, "__name__", "")
        negate_second = name in ("sub", "isub")
        if name == "neg":
            return -ctx.u
        alpha = ctx.kwargs.get("alpha", 1)
        total = None
        for i, (value, is_var) in enumerate(_split_args(ctx)):
            if not is_var and not bias:
                continue
            term = value
            if i == 1:
                term = term * alpha if alpha != 1 else term
                term = -term if negate_second else term
            total = term if total is None else total + term
        return total

    def vjp(self, ctx, code, K, grad):
        target = ctx.node.target
        name = target if isinstance(target, str) else getattr(target, "__name__", "")
        if name == "neg":
            return [-grad]
        alpha = ctx.kwargs.get("alpha", 1)
        grads = []
        for i, (value, is_var) in enumerate(_split_args(ctx)):
            if not is_var:
                continue
            g = grad
            if i == 1:
                g = g * alpha if alpha != 1 else g
                g = -g if name in ("sub", "isub") else g
            if tuple(g.shape) != tuple(value.shape):  # undo broadcasting
                g = g.sum_to_size(value.shape)
            grads.append(g)
        return grads

    def is_monotone(self, ctx):
        target = ctx.node.target
        name = target if isinstance(target, str) else getattr(target, "__name__", "")
        if name == "neg":
            return (False,)
        alpha = ctx.kwargs.get("alpha", 1)
        signs = (1, -alpha if name in ("sub", "isub") else alpha)
        return tuple(bool(s >= 0) for s, (_, v) in zip(signs, _split_args(ctx)) if v)

    @classmethod
    def examples(cls):
        class Residual(nn.Module):
            def __init__(self):
                super().__init__()
                self.a, self.b, self.c = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)
                self.shift = nn.Parameter(torch.randn(4))

            def forward(self, x):
                h = torch.relu(self.a(x)) + x
                h = h - torch.relu(self.b(h)) + 0.5
                h = torch.add(h, self.shift, alpha=2.0) - self.shift
                g = self.b(h)
                g += torch.relu(h)
                return self.c(-g + 1.0) - 2.0

        yield Residual(), torch.randn(5, 4)


@register_rule(operator.mul, operator.imul, torch.mul, "Tensor.mul", operator.truediv,
               torch.div, "Tensor.div", operator.matmul, torch.matmul, "Tensor.matmul")
class ScaleRule(AffineRule):
    """Products with constants: ``c * x``, ``x / c``, ``x @ W`` (one factor input-dependent)."""

    description = "product with a constant (c·x, x/c, x @ W)"

    def check(self, ctx, path):
        name = getattr(ctx.node.target, "__name__", str(ctx.node.target))
        if sum(bool(v) for v in ctx.var[:2]) > 1:
            return Offender(path, name, "product of two input-dependent tensors is not affine",
                            "multiply by constants only (parameters, buffers, numbers)")
        if name in ("truediv", "div") and ctx.var[1]:
            return Offender(path, name, "division by an input-dependent tensor is not affine",
                            "divide by constants only")
        if ctx.kwargs.get("rounding_mode") is not None:
            return Offender(path, name, "rounded division is not affine", "drop rounding_mode")
        return None

    def apply(self, ctx, code, K, bias):
        return ctx.call()

    def is_monotone(self, ctx):
        name = getattr(ctx.node.target, "__name__", str(ctx.node.target))
        const = next((a for a, v in zip(ctx.args[:2], ctx.var[:2]) if not v), None)
        if const is None:  # a product of two inputs: refused by check
            return tuple(None for v in ctx.var[:2] if v)
        c = torch.as_tensor(const)
        ok = bool((c > 0).all()) if name in ("truediv", "div") else bool((c >= 0).all())
        return tuple(ok for v in ctx.var[:2] if v)

    @classmethod
    def examples(cls):
        class Scales(nn.Module):
            def __init__(self):
                super().__init__()
                self.w = nn.Parameter(torch.randn(4, 3))
                self.s = nn.Parameter(torch.rand(4) + 0.5)

            def forward(self, x):
                h = torch.relu(x * self.s) / 2.0
                return torch.relu(h @ self.w) * 3 + torch.matmul(h, self.w)

        yield Scales(), torch.randn(5, 4)


@register_rule(torch.cat, torch.concat, torch.concatenate, torch.stack)
class CatRule(ShapeRule):
    """Concatenation (or stacking) of branches along a non-batch dimension."""

    description = "concatenation of branches along a non-batch dimension"

    def _dim(self, ctx) -> int:
        dim = ctx.args[1] if len(ctx.args) > 1 else ctx.kwargs.get("dim", ctx.kwargs.get("axis", 0))
        return int(dim)

    def check(self, ctx, path):
        name = getattr(ctx.node.target, "__name__", "cat")
        tensors = ctx.args[0]
        if self._dim(ctx) % (tensors[0].dim() + (name == "stack")) == 0:
            return Offender(path, name, f"{name} along the batch dimension mixes samples",
                            f"{name} along a non-batch dimension, e.g. dim=1")
        if not all(ctx.var[0]):
            return Offender(path, name, f"{name} of input-dependent and constant tensors",
                            "concatenate only input-dependent branches, or register a custom rule")
        return None

    @classmethod
    def examples(cls):
        class Branches(nn.Module):
            def __init__(self):
                super().__init__()
                self.a, self.b = nn.Linear(3, 4), nn.Linear(3, 2)
                self.c = nn.Linear(6, 2)

            def forward(self, x):
                h = torch.cat([torch.relu(self.a(x)), self.b(x).abs()], dim=1)
                s = torch.stack([h, -h], dim=-1).amax(-1)
                return self.c(s)

        yield Branches(), torch.randn(5, 3)
