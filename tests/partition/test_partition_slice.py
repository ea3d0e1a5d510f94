"""partition_slice: exactness against independent oracles, invariants, degenerate input."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import maxaffine
from maxaffine.errors import BudgetWarning, DegenerateSliceError, InputError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from archs import random_network  # noqa: E402
from oracle_regions import oracle_regions  # noqa: E402


def _slice_for(x, shrink):
    return maxaffine.Slice.through(x[0], x[0] + shrink * (x[1] - x[0]),
                                   x[0] + shrink * (x[2] - x[0]), margin=0.2)


def test_reference_mlp_has_12042_regions():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                        nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1)).double()
    part = maxaffine.partition_slice(net, maxaffine.Slice.box((-2, 2, -2, 2)), progress=False)
    assert part.n_regions == 12042
    assert abs(part.areas.sum() - 16.0) <= 1e-9 * 16.0  # relative 1e-9: float64 shoelace sums
    assert part.areas.min() > 0
    assert part.upto(0).n_regions == maxaffine.partition_slice(
        net, maxaffine.Slice.box((-2, 2, -2, 2)), layers=1, progress=False).n_regions
    part.verify(2000)


def _regioncam_count(net, size):
    import regioncam

    rc = regioncam.Regioncam(size)
    for m in net:
        if isinstance(m, nn.Linear):
            rc.linear(m.weight.detach().T.numpy().astype(np.float32),
                      m.bias.detach().numpy().astype(np.float32))
        elif isinstance(m, nn.LeakyReLU):
            rc.leaky_relu(m.negative_slope)
        else:
            rc.relu()
    return rc.num_faces


@given(seed=st.integers(0, 10_000), depth=st.integers(1, 3), width=st.integers(2, 12),
       leaky=st.booleans())
@settings(max_examples=12)
def test_counts_match_regioncam_on_mlps(seed, depth, width, leaky):
    torch.manual_seed(seed)
    layers, d = [], 2
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.LeakyReLU(0.2) if leaky else nn.ReLU()]
        d = width
    net = nn.Sequential(*layers, nn.Linear(d, 2)).double()
    part = maxaffine.partition_slice(net, maxaffine.Slice.box((-1.5, 1.5, -1.5, 1.5)),
                                     progress=False)
    assert part.n_regions == _regioncam_count(net, 1.5)


@pytest.mark.parametrize("family,seed,shrink", [
    ("mlp", 1, 1.0), ("residual", 2, 1.0), ("concat", 2, 1.0), ("maxout", 0, 1.0),
    ("maxout", 2, 1.0), ("cnn", 1, 0.35), ("cnn", 3, 0.3), ("resnet", 1, 0.3)])
def test_counts_match_region_walking_oracle(family, seed, shrink):
    net, x = random_network(family, seed)
    slc = _slice_for(x, shrink)
    part = maxaffine.partition_slice(net, slc, progress=False)
    n, area = oracle_regions(net, slc)
    assert part.n_regions == n
    assert abs(area / slc.area - 1) < 1e-9


@given(family=st.sampled_from(["mlp", "residual", "concat", "maxout", "cnn", "resnet"]),
       seed=st.integers(0, 1000))
@settings(max_examples=10)
def test_invariants_on_random_networks(family, seed):
    net, x = random_network(family, seed)
    slc = _slice_for(x, 0.5)
    part = maxaffine.partition_slice(net, slc, progress=False)
    assert abs(part.areas.sum() / slc.area - 1) <= 1e-9
    assert np.all(part.areas > 0)
    # no region is split in two: every region has its own full code
    flat = maxaffine.Codes(part.codes).flat().numpy()
    assert len(np.unique(flat, axis=0)) == part.n_regions
    # random interior points of every region carry the region's code (maxaffine.codes oracle)
    rng = np.random.default_rng(seed)
    V = part.vertices[part.polygon_vertices]
    r = np.repeat(np.arange(part.n_regions), part.vertex_counts)
    w = rng.random(len(V)) ** 4
    num = np.zeros((part.n_regions, 2))
    np.add.at(num, r, w[:, None] * V)
    den = np.bincount(r, w)
    pts = 0.5 * num / den[:, None] + 0.5 * part.interior
    q = maxaffine.codes(net, slc.points(pts)).flat().numpy()
    assert np.array_equal(q, flat)
    part.verify(1000, seed=seed)
    # adjacent regions differ in at least one unit
    reg = part.edges["regions"]
    inner = reg[(reg >= 0).all(1)]
    assert np.all(np.any(flat[inner[:, 0]] != flat[inner[:, 1]], axis=1))


def test_edge_labels_name_the_unit_whose_line_it_is():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(2, 10), nn.ReLU(), nn.Linear(10, 10), nn.ReLU(),
                        nn.Linear(10, 1)).double()
    slc = maxaffine.Slice.box((-2, 2, -2, 2))
    part = maxaffine.partition_slice(net, slc, progress=False)
    e = part.edges
    inner = e["layer"] >= 0
    mid = part.vertices[e["vertices"][inner]].mean(1)
    tr = part.trace
    rec = tr.run(slc.points(mid))
    for li, name in enumerate(part.layers):
        sel = e["layer"][inner] == li
        z = tr.unit_inputs(rec, name)[0].detach().numpy()[sel]
        vals = z[np.arange(len(z)), e["unit"][inner][sel]]
        assert np.abs(vals).max() < 1e-10 * np.abs(z).max()
    assert np.all((e["regions"][:, 1] >= 0) == inner)  # boundary edges have one region


def test_one_layer_matches_line_arrangement_closed_form():
    torch.manual_seed(5)
    lin = nn.Linear(2, 12).double()
    net = nn.Sequential(lin, nn.ReLU(), nn.Linear(12, 1)).double()
    W, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    lo, hi = -1.0, 1.0
    # lines meeting the open box, and pairwise crossings inside it
    corners = np.array([[lo, lo], [hi, lo], [hi, hi], [lo, hi]])
    vals = corners @ W.T + b
    meets = (vals.max(0) > 0) & (vals.min(0) < 0)
    crossings = 0
    for i in range(12):
        for j in range(i + 1, 12):
            p = np.linalg.solve(W[[i, j]], -b[[i, j]])
            crossings += bool(np.all((p > lo) & (p < hi)))
    part = maxaffine.partition_slice(net, maxaffine.Slice.box((lo, hi, lo, hi)), progress=False)
    assert part.n_regions == 1 + int(meets.sum()) + crossings


def test_affine_layers_without_nonlinearity_do_not_cut():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(2, 7), nn.Linear(7, 5), nn.Linear(5, 3)).double()
    part = maxaffine.partition_slice(net, maxaffine.Slice.box(), progress=False)
    assert part.n_regions == 1
    net2 = nn.Sequential(nn.Linear(2, 7), nn.ReLU(), nn.Linear(7, 5), nn.BatchNorm1d(5).eval(),
                         nn.Linear(5, 3)).double()
    one = maxaffine.partition_slice(net2, maxaffine.Slice.box(), progress=False)
    assert one.n_regions == maxaffine.partition_slice(net2, maxaffine.Slice.box(), layers=1,
                                                      progress=False).n_regions


def test_output_maps_float64_and_exact():
    net, x = random_network("cnn", 1)
    slc = _slice_for(x, 0.5)
    part = maxaffine.partition_slice(net, slc, progress=False)
    assert part.G.dtype == np.float64 and part.vertices.dtype == np.float64
    pts = slc.sample(500, seed=1)
    reg = part.locate(pts)
    assert np.all(reg >= 0)
    y = net(slc.points(pts)).detach().numpy()
    assert np.abs(part.output(pts, reg) - y).max() < 1e-10



@pytest.mark.parametrize("family,seed,shrink", [("mlp", 3, 1.0), ("cnn", 2, 0.4)])
def test_output_slopes_match_autograd_jacobians(family, seed, shrink):
    # G comes from vertex values (or a fixed-code difference for thin regions); the oracle
    # is autograd of the model along the slice directions at every region's interior point
    net, x = random_network(family, seed)
    slc = _slice_for(x, shrink)
    part = maxaffine.partition_slice(net, slc, progress=False)
    st = torch.from_numpy(part.interior).requires_grad_(True)
    o, u, v = (torch.from_numpy(a) for a in (slc.origin, slc.u, slc.v))
    xs = (o[None] + st[:, :1] * u[None] + st[:, 1:] * v[None]).reshape(len(st), *slc.in_shape)
    y = net(xs).reshape(len(st), -1)
    J = np.stack([torch.autograd.grad(y[:, c].sum(), st, retain_graph=True)[0].numpy()
                  for c in range(y.shape[1])], 1)
    scale = np.abs(J).max()
    assert np.abs(part.G - J).max() <= 1e-9 * scale
    assert np.abs(part.output(part.interior, np.arange(part.n_regions)) -
                  y.detach().numpy()).max() <= 1e-10 * max(1.0, float(y.detach().abs().max()))

def test_decision_boundary_skips_regions_where_the_top_two_tie_everywhere():
    # zero biases: on the cone where every first-layer unit is off all logits are 0, so all
    # classes tie on the whole region; rounding must not draw segments there
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 4)).double()
    with torch.no_grad():
        net[0].bias.zero_()
        net[2].bias.zero_()
        # units 0 and 1 of layer 1 point into a half-plane, so every unit is off on a cone
        net[0].weight.copy_(torch.tensor([[1.0, 0.3], [0.8, 1.0], [1.0, -0.5], [0.4, 0.9],
                                          [1.2, 0.1], [0.7, -0.2]], dtype=torch.float64))
    slc = maxaffine.Slice.box((-1, 1, -1, 1))
    part = maxaffine.partition_slice(net, slc, progress=False)
    off = np.flatnonzero(~maxaffine.Codes(part.codes).flat().numpy().any(1))
    assert len(off) == 1
    db = part.decision_boundary()
    assert np.array_equal(db.tied_regions, off)
    assert not np.isin(db.regions, off).any()
    # the logits at the segments really tie, and are the top two
    y = net(slc.points(db.segments.mean(1))).detach().numpy()
    srt = np.sort(y, 1)
    assert len(y) > 0 and np.abs(srt[:, -1] - srt[:, -2]).max() < 1e-9
    # regression: a level set f = tau that holds on a whole region is reported, not drawn
    reg = nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 1)).double()
    with torch.no_grad():
        reg[0].load_state_dict(net[0].state_dict())
        reg[2].bias.zero_()
    rpart = maxaffine.partition_slice(reg, slc, progress=False)
    rdb = rpart.decision_boundary(0.0)
    assert np.array_equal(rdb.tied_regions, off)
    assert not np.isin(rdb.regions, off).any()


def test_decision_boundary_keeps_only_top_two_ties():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                        nn.Linear(16, 5)).double()
    slc = maxaffine.Slice.box((-3, 3, -3, 3))
    part = maxaffine.partition_slice(net, slc, progress=False)
    db = part.decision_boundary()
    assert len(db.segments) > 0
    pts = np.concatenate([db.segments.mean(1), db.segments[:, 0] * 0.9 + db.segments[:, 1] * 0.1])
    cls = np.concatenate([db.classes, db.classes])
    y = net(slc.points(pts)).detach().numpy()
    top2 = np.sort(np.argsort(y, 1)[:, -2:], 1)
    assert np.array_equal(top2, np.sort(cls, 1))
    srt = np.sort(y, 1)
    assert np.abs(srt[:, -1] - srt[:, -2]).max() < 1e-9
    # completeness: every label change on a dense grid lies next to a boundary segment
    g = np.linspace(-3, 3, 301)
    S, T = np.meshgrid(g, g)
    P = np.c_[S.ravel(), T.ravel()]
    lab = net(slc.points(P)).argmax(1).numpy().reshape(S.shape)
    P = P.reshape(301, 301, 2)
    mids = np.concatenate([((P[1:] + P[:-1]) / 2)[lab[1:] != lab[:-1]],
                           ((P[:, 1:] + P[:, :-1]) / 2)[lab[:, 1:] != lab[:, :-1]]])
    A, B = db.segments[:, 0], db.segments[:, 1]
    rel = mids[:, None] - A[None]
    e = (B - A)[None]
    t = np.clip((rel * e).sum(-1) / (e * e).sum(-1), 0, 1)
    dist = np.linalg.norm(rel - t[..., None] * e, axis=-1).min(1)
    assert len(mids) > 0 and dist.max() <= (g[1] - g[0])


def test_regression_level_set():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(2, 12), nn.ReLU(), nn.Linear(12, 1)).double()
    part = maxaffine.partition_slice(net, maxaffine.Slice.box((-2, 2, -2, 2)), progress=False)
    tau = float(net(torch.zeros(1, 2, dtype=torch.float64)).detach())
    db = part.decision_boundary(tau)
    y = net(part.slice.points(db.segments.reshape(-1, 2))).detach().numpy()
    assert len(db.segments) > 0 and np.abs(y - tau).max() < 1e-10


def test_budget_stops_with_flagged_partial_result():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                        nn.Linear(32, 1)).double()
    slc = maxaffine.Slice.box((-2, 2, -2, 2))
    with pytest.warns(BudgetWarning):
        part = maxaffine.partition_slice(net, slc, max_regions=50, progress=False)
    assert not part.complete and part.G is None
    assert 50 < part.n_regions < maxaffine.partition_slice(net, slc, progress=False).n_regions
    assert abs(part.areas.sum() - 16) < 1e-9 * 16
    with pytest.raises(InputError):
        part.decision_boundary()


def test_upto_levels_refine_each_other():
    net, x = random_network("residual", 2)
    slc = _slice_for(x, 1.0)
    part = maxaffine.partition_slice(net, slc, progress=False)
    counts = [part.upto(i).n_regions for i in range(len(part.layers))]
    assert counts == sorted(counts) and counts[-1] == part.n_regions
    for i in range(len(part.layers)):
        lev = part.upto(i)
        assert isinstance(lev.codes, maxaffine.Codes)
        assert abs(lev.areas.sum() / slc.area - 1) < 1e-9
        # the ancestor at level i contains each final region's interior point
        anc = part.ancestors[:, i]
        q = maxaffine.codes(net, slc.points(part.interior))
        for name in lev.layers:
            assert torch.equal(q[name], lev.codes[name][torch.from_numpy(anc)])


def test_stats_report_slivers_and_density():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 20), nn.ReLU(), nn.Linear(20, 3)).double()
    part = maxaffine.partition_slice(net, maxaffine.Slice.box((-2, 2, -2, 2)), progress=False)
    s = part.stats(points=np.zeros((1, 2)), radius=10.0)
    assert s.n_regions == part.n_regions
    assert s.n_above + s.n_slivers <= s.n_regions and s.n_above >= 1
    assert s.density[0] * np.pi * 100 == pytest.approx(part.n_regions)
    assert 0 <= s.eccentricity_mean <= 1 and s.boundary_pieces >= 0
    assert s.area_mean == pytest.approx(16 / part.n_regions)


def test_image_inputs_and_shapes():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(8, 3)).double().eval()
    xs = torch.randn(3, 1, 6, 6, dtype=torch.float64)
    slc = maxaffine.Slice.through(xs[0], xs[1], xs[2])
    part = maxaffine.partition_slice(net, slc, progress=False)
    assert part.input_vertices().shape == (len(part.vertices), 1, 6, 6)
    assert torch.allclose(slc.points(slc.anchors), xs)
    part.verify(500)


def test_degenerate_inputs_raise_clear_errors():
    a = np.zeros(3)
    with pytest.raises(DegenerateSliceError, match="collinear"):
        maxaffine.Slice.through(a, a + 1, a + 2)
    with pytest.raises(DegenerateSliceError, match="zero area"):
        maxaffine.Slice.box((0, 0, -1, 1))
    with pytest.raises(DegenerateSliceError):
        maxaffine.Slice.through(a, np.array([np.nan, 0, 0]), np.eye(3)[1])
    with pytest.raises(DegenerateSliceError):
        maxaffine.Slice.box((0, np.inf, 0, 1))
    with pytest.raises(DegenerateSliceError, match="parallel"):
        maxaffine.Slice.box(origin=a, u=np.eye(3)[0], v=2 * np.eye(3)[0])
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU()).double()
    with pytest.raises(InputError, match="shape"):
        maxaffine.partition_slice(net, maxaffine.Slice.box(), progress=False)
    with pytest.raises(DegenerateSliceError):
        maxaffine.partition_path(net, torch.zeros(2, 3))


def test_partition_path_matches_dense_sampling():
    for family, seed in [("mlp", 1), ("maxout", 0), ("cnn", 0), ("resnet", 2)]:
        net, x = random_network(family, seed)
        path = maxaffine.partition_path(net, x[:3], closed=True)
        tau = np.linspace(0, 3, 100001)
        c = maxaffine.codes(net, path.inputs(tau)).flat().numpy()
        assert path.n_pieces == 1 + np.count_nonzero(np.any(c[1:] != c[:-1], 1))
        y = net(path.inputs(tau[::101])).detach().numpy()
        assert np.abs(path.output(tau[::101]) - y).max() < 1e-10
        assert path.arclength[-1] == pytest.approx(
            float(sum((x[(i + 1) % 3] - x[i]).norm() for i in range(3))))


@pytest.mark.parametrize("seed", [27, 49, 52])
def test_max_pool_ties_on_clamped_inputs_make_one_region_per_code(seed):
    # hardtanh clamps several pooled inputs to the same value on whole regions: an exact tie
    # that interpolated vertex values only approximate; each cell must still be one region
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(2, 8), nn.Hardtanh(-0.5, 0.5), nn.Unflatten(1, (1, 8)),
                        nn.MaxPool1d(4), nn.Flatten(), nn.Linear(2, 1)).double()
    slc = maxaffine.Slice.box((-3, 3, -3, 3))
    part = maxaffine.partition_slice(net, slc, progress=False)
    flat = maxaffine.Codes(part.codes).flat().numpy()
    assert len(np.unique(flat, axis=0)) == part.n_regions
    n, area = oracle_regions(net, slc)
    assert part.n_regions == n and abs(area / slc.area - 1) < 1e-9
    part.verify(1000, seed=seed)


def test_max_pool_near_tie_of_two_inputs_keeps_its_thin_cell():
    # pool inputs 0.5x, 0.5x + 1e-9 (x - y) and 0.5x - 5: the second beats the first only on
    # the strip 0 < x - y < 1e-3, while the third sets a much larger difference scale; the
    # tie tolerance must be that of the pair (1, 2), so the strip stays its own region
    d = torch.float64
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3), nn.Unflatten(1, (1, 3)),
                        nn.MaxPool1d(3), nn.Flatten(), nn.Linear(1, 1)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -1], [1, 0], [0, 1], [0, 0]], dtype=d))
        net[0].bias.copy_(torch.tensor([-1e-3, 10, 10, 10], dtype=d))
        net[2].weight.copy_(torch.tensor([[0, 0.5, 0, -0.5], [0, 0.5 + 1e-9, -1e-9, -0.5],
                                          [0, 0.5, 0, -1.0]], dtype=d))
        net[2].bias.zero_()
    slc = maxaffine.Slice.box((-1, 1, -1, 1))
    part = maxaffine.partition_slice(net, slc, progress=False)
    # the ReLU line x - y = 1e-3 and the pool line x = y (where the second input overtakes
    # the first; the third never wins) are parallel: 3 strips (the region-walking oracle's
    # qhull cannot place a point strictly inside a strip this thin)
    assert part.n_regions == 3
    assert abs(part.areas.sum() / slc.area - 1) < 1e-9
    part.verify(20000)  # independent forward pass: every sample's code is a region's
