"""to_dict / to_frame on the result types."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import maxaffine
from maxaffine.callbacks import MeasureCallback
from maxaffine.training import History, train


def _net(seed=0, d=4, c=3):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(d, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8),
                               torch.nn.ReLU(), torch.nn.Linear(8, c)).double().eval()


def test_history_columns_are_epoch_aligned_with_nan_where_skipped():
    net = _net().float().train()
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g)
    calls = []

    def measure(model):
        calls.append(1)
        return 10.0 + len(calls)

    h = train(net, X, y, epochs=4, batch_size=16, progress=False,
              callbacks=[MeasureCallback(measure, "m", every=2)])
    d = h.to_dict()
    assert d["epoch"].tolist() == [0, 1, 2, 3, 4]
    assert all(len(v) == 5 for v in d.values())
    m = d["m"]
    assert np.isnan(m[[1, 3]]).all()
    assert m[[0, 2, 4]].tolist() == [11.0, 12.0, 13.0]
    assert np.array_equal(d["loss"], h.column("loss"), equal_nan=True)
    df = h.to_frame()
    assert df.index.name == "epoch" and df.index.tolist() == [0, 1, 2, 3, 4]
    assert np.array_equal(df["m"].to_numpy(), m, equal_nan=True)
    assert repr(h).startswith("History(epochs=5, columns=[epoch, loss")


def test_history_without_epochs():
    h = History([{"a": 1.0}, {"b": 2.0}])
    assert h.columns == ["a", "b"]
    assert np.array_equal(h.to_dict()["a"], [1.0, np.nan], equal_nan=True)
    assert h.to_frame().shape == (2, 2)


def test_complexity_and_memorization_tables():
    net = _net(1)
    x = torch.randn(7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lc = maxaffine.local_complexity(net, x, radius=0.3, n_vertices=8, per_layer=True, seed=0)
    d = lc.to_dict()
    assert np.array_equal(d["total"], lc.total.numpy())
    for k, v in lc.layers.items():
        assert np.array_equal(d[k], v.numpy())
    # the per-layer counts add up to the total
    assert np.array_equal(sum(d[k] for k in lc.layers), d["total"])
    df = lc.to_frame()
    assert df.index.name == "sample" and len(df) == 7
    assert np.isclose(df["total"].mean(), lc.mean())

    hc = maxaffine.hessian_complexity(net, x, seed=0)
    d = hc.to_dict()
    assert np.isclose(d["hessian"].mean(), hc.value, rtol=1e-12, atol=1e-15)
    assert len(hc.to_frame()) == 7

    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    mem = maxaffine.memorization(net, x, y)
    d = mem.to_dict()
    cos = np.stack([d[f"cos_{c}"] for c in range(3)], 1)
    assert np.array_equal(cos, mem.cosine.numpy())
    assert np.array_equal(d["cos_true"], cos[np.arange(7), y.numpy()])
    assert np.allclose(d["cos_other"], (cos.sum(1) - d["cos_true"]) / 2, rtol=1e-12)
    assert np.array_equal(mem.to_frame()["label"].to_numpy(), y.numpy())


def test_partition_stats_table():
    part = maxaffine.partition_slice(_net(2, d=2), maxaffine.Slice.box(), progress=False)
    st = part.stats(points=np.zeros((2, 2)), radius=0.2)
    d = st.to_dict()
    assert d["n_regions"] == part.n_regions and d["density_0"] == st.density[0]
    assert "density" not in d
    df = st.to_frame()
    assert df.shape[0] == 1 and df["n_regions"].iloc[0] == part.n_regions


def test_to_frame_without_pandas_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        History([{"epoch": 0}]).to_frame()
    # to_dict needs nothing extra
    assert History([{"epoch": 0}]).to_dict()["epoch"].tolist() == [0.0]


def test_local_complexity_defaults_and_relative_radius():
    from maxaffine.callbacks import LocalComplexityCallback
    from maxaffine.complexity import relative_radius

    net = _net(3, d=4)
    x = torch.randn(9, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    med = float(np.median(x.norm(dim=1).numpy()))
    assert relative_radius(x, 0.05) == pytest.approx(0.05 * med, rel=1e-15)
    a = maxaffine.local_complexity(net, x, radius="0.05*median_norm", seed=1)
    b = maxaffine.local_complexity(net, x, radius=0.05 * med, n_vertices=8, seed=1)
    assert a.n_vertices == 8 == min(50, 2 * 4)  # default min(50, 2D)
    assert a.radius == pytest.approx(b.radius, rel=1e-15)
    assert torch.equal(a.total, b.total)
    with pytest.raises(maxaffine.InputError, match="median_norm"):
        maxaffine.local_complexity(net, x, radius="5%")
    cb = LocalComplexityCallback(x, radius="0.05*median_norm")
    row = cb(net, 0)
    assert row["lc"] == maxaffine.local_complexity(
        net, x, radius=0.05 * med, n_vertices=8, seed=0, directions="input").mean()
