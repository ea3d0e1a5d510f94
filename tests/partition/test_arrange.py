"""The one-pass arrangement cut (partition._arrange) against the rounds it replaces, against
closed-form region counts, and its helpers against numpy references."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import maxaffine
from maxaffine.partition import _arrange, _engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from archs import Abs, random_network


def _slice_for(x, shrink):
    return maxaffine.Slice.through(x[0], x[0] + shrink * (x[1] - x[0]),
                                   x[0] + shrink * (x[2] - x[0]), margin=0.2)


def _partition(net, slc, one_pass, **kw):
    """partition_slice with the one pass switched on or off, and for every call of
    ``cut_all`` (one per sign layer with crossing lines) whether it produced the layer."""
    used = []
    real = _engine.cut_all

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        used.append(out is not None)
        return out

    # a context rather than the monkeypatch fixture, so hypothesis examples may use it
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_engine, "_ONE_PASS", one_pass)
        mp.setattr(_engine, "cut_all", spy)
        part = maxaffine.partition_slice(net, slc, progress=False, **kw)
    return part, used


def _assert_same_partition(a, b):
    """Two partitions of one slice are the same subdivision: counts, areas, codes and the
    units of the interior edges (edges are compared by label since vertex ids may differ)."""
    assert a.n_regions == b.n_regions
    sa, sb = np.sort(a.areas), np.sort(b.areas)
    # relative 1e-9, with a floor of 1e-13 of the slice area: a shoelace area carries an
    # absolute rounding error of a few ulps of the coordinates squared (~1e-16 here), which
    # is more than 1e-9 of a sliver's area
    assert np.all(np.abs(sa - sb) <= 1e-9 * np.maximum(sa, sb) + 1e-13 * a.slice.area)
    ca = np.unique(maxaffine.Codes(a.codes).flat().numpy(), axis=0)
    cb = np.unique(maxaffine.Codes(b.codes).flat().numpy(), axis=0)
    assert len(ca) == a.n_regions  # one code per region, so the sets are all the rows
    assert np.array_equal(ca, cb)

    def labels(p):
        e = p.edges
        inner = (e["regions"] >= 0).all(1)
        lab = np.stack([e["layer"][inner], e["unit"][inner]], 1).astype(np.int64)
        return lab[np.lexsort(lab.T[::-1])]

    assert np.array_equal(labels(a), labels(b))


# -- 1. the two algorithms agree ------------------------------------------------------------

_ACTS = {"relu": nn.ReLU, "leaky": lambda: nn.LeakyReLU(0.15),
         "hardtanh": lambda: nn.Hardtanh(-0.4, 0.6), "abs": Abs}


@given(seed=st.integers(0, 10_000), depth=st.integers(1, 3), width=st.integers(2, 24),
       act=st.sampled_from(sorted(_ACTS)))
@settings(max_examples=10)
def test_one_pass_and_rounds_agree_on_random_mlps(seed, depth, width, act):
    torch.manual_seed(seed)
    layers, d = [], 2
    for _ in range(depth):
        layers += [nn.Linear(d, width), _ACTS[act]()]
        d = width
    net = nn.Sequential(*layers, nn.Linear(d, 2)).double()
    slc = maxaffine.Slice.box((-1.5, 1.5, -1.5, 1.5))
    one, used = _partition(net, slc, True)
    rounds, unused = _partition(net, slc, False)
    # the comparison is only meaningful if each run really took its own algorithm: random
    # first-layer lines are in general position, so the one pass takes that layer whenever
    # it cuts the box at all
    if rounds.upto(0).n_regions > 1:
        assert used and used[0], used
    assert unused == []
    _assert_same_partition(one, rounds)
    assert abs(one.areas.sum() / slc.area - 1) <= 1e-9


@pytest.mark.parametrize("family,seed", [
    ("mlp", 1), ("residual", 2), ("concat", 2), ("maxout", 2), ("cnn", 0), ("cnn", 1),
    ("resnet", 1)])
def test_one_pass_and_rounds_agree_on_network_families(family, seed):
    net, x = random_network(family, seed)
    slc = _slice_for(x, 0.5)
    one, _ = _partition(net, slc, True)
    rounds, unused = _partition(net, slc, False)
    assert unused == []
    _assert_same_partition(one, rounds)


def test_budget_that_is_not_reached_changes_nothing():
    # max_regions is passed to the one pass as a budget; a budget above the final count
    # must give the complete, unbudgeted partition
    torch.manual_seed(7)
    net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                        nn.Linear(16, 1)).double()
    slc = maxaffine.Slice.box((-2, 2, -2, 2))
    free, _ = _partition(net, slc, True)
    capped, _ = _partition(net, slc, True, max_regions=free.n_regions + 1)
    assert capped.complete
    _assert_same_partition(free, capped)


# -- 2. degenerate layers fall back to the rounds and stay exact -----------------------------

def _one_layer(W, b):
    W, b = np.asarray(W, np.float64), np.asarray(b, np.float64)
    lin = nn.Linear(2, len(W)).double()
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(W))
        lin.bias.copy_(torch.from_numpy(b))
    return nn.Sequential(lin, nn.ReLU(), nn.Linear(len(W), 1)).double()


def _arrangement_count(W, b, lo, hi):
    """Regions of the open box (lo, hi)^2 cut by the lines W x + b = 0, independent of the
    library: adding the lines one at a time, a line meeting the open box adds one region
    plus one per distinct point where it crosses an earlier line inside the box (so
    concurrent lines are counted right; points closer than 1e-9 are one point)."""
    W, b = np.asarray(W, np.float64), np.asarray(b, np.float64)
    corners = np.array([[lo, lo], [hi, lo], [hi, hi], [lo, hi]])
    vals = corners @ W.T + b
    meets = np.flatnonzero((vals.max(0) > 0) & (vals.min(0) < 0))
    count = 1
    for n, i in enumerate(meets):
        pts = []
        for j in meets[:n]:
            A = W[[i, j]]
            if abs(np.linalg.det(A)) < 1e-12:
                continue  # parallel
            p = np.linalg.solve(A, -b[[i, j]])
            if np.all((p > lo + 1e-9) & (p < hi - 1e-9)):
                pts.append(p)
        distinct = 0
        if pts:
            pts = np.array(pts)
            close = np.abs(pts[:, None] - pts[None]).max(-1) <= 1e-9
            distinct = int(np.sum(~np.tril(close, -1).any(1)))  # no earlier point as close
        count += 1 + distinct
    return count


def _check_exact(part, slc, expected):
    assert part.n_regions == expected
    assert abs(part.areas.sum() / slc.area - 1) <= 1e-9
    assert np.all(part.areas > 0)
    part.verify(500)


@pytest.mark.parametrize("k", [3, 4, 7])
def test_lines_through_one_point_fall_back_and_give_2k_regions(k):
    # zero biases: all k lines pass through the origin, the centre of the box
    th = np.pi * (np.arange(k) + 0.37) / k  # distinct directions, none through a corner
    W = np.c_[np.cos(th), np.sin(th)]
    slc = maxaffine.Slice.box((-1, 1, -1, 1))
    part, used = _partition(_one_layer(W, np.zeros(k)), slc, True)
    assert used == [False]
    _check_exact(part, slc, 2 * k)
    assert _arrangement_count(W, np.zeros(k), -1, 1) == 2 * k
    # control: the same lines moved off a common point are in general position
    shifted = np.random.default_rng(k).uniform(-0.3, 0.3, k)
    part, used = _partition(_one_layer(W, shifted), slc, True)
    assert used == [True]
    _check_exact(part, slc, _arrangement_count(W, shifted, -1, 1))


def _generic(seed, n):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2)), rng.uniform(-0.6, 0.6, n)


# hand-made lines whose degeneracy holds exactly in float64 (small dyadic numbers), and a
# perturbation of their biases that removes it
_DEGENERATE = {
    # x - 2y + 1 = 0 passes through the corner (1, 1) and crosses the box
    "line through a corner": ([[1.0, -2.0]], [1.0], [0.25]),
    # three lines through (0.25, -0.375)
    "three concurrent lines off the origin": (
        [[1.0, 0.5], [0.75, -1.0], [1.0, 1.25]], [-0.0625, -0.5625, 0.21875], [0.0, 0.0, 0.125]),
    # two lines meeting at (1, 0.5), on the right edge of the box
    "two lines meeting on an edge": ([[1.0, 0.5], [1.0, -1.0]], [-1.25, -0.5], [0.0, 0.3125]),
}


@pytest.mark.parametrize("case", sorted(_DEGENERATE))
def test_degenerate_lines_among_generic_ones_fall_back_and_match_closed_form(case):
    W0, b0, shift = (np.asarray(a, np.float64) for a in _DEGENERATE[case])
    corners = np.array([[-1.0, -1], [1, -1], [1, 1], [-1, 1]])
    # the degeneracy is exact in float64 at the points the library evaluates
    if case == "line through a corner":
        assert corners[2] @ W0[0] + b0[0] == 0.0
    elif case == "three concurrent lines off the origin":
        assert np.all(W0 @ [0.25, -0.375] + b0 == 0.0)
    else:
        assert np.all(W0 @ [1.0, 0.5] + b0 == 0.0)
    Wg, bg = _generic(11, 6)
    slc = maxaffine.Slice.box((-1, 1, -1, 1))
    W, b = np.r_[W0, Wg], np.r_[b0, bg]
    part, used = _partition(_one_layer(W, b), slc, True)
    assert used == [False]
    _check_exact(part, slc, _arrangement_count(W, b, -1, 1))
    # control: without the degeneracy the same layer goes through the one pass
    b2 = np.r_[b0 + shift, bg]
    part, used = _partition(_one_layer(W, b2), slc, True)
    assert used == [True]
    _check_exact(part, slc, _arrangement_count(W, b2, -1, 1))


def test_three_concurrent_lines_count_one_crossing_not_three():
    # the closed form itself on the concurrent case: 3 lines through one point inside the
    # box make 6 regions, 3 generic ones 7
    W = [[1.0, 0.5], [0.75, -1.0], [1.0, 1.25]]
    assert _arrangement_count(W, [-0.0625, -0.5625, 0.21875], -1, 1) == 6
    assert _arrangement_count(W, [-0.0625, -0.5625, 0.34375], -1, 1) == 7


def test_coincident_lines_fall_back_and_count_once():
    # a unit repeated with its weights scaled: the same zero line twice, which passes
    # through every crossing of the other
    Wg, bg = _generic(3, 5)
    W, b = np.r_[Wg, 2.0 * Wg[1:2]], np.r_[bg, 2.0 * bg[1:2]]
    slc = maxaffine.Slice.box((-1, 1, -1, 1))
    corners = np.array([[-1.0, -1], [1, -1], [1, 1], [-1, 1]]) @ Wg[1] + bg[1]
    assert corners.max() > 0 > corners.min()  # the repeated line really crosses the box
    part, used = _partition(_one_layer(W, b), slc, True)
    assert used == [False]
    _check_exact(part, slc, _arrangement_count(Wg, bg, -1, 1))


def test_second_layer_line_through_a_first_layer_vertex_falls_back():
    # layer 1: the axes x = 0 and y = 0 (four quadrants meeting at the origin vertex);
    # layer 2: relu(x) - relu(y) / 2 is x - y / 2 in the first quadrant, a line through the
    # origin vertex, and does not change sign in the other three quadrants
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1), nn.ReLU(),
                        nn.Linear(1, 1)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2, dtype=torch.float64))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[1.0, -0.5]], dtype=torch.float64))
        net[2].bias.zero_()
    slc = maxaffine.Slice.box((-1, 1, -1, 1))
    part, used = _partition(net, slc, True)
    assert used == [True, False]  # the axes are generic, the second layer is not
    _check_exact(part, slc, 5)
    # the first quadrant is cut along x = y / 2 into a triangle of area 1/4 and the rest
    assert np.allclose(np.sort(part.areas), [0.25, 0.75, 1, 1, 1], rtol=1e-12)


def test_fallback_after_the_vertex_table_grew_still_cuts():
    # 80 generic lines and 3 concurrent ones in one region: the one pass appends ~3000
    # crossing vertices (more than the table's spare room, so it is reallocated) before it
    # meets the triple point and declines; the rounds must then see the layer's values
    rng = np.random.default_rng(0)
    th = rng.uniform(0, np.pi, 80)
    W = np.r_[[[1.0, 0.5], [0.75, -1.0], [1.0, 1.25]], np.c_[np.cos(th), np.sin(th)]]
    b = np.r_[[-0.0625, -0.5625, 0.21875], rng.uniform(-0.4, 0.4, 80)]
    assert np.all(W[:3] @ [0.25, -0.375] + b[:3] == 0.0)
    net = _one_layer(W, b)
    slc = maxaffine.Slice.box((-1, 1, -1, 1))
    part, used = _partition(net, slc, True)
    assert used == [False]
    expected = _arrangement_count(W, b, -1, 1)
    rounds, _ = _partition(net, slc, False)
    assert rounds.n_regions == expected
    _check_exact(part, slc, expected)


# -- 3. many lines in one region: face keys no longer fit one int64 --------------------------

@pytest.mark.parametrize("n_units", [40, 80])
def test_many_lines_in_one_region_match_closed_form_and_rounds(n_units, monkeypatch):
    # one region (the box) with all lines crossing it: kmax = n_units sign bits per key,
    # more than one int64 holds beyond 62, so the face ids go through _face_ids' lexsort
    rng = np.random.default_rng(n_units)
    th = rng.uniform(0, np.pi, n_units)
    W = np.c_[np.cos(th), np.sin(th)]
    b = rng.uniform(-0.4, 0.4, n_units)
    net = _one_layer(W, b)
    slc = maxaffine.Slice.box((-1, 1, -1, 1))
    multi = []
    real = _arrange._face_ids
    monkeypatch.setattr(_arrange, "_face_ids",
                        lambda *a, **k: multi.append(True) or real(*a, **k))
    one, used = _partition(net, slc, True)
    assert used == [True]
    if n_units > 62:
        assert multi
    rounds, _ = _partition(net, slc, False)
    expected = _arrangement_count(W, b, -1, 1)
    assert one.n_regions == expected
    assert rounds.n_regions == expected
    _assert_same_partition(one, rounds)
    one.verify(500)


# -- 4. helpers against numpy ----------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_groups_match_numpy_unique(seed):
    rng = np.random.default_rng(seed)
    pool = rng.integers(-(1 << 62), 1 << 62, 40)
    key = rng.choice(pool, 500)
    inv, first = _arrange._groups(key)
    vals, ref = np.unique(key, return_inverse=True)
    assert np.array_equal(inv, ref.reshape(-1))  # ids in increasing key order
    assert np.array_equal(key[first], vals)  # one representative per group
    empty_inv, empty_first = _arrange._groups(np.zeros(0, np.int64))
    assert len(empty_inv) == len(empty_first) == 0


def _same_grouping(ids, n, ref_inv, n_ref):
    """``ids`` (with ``n`` groups) group the rows exactly as ``ref_inv`` does."""
    ids, ref_inv = np.asarray(ids).reshape(-1), np.asarray(ref_inv).reshape(-1)
    assert n == n_ref
    assert np.array_equal(np.unique(ids), np.arange(n))
    # a bijection between the two labelings: as many distinct pairs as groups
    assert len(np.unique(np.c_[ids, ref_inv], axis=0)) == n


def _random_signs(rng, N, k, n_reg):
    """Rows drawn from a small pool, so that many (region, signs) keys repeat."""
    pool = rng.random((30, k)) < 0.5
    signs = pool[rng.integers(0, 30, N)]
    return signs, rng.integers(0, n_reg, N)


@pytest.mark.parametrize("k", [1, 5, 63, 64, 65, 80, 130])
def test_face_ids_match_numpy_unique_over_region_and_sign_rows(k):
    rng = np.random.default_rng(k)
    signs, reg = _random_signs(rng, 400, k, 4)
    face, n = _arrange._face_ids(signs, reg)
    _, ref = np.unique(np.c_[reg, signs.astype(np.int64)], axis=0, return_inverse=True)
    _same_grouping(face, n, ref, ref.max() + 1)


def _incident_reference(pos, reg, i2, i3, l2, lp, lq):
    """The incidence rows of _incident_faces written out: region vertices as they are, edge
    crossings with line l2 negative then positive, inner crossings with (lp, lq) set to
    (-, -), (+, -), (-, +), (+, +); grouped by numpy."""
    rows, regs = [pos[:i2]], [reg[:i2]]
    e, r2 = np.arange(i3 - i2), reg[i2:i3]
    for bit in (False, True):
        s = pos[i2:i3].copy()
        s[e, l2] = bit
        rows.append(s)
        regs.append(r2)
    c, r3 = np.arange(len(pos) - i3), reg[i3:]
    for bits in range(4):
        s = pos[i3:].copy()
        s[c, lp] = bool(bits & 1)
        s[c, lq] = bool(bits & 2)
        rows.append(s)
        regs.append(r3)
    table = np.c_[np.concatenate(regs), np.concatenate(rows).astype(np.int64)]
    _, inv = np.unique(table, axis=0, return_inverse=True)
    return inv.reshape(-1)


@pytest.mark.parametrize("k,n_reg,fits", [
    (5, 3, True), (61, 2, True), (5, 1 << 60, False), (62, 4, False), (80, 3, False)])
def test_incident_faces_both_key_branches_match_numpy(k, n_reg, fits, monkeypatch):
    # fits: region and sign bits fit one int64 key (bit operations on it); otherwise the
    # expanded table is grouped word by word (_face_ids); (61, 2) is the last that fits
    rng = np.random.default_rng(k + n_reg % 97)
    i2, i3, N = 60, 100, 160
    pos, reg = _random_signs(rng, N, k, min(n_reg, 4))
    if n_reg > 4:
        reg = reg * (n_reg // 4)  # large region ids
    assert (int(reg.max()).bit_length() + k <= 62) == fits
    l2 = rng.integers(0, k, i3 - i2)
    lp = rng.integers(0, k - 1, N - i3)
    lq = lp + 1 + rng.integers(0, k - 1 - lp)  # a second, different line
    words = []
    real = _arrange._face_ids
    monkeypatch.setattr(_arrange, "_face_ids", lambda *a: words.append(1) or real(*a))
    face, n = _arrange._incident_faces(pos, reg, i2, i3, l2, lp, lq, k)
    ref = _incident_reference(pos, reg, i2, i3, l2, lp, lq)
    _same_grouping(face, n, ref, ref.max() + 1)
    # padding every row with 70 always-negative lines forces the word-by-word branch, and
    # must not change the grouping
    padded = np.c_[pos, np.zeros((N, 70), bool)]
    face2, n2 = _arrange._incident_faces(padded, reg, i2, i3, l2, lp, lq, k + 70)
    assert len(words) == (1 if fits else 2)
    _same_grouping(face2, n2, ref, ref.max() + 1)


def _angles(dx, dy):
    return np.mod(np.arctan2(dy, dx), 2 * np.pi)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_by_angle_orders_corners_of_each_face_counter_clockwise(seed):
    rng = np.random.default_rng(seed)
    n_faces = 300
    m = rng.integers(3, 12, n_faces)
    m[0] = 6
    face = np.repeat(np.arange(n_faces), m)
    ang = rng.uniform(0, 2 * np.pi, len(face))
    # the four axis directions in one face exercise the quadrant boundaries
    ang[:m[0]][:4] = [0.0, 0.5 * np.pi, np.pi, 1.5 * np.pi]
    radius = np.repeat(rng.uniform(1e-3, 1e3, n_faces), m)
    dx, dy = radius * np.cos(ang), radius * np.sin(ang)
    dx[:4], dy[:4] = [1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, -1.0]
    perm = rng.permutation(len(face))
    face, dx, dy = face[perm], dx[perm], dy[perm]
    order = _arrange._by_angle(face, dx, dy)
    assert order is not None
    assert np.array_equal(np.sort(order), np.arange(len(face)))
    fs = face[order]
    assert np.all(np.diff(fs) >= 0)
    a = _angles(dx[order], dy[order])
    same = fs[1:] == fs[:-1]
    assert np.all(a[1:][same] > a[:-1][same])


def test_by_angle_rejects_two_corners_at_one_angle_of_a_face():
    # (1, 1) and (2, 2) lie on one ray from the face's centre: not a strictly convex face
    face = np.array([0, 0, 0, 0, 1, 1, 1])
    dx = np.array([1.0, -1.0, 2.0, 0.5, 1.0, -1.0, 0.0])
    dy = np.array([1.0, 0.0, 2.0, -1.0, 0.0, 1.0, -1.0])
    assert _arrange._by_angle(face, dx, dy) is None
    # the same ray in two different faces is fine
    ok_face = np.array([0, 0, 0, 1, 1, 1, 1])
    ok_dx = np.array([1.0, -1.0, 0.5, 2.0, -1.0, 0.0, 3.0])
    ok_dy = np.array([1.0, 0.0, -1.0, 2.0, 1.0, -1.0, 0.0])
    order = _arrange._by_angle(ok_face, ok_dx, ok_dy)
    assert order is not None and np.all(np.diff(ok_face[order]) >= 0)
    # a corner at the centre has no angle
    assert _arrange._by_angle(np.zeros(3, np.int64), np.array([1.0, 0.0, -1.0]),
                              np.array([0.0, 0.0, 1.0])) is None
