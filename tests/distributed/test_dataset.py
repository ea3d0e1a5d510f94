"""Streams of batches with bounded memory, and the single-process dataset fold."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import maxaffine
from maxaffine.complexity import _LC_BUDGET, _default_lc_chunk
from maxaffine.distributed import (
    DatasetJob,
    analyze_dataset,
    batch_seed,
    code_stats,
    hessian_stats,
    local_complexity_stats,
    memorization_stats,
    merge_all,
    slice_stats,
)
from maxaffine.errors import InputError


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                         nn.Linear(16, 3)).double()


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(70, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (70,),
                                                                               generator=g)


def test_local_complexity_of_a_stream_equals_the_tensor(net, data):
    X, y = data
    kw = {"radius": 0.3, "n_vertices": 6, "per_layer": True, "seed": 4}
    ref = maxaffine.local_complexity(net, X, **kw)
    loader = DataLoader(TensorDataset(X, y), batch_size=16)
    for stream in (loader, list(X.split(9)), (b for b in X.split(30))):
        got = maxaffine.local_complexity(net, stream, chunk_size=4, progress=False, **kw)
        assert torch.equal(got.total, ref.total)
        assert all(torch.equal(got.layers[k], ref.layers[k]) for k in ref.layers)


def test_memorization_and_hessian_of_a_stream(net, data):
    X, y = data
    ref = maxaffine.memorization(net, X, y)
    got = maxaffine.memorization(net, DataLoader(TensorDataset(X, y), batch_size=32),
                                 chunk_size=5)
    torch.testing.assert_close(got.cosine, ref.cosine, rtol=1e-13, atol=1e-15)
    assert torch.equal(got.labels, ref.labels)
    Xa = X + 0.05
    h_ref = maxaffine.hessian_complexity(net, X, x_aug=Xa)
    h_got = maxaffine.hessian_complexity(net, list(zip(X.split(20), Xa.split(20))), chunk_size=7)
    assert h_got.estimator == "augmentation"
    torch.testing.assert_close(h_got.per_sample, h_ref.per_sample, rtol=1e-13, atol=0)
    with pytest.raises(InputError, match="labels"):
        maxaffine.memorization(net, X)


def test_analyze_dataset_is_the_merge_of_its_batches_in_any_order(net, data):
    X, y = data
    job = DatasetJob(local_complexity={"radius": 0.3, "n_vertices": 6}, codes=True,
                     memorization=True, hessian={"sigma": 0.05}, seed=9)
    whole = analyze_dataset(net, X, job, y=y, batch_size=16)
    parts = [job.run(net, j, X[16 * j:16 * j + 16], y[16 * j:16 * j + 16]) for j in range(5)]
    random.Random(0).shuffle(parts)
    assert merge_all(parts) == whole
    # batch j's local complexity is local_complexity at seed batch_seed(seed, j)
    lc2 = maxaffine.local_complexity(net, X[32:48], radius=0.3, n_vertices=6, seed=batch_seed(9, 2))
    assert job.run(net, 2, X[32:48], y[32:48]).local_complexity.total == int(lc2.total.sum())
    # the same job over a DataLoader with the same batches gives the same numbers
    stream = analyze_dataset(net, DataLoader(TensorDataset(X, y), batch_size=16), job)
    assert stream == whole
    assert whole.n == 70 and whole.codes.n == 70


def test_convenience_folds(net, data):
    X, y = data
    lc = local_complexity_stats(net, X, radius=0.3, n_vertices=6, batch_size=25)
    assert lc.n == 70 and lc.total > 0
    cs = code_stats(net, X, batch_size=25, chunk_size=3)
    assert cs.n_regions == len(torch.unique(maxaffine.codes(net, X).flat(), dim=0))
    ms = memorization_stats(net, X, y, batch_size=25)
    assert ms.summary() == pytest.approx(maxaffine.memorization(net, X, y).summary(), rel=1e-12)
    hs = hessian_stats(net, X, sigma=0.05, batch_size=25)
    assert hs.n == 70 and hs.value >= 0
    net2 = nn.Sequential(nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 2)).double()
    ss = slice_stats(net2, [maxaffine.Slice.box((-1, 1, -1, 1)), maxaffine.Slice.box((0, 2, 0, 1))])
    assert ss.n_slices == 2 and ss.regions >= 2


def test_job_and_stream_errors(net, data):
    X, _ = data
    with pytest.raises(InputError, match="computes nothing"):
        DatasetJob()
    with pytest.raises(InputError, match="labelled"):
        analyze_dataset(net, X, DatasetJob(memorization=True))
    with pytest.raises(InputError, match="empty"):
        maxaffine.local_complexity(net, iter([]), radius=0.1, n_vertices=2)
    with pytest.raises(InputError, match="non-negative"):
        batch_seed(-1, 0)


def test_default_chunk_bounds_the_pass_of_a_wide_network():
    wide = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(64 * 16 * 16, 10)).double()
    tr = maxaffine.trace(wide, torch.randn(2, 3, 16, 16, dtype=torch.float64))
    size = _default_lc_chunk(40, tr)
    per_row = sum(n.shape and torch.Size(n.shape).numel() or 1 for n in tr.nodes if n.kind == "var")
    assert size * 40 * per_row <= _LC_BUDGET < (size + 1) * 40 * per_row
    assert _default_lc_chunk(10) == 2**11 // 10  # small networks keep the measured best


def test_the_core_and_the_accumulators_never_import_ray():
    import subprocess
    import sys

    code = ("import sys, maxaffine, maxaffine.distributed, maxaffine.complexity; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
