"""Mergeable accumulators: dataset statistics that combine exactly, in any order.

Each accumulator summarises one part of a dataset (a batch, a shard, a worker's share) and
``merge(a, b)`` combines two parts into the summary of their union. Merging is associative
and commutative *bit for bit*, so a result does not depend on how the data was split, on
how many workers ran, or on the order in which their parts arrived:

- counts are Python integers;
- distinct regions are sets of region keys (the packed VQ codes of
  :meth:`maxaffine.Codes.region_keys`), merged by union;
- sums of floating-point numbers are kept as exact integers: every finite float64 is an
  integer multiple of :math:`2^{-1074}`, so :math:`\\sum_n v_n 2^{1126}` is an integer
  that addition never rounds; the reported value is that exact sum rounded once.

Nothing here imports Ray: the same reducers serve a plain loop, Ray, Dask or
``torch.distributed`` (gather the accumulators, fold them with :func:`merge`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from functools import reduce
from typing import Any

import numpy as np
import torch

from ..errors import InputError

#: every finite float64 times 2**_SHIFT is an integer (2**-1074 is the smallest subnormal;
#: the extra 52 bits keep the mantissa split below non-negative)
_SHIFT = 1126
#: values per bincount pass: sums of that many 27-bit halves stay exact in float64
_BLOCK = 1 << 25


def exact_scaled_sum(values: Any) -> int:
    """``Σ v · 2^1126`` as an exact Python integer (vectorised over the values).

    Each value is split as ``m · 2^e`` with an integer mantissa ``|m| < 2^53``; mantissas
    sharing an exponent are summed exactly (in two 27-bit halves, so float64 bincounts
    do not round), and the few distinct exponents are combined as Python integers.

    Raises
    ------
    InputError
        If a value is NaN or infinite.
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu", torch.float64).numpy()
    v = np.ascontiguousarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(v)):
        raise InputError("cannot accumulate NaN or infinite values; drop or clean them first")
    m, e = np.frexp(v)
    mant = np.ldexp(m, 53).astype(np.int64)
    keep = mant != 0
    mant, shift = mant[keep], e[keep].astype(np.int64) + (_SHIFT - 53)
    total = 0
    for start in range(0, len(mant), _BLOCK):
        mb, sb = mant[start:start + _BLOCK], shift[start:start + _BLOCK]
        exps, inv = np.unique(sb, return_inverse=True)
        hi = np.bincount(inv, weights=(mb >> 26).astype(np.float64), minlength=len(exps))
        lo = np.bincount(inv, weights=(mb & ((1 << 26) - 1)).astype(np.float64),
                         minlength=len(exps))
        for s, h, low in zip(exps.tolist(), hi.tolist(), lo.tolist()):
            total += ((int(h) << 26) + int(low)) << s
    return total


@dataclass(frozen=True)
class ExactSum:
    """An exact sum of float64 values and their number.

    Attributes
    ----------
    scaled : int
        ``Σ v · 2^1126`` (exact).
    n : int
        Number of values.
    """

    scaled: int = 0
    n: int = 0

    @classmethod
    def of(cls, values: Any) -> ExactSum:
        """The sum of an array or tensor of values."""
        if isinstance(values, torch.Tensor):
            values = values.detach().to("cpu", torch.float64).numpy()
        values = np.asarray(values, dtype=np.float64)
        return cls(exact_scaled_sum(values), int(values.size))

    def merge(self, other: ExactSum) -> ExactSum:
        return ExactSum(self.scaled + other.scaled, self.n + other.n)

    @property
    def value(self) -> float:
        """The sum, correctly rounded to float64."""
        return _ratio(self.scaled, 1 << _SHIFT)

    @property
    def mean(self) -> float:
        """The mean, correctly rounded (NaN for no values)."""
        return _ratio(self.scaled, self.n << _SHIFT) if self.n else math.nan


def _ratio(num: int, den: int) -> float:
    """``num / den`` correctly rounded to float64 (±inf beyond its range)."""
    try:
        return float(Fraction(num, den))
    except OverflowError:
        return math.copysign(math.inf, num)


def _same(a: Any, b: Any, what: str, **fields: tuple[Any, Any]) -> None:
    for name, (x, y) in fields.items():
        if x != y:
            raise InputError(f"cannot merge {what} computed with different {name} ({x!r} and "
                             f"{y!r}); merge only parts of one computation")


