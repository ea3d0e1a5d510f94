"""RReLU in eval mode: a leaky ReLU with the fixed slope ``(lower + upper) / 2``."""

from __future__ import annotations

import torch
from torch import nn

from .activation import TwoSlopeRule
from .base import NodeContext
from .registry import register_rule


@register_rule(nn.RReLU)
class RReLURule(TwoSlopeRule):
    """``σ(u) = u`` for ``u > 0``, ``ν u`` otherwise, ``ν = (lower + upper) / 2`` in eval mode.

    In training mode the negative slope is random per element, which is refused."""

    description = "RReLU in eval mode: leaky slope (lower + upper) / 2"

    def slopes(self, ctx: NodeContext):
        m = ctx.module
        return (float(m.lower + m.upper) / 2.0, 1.0)

    def training_mode(self, ctx: NodeContext) -> bool:
        return bool(ctx.module.training)

    @classmethod
    def examples(cls):
        yield (nn.Sequential(nn.Linear(3, 6), nn.RReLU(0.1, 0.3), nn.Linear(6, 2)).eval(),
               torch.randn(5, 3))
