"""Mergeable accumulators: exact sums, exact merges in any order, against independent oracles."""

from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import maxaffine
from maxaffine.complexity import HessianComplexity, LocalComplexity
from maxaffine.distributed import (
    CodeStats,
    ExactSum,
    HessianStats,
    LocalComplexityStats,
    MemorizationStats,
    SliceStats,
    merge,
    merge_all,
)
from maxaffine.errors import InputError
from maxaffine.templates import Memorization

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(st.lists(finite, max_size=60))
def test_exact_sum_is_the_correctly_rounded_sum(values):
    s = ExactSum.of(np.array(values))
    assert s.n == len(values)
    exact = sum(Fraction(v) for v in values)
    try:
        expected = math.fsum(values)  # correctly rounded: an independent oracle
    except OverflowError:  # the exact sum is beyond float64
        expected = math.copysign(math.inf, exact)
    assert s.value == expected
    if values and abs(exact / len(values)) < 2.0**1023:
        assert s.mean == float(exact / len(values))


@given(st.lists(finite, min_size=1, max_size=40), st.randoms(use_true_random=False))
def test_exact_sum_merge_is_associative_and_commutative(values, rnd):
    cuts = sorted(rnd.sample(range(len(values) + 1), 2))
    a, b, c = (ExactSum.of(np.array(values[i:j], float))
               for i, j in ((0, cuts[0]), (cuts[0], cuts[1]), (cuts[1], len(values))))
    assert merge(a, merge(b, c)) == merge(merge(a, b), c) == merge(c, merge(b, a))
    assert merge_all([a, b, c]) == ExactSum.of(np.array(values))


def test_exact_sum_rejects_nan():
    with pytest.raises(InputError, match="NaN"):
        ExactSum.of([1.0, float("nan")])


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(),
                         nn.Linear(12, 3)).double()


def _splits(n, rnd, k=3):
    cuts = sorted(rnd.sample(range(1, n), k - 1))
    edges = [0, *cuts, n]
    return [slice(a, b) for a, b in itertools.pairwise(edges)]


def _lc_part(lc, sl):
    return LocalComplexity(lc.total[sl], {k: v[sl] for k, v in lc.layers.items()}, lc.radius,
                           lc.n_vertices)


def _check_merges(parts, whole):
    a, b, c = parts
    assert merge(a, merge(b, c)) == merge(merge(a, b), c)
    assert merge(a, b) == merge(b, a)
    assert merge_all([c, a, b]) == whole


@given(st.randoms(use_true_random=False))
def test_local_complexity_stats_merge_exactly(rnd):
    net = _net()
    x = torch.randn(40, 4, dtype=torch.float64)
    lc = maxaffine.local_complexity(net, x, radius=0.5, n_vertices=6, per_layer=True, seed=1)
    whole = LocalComplexityStats.from_result(lc)
    parts = [LocalComplexityStats.from_result(_lc_part(lc, sl)) for sl in _splits(40, rnd)]
    _check_merges(parts, whole)
    t = lc.total.double()
    assert whole.mean == pytest.approx(float(t.mean()), rel=1e-15)
    assert whole.std == pytest.approx(float(t.std(unbiased=False)), rel=1e-12)
    assert sum(whole.histogram.values()) == 40
    assert whole.layer_means() == pytest.approx({k: float(v.double().mean())
                                                 for k, v in lc.layers.items()})


@given(st.randoms(use_true_random=False))
def test_code_stats_count_distinct_regions_exactly(rnd):
    net = _net(1)
    x = torch.randn(60, 4, dtype=torch.float64) * 0.3
    x[30:] = x[:30]  # repeated inputs: repeated regions must not be counted twice
    q = maxaffine.codes(net, x)
    whole = CodeStats.from_codes(q)
    parts = [CodeStats.from_codes({k: v[sl] for k, v in q.items()}) for sl in _splits(60, rnd)]
    _check_merges(parts, whole)
    # oracle: unique rows of the concatenated codes, overall and per layer
    assert whole.n_regions == len(torch.unique(q.flat(), dim=0))
    assert whole.layer_regions() == {k: len(torch.unique(v.reshape(60, -1), dim=0))
                                     for k, v in q.items()}
    assert whole.active_fraction() == pytest.approx({k: float(v.double().mean())
                                                     for k, v in q.items()})
    assert whole.dead_units() == {k: int((~v.any(0)).sum()) for k, v in q.items()}


@given(st.randoms(use_true_random=False))
def test_memorization_and_hessian_stats_merge_exactly(rnd):
    net = _net(2)
    x = torch.randn(30, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (30,))
    mem = maxaffine.memorization(net, x, y)
    whole = MemorizationStats.from_result(mem)
    parts = [MemorizationStats.from_result(Memorization(mem.cosine[sl], mem.labels[sl]))
             for sl in _splits(30, rnd)]
    _check_merges(parts, whole)
    assert whole.summary() == pytest.approx(mem.summary(), rel=1e-13, abs=1e-15)
    for c, m in enumerate(whole.class_means()):
        sel = mem.labels == c
        assert (math.isnan(m) and not sel.any()) or m == pytest.approx(float(mem.true[sel].mean()))
    hc = maxaffine.hessian_complexity(net, x, sigma=0.1, seed=0)
    hw = HessianStats.from_result(hc)
    hp = [HessianStats.from_result(HessianComplexity(0.0, hc.per_sample[sl], hc.estimator))
          for sl in _splits(30, rnd)]
    _check_merges(hp, hw)
    assert hw.value == pytest.approx(hc.value, rel=1e-14)


def test_slice_stats_over_several_slices():
    net = nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 2)).double()
    slices = [maxaffine.Slice.box((-1 - k, 1 + k, -1, 1)) for k in range(3)]
    parts = [SliceStats.from_partition(maxaffine.partition_slice(net, s, progress=False))
             for s in slices]
    whole = merge_all(parts)
    _check_merges(parts, whole)
    ps = [maxaffine.partition_slice(net, s, progress=False) for s in slices]
    assert whole.n_slices == 3 and whole.regions == sum(p.n_regions for p in ps)
    assert int(whole.area_hist.sum()) == whole.regions
    assert whole.area.value == pytest.approx(sum(4.0 * (1 + k) for k in range(3)))
    # the regions tile each domain: their areas sum to it
    assert whole.area.value == pytest.approx(sum(float(p.areas.sum()) for p in ps), rel=1e-12)
    assert whole.density == pytest.approx(whole.regions / whole.area.value)
    assert whole.boundary_length == pytest.approx(sum(p.decision_boundary().length for p in ps))


def test_merging_different_computations_is_refused():
    a = LocalComplexityStats(0.1, 4)
    with pytest.raises(InputError, match="radius"):
        merge(a, LocalComplexityStats(0.2, 4))
    with pytest.raises(InputError, match="cannot merge"):
        merge(a, ExactSum())
    with pytest.raises(InputError, match="at least one"):
        merge_all([])
    random.seed(0)
