"""Figures for papers: rasterized fills, merged edge paths, region-count line widths, and the
compact SVG writer (``Partition.to_svg``).

Oracles: the unmerged drawing (the same segments), Euler's count of edges, polygon areas
from the partition (each class's merged fill has the area of its regions), and an XML parse
of the SVG.
"""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import maxaffine  # noqa: E402
from maxaffine import plot  # noqa: E402
from maxaffine.partition import export  # noqa: E402

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _mlp(sizes, seed):
    torch.manual_seed(seed)
    layers = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double().eval()


@pytest.fixture(scope="module")
def part():
    net = _mlp([2, 12, 12, 3], seed=7)  # all three classes meet in the box
    return maxaffine.partition_slice(net, maxaffine.Slice.box((-2, 2, -2, 2)), progress=False)


def _by_gid(ax, gid):
    found = [a for a in ax.get_children() if a.get_gid() == gid]
    assert len(found) == 1
    return found[0]


def test_code_hash_by_bytes_matches_the_flat_hash():
    g = torch.Generator().manual_seed(0)
    for trial in range(30):
        N = int(torch.randint(1, 40, (), generator=g))
        codes = {}
        for k in range(int(torch.randint(1, 4, (), generator=g))):
            shape = (N, *torch.randint(1, 13, (int(torch.randint(1, 3, (), generator=g)),),
                                       generator=g).tolist())
            if torch.rand((), generator=g) < 0.6:
                codes[f"l{k}"] = torch.rand(shape, generator=g) < 0.5
            else:
                codes[f"l{k}"] = torch.randint(0, 5, shape, generator=g).to(
                    [torch.int64, torch.int8][k % 2])
        assert np.array_equal(plot._codes_hash(codes),
                              plot._code_hash(plot._flat_codes(codes))), trial


def test_rasterized_fills_and_vector_edges(part, tmp_path):
    ax = plot.plot_partition(part, color_by="class", rasterized=True)
    assert _by_gid(ax, "regions").get_rasterized()
    assert not _by_gid(ax, "edges").get_rasterized()
    assert not _by_gid(ax, "decision-boundary").get_rasterized()
    ax.figure.savefig(tmp_path / "f.svg")
    text = (tmp_path / "f.svg").read_text()
    assert text.count("<image") == 1  # the fills, as one picture
    ax = plot.plot_partition(part, color_by="class")  # few regions: vector by default
    assert not _by_gid(ax, "regions").get_rasterized()
    ax = plot.plot_partition(part, color_by="output", rasterized=True)
    assert _by_gid(ax, "regions").get_rasterized()


def test_rasterize_default_follows_region_count(part, monkeypatch):
    monkeypatch.setattr(plot, "RASTERIZE_ABOVE", part.n_regions)
    assert _by_gid(plot.plot_partition(part), "regions").get_rasterized()
    monkeypatch.setattr(plot, "RASTERIZE_ABOVE", part.n_regions + 1)
    assert not _by_gid(plot.plot_partition(part), "regions").get_rasterized()


def test_merged_edges_are_the_same_segments(part, monkeypatch):
    plain = _by_gid(plot.plot_partition(part), "edges")
    segs = np.array(plain.get_segments())
    monkeypatch.setattr(plot, "MERGE_EDGES_ABOVE", 0)
    merged = _by_gid(plot.plot_partition(part), "edges")
    lines = merged.get_segments()
    assert len(lines) == len(part.layers)  # one path per layer
    pts = np.concatenate(lines)
    ok = ~np.isnan(pts).any(1)
    assert np.array_equal(pts[ok].reshape(-1, 2, 2), segs)  # in the same order
    # layer colours are kept
    assert np.allclose(merged.get_colors()[:, :3],
                       plot.layer_colors(len(part.layers))[:, :3])


