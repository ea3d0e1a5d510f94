"""Reflection, replication and circular padding: linear index maps (entries copied)."""

from __future__ import annotations

import torch
from torch import nn

from .base import ShapeRule
from .registry import register_rule


@register_rule(nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d,
               nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d,
               nn.CircularPad1d, nn.CircularPad2d, nn.CircularPad3d)
class IndexPadRule(ShapeRule):
    """Each output entry is one input entry: a linear map with no bias."""

    description = "reflection / replication / circular padding (copies of entries)"

    @classmethod
    def examples(cls):
        yield (nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.ReflectionPad2d(1),
                             nn.ReplicationPad2d((1, 0, 2, 1)), nn.CircularPad2d(1),
                             nn.Conv2d(3, 2, 3), nn.Flatten()), torch.randn(3, 2, 5, 5))
        yield (nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU(), nn.ReflectionPad1d(2),
                             nn.ReplicationPad1d(1), nn.CircularPad1d((0, 2)), nn.Flatten()),
               torch.randn(3, 1, 6))
