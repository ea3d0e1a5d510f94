"""Hardswish is refused for what it is: piecewise-quadratic, not piecewise-affine."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .refused import RefusedRule
from .registry import register_rule


@register_rule(nn.Hardswish, F.hardswish)
class HardswishRule(RefusedRule):
    """``u · relu6(u + 3) / 6``: quadratic on ``-3 < u < 3``, so not a max-affine spline."""

    reason = "piecewise-quadratic (u * relu6(u + 3) / 6 is quadratic on -3 < u < 3)"
    description = ("not piecewise-affine; replace it by nn.ReLU/nn.ReLU6 or nn.Hardsigmoid, "
                   "or approximate it with maxaffine.legendre")
    convex = False
    monotone = False
