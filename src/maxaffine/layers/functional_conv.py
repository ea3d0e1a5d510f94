"""Functional convolutions ``F.conv1d/2d/3d`` (``torch.conv*``) with constant weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import Offender
from .base import AffineRule, NodeContext
from .registry import register_rule


@register_rule(F.conv1d, F.conv2d, F.conv3d, torch.conv1d, torch.conv2d, torch.conv3d)
class FunctionalConvRule(AffineRule):
    """``conv(u, W) + c`` with a constant weight ``W`` and bias ``c``; the transpose is the
    transposed convolution (autograd of the linear part)."""

    description = "functional convolution with constant weights"

    def check(self, ctx: NodeContext, path: str):
        if any(flag is True for flag in ctx.var[1:]):
            return Offender(path, getattr(ctx.node.target, "__name__", "conv"),
                            "weight or bias depends on the input (a bilinear form)",
                            "use constant weights (parameters or buffers)")
        return None

    def apply(self, ctx: NodeContext, code, K: int, bias: bool):
        if bias:
            return ctx.call()
        args = list(ctx.args)
        kwargs = dict(ctx.kwargs)
        if len(args) > 2:
            args[2] = None
        else:
            kwargs["bias"] = None
        return ctx.call(*args, **kwargs)

    @classmethod
    def examples(cls):
        class FConv(nn.Module):
            def __init__(self):
                super().__init__()
                self.w1 = nn.Parameter(torch.randn(4, 2, 3, 3) / 3)
                self.b1 = nn.Parameter(torch.randn(4))
                self.w2 = nn.Parameter(torch.randn(4, 2, 1, 3) / 2)
                self.w3 = nn.Parameter(torch.randn(2, 4, 3))

            def forward(self, x):
                h = torch.relu(F.conv2d(x, self.w1, self.b1, stride=1, padding=1))
                h = torch.conv2d(h, self.w2, None, 1, (0, 1), 1, 2)
                return F.conv1d(h.flatten(2), self.w3, padding=1).flatten(1)

        yield FConv(), torch.randn(3, 2, 3, 3)
