"""The interactive view's data (no browser): what the page receives equals the partition."""

from __future__ import annotations

import base64
import itertools
import json
import re
import zlib

import numpy as np
import pytest
import torch
from torch import nn

import maxaffine
from maxaffine import view
from maxaffine.partition.export import code_keys, region_classes, slope_norms


def _mlp(sizes, seed):
    torch.manual_seed(seed)
    layers = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double().eval()


@pytest.fixture(scope="module")
def part():
    net = _mlp([2, 12, 12, 3], seed=7)
    return maxaffine.partition_slice(net, maxaffine.Slice.box((-2, 2, -2, 2)), progress=False)


KIND = {"f4": np.float32, "i4": np.int32, "u4": np.uint32, "i2": np.int16, "u1": np.uint8,
        "i1": np.int8}


def _decode(html: str) -> tuple[dict, dict]:
    meta = json.loads(re.search(r'class="mv-meta">(.*?)</script>', html, re.DOTALL).group(1)
                      .replace("<\\/", "</"))
    raw = base64.b64decode(re.search(r'class="mv-data">(.*?)</script>', html, re.DOTALL).group(1))
    if meta["compressed"]:
        raw = zlib.decompress(raw)
    arrays = {}
    for k, (off, kind, n, shape) in meta["index"].items():
        assert off % 8 == 0  # typed arrays need aligned offsets
        arrays[k] = np.frombuffer(raw, KIND[kind], n, off).reshape(shape)
    return meta, arrays


@pytest.mark.parametrize("compress", [True, False])
def test_view_data_is_the_partition(part, compress):
    meta, a = _decode(view.partition_html(part, compress=compress))
    lo = part.slice.domain.min(0)
    assert meta["regions"] == part.n_regions
    assert np.allclose(a["vertices"] + lo, part.vertices, rtol=0, atol=1e-6)
    assert np.array_equal(a["offsets"], part.offsets)
    assert np.array_equal(a["polys"], part.polygon_vertices)
    inner = part.edges["layer"] >= 0
    assert np.array_equal(a["edges"], part.edges["vertices"][inner])
    assert np.array_equal(a["edge_layer"], part.edges["layer"][inner])
    assert np.allclose(a["area"], part.areas, rtol=1e-6)
    assert np.array_equal(a["cls"], region_classes(part))
    assert np.allclose(a["slope"], slope_norms(part), rtol=1e-6)
    keys = [f"{hi:08x}{lo_:08x}" for hi, lo_ in zip(a["key_hi"], a["key_lo"])]
    assert keys == code_keys(part).tolist()
    for i, k in enumerate(part.layers):
        assert np.array_equal(a[f"lon_{i}"], part.codes[k].reshape(part.n_regions, -1).sum(1))
        assert meta["layers"][i]["units"] == part.codes[k][0].numel()
        # cells of layer i: regions in one cell share a colour index
        anc = part.ancestors[:, i]
        for c in np.unique(anc)[:20]:
            assert len(np.unique(a[f"cell_{i}"][anc == c])) == 1
    # top classes: ordered scores at the interior points, maps in slice coordinates
    y = np.einsum("rcd,rd->rc", part.G, part.interior) + part.h
    top = a["top"]
    assert np.array_equal(top[:, 0], y.argmax(1))
    rows = np.arange(part.n_regions)[:, None]
    assert np.allclose(a["top_g"], part.G[rows, top], rtol=1e-6, atol=1e-7)
    assert np.allclose(a["top_h"], part.h[rows, top], rtol=1e-6, atol=1e-7)
    db = part.decision_boundary()
    assert np.allclose(a["boundary"].reshape(-1, 2, 2) + lo, db.segments, atol=1e-6)


def test_anchor_images_are_the_anchor_inputs():
    net = nn.Sequential(nn.Flatten(), *_mlp([48, 8, 3], seed=1)).double().eval()
    x = torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    part = maxaffine.partition_slice(net, maxaffine.Slice.through(x[0], x[1], x[2]),
                                     progress=False)
    meta, a = _decode(view.partition_html(part))
    assert meta["anchor_image_shape"] == [4, 4, 3]
    img = a["anchor_images"].reshape(3, 4, 4, 3).astype(float)
    want = x.permute(0, 2, 3, 1).numpy()
    want = 255 * (want - want.min()) / (want.max() - want.min())
    assert np.abs(img - want).max() <= 0.5 + 1e-6  # rounding to uint8


def test_per_layer_view_has_no_output_fields(part):
    meta, a = _decode(view.partition_html(part.upto(0)))
    assert "cls" not in a and "boundary" not in a and "top" not in a
    assert meta["regions"] == part.upto(0).n_regions


def test_files_budget_and_notebook_hooks(part, tmp_path):
    page = view.save_html(part, tmp_path / "v.html")
    assert page.read_text().startswith("<!DOCTYPE html>")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        view.save_html(part, page)
    (tmp_path / "mine.html").write_text("mine")
    with pytest.raises(FileExistsError):
        part.show().save(tmp_path / "mine.html")
    assert (tmp_path / "mine.html").read_text() == "mine"
    shown = part.show()  # outside IPython: returns the view object
    assert isinstance(shown, view.PartitionView)
    assert "maxaffine-view" in shown._repr_html_()
    assert 'class="maxaffine-view"' in part._repr_html_()
    with pytest.raises(maxaffine.InputError, match="max_regions"):
        view.partition_html(part, max_regions=part.n_regions - 1)
    with pytest.raises(maxaffine.InputError, match="layer_names"):
        view.partition_html(part, layer_names=["a"])
    html = view.partition_html(part, layer_names=["first", "second"])
    assert _decode(html)[0]["layers"][1]["name"] == "second"
    # several views on one page do not share ids
    a, b = view.partition_html(part), view.partition_html(part)
    assert re.search(r'id="([^"]+)"', a).group(1) != re.search(r'id="([^"]+)"', b).group(1)


def test_import_maxaffine_view_needs_no_matplotlib():
    import subprocess
    import sys

    code = ("import sys, torch, maxaffine; torch.manual_seed(0); "
            "net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)); "
            "p = maxaffine.partition_slice(net, maxaffine.Slice.box(), progress=False); "
            "maxaffine.view.partition_html(p); print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_repr_html_falls_back_for_huge_partitions(part, monkeypatch):
    monkeypatch.setattr(view, "partition_html",
                        lambda p, **kw: (_ for _ in ()).throw(maxaffine.InputError("too big")))
    assert part._repr_html_() is None
