"""Affine layers with weights: Linear, Conv1d/2d/3d, BatchNorm (eval)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import Offender
from ._depthwise import depthwise_conv2d, depthwise_conv2d_input, fast_depthwise
from .base import AffineRule, NodeContext
from .registry import register_rule


@register_rule(nn.Linear)
class LinearRule(AffineRule):
    """``u = W x + c``; the transpose is ``g W``."""

    description = "W x + c"

    def apply(self, ctx: NodeContext, code, K: int, bias: bool):
        m = ctx.module
        return F.linear(ctx.u, m.weight, m.bias if bias else None)

    def vjp(self, ctx: NodeContext, code, K: int, grad: torch.Tensor):
        return [grad @ ctx.module.weight]

    def is_monotone(self, ctx: NodeContext):
        return (bool((ctx.module.weight >= 0).all()),)

    @classmethod
    def examples(cls):
        yield nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)), torch.randn(6, 5)
        yield nn.Sequential(nn.Linear(3, 4, bias=False)), torch.randn(2, 3)


@register_rule(F.linear)
class FunctionalLinearRule(AffineRule):
    """``F.linear(x, W, c)`` with constant W, c."""

    description = "F.linear with constant weights"

    def check(self, ctx: NodeContext, path: str):
        if any(ctx.var[1:]):
            return Offender(path, "F.linear", "weight or bias depends on the input (bilinear)",
                            "use constant weights (parameters or buffers)")
        return None

    def apply(self, ctx: NodeContext, code, K: int, bias: bool):
        weight = ctx.args[1] if len(ctx.args) > 1 else ctx.kwargs["weight"]
        b = ctx.args[2] if len(ctx.args) > 2 else ctx.kwargs.get("bias")
        return F.linear(ctx.u, weight, b if bias else None)

    def is_monotone(self, ctx: NodeContext):
        weight = ctx.args[1] if len(ctx.args) > 1 else ctx.kwargs["weight"]
        return (bool((weight >= 0).all()),)

    @classmethod
    def examples(cls):
        class FL(nn.Module):
            def __init__(self):
                super().__init__()
                self.w = nn.Parameter(torch.randn(3, 4))
                self.c = nn.Parameter(torch.randn(3))

            def forward(self, x):
                return F.linear(torch.relu(F.linear(x, self.w, self.c)), self.w[:, :3])

        yield FL(), torch.randn(5, 4)


@register_rule(nn.Conv1d, nn.Conv2d, nn.Conv3d)
class ConvRule(AffineRule):
    """Convolution (any stride, padding, dilation, groups, padding mode)."""

    description = "convolution (stride, padding, dilation, groups)"

    def apply(self, ctx: NodeContext, code, K: int, bias: bool):
        m = ctx.module
        if m.padding_mode == "zeros" and fast_depthwise(ctx.u, m.weight, m.groups, m.padding):
            return depthwise_conv2d(ctx.u, m.weight, m.bias if bias else None, m.stride,
                                    m.padding, m.dilation)
        return m._conv_forward(ctx.u, m.weight, m.bias if bias else None)

    def forward(self, ctx: NodeContext):
        return self.apply(ctx, None, 1, True)

    def is_monotone(self, ctx: NodeContext):
        return (bool((ctx.module.weight >= 0).all()),)

    def vjp(self, ctx: NodeContext, code, K: int, grad: torch.Tensor):
        m = ctx.module
        if m.padding_mode != "zeros" or isinstance(m.padding, str):
            return super().vjp(ctx, code, K, grad)
        if fast_depthwise(ctx.u, m.weight, m.groups, m.padding):
            return [depthwise_conv2d_input(ctx.u.shape, m.weight, grad, m.stride, m.padding,
                                           m.dilation)]
        conv_input = {1: torch.nn.grad.conv1d_input, 2: torch.nn.grad.conv2d_input,
                      3: torch.nn.grad.conv3d_input}[m.weight.dim() - 2]
        return [conv_input(ctx.u.shape, m.weight, grad, m.stride, m.padding, m.dilation,
                           m.groups)]

    @classmethod
    def examples(cls):
        yield (nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.ReLU(),
                             nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2), nn.Flatten(),
                             nn.Linear(4 * 4 * 4, 3)), torch.randn(3, 2, 7, 7))
        yield (nn.Sequential(nn.Conv1d(1, 3, 5, padding=2, padding_mode="circular"), nn.ReLU(),
                             nn.Conv1d(3, 2, 3, stride=2), nn.Flatten()), torch.randn(4, 1, 11))
        yield (nn.Sequential(nn.Conv3d(1, 2, 2), nn.ReLU(), nn.Flatten()),
               torch.randn(2, 1, 3, 3, 3))


@register_rule(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
class BatchNormRule(AffineRule):
    """BatchNorm in eval mode: a per-channel affine map with the running statistics."""

    description = "affine in eval mode: per-channel scale and shift from running statistics"

    def training_mode(self, ctx: NodeContext) -> bool:
        m = ctx.module
        return m.training or not m.track_running_stats or m.running_var is None

    def _scale_shift(self, m: nn.Module, ndim: int):
        scale = torch.rsqrt(m.running_var + m.eps)
        if m.weight is not None:
            scale = scale * m.weight
        shift = -m.running_mean * scale
        if m.bias is not None:
            shift = shift + m.bias
        view = (1, -1) + (1,) * (ndim - 2)
        return scale.reshape(view), shift.reshape(view)

    def apply(self, ctx: NodeContext, code, K: int, bias: bool):
        scale, shift = self._scale_shift(ctx.module, ctx.u.dim())
        out = ctx.u * scale
        return out + shift if bias else out

    def vjp(self, ctx: NodeContext, code, K: int, grad: torch.Tensor):
        scale, _ = self._scale_shift(ctx.module, grad.dim())
        return [grad * scale]

    def is_monotone(self, ctx: NodeContext):
        return (bool((self._scale_shift(ctx.module, 2)[0] >= 0).all()),)

    @classmethod
    def examples(cls):
        for net, x in (
            (nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2)),
             torch.randn(5, 4)),
            (nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten()),
             torch.randn(2, 1, 5, 5)),
            (nn.Sequential(nn.Conv3d(1, 2, 2), nn.BatchNorm3d(2), nn.Flatten()),
             torch.randn(2, 1, 3, 3, 3)),
        ):
            _randomize_batchnorm(net)
            yield net.eval(), x


def _randomize_batchnorm(net: nn.Module) -> None:
    """Give BatchNorm modules non-trivial running statistics and affine parameters."""
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                if m.weight is not None:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.5, 0.5)
