"""Partition.locate / verify: point location by geometry against independent oracles."""

import dataclasses
import itertools
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import maxaffine
from maxaffine.errors import BudgetWarning, InputError, MaxAffineError
from maxaffine.partition._locate import GridLocator
from maxaffine.partition.partition import next_entry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from archs import random_network


def _part(seed=0, widths=(2, 32, 32, 3), box=(-2, 2, -2, 2)):
    torch.manual_seed(seed)
    layers = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    net = nn.Sequential(*layers[:-1]).double().eval()
    return net, maxaffine.partition_slice(net, maxaffine.Slice.box(box), progress=False)


def _inside_brute(part, st):
    """Oracle: every (point, region) signed distance, O(N R) (small partitions only)."""
    P = part.vertices[part.polygon_vertices]
    Q = P[next_entry(part.offsets)]
    e = Q - P
    rel = st[:, None, :] - P[None]
    d = (e[None, :, 0] * rel[..., 1] - e[None, :, 1] * rel[..., 0]) / np.linalg.norm(e, axis=1)
    return np.minimum.reduceat(d, part.offsets[:-1], axis=1)  # (N, R)


@pytest.mark.parametrize("seed", range(3))
def test_locate_matches_brute_force_and_codes(seed):
    net, part = _part(seed)
    st = part.slice.sample(3000, seed=seed + 7)
    reg = part.locate(st)
    d = _inside_brute(part, st)
    best = d.max(1)
    inner = best > 1e-9 * part.slice.scale  # off every boundary: one region contains it
    assert np.array_equal(reg[inner], d.argmax(1)[inner])
    assert np.all(reg >= 0)
    # and the located region's code is the model's code at the point
    model = maxaffine.codes(net, part.slice.points(st[inner]))
    for k in part.layers:
        assert torch.equal(part.codes[k][torch.from_numpy(reg[inner])], model[k])


def test_locate_on_vertices_edges_and_outside():
    _, part = _part(1, (2, 8, 1))
    # every vertex lies in (the closure of) the region it is assigned to
    r = part.locate(part.vertices)
    assert np.all(r >= 0)
    d = _inside_brute(part, part.vertices)
    assert np.all(d[np.arange(len(r)), r] >= -1e-12 * part.slice.scale)
    # edge midpoints too
    mids = 0.5 * (part.vertices[part.edges["vertices"][:, 0]]
                  + part.vertices[part.edges["vertices"][:, 1]])
    assert np.all(part.locate(mids) >= 0)
    out = part.locate([[2.5, 0.0], [0.0, -2.0 - 1e-6], [np.nan, 0.0], [np.inf, 1.0]])
    assert out.tolist() == [-1, -1, -1, -1]
    assert part.locate(np.zeros((0, 2))).shape == (0,)


def test_locate_is_geometric_and_needs_no_model():
    _, part = _part(2, (2, 8, 8, 2))
    st = part.slice.sample(500, seed=3)
    bare = dataclasses.replace(part, trace=None)
    assert np.array_equal(bare.locate(st), part.locate(st))


def test_locate_on_a_triangle_slice_of_a_cnn():
    net, x = random_network("cnn", 1)
    slc = maxaffine.Slice.through(x[0], x[1], x[2], margin=0.1)
    part = maxaffine.partition_slice(net, slc, progress=False)
    st = slc.sample(2000, seed=1)
    reg = part.locate(st)
    assert np.all(reg >= 0)
    d = _inside_brute(part, st)
    inner = d.max(1) > 1e-9 * slc.scale
    assert np.array_equal(reg[inner], d.argmax(1)[inner])
    # outside the triangle but inside its bounding box
    lo = slc.domain.min(0)
    assert part.locate(lo[None] - 1e-3)[0] == -1


def test_grid_index_size_is_linear_in_the_partition():
    _, part = _part(0, (2, 64, 64, 3))
    g = GridLocator(part.vertices, part.offsets, part.polygon_vertices)
    # (cell, polygon) pairs: about the cells plus the cells the edges cross
    assert g.n_pairs <= 10 * (part.n_regions + len(part.polygon_vertices))


def test_thin_long_regions_do_not_blow_up_the_index():
    # 200 parallel diagonal lines: every strip's bounding box is the whole domain, which a
    # bounding-box index would list in every cell
    W = torch.tensor([[1.0, 1.0]]).repeat(200, 1).double()
    b = torch.linspace(-3.9, 3.9, 200).double()
    net = nn.Sequential(nn.Linear(2, 200), nn.ReLU(), nn.Linear(200, 1)).double().eval()
    with torch.no_grad():
        net[0].weight.copy_(W)
        net[0].bias.copy_(b)
    part = maxaffine.partition_slice(net, maxaffine.Slice.box((-2, 2, -2, 2)), progress=False)
    assert part.n_regions == 201
    g = GridLocator(part.vertices, part.offsets, part.polygon_vertices)
    assert g.n_pairs < 50 * part.n_regions
    part.verify(2000)


def test_verify_detects_a_wrong_code():
    _, part = _part(0, (2, 8, 8, 1))
    k = part.layers[-1]
    bad = {**part.codes, k: part.codes[k].clone()}
    bad[k][0] = ~bad[k][0]
    with pytest.raises(MaxAffineError, match="another code than the region containing them"):
        dataclasses.replace(part, codes=bad).verify(3000)


def test_verify_detects_a_wrong_output_map():
    _, part = _part(0, (2, 8, 8, 1))
    h = part.h.copy()
    h[np.argmax(part.areas)] += 1e-3
    with pytest.raises(MaxAffineError, match="output map differs"):
        dataclasses.replace(part, h=h).verify(500)


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_verify_needs_a_positive_integer_sample_count(n):
    _, part = _part(0, (2, 4, 1))
    with pytest.raises(InputError, match="n_samples >= 1"):
        part.verify(n)


def test_verify_on_a_partial_partition_says_partial():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                        nn.Linear(32, 1)).double().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetWarning)
        part = maxaffine.partition_slice(net, maxaffine.Slice.box(), max_regions=50,
                                         progress=False)
    assert not part.complete
    with pytest.raises(InputError, match="partial") as info:
        part.verify(2000)
    assert "verification failed" not in str(info.value)
    assert "max_regions" in str(info.value)