def test_line_width_scales_with_region_count(part):
    assert plot.edge_linewidth(100) == 0.5
    assert plot.edge_linewidth(8000) == pytest.approx(0.25)
    assert plot.edge_linewidth(10**9) == 0.05
    widths = [plot.edge_linewidth(n) for n in (10, 2000, 5000, 50_000, 500_000)]
    assert widths == sorted(widths, reverse=True)
    ax = plot.plot_partition(part)
    assert _by_gid(ax, "edges").get_linewidths()[0] == plot.edge_linewidth(part.n_regions)
    assert _by_gid(plot.plot_partition(part, linewidth=1.3), "edges").get_linewidths()[0] == 1.3


def _paths(svg: str):
    root = ET.fromstring(svg)
    return root, list(root.iter(f"{SVG}path"))


def _subpaths(d: str) -> list[np.ndarray]:
    """Parse ``M x y l dx dy ... z`` path data into absolute point lists."""
    out = []
    for sub in re.findall(r"M([^M]*)", d):
        head, _, rest = sub.partition("l")
        p = np.array(head.split(), float)
        steps = np.array(rest.replace("z", " ").split(), float).reshape(-1, 2)
        out.append(np.vstack([p, p + np.cumsum(steps, 0)]))
    return out


def _area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


@pytest.mark.parametrize("merge", [True, False])
def test_to_svg_edges_once_and_fills_by_class(part, merge):
    if merge:
        pytest.importorskip("shapely")
    res = 4000
    svg = part.to_svg(resolution=res, merge=merge)
    root, paths = _paths(svg)
    fills = [p for p in paths if p.get("fill") not in (None, "none")]
    cls = export.region_classes(part)
    assert len(fills) == len(np.unique(cls)) == 3  # one path per colour
    step = float(np.ptp(part.slice.domain, axis=0).max()) / res
    per = float(np.sqrt(part.areas).sum()) * 4 * step  # bound on the quantization error
    for p, c in zip(fills, np.unique(cls)):
        # holes run against their outer ring (SVG's nonzero rule), so the signed sum is
        # the covered area up to one global orientation
        area = abs(sum(_area(q) for q in _subpaths(p.get("d")))) * step * step
        expect = part.areas[cls == c].sum()
        assert abs(area - expect) <= per, (c, area, expect)
    edge_group = [g for g in root.iter(f"{SVG}g") if g.get("fill") == "none"][0]
    edge_paths = list(edge_group.iter(f"{SVG}path"))
    inner = part.edges["layer"] >= 0
    assert len(edge_paths) == len(np.unique(part.edges["layer"][inner]))
    n_seg = sum(p.get("d").count("M") for p in edge_paths)
    assert n_seg == int(inner.sum())  # every shared edge once
    # and they sit where the edges are (up to the grid)
    segs = np.concatenate([np.array(_subpaths(p.get("d"))) for p in edge_paths])
    lo = part.slice.domain.min(0)
    H = np.rint(np.ptp(part.slice.domain[:, 1]) / step)
    xy = np.stack([segs[..., 0] * step + lo[0], (H - segs[..., 1]) * step + lo[1]], -1)
    want = part.vertices[part.edges["vertices"][inner]]
    key = lambda a: np.sort(np.round(a.reshape(len(a), -1) / step).astype(np.int64), 0)  # noqa: E731
    assert np.abs(key(xy) - key(want)).max() <= 1


def test_to_svg_code_colours_and_files(part, tmp_path):
    sub = part.upto(0)
    svg = sub.to_svg(tmp_path / "a.svg")
    assert (tmp_path / "a.svg").read_text() == svg
    _, paths = _paths(svg)
    fills = [p for p in paths if p.get("fill") not in (None, "none")]
    assert 1 <= len(fills) <= len(export.CODE_FILLS)
    n_poly = sum(p.get("d").count("M") for p in fills)
    assert n_poly == sub.n_regions
    with pytest.raises(FileExistsError, match="overwrite=True"):
        sub.to_svg(tmp_path / "a.svg")
    (tmp_path / "b.svg").write_text("mine")
    with pytest.raises(FileExistsError):
        part.to_svg(tmp_path / "b.svg")
    assert (tmp_path / "b.svg").read_text() == "mine"
    part.to_svg(tmp_path / "b.svg", overwrite=True)
    with pytest.raises(maxaffine.InputError, match="color_by"):
        sub.to_svg(color_by="class")
