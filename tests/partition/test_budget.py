"""Budgets of partition_slice: the memory budget and max_regions stop the refinement with a
flagged partial result before memory runs out; wide layers cut in column blocks give the
same partition as whole layers."""

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import maxaffine
from maxaffine.errors import BudgetWarning, InputError
from maxaffine.partition import _engine, _mesh

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from archs import random_network

BOX = maxaffine.Slice.box((-1, 1, -1, 1))


def _wide_next_layer(seed=0, width=4096):
    """A small first layer, then one so wide that its regions cannot all be held."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, width), nn.ReLU(),
                         nn.Linear(width, 1)).double()


def _check_cells(part):
    # relative 1e-9: float64 shoelace sums over at most ~1e5 regions
    assert abs(part.areas.sum() / part.slice.area - 1) < 1e-9
    assert part.areas.min() > 0


def test_tiny_memory_budget_stops_before_the_layer_that_would_exceed_it():
    net = _wide_next_layer()
    first = maxaffine.partition_slice(net, BOX, layers=1, progress=False)
    # room for the first layer (tens of regions), far too little for the 4096 lines of the
    # second, which cut the box into millions of regions
    with pytest.warns(BudgetWarning, match="memory budget"):
        part = maxaffine.partition_slice(net, BOX, memory_budget=40 << 20, progress=False)
    assert not part.complete
    assert part.G is None
    _check_cells(part)
    assert first.n_regions < part.n_regions < 3000
    # a refinement of the first layer's exact cells
    assert part.ancestors[:, 0].max() == first.n_regions - 1
    assert len(np.unique(part.ancestors[:, 0])) == first.n_regions


def test_one_byte_budget_returns_the_domain():
    net = _wide_next_layer(width=8)
    with pytest.warns(BudgetWarning, match="memory budget"):
        part = maxaffine.partition_slice(net, BOX, memory_budget=1, progress=False)
    assert not part.complete and part.n_regions == 1 and part.layers == ()
    _check_cells(part)


@pytest.mark.parametrize("bad", [0, -1, 0.0, -0.5, float("nan"), float("inf"), "1GB", True])
def test_bad_memory_budget_is_refused(bad):
    with pytest.raises(InputError, match="memory_budget"):
        maxaffine.partition_slice(_wide_next_layer(width=8), BOX, memory_budget=bad,
                                  progress=False)


def test_memory_error_half_way_returns_the_last_finished_layer(monkeypatch):
    net = _wide_next_layer(width=64)
    first = maxaffine.partition_slice(net, BOX, layers=1, progress=False)
    real = _mesh.Mesh.reserve

    def reserve(self, extra):
        if self.Z.shape[1] == 64:  # the second layer's value table
            raise MemoryError("simulated")
        return real(self, extra)

    monkeypatch.setattr(_mesh.Mesh, "reserve", reserve)
    with pytest.warns(BudgetWarning, match="memory"):
        part = maxaffine.partition_slice(net, BOX, progress=False)
    assert not part.complete
    assert part.n_regions == first.n_regions
    assert part.layers == first.layers
    np.testing.assert_array_equal(part.codes.flat().numpy(), first.codes.flat().numpy())
    part.verify(500)


def test_max_regions_in_a_blocked_layer(monkeypatch):
    monkeypatch.setattr(_engine, "_BLOCK_COLS", 16)
    monkeypatch.setattr(_engine, "_ALWAYS_BLOCK", True)
    net = _wide_next_layer(width=200)
    with pytest.warns(BudgetWarning, match="max_regions=500"):
        part = maxaffine.partition_slice(net, BOX, max_regions=500, progress=False)
    assert not part.complete and 500 < part.n_regions < 2000
    _check_cells(part)


def test_default_budget_is_a_fraction_of_available_ram():
    from maxaffine.partition import _budget

    b = _budget.MemoryBudget(_budget.MEMORY_FRACTION)
    assert 0 < b.limit <= _budget.MEMORY_FRACTION * _budget.available_ram() * 1.01 + 1
    assert _budget.MemoryBudget(None).regions(100) is None
    assert _budget.MemoryBudget(10_000).regions(1e9) == 0


@pytest.mark.parametrize("family,seed,shrink,reuse", [
    ("mlp", 1, 1.0, True), ("mlp", 4, 1.0, False), ("maxout", 0, 1.0, True),
    ("residual", 2, 1.0, False), ("cnn", 1, 0.35, True), ("cnn", 3, 0.3, False),
    ("cnn", 3, 0.3, True), ("resnet", 1, 0.3, True), ("resnet", 1, 0.3, False)])
def test_column_blocks_give_the_same_partition(family, seed, shrink, reuse, monkeypatch):
    net, x = random_network(family, seed)
    slc = maxaffine.Slice.through(x[0], x[0] + shrink * (x[1] - x[0]),
                                  x[0] + shrink * (x[2] - x[0]), margin=0.2)
    whole = maxaffine.partition_slice(net, slc, progress=False)
    monkeypatch.setattr(_engine, "_BLOCK_COLS", 3)
    monkeypatch.setattr(_engine, "_ALWAYS_BLOCK", True)
    monkeypatch.setattr(_engine, "_REUSE_START", reuse)
    blocked = maxaffine.partition_slice(net, slc, progress=False)
    assert blocked.n_regions == whole.n_regions
    _check_cells(blocked)
    # the same cells: the same multiset of full codes and (up to rounding) areas
    kw = {"axis": 0}
    np.testing.assert_array_equal(np.unique(blocked.codes.flat().numpy(), **kw),
                                  np.unique(whole.codes.flat().numpy(), **kw))
    np.testing.assert_allclose(np.sort(blocked.areas), np.sort(whole.areas),
                               rtol=1e-7, atol=1e-12 * slc.area)
    blocked.verify(1000)


def test_progress_reports_regions_within_a_layer(monkeypatch, capsys):
    monkeypatch.setattr(_engine, "_BLOCK_COLS", 8)
    monkeypatch.setattr(_engine, "_ALWAYS_BLOCK", True)
    seen = []
    real = _engine._ticker

    def ticker(bar):
        tick = real(bar)

        def spy(n):
            seen.append(n)
            tick(n)
        return spy if tick is not None else None

    monkeypatch.setattr(_engine, "_ticker", ticker)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        part = maxaffine.partition_slice(_wide_next_layer(width=64), BOX, progress=True)
    assert len(seen) > 2 and max(seen) <= part.n_regions
    assert seen == sorted(seen)  # regions only ever get cut


def test_stats_report_memory_per_region():
    part = maxaffine.partition_slice(_wide_next_layer(width=8), BOX, progress=False)
    st = part.stats()
    codes = sum(c.numel() * c.element_size() for c in dict(part.codes).values())
    # at least the full codes, the output maps and one polygon entry per vertex of each region
    floor = codes + part.G.nbytes + part.h.nbytes + 8 * len(part.polygon_vertices)
    assert floor <= part.nbytes
    assert st.bytes_per_region == pytest.approx(part.nbytes / part.n_regions)


def test_a_layer_whose_values_fit_is_cut_whole(monkeypatch):
    monkeypatch.setattr(_engine, "_BLOCK_COLS", 16)
    seen = []
    real = _mesh.Mesh.set_values

    def set_values(self, Z):
        seen.append(Z.shape[1])
        return real(self, Z)

    monkeypatch.setattr(_mesh.Mesh, "set_values", set_values)
    net = _wide_next_layer(width=400)
    maxaffine.partition_slice(net, BOX, progress=False)
    assert seen == [6, 400]  # plenty of memory: no blocks
    seen.clear()
    # a budget too small for the second layer's predicted regions times 400 values: blocks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        maxaffine.partition_slice(net, BOX, progress=False, memory_budget=12 << 20)
    # at most one try of the whole layer (its region cap stops it), then blocks
    rest = seen[2:] if seen[1] == 400 else seen[1:]
    assert seen[0] == 6 and len(rest) > 1 and max(rest) <= 16
