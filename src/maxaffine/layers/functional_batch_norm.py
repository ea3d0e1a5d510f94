"""``F.batch_norm`` in eval mode (timm's BatchNormAct layers call it directly)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import Offender
from .base import AffineRule, NodeContext
from .registry import register_rule

_NAMES = ("running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")


def _arguments(ctx: NodeContext) -> dict:
    out = dict(zip(_NAMES, ctx.args[1:]))
    out.update({k: v for k, v in ctx.kwargs.items() if k in _NAMES})
    out.setdefault("weight", None)
    out.setdefault("bias", None)
    out.setdefault("training", False)
    out.setdefault("eps", 1e-5)
    return out


@register_rule(F.batch_norm)
class FunctionalBatchNormRule(AffineRule):
    """``(u - μ) / sqrt(σ² + ε) · γ + β`` per channel with constant running statistics."""

    description = "F.batch_norm with running statistics (training=False): per-channel affine"

    def check(self, ctx: NodeContext, path: str):
        if any(flag is True for flag in ctx.var[1:]):
            return Offender(path, "F.batch_norm", "statistics or affine parameters depend on "
                            "the input", "pass constant running statistics and parameters")
        a = _arguments(ctx)
        if a.get("running_mean") is None or a.get("running_var") is None:
            return Offender(path, "F.batch_norm", "batch statistics (no running statistics)",
                            "track running statistics and call model.eval()")
        return None

    def training_mode(self, ctx: NodeContext) -> bool:
        return bool(_arguments(ctx)["training"])

    def _scale_shift(self, ctx: NodeContext, ndim: int):
        a = _arguments(ctx)
        scale = torch.rsqrt(a["running_var"] + a["eps"])
        if a["weight"] is not None:
            scale = scale * a["weight"]
        shift = -a["running_mean"] * scale
        if a["bias"] is not None:
            shift = shift + a["bias"]
        view = (1, -1) + (1,) * (ndim - 2)
        return scale.reshape(view), shift.reshape(view)

    def apply(self, ctx: NodeContext, code, K: int, bias: bool):
        scale, shift = self._scale_shift(ctx, ctx.u.dim())
        out = ctx.u * scale
        return out + shift if bias else out

    def vjp(self, ctx: NodeContext, code, K: int, grad: torch.Tensor):
        return [grad * self._scale_shift(ctx, grad.dim())[0]]

    @classmethod
    def examples(cls):
        class BNAct(nn.BatchNorm2d):  # the pattern of timm's BatchNormAct2d
            def forward(self, x):
                x = F.batch_norm(x, self.running_mean, self.running_var, self.weight,
                                 self.bias, False, 0.0, self.eps)
                return torch.relu(x)

        torch.manual_seed(0)
        bn = BNAct(3)
        with torch.no_grad():
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
        yield (nn.Sequential(nn.Conv2d(2, 3, 3), bn, nn.Flatten(), nn.Linear(12, 2)).eval(),
               torch.randn(3, 2, 4, 4))
