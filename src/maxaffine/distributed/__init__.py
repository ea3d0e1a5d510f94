"""Dataset-scale analyses with mergeable accumulators, in one process or on Ray.

Every analysis of a dataset — local complexity, VQ code statistics (distinct regions per
layer and overall), memorization summaries, Hessian complexity, partition statistics of
many slices — is a per-batch computation whose result is an accumulator; ``merge(a, b)``
combines two accumulators exactly (associative and commutative bit for bit), so the same
reducers serve a plain loop (:func:`analyze_dataset`), Ray (:func:`map_batches`,
:func:`sweep_checkpoints`), Dask or ``torch.distributed``.

Importing this package does not import Ray: :func:`map_batches` and
:func:`sweep_checkpoints` import it when called (``pip install 'maxaffine[ray]'``).
"""

from __future__ import annotations

from .accumulators import (
    AREA_BINS,
    CodeStats,
    ExactSum,
    HessianStats,
    LocalComplexityStats,
    MemorizationStats,
    SliceStats,
    exact_scaled_sum,
    merge,
    merge_all,
)
from .dataset import (
    DatasetJob,
    DatasetStats,
    analyze_dataset,
    batch_seed,
    code_stats,
    hessian_stats,
    indexed_batches,
    local_complexity_stats,
    memorization_stats,
    slice_stats,
)
from .ray_engine import BatchWorker, map_batches, sweep_checkpoints

__all__ = ["AREA_BINS", "BatchWorker", "CodeStats", "DatasetJob", "DatasetStats", "ExactSum",
           "HessianStats", "LocalComplexityStats", "MemorizationStats", "SliceStats",
           "analyze_dataset", "batch_seed", "code_stats", "exact_scaled_sum", "hessian_stats",
           "indexed_batches", "local_complexity_stats", "map_batches", "memorization_stats",
           "merge", "merge_all", "slice_stats", "sweep_checkpoints"]
