"""Test helpers shipped with the package: independent oracles and random architectures."""

from __future__ import annotations

import torch
from torch import nn


def jacobian_oracle(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per-sample Jacobians (B, C, D) by plain autograd, independent of maxaffine's rules.

    Every sample is pushed through ``model`` on its own (batch of one), so ops that need a
    batch dimension (BatchNorm, views with ``x.size(0)``) work unchanged.
    """
    rows = []
    for xi in x:
        J = torch.autograd.functional.jacobian(lambda v: model(v.unsqueeze(0)).reshape(-1), xi)
        rows.append(J.reshape(J.shape[0], -1))
    return torch.stack(rows)


def randomize_batchnorm(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters (in place)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=generator) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=generator) + 0.5)
                if m.weight is not None:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=generator) + 0.5)
                    m.bias.copy_(torch.rand(m.bias.shape, generator=generator) - 0.5)
    return model


__all__ = ["jacobian_oracle", "randomize_batchnorm"]