def _add_maps(a: Mapping[Any, int], b: Mapping[Any, int]) -> dict[Any, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class LocalComplexityStats:
    """Local complexity over a dataset: exact moments, per-layer sums and the histogram.

    Attributes
    ----------
    radius : float
    n_vertices : int
    n : int
        Number of inputs.
    total : int
        ``Σ_n LC(x_n)``.
    total_sq : int
        ``Σ_n LC(x_n)²``.
    layers : dict of str -> int
        Per-layer sums ``Σ_n LC_ℓ(x_n)`` (piecewise layers, then ``"output"``).
    histogram : dict of int -> int
        ``{LC value: number of inputs}``.
    """

    radius: float
    n_vertices: int
    n: int = 0
    total: int = 0
    total_sq: int = 0
    layers: Mapping[str, int] = field(default_factory=dict)
    histogram: Mapping[int, int] = field(default_factory=dict)

    @classmethod
    def from_result(cls, lc: Any) -> LocalComplexityStats:
        """The summary of a :class:`maxaffine.complexity.LocalComplexity` (with ``per_layer``)."""
        if lc.layers is None:
            raise InputError("pass a LocalComplexity computed with per_layer=True")
        t = lc.total.detach().cpu().long()
        values, counts = torch.unique(t, return_counts=True)
        return cls(float(lc.radius), int(lc.n_vertices), int(t.numel()), int(t.sum()),
                   int((t * t).sum()),
                   {k: int(v.detach().cpu().long().sum()) for k, v in lc.layers.items()},
                   dict(zip(values.tolist(), counts.tolist())))

    def merge(self, other: LocalComplexityStats) -> LocalComplexityStats:
        _same(self, other, "local complexities", radius=(self.radius, other.radius),
              n_vertices=(self.n_vertices, other.n_vertices))
        if self.n and other.n and list(self.layers) != list(other.layers):
            raise InputError("cannot merge local complexities of different networks "
                             f"(layers {list(self.layers)} and {list(other.layers)})")
        layers = {k: self.layers.get(k, 0) + other.layers.get(k, 0)
                  for k in (self.layers or other.layers)}
        return LocalComplexityStats(self.radius, self.n_vertices, self.n + other.n,
                                    self.total + other.total, self.total_sq + other.total_sq,
                                    layers, _add_maps(self.histogram, other.histogram))

    @property
    def mean(self) -> float:
        """Mean local complexity (exactly rounded)."""
        return float(Fraction(self.total, self.n)) if self.n else math.nan

    @property
    def std(self) -> float:
        """Population standard deviation of the local complexity."""
        if not self.n:
            return math.nan
        return math.sqrt(float(Fraction(self.n * self.total_sq - self.total ** 2, self.n ** 2)))

    def layer_means(self) -> dict[str, float]:
        """Mean local complexity of every layer."""
        return {k: float(Fraction(v, self.n)) if self.n else math.nan
                for k, v in self.layers.items()}


@dataclass(frozen=True, eq=False)
class CodeStats:
    """VQ code statistics over a dataset, per layer, with exact distinct-region counts.

    Attributes
    ----------
    n : int
        Number of inputs.
    units : dict of str -> int
        Units per piecewise layer, in graph order.
    on : dict of str -> ndarray (units,) int64 or None
        For two-piece (boolean-coded, ReLU-like) layers: per unit, the number of inputs
        with code 1 (``u > 0``); None for other layers.
    layer_keys : dict of str -> frozenset of bytes
        The distinct codes of every layer (one key per distinct code).
    keys : frozenset of bytes
        The distinct full codes, i.e. the linear regions hit.
    """

    n: int = 0
    units: Mapping[str, int] = field(default_factory=dict)
    on: Mapping[str, np.ndarray | None] = field(default_factory=dict)
    layer_keys: Mapping[str, frozenset] = field(default_factory=dict)
    keys: frozenset = frozenset()

    @classmethod
    def from_codes(cls, codes: Mapping[str, torch.Tensor]) -> CodeStats:
        """The statistics of one batch of codes (``{layer: (B, *units)}``)."""
        from ..affine import Codes

        codes = Codes(codes)
        n = codes.batch_size
        units = {k: int(math.prod(v.shape[1:])) for k, v in codes.items()}
        on = {k: (v.reshape(n, -1).sum(0).cpu().numpy().astype(np.int64)
                  if v.dtype == torch.bool else None) for k, v in codes.items()}
        layer_keys = {k: frozenset(Codes({k: v}).region_keys()) for k, v in codes.items()}
        return cls(n, units, on, layer_keys, frozenset(codes.region_keys()))

    def merge(self, other: CodeStats) -> CodeStats:
        if not self.n:
            return other
        if not other.n:
            return self
        if dict(self.units) != dict(other.units):
            raise InputError("cannot merge code statistics of different networks (layers "
                             f"{dict(self.units)} and {dict(other.units)})")
        on = {k: None if v is None else v + other.on[k] for k, v in self.on.items()}
        layer_keys = {k: v | other.layer_keys[k] for k, v in self.layer_keys.items()}
        return CodeStats(self.n + other.n, dict(self.units), on, layer_keys,
                         self.keys | other.keys)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CodeStats):
            return NotImplemented
        same_on = list(self.on) == list(other.on) and all(
            (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
            for a, b in zip(self.on.values(), other.on.values()))
        return (self.n == other.n and dict(self.units) == dict(other.units) and same_on
                and dict(self.layer_keys) == dict(other.layer_keys) and self.keys == other.keys)

    __hash__ = None  # type: ignore[assignment]

    @property
    def n_regions(self) -> int:
        """Number of distinct linear regions (full codes) hit by the inputs."""
        return len(self.keys)

    def layer_regions(self) -> dict[str, int]:
        """Number of distinct codes of every layer."""
        return {k: len(v) for k, v in self.layer_keys.items()}

    def active_fraction(self) -> dict[str, float]:
        """Mean fraction of active units (code 1) per two-piece layer."""
        return {k: float(v.sum() / (self.n * v.size)) for k, v in self.on.items()
                if v is not None and v.size and self.n}

    def dead_units(self) -> dict[str, int]:
        """Units never active on the data, per two-piece layer."""
        return {k: int((v == 0).sum()) for k, v in self.on.items() if v is not None}

    def always_on_units(self) -> dict[str, int]:
        """Units active on every input (linear on the data), per two-piece layer."""
        return {k: int((v == self.n).sum()) for k, v in self.on.items() if v is not None}


@dataclass(frozen=True)
class MemorizationStats:
    """Template–input cosine summaries over a dataset (see :func:`maxaffine.memorization`).

    Attributes
    ----------
    n_classes : int
    true, other : ExactSum
        Sums of ``cos(A_{y_n}, x_n)`` and of the mean cosine with the other classes.
    class_true : tuple of ExactSum
        ``true`` split by label (``class_true[c]`` sums over the inputs of class c).
    """

    n_classes: int
    true: ExactSum = ExactSum()
    other: ExactSum = ExactSum()
    class_true: tuple[ExactSum, ...] = ()

    @classmethod
    def from_result(cls, mem: Any) -> MemorizationStats:
        """The summary of a result of :func:`maxaffine.memorization`."""
        C = int(mem.cosine.shape[1])
        true, labels = mem.true.detach().cpu(), mem.labels.detach().cpu()
        per = tuple(ExactSum.of(true[labels == c]) for c in range(C))
        return cls(C, ExactSum.of(true), ExactSum.of(mem.other.detach().cpu()), per)

    def merge(self, other: MemorizationStats) -> MemorizationStats:
        _same(self, other, "memorization summaries",
              n_classes=(self.n_classes, other.n_classes))
        per = tuple(a.merge(b) for a, b in zip(self.class_true or (ExactSum(),) * self.n_classes,
                                               other.class_true or (ExactSum(),) * self.n_classes))
        return MemorizationStats(self.n_classes, self.true.merge(other.true),
                                 self.other.merge(other.other), per)

    @property
    def n(self) -> int:
        return self.true.n

    def summary(self) -> dict[str, float]:
        """Means of the true-class and other-class cosines and their gap (exactly rounded)."""
        if not self.n:
            return {"cos_true": math.nan, "cos_other": math.nan, "gap": math.nan}
        gap = _ratio(self.true.scaled - self.other.scaled, self.n << _SHIFT)
        return {"cos_true": self.true.mean, "cos_other": self.other.mean, "gap": gap}

    def class_means(self) -> list[float]:
        """Mean true-class cosine of every class (NaN for a class without inputs)."""
        return [s.mean for s in self.class_true]


@dataclass(frozen=True)
class HessianStats:
    """Hessian (rugosity) complexity over a dataset: the exact sum of the per-sample terms.

    Attributes
    ----------
    estimator : {"perturbation", "augmentation"}
    terms : ExactSum
        Sum and number of the per-sample terms of :func:`maxaffine.hessian_complexity`.
    """

    estimator: str
    terms: ExactSum = ExactSum()

    @classmethod
    def from_result(cls, hc: Any) -> HessianStats:
        return cls(hc.estimator, ExactSum.of(hc.per_sample.detach().cpu()))

    def merge(self, other: HessianStats) -> HessianStats:
        _same(self, other, "Hessian complexities", estimator=(self.estimator, other.estimator))
        return HessianStats(self.estimator, self.terms.merge(other.terms))

    @property
    def n(self) -> int:
        return self.terms.n

    @property
    def value(self) -> float:
        """The estimate over all inputs (mean of the per-sample terms, exactly rounded)."""
        return self.terms.mean


AREA_BINS = tuple(float(e) for e in range(-12, 1))
"""Default edges of the region-area histogram: log10 of a region's share of its domain."""


@dataclass(frozen=True, eq=False)
class SliceStats:
    """Partition statistics over many 2D slices.

    Attributes
    ----------
    n_slices : int
    incomplete : int
        Slices whose partition stopped at its region budget (their counts are lower bounds).
    regions, regions_sq : int
        ``Σ`` and ``Σ²`` of the region counts over slices.
    area : ExactSum
        Total domain area (slice units), so ``regions / area`` is the region density.
    bins : tuple of float
        Edges of the area histogram, log10 of a region's area over its slice's domain area.
    area_hist : ndarray (len(bins) + 1,) int64
        Regions per bin (first: below ``bins[0]``, last: at or above ``bins[-1]``).
    boundary : ExactSum
        Decision-boundary length summed over the slices that have an output map.
    """

    bins: tuple[float, ...] = AREA_BINS
    n_slices: int = 0
    incomplete: int = 0
    regions: int = 0
    regions_sq: int = 0
    area: ExactSum = ExactSum()
    area_hist: np.ndarray = field(default_factory=lambda: np.zeros(len(AREA_BINS) + 1, np.int64))
    boundary: ExactSum = ExactSum()

    @classmethod
    def from_partition(cls, partition: Any, bins: Iterable[float] = AREA_BINS) -> SliceStats:
        """The statistics of one :class:`maxaffine.Partition`."""
        bins = tuple(float(b) for b in bins)
        areas = np.asarray(partition.areas, float)
        dom = partition.slice.domain
        x, y = dom[:, 0], dom[:, 1]
        domain_area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
        with np.errstate(divide="ignore"):
            rel = np.log10(np.maximum(areas, 0.0) / domain_area)
        hist = np.bincount(np.searchsorted(np.asarray(bins), rel, side="right"),
                           minlength=len(bins) + 1).astype(np.int64)
        boundary = ExactSum()
        if partition.G is not None:
            boundary = ExactSum.of(np.array([partition.decision_boundary().length]))
        R = int(partition.n_regions)
        return cls(bins, 1, int(not partition.complete), R, R * R,
                   ExactSum.of(np.array([domain_area])), hist, boundary)

    def merge(self, other: SliceStats) -> SliceStats:
        _same(self, other, "slice statistics", bins=(self.bins, other.bins))
        return SliceStats(self.bins, self.n_slices + other.n_slices,
                          self.incomplete + other.incomplete, self.regions + other.regions,
                          self.regions_sq + other.regions_sq, self.area.merge(other.area),
                          self.area_hist + other.area_hist, self.boundary.merge(other.boundary))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SliceStats):
            return NotImplemented
        return (self.bins, self.n_slices, self.incomplete, self.regions, self.regions_sq,
                self.area, self.boundary) == (other.bins, other.n_slices, other.incomplete,
                                              other.regions, other.regions_sq, other.area,
                                              other.boundary) \
            and np.array_equal(self.area_hist, other.area_hist)

    __hash__ = None  # type: ignore[assignment]

    @property
    def mean_regions(self) -> float:
        return float(Fraction(self.regions, self.n_slices)) if self.n_slices else math.nan

    @property
    def density(self) -> float:
        """Regions per unit area over all slices (exactly rounded)."""
        if not self.area.scaled:
            return math.nan
        return float(Fraction(self.regions << _SHIFT, self.area.scaled))

    @property
    def boundary_length(self) -> float:
        return self.boundary.value


def merge(a: Any, b: Any) -> Any:
    """Combine two accumulators of one computation into the summary of both parts.

    Associative and commutative exactly: ``merge(a, merge(b, c)) == merge(merge(a, b), c)``
    and ``merge(a, b) == merge(b, a)``, bit for bit.

    Examples
    --------
    >>> from maxaffine.distributed import ExactSum, merge
    >>> s = merge(ExactSum.of([0.1, 0.2]), ExactSum.of([1e300, -1e300]))
    >>> s.value, s.n
    (0.30000000000000004, 4)
    """
    if type(a) is not type(b):
        raise InputError(f"cannot merge a {type(a).__name__} with a {type(b).__name__}")
    return a.merge(b)


def merge_all(parts: Iterable[Any]) -> Any:
    """Fold :func:`merge` over a non-empty iterable of accumulators."""
    parts = list(parts)
    if not parts:
        raise InputError("merge_all needs at least one accumulator")
    return reduce(merge, parts)


__all__ = ["AREA_BINS", "CodeStats", "ExactSum", "HessianStats", "LocalComplexityStats",
           "MemorizationStats", "SliceStats", "exact_scaled_sum", "merge", "merge_all"]
