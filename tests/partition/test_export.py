"""Partition persistence and export: npz round trip, tables, shapely, GeoJSON."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import maxaffine
from maxaffine import Partition, Slice, partition_slice
from tests.archs import random_network

FAMILIES = ("mlp", "maxout", "cnn", "residual")


def _partition(family: str, seed: int, **kw) -> Partition:
    net, x = random_network(family, seed)
    slc = Slice.through(x[0], x[1], x[2], margin=0.5)
    return partition_slice(net, slc, progress=False, **kw), net


def _assert_same(a: Partition, b: Partition) -> None:
    """Every field equal, arrays bit for bit (np.array_equal) and dtypes unchanged."""
    for f in dataclasses.fields(Partition):
        if f.name == "trace":
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "slice":
            for g in dataclasses.fields(Slice):
                u, v = getattr(x, g.name), getattr(y, g.name)
                if isinstance(u, np.ndarray):
                    assert u.dtype == v.dtype and np.array_equal(u, v), g.name
                else:
                    assert u == v, g.name
        elif f.name == "codes":
            assert list(x) == list(y)
            for k in x:
                assert x[k].dtype == y[k].dtype and torch.equal(x[k], y[k]), k
        elif f.name == "history":
            assert len(x) == len(y)
            for la, lb in zip(x, y):
                for g in dataclasses.fields(la):
                    u, v = getattr(la, g.name), getattr(lb, g.name)
                    assert u.dtype == v.dtype and np.array_equal(u, v), g.name
        elif isinstance(x, np.ndarray) or x is None:
            assert (x is None) == (y is None), f.name
            if x is not None:
                assert x.dtype == y.dtype and np.array_equal(x, y), f.name
        else:
            assert type(x) is type(y) and x == y, f.name


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("seed", [0, 1])
def test_save_load_round_trip_is_exact(tmp_path, family, seed):
    part, _ = _partition(family, seed)
    path = part.save(tmp_path / "part")
    assert path.name == "part.npz" and path.exists()
    back = Partition.load(path)
    assert back.trace is None
    _assert_same(part, back)
    # derived quantities come back identical too
    assert np.array_equal(part.areas, back.areas)
    for k, v in part.to_dict().items():
        assert np.array_equal(v, back.to_dict()[k]), k
    # the per-layer views work on the loaded partition
    for i in range(len(part.layers)):
        assert np.array_equal(part.upto(i).offsets, back.upto(i).offsets)


def test_round_trip_partial_and_per_layer(tmp_path):
    with pytest.warns(maxaffine.BudgetWarning):
        part, _ = _partition("mlp", 3, max_regions=5)
    assert not part.complete
    back = Partition.load(part.save(tmp_path / "partial.npz"))
    _assert_same(part, back)
    full, _ = _partition("mlp", 4)
    first = full.upto(0)
    _assert_same(first, Partition.load(first.save(tmp_path / "first.npz")))


def test_file_is_pickle_free_and_model_free(tmp_path):
    part, _ = _partition("cnn", 2)
    path = part.save(tmp_path / "p.npz")
    with np.load(path, allow_pickle=False) as z:  # would raise on any object array
        assert all(z[k].dtype != object for k in z.files)
    # a fresh interpreter without the model (or torch's tracer) reads it
    import subprocess
    import sys

    code = (f"import maxaffine, numpy as np; p = maxaffine.Partition.load({str(path)!r}); "
            "print(p.n_regions, float(p.areas.sum()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    n, area = out.stdout.split()
    assert int(n) == part.n_regions
    assert abs(float(area) - part.slice.area) <= 1e-9 * part.slice.area


def test_save_never_overwrites_unless_asked(tmp_path):
    part, _ = _partition("mlp", 0)
    other, _ = _partition("mlp", 1)
    target = tmp_path / "p.npz"
    target.write_bytes(b"user data")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        part.save(target)
    assert target.read_bytes() == b"user data"
    part.save(target, overwrite=True)
    with pytest.raises(FileExistsError):
        other.save(target)
    _assert_same(part, Partition.load(target))
    other.save(target, overwrite=True)
    _assert_same(other, Partition.load(target))


def test_load_rejects_foreign_files(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    with pytest.raises(maxaffine.InputError, match="not a partition"):
        Partition.load(tmp_path / "x.npz")


@pytest.mark.parametrize("family", ["mlp", "maxout", "cnn"])
def test_region_table_against_the_model(family):
    part, net = _partition(family, 5)
    d = part.to_dict()
    R = part.n_regions
    assert all(len(v) == R for v in d.values())
    assert np.array_equal(d["region"], np.arange(R))
    # areas tile the domain
    assert abs(d["area"].sum() - part.slice.area) <= 1e-9 * part.slice.area
    assert np.array_equal(d["n_vertices"], np.diff(part.offsets))
    # distinct regions have distinct code keys
    assert len(set(d["code"].tolist())) == R
    # class and slope norm from the model at the interior points (jacrev oracle)
    st = torch.from_numpy(np.stack([d["s"], d["t"]], 1))
    with torch.no_grad():
        y = net(part.slice.points(st.numpy()))
    assert np.array_equal(d["class"], y.argmax(1).numpy())
    o, u, v = (torch.from_numpy(a) for a in (part.slice.origin, part.slice.u, part.slice.v))

    def f(p):
        return net((o + p[0] * u + p[1] * v).reshape(1, *part.slice.in_shape))[0]

    idx = np.random.default_rng(0).choice(R, size=min(R, 12), replace=False)
    for r in idx:
        J = torch.func.jacrev(f)(st[r]).detach()
        assert np.isclose(d["slope_norm"][r], float(J.norm()), rtol=1e-9, atol=1e-12)
    df = part.to_frame()
    assert df.index.name == "region" and len(df) == R
    assert list(df.columns) == [k for k in d if k != "region"]


def test_region_table_single_output_and_no_map():
    torch.manual_seed(7)
    net = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.ReLU(), torch.nn.Linear(6, 5),
                              torch.nn.ReLU(), torch.nn.Linear(5, 1)).double().eval()
    x = torch.randn(3, 3, dtype=torch.float64)
    part = partition_slice(net, Slice.through(x[0], x[1], x[2], margin=1.0), progress=False)
    assert len(part.layers) == 2
    d = part.to_dict()
    with torch.no_grad():
        y = net(part.slice.points(np.stack([d["s"], d["t"]], 1)))[:, 0]
    assert np.array_equal(d["class"], (y > 0).long().numpy())
    layer0 = part.upto(0).to_dict()
    assert "class" not in layer0 and "slope_norm" not in layer0


def test_shapely_and_geojson():
    shapely = pytest.importorskip("shapely")
    part, _ = _partition("mlp", 2)
    polys = part.to_shapely()
    assert len(polys) == part.n_regions
    assert np.allclose(shapely.area(polys), part.areas, rtol=1e-12, atol=0)
    assert all(shapely.is_valid(polys))
    union = shapely.union_all(polys)
    assert abs(union.area - part.slice.area) <= 1e-9 * part.slice.area
    # each region contains its interior point
    assert all(shapely.contains_xy(polys, part.interior[:, 0], part.interior[:, 1]))
    gj = json.loads(json.dumps(part.to_geojson()))
    assert gj["type"] == "FeatureCollection" and len(gj["features"]) == part.n_regions
    for feat, poly in zip(gj["features"][:20], polys[:20]):
        ring = np.array(feat["geometry"]["coordinates"][0])
        assert np.array_equal(ring[0], ring[-1])
        assert shapely.equals(shapely.Polygon(ring), poly)
        assert feat["properties"]["region"] == feat["id"]


def test_reprs_are_compact():
    part, net = _partition("cnn", 1)
    x = torch.randn(3, 1, 6, 6, dtype=torch.float64)
    objs = [part, part.stats(points=part.interior[:2], radius=0.1), part.decision_boundary(),
            maxaffine.affine_map(net, x), maxaffine.local_complexity(net, x, radius=0.1, n_vertices=4),
            maxaffine.hessian_complexity(net, x, seed=0),
            maxaffine.memorization(net, x, torch.tensor([0, 1, 2])),
            maxaffine.power_diagram(net, part.layers[0], x)]
    for o in objs:
        text = repr(o)
        assert len(text) < 300 and "tensor(" not in text and "array([" not in text, text
        assert text.startswith(type(o).__name__ + "("), text


def test_dir_lists_only_the_public_api():
    names = dir(maxaffine)
    assert set(names) == set(maxaffine.__all__) | {"__version__"}
    assert not [n for n in names if n.startswith("_") and n != "__version__"]
    for n in names:
        getattr(maxaffine, n)
