"""Transposed convolution: the adjoint of a convolution, plus a bias."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import AffineRule, NodeContext
from .registry import register_rule


@register_rule(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
class ConvTransposeRule(AffineRule):
    r"""``u = C^\top x + c``, with ``C`` the convolution of the same stride, padding,
    dilation and groups (any ``output_padding``, or ``output_size`` in the call).

    The transpose of the linear part is that convolution itself: ``g ↦ conv(g, W)``.
    """

    description = "transposed convolution (stride, padding, output_padding, groups, dilation)"

    def _output_padding(self, ctx: NodeContext):
        m = ctx.module
        size = ctx.args[1] if len(ctx.args) > 1 else ctx.kwargs.get("output_size")
        nd = m.weight.dim() - 2
        return m._output_padding(ctx.u, size, m.stride, m.padding, m.kernel_size, nd, m.dilation)

    def apply(self, ctx: NodeContext, code, K: int, bias: bool):
        m = ctx.module
        fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[m.weight.dim() - 3]
        return fn(ctx.u, m.weight, m.bias if bias else None, m.stride, m.padding,
                  self._output_padding(ctx), m.groups, m.dilation)

    def vjp(self, ctx: NodeContext, code, K: int, grad: torch.Tensor):
        m = ctx.module
        fn = (F.conv1d, F.conv2d, F.conv3d)[m.weight.dim() - 3]
        # output_padding only adds output rows beyond the last window: the convolution of
        # the cotangent ends exactly at the input's size
        return [fn(grad, m.weight, None, m.stride, m.padding, m.dilation, m.groups)]

    def is_monotone(self, ctx: NodeContext):
        return (bool((ctx.module.weight >= 0).all()),)

    @classmethod
    def examples(cls):
        yield (nn.Sequential(nn.Linear(3, 8), nn.Unflatten(1, (4, 2)), nn.ReLU(),
                             nn.ConvTranspose1d(4, 2, 3, stride=2, padding=1, output_padding=1,
                                                groups=2, dilation=2), nn.ReLU(), nn.Flatten(),
                             nn.Linear(12, 2)), torch.randn(5, 3))
        yield (nn.Sequential(nn.ConvTranspose2d(1, 2, (2, 3), stride=(2, 1), padding=(1, 0),
                                                output_padding=(1, 0)), nn.ReLU(),
                             nn.ConvTranspose2d(2, 1, 2, bias=False), nn.Flatten()),
               torch.randn(3, 1, 2, 2))
        yield (nn.Sequential(nn.ConvTranspose3d(1, 2, 2, stride=2), nn.ReLU(), nn.Flatten()),
               torch.randn(2, 1, 1, 2, 1))

        class Sized(nn.Module):
            def __init__(self):
                super().__init__()
                self.up = nn.ConvTranspose2d(2, 1, 3, stride=2, padding=1)
                self.head = nn.Linear(6 * 4, 2)

            def forward(self, x):
                h = torch.relu(self.up(x.view(-1, 2, 3, 2), output_size=[6, 4]))
                return self.head(h.flatten(1))

        yield Sized(), torch.randn(4, 12)
