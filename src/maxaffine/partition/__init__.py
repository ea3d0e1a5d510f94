"""Exact linear-region partitions of 2D slices and 1D paths through a network's input space.

>>> import torch, maxaffine
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
>>> part = maxaffine.partition_slice(net, maxaffine.Slice.box((-1, 1, -1, 1)), progress=False)
>>> bool(abs(part.areas.sum() - 4.0) < 1e-12)
True
"""

from ._engine import partition_slice
from .partition import DecisionBoundary, Level, Partition, PartitionStats
from .path import PathPartition, partition_path
from .slice import Slice

__all__ = ["Slice", "partition_slice", "Partition", "partition_path", "PathPartition", "PartitionStats", "DecisionBoundary", "Level"]
