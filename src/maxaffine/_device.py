"""Where a model's tensors live, so inputs can follow them."""

from __future__ import annotations

import torch
from torch import nn


def model_device(model: nn.Module, default: torch.device | None = None) -> torch.device | None:
    """The device of the model's first parameter or buffer (``default`` if it has none)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return default


def to_model_device(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` moved to the model's device (unchanged for a model without tensors)."""
    device = model_device(model)
    return x if device is None or x.device == device else x.to(device)
