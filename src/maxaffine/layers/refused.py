"""Known ops that are not continuous piecewise-affine: refused with the reason and a way out.

Refused rules still declare what the convexity prover needs (convex, non-decreasing), so
:func:`maxaffine.is_convex` can prove a network with softplus units convex even though its
exact geometry is refused.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import Offender
from .base import NodeContext, Rule
from .registry import register_rule

SMOOTH_FIX = ("not piecewise-affine; approximate it with maxaffine.legendre (max-affine "
              "Legendre approximation) or read it as soft VQ with maxaffine.activations "
              "(SiLU/swish = beta-VQ ReLU, sigmoid/tanh/softmax = expected codes)")
NORM_FIX = ("normalizes by input-dependent statistics, so it is not piecewise-affine; use "
            "BatchNorm (eval mode) or approximate with maxaffine.legendre")
JUMP_FIX = ("piecewise-affine but discontinuous, so its regions do not tile into a "
            "continuous spline; use nn.Softshrink (the continuous shrinkage) or a ReLU/clamp")


class RefusedRule(Rule):
    """A known op that maxaffine refuses; ``reason`` says why and ``description`` the fix."""

    refused = True
    convex = None
    monotone = None
    reason = "not piecewise-affine"
    description = SMOOTH_FIX

    def check(self, ctx, path):
        kind = type(ctx.module).__name__ if ctx.module is not None else getattr(
            ctx.node.target, "__name__", str(ctx.node.target))
        return Offender(path, kind, self.reason, self.description)


@register_rule(nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.GLU,
               F.softmax, F.log_softmax, F.glu, torch.softmax, torch.log_softmax,
               torch.sin, torch.cos, torch.pow, operator.pow,
               "Tensor.softmax", "Tensor.log_softmax", "Tensor.pow", "Tensor.norm",
               torch.norm, F.normalize)
class SmoothRule(RefusedRule):
    """Smooth ops whose convexity maxaffine does not declare (it depends on the use)."""

    reason = "smooth nonlinearity, not piecewise-affine"


@register_rule(nn.Softplus, nn.CELU, F.softplus, F.celu, torch.exp, "Tensor.exp")
class SmoothConvexRule(SmoothRule):
    """Smooth, convex and increasing: softplus, CELU, exp."""

    convex = True
    monotone = True


@register_rule(nn.ELU, F.elu)
class ELURule(SmoothRule):
    """ELU: convex for ``0 ≤ α ≤ 1`` (slope α e^u below 0, 1 above), non-decreasing for α ≥ 0."""

    def _alpha(self, ctx: NodeContext) -> float:
        if ctx.module is not None:
            return float(ctx.module.alpha)
        return float(ctx.args[1] if len(ctx.args) > 1 else ctx.kwargs.get("alpha", 1.0))

    def is_convex(self, ctx):
        return 0.0 <= self._alpha(ctx) <= 1.0

    def is_monotone(self, ctx):
        return (self._alpha(ctx) >= 0.0,)


@register_rule(nn.Sigmoid, nn.Tanh, nn.SELU, nn.Hardsigmoid, nn.Softsign, nn.LogSigmoid,
               nn.Tanhshrink, F.sigmoid, F.tanh, F.selu, F.hardsigmoid, F.logsigmoid,
               torch.sigmoid, torch.tanh, torch.log, torch.sqrt, "Tensor.sigmoid",
               "Tensor.tanh", "Tensor.log", "Tensor.sqrt")
class SmoothMonotoneRule(SmoothRule):
    """Increasing but not convex (bounded, concave, or with a slope that drops)."""

    convex = False
    monotone = True


@register_rule(nn.GELU, nn.SiLU, nn.Mish, F.gelu, F.silu, F.mish)
class SmoothNeitherRule(SmoothRule):
    """Neither convex nor monotone (a dip below zero for negative inputs)."""

    convex = False
    monotone = False


@register_rule(nn.Hardshrink, nn.Threshold, F.hardshrink, F.threshold)
class DiscontinuousRule(RefusedRule):
    """Piecewise-affine with jumps: Hardshrink (at ±λ), Threshold (at the threshold)."""

    reason = "piecewise-affine but discontinuous (it jumps at its thresholds)"
    description = JUMP_FIX
    convex = False


@register_rule(nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d,
               nn.InstanceNorm3d, nn.LocalResponseNorm, nn.RMSNorm, F.layer_norm, F.group_norm,
               F.instance_norm, F.local_response_norm, F.rms_norm)
class NormRule(RefusedRule):
    reason = "input-dependent normalization"
    description = NORM_FIX


@register_rule(nn.MultiheadAttention, nn.Transformer, nn.TransformerEncoderLayer,
               nn.TransformerDecoderLayer, nn.TransformerEncoder, nn.RNN, nn.LSTM, nn.GRU,
               F.scaled_dot_product_attention, nn.Bilinear)
class AttentionRule(RefusedRule):
    reason = "attention / recurrence / bilinear forms multiply input-dependent tensors"
    description = ("not piecewise-affine; analyse a piecewise-affine sub-network with "
                   "affine_map(..., start=, end=) or approximate it with maxaffine.legendre")


__all__ = ["JUMP_FIX", "NORM_FIX", "SMOOTH_FIX", "RefusedRule"]
