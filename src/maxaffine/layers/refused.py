"""Known ops that are not piecewise-affine: refused with a pointer to the way out."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import Offender
from .base import Rule
from .registry import register_rule

SMOOTH_FIX = ("not piecewise-affine; approximate it with maxaffine.legendre (max-affine "
              "Legendre approximation) or read it as soft VQ with maxaffine.activations "
              "(SiLU/swish = beta-VQ ReLU, sigmoid/tanh/softmax = expected codes)")
NORM_FIX = ("normalizes by input-dependent statistics, so it is not piecewise-affine; use "
            "BatchNorm (eval mode) or approximate with maxaffine.legendre")


class RefusedRule(Rule):
    """A known op that maxaffine refuses; ``description`` is the fix."""

    refuse = True
    reason = "not piecewise-affine"
    description = SMOOTH_FIX

    def check(self, ctx, path):
        kind = type(ctx.module).__name__ if ctx.module is not None else getattr(
            ctx.node.target, "__name__", str(ctx.node.target))
        return Offender(path, kind, self.reason, self.description)


@register_rule(nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Softmax, nn.LogSoftmax, nn.Softmin,
               nn.Softplus, nn.ELU, nn.SELU, nn.CELU, nn.Mish, nn.Hardswish, nn.Hardsigmoid,
               nn.Tanhshrink, nn.Softsign, nn.LogSigmoid, nn.GLU, nn.Hardshrink, nn.Softshrink,
               nn.Threshold, nn.RReLU,
               F.gelu, F.silu, F.softmax, F.log_softmax, F.softplus, F.elu, F.selu, F.celu,
               F.mish, F.hardswish, F.hardsigmoid, F.logsigmoid, F.glu, F.sigmoid, F.tanh,
               torch.sigmoid, torch.tanh, torch.softmax, torch.log_softmax, torch.exp, torch.log,
               torch.sqrt, torch.sin, torch.cos, torch.pow, operator_pow := __import__("operator").pow,
               "Tensor.sigmoid", "Tensor.tanh", "Tensor.softmax", "Tensor.log_softmax",
               "Tensor.exp", "Tensor.log", "Tensor.sqrt", "Tensor.pow", "Tensor.norm",
               torch.norm, F.normalize)
class SmoothRule(RefusedRule):
    reason = "smooth nonlinearity, not piecewise-affine"


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


__all__ = ["RefusedRule", "SMOOTH_FIX", "NORM_FIX"]
_ = (torch, F, operator_pow)
