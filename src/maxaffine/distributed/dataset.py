"""Dataset-scale analyses as one function per batch, folded with mergeable accumulators.

A :class:`DatasetJob` says what to compute on every batch (local complexity, VQ code
statistics, memorization, Hessian complexity); :meth:`DatasetJob.run` computes it on one
batch and returns a :class:`DatasetStats` of accumulators. :func:`analyze_dataset` folds
the batches of a dataset in one process; :mod:`maxaffine.distributed.ray_engine` folds the
same per-batch results on a Ray cluster. Batch ``j`` draws its random numbers from
``batch_seed(seed, j)``, so the result depends on the seed and on how the data is cut
into batches, never on which process ran a batch or in which order the parts merged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .._stream import batches, is_stream, length
from ..errors import InputError
from .accumulators import (
    CodeStats,
    HessianStats,
    LocalComplexityStats,
    MemorizationStats,
    SliceStats,
    merge,
)


def batch_seed(seed: int, index: int) -> int:
    """The seed of batch ``index`` of a job seeded by ``seed`` (a non-negative 62-bit int).

    Derived with numpy's ``SeedSequence([seed, index])``: distinct batches get
    independent streams, and any process computes the same seed for the same batch.
    """
    if int(seed) < 0 or int(index) < 0:
        raise InputError(f"seed and batch index must be non-negative; got {seed}, {index}")
    hi, lo = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, np.uint32)
    return ((int(hi) << 32) | int(lo)) >> 2


@dataclass(frozen=True)
class DatasetStats:
    """The accumulators of one :class:`DatasetJob` (None for the analyses not requested).

    Attributes
    ----------
    n : int
        Number of inputs.
    local_complexity : LocalComplexityStats or None
    codes : CodeStats or None
    memorization : MemorizationStats or None
    hessian : HessianStats or None
    """

    n: int = 0
    local_complexity: LocalComplexityStats | None = None
    codes: CodeStats | None = None
    memorization: MemorizationStats | None = None
    hessian: HessianStats | None = None

    def merge(self, other: DatasetStats) -> DatasetStats:
        def one(a, b):
            if a is None or b is None:
                if (a is None) != (b is None):
                    raise InputError("cannot merge results of different jobs (one has an "
                                     "analysis the other lacks)")
                return None
            return merge(a, b)

        return DatasetStats(self.n + other.n, one(self.local_complexity, other.local_complexity),
                            one(self.codes, other.codes),
                            one(self.memorization, other.memorization),
                            one(self.hessian, other.hessian))

    def summary(self) -> dict[str, Any]:
        """The headline numbers as a flat dict (for tables and JSON)."""
        out: dict[str, Any] = {"n": self.n}
        if self.local_complexity is not None:
            out["lc_mean"] = self.local_complexity.mean
            out["lc_std"] = self.local_complexity.std
        if self.codes is not None:
            out["regions"] = self.codes.n_regions
            for k, v in self.codes.layer_regions().items():
                out[f"regions[{k}]"] = v
            for k, v in self.codes.active_fraction().items():
                out[f"active[{k}]"] = v
        if self.memorization is not None:
            out.update(self.memorization.summary())
        if self.hessian is not None:
            out["hessian"] = self.hessian.value
        return out


@dataclass(frozen=True)
class DatasetJob:
    """What to compute on every batch of a dataset.

    Parameters
    ----------
    local_complexity : dict, optional
        Keyword arguments of :func:`maxaffine.local_complexity` (``radius``, ``n_vertices``,
        optionally ``directions``); None to skip.
    codes : bool
        VQ code statistics (:class:`CodeStats`: distinct regions per layer and overall,
        active fractions).
    memorization : bool
        Template–input cosines (needs labelled batches).
    hessian : dict, optional
        Keyword arguments of :func:`maxaffine.hessian_complexity` for the perturbation
        estimator (``sigma``); None to skip.
    seed : int
        Seed of the job; batch ``j`` uses ``batch_seed(seed, j)``.
    chunk_size : int, optional
        Samples per batched pass inside a batch.
    """

    local_complexity: dict | None = None
    codes: bool = False
    memorization: bool = False
    hessian: dict | None = None
    seed: int = 0
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        if self.local_complexity is None and not self.codes and not self.memorization \
                and self.hessian is None:
            raise InputError("the job computes nothing: ask for local_complexity, codes, "
                             "memorization or hessian")
        if int(self.seed) < 0:
            raise InputError(f"seed must be a non-negative integer; got {self.seed}")

    def run(self, model: Any, index: int, x: Any, y: Any = None) -> DatasetStats:
        """The accumulators of batch ``index`` with inputs ``x`` and labels ``y``.

        ``model`` is an ``nn.Module`` or (better, traced once and reused) a Trace.
        """
        from ..complexity import hessian_complexity, local_complexity
        from ..templates import memorization

        seed = batch_seed(self.seed, index)
        x = torch.as_tensor(x)
        lc = codes = mem = hc = None
        if self.local_complexity is not None:
            res = local_complexity(model, x, per_layer=True, seed=seed,
                                   chunk_size=self.chunk_size, **self.local_complexity)
            lc = LocalComplexityStats.from_result(res)
        if self.codes:
            codes = _code_stats(model, x, self.chunk_size)
        if self.memorization:
            if y is None:
                raise InputError("memorization needs labelled batches ((x, y) pairs)")
            mem = MemorizationStats.from_result(memorization(model, x, y,
                                                             chunk_size=self.chunk_size))
        if self.hessian is not None:
            hc = HessianStats.from_result(hessian_complexity(model, x, seed=seed,
                                                             chunk_size=self.chunk_size,
                                                             **self.hessian))
        return DatasetStats(len(x), lc, codes, mem, hc)


def _code_stats(model: Any, x: torch.Tensor, chunk_size: int | None) -> CodeStats:
    from ..affine import _chunks, _default_chunk
    from ..trace import as_trace

    tr = as_trace(model, x)
    x = tr.prepare(x)
    size = chunk_size or _default_chunk(tr, 1, 1)
    out = CodeStats()
    with torch.no_grad():
        for sl in _chunks(len(x), size):
            out = out.merge(CodeStats.from_codes(tr.run(x[sl], prepared=True).codes))
    return out


def _traced(model: Any, x: torch.Tensor) -> Any:
    from ..trace import as_trace

    return as_trace(model, torch.as_tensor(x))


def indexed_batches(data: Any, batch_size: int | None = None,
                    y: Any = None) -> Iterator[tuple[int, Any, Any]]:
    """``(j, x_j, y_j)`` for the batches of ``data`` (a tensor cut into ``batch_size``
    rows, with optional labels ``y``, or a stream of batches)."""
    if not is_stream(data) and batch_size is None:
        batch_size = 256
    for j, (xb, yb) in enumerate(batches(data, batch_size, y)):
        yield j, xb, yb


def analyze_dataset(model: nn.Module | Any, data: Any, job: DatasetJob, *, y: Any = None,
                    batch_size: int | None = None, progress: bool = False) -> DatasetStats:
    """Run ``job`` over every batch of ``data`` in this process and merge the results.

    The memory held is that of one batch (plus the region-key sets of :class:`CodeStats`,
    which grow with the number of distinct regions), independent of the dataset's size.

    Parameters
    ----------
    model : nn.Module or Trace
    data : Tensor (N, *in_shape) or iterable of batches
        A tensor (cut into ``batch_size`` rows, default 256) or a stream of batches
        (tensors or ``(x, y)`` pairs, e.g. a ``DataLoader``).
    job : DatasetJob
    y : Tensor (N,), optional
        Labels of a tensor ``data`` (for memorization).
    batch_size : int, optional
    progress : bool
        Progress bar over the batches.

    Returns
    -------
    DatasetStats
        Equal, bit for bit, to the merge of the per-batch results in any order, hence to
        :func:`maxaffine.distributed.ray_engine.map_batches` on the same batches.

    Examples
    --------
    >>> import torch
    >>> from maxaffine.distributed import DatasetJob, analyze_dataset
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    >>> job = DatasetJob(local_complexity=dict(radius=0.1, n_vertices=4), codes=True)
    >>> stats = analyze_dataset(net, torch.randn(100, 4), job, batch_size=32)
    >>> stats.n, stats.codes.n_regions <= 100
    (100, True)
    """
    out: DatasetStats | None = None
    tr = None
    total = length(data) if is_stream(data) else None
    for j, xb, yb in tqdm(indexed_batches(data, batch_size, y), total=total, desc="batches",
                          disable=not progress, leave=False):
        if tr is None:
            tr = _traced(model, xb)
        part = job.run(tr, j, xb, yb)
        out = part if out is None else out.merge(part)
    if out is None:
        raise InputError("the dataset has no batches")
    return out


def local_complexity_stats(model: Any, data: Any, *, radius: float, n_vertices: int,
                           seed: int = 0, directions: str = "auto",
                           batch_size: int | None = None, chunk_size: int | None = None,
                           progress: bool = False) -> LocalComplexityStats:
    """Local complexity over a dataset with bounded memory (see :func:`analyze_dataset`)."""
    job = DatasetJob(local_complexity={"radius": radius, "n_vertices": n_vertices,
                                           "directions": directions}, seed=seed,
                     chunk_size=chunk_size)
    res = analyze_dataset(model, data, job, batch_size=batch_size, progress=progress)
    assert res.local_complexity is not None
    return res.local_complexity


def code_stats(model: Any, data: Any, *, batch_size: int | None = None,
               chunk_size: int | None = None, progress: bool = False) -> CodeStats:
    """VQ code statistics over a dataset: distinct regions (exact), per layer and overall."""
    job = DatasetJob(codes=True, chunk_size=chunk_size)
    res = analyze_dataset(model, data, job, batch_size=batch_size, progress=progress)
    assert res.codes is not None
    return res.codes


def memorization_stats(model: Any, data: Any, y: Any = None, *, batch_size: int | None = None,
                       chunk_size: int | None = None,
                       progress: bool = False) -> MemorizationStats:
    """Template–input cosine summaries over a labelled dataset."""
    job = DatasetJob(memorization=True, chunk_size=chunk_size)
    res = analyze_dataset(model, data, job, y=y, batch_size=batch_size, progress=progress)
    assert res.memorization is not None
    return res.memorization


def hessian_stats(model: Any, data: Any, *, sigma: float = 1e-4, seed: int = 0,
                  batch_size: int | None = None, chunk_size: int | None = None,
                  progress: bool = False) -> HessianStats:
    """Hessian (rugosity) complexity, perturbation estimator, over a dataset."""
    job = DatasetJob(hessian={"sigma": sigma}, seed=seed, chunk_size=chunk_size)
    res = analyze_dataset(model, data, job, batch_size=batch_size, progress=progress)
    assert res.hessian is not None
    return res.hessian


def slice_stats(model: Any, slices: Iterable[Any], *, max_regions: int | None = None,
                bins: Iterable[float] | None = None, progress: bool = False) -> SliceStats:
    """Partition statistics over many 2D slices (region counts, areas, density, boundary).

    Parameters
    ----------
    model : nn.Module or Trace
    slices : iterable of Slice
    max_regions : int, optional
        Region budget of each partition (flagged in ``incomplete`` when hit).
    bins : iterable of float, optional
        Area-histogram edges in log10 of the fraction of the domain (default
        :data:`~maxaffine.distributed.accumulators.AREA_BINS`).
    """
    from ..partition import partition_slice
    from .accumulators import AREA_BINS

    bins = tuple(AREA_BINS if bins is None else bins)
    out = SliceStats(bins)
    tr = None
    for slc in tqdm(list(slices), desc="slices", disable=not progress, leave=False):
        if tr is None:
            tr = _traced(model, slc.points(np.zeros((2, 2))))
        p = partition_slice(tr, slc, max_regions=max_regions, progress=False)
        out = out.merge(SliceStats.from_partition(p, bins))
    return out


__all__ = ["DatasetJob", "DatasetStats", "analyze_dataset", "batch_seed", "code_stats",
           "hessian_stats", "indexed_batches", "local_complexity_stats", "memorization_stats",
           "slice_stats"]
