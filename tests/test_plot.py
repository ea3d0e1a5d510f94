"""Smoke and count tests of maxaffine.plot under the Agg backend.

Oracles are independent of the drawing code: Euler's formula for the number of edges of a
planar subdivision, the model's own forward pass (classes, outputs), torch.func.jacrev
(slopes), the closed-form first-layer power diagram of a ReLU layer (μ = Wᵀq,
rad = ||μ||² + 2bᵀq) and the input data (anchor images).
"""

import doctest
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import maxaffine  # noqa: E402
from maxaffine import plot  # noqa: E402
from maxaffine.datasets import digits  # noqa: E402
from maxaffine.errors import InputError  # noqa: E402


def _mlp(sizes, seed):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double().eval()


def _by_gid(ax, gid):
    found = [a for a in ax.get_children() if a.get_gid() == gid]
    assert len(found) == 1, f"expected one artist {gid!r}, found {len(found)}"
    return found[0]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def net2d():
    return _mlp([2, 12, 12, 3], seed=7)  # all three classes meet in the box


@pytest.fixture(scope="module")
def part2d(net2d):
    return maxaffine.partition_slice(net2d, maxaffine.Slice.box((-2, 2, -2, 2)), progress=False)


@pytest.fixture(scope="module")
def digit_data():
    data = digits(image=False, dtype=torch.float64)
    X, y = data.X_test, data.y_test
    picks = [int(torch.nonzero(y == c)[0]) for c in (0, 3, 8)]
    return X[picks]


def _euler_edges(part):
    """Edges inside the domain, from Euler's formula and the vertices on the outline."""
    # connected planar subdivision of a convex polygon: V - E + (R + 1) = 2; the outline is
    # a cycle through the vertices that lie on it, with as many edges as vertices
    n_all = len(part.vertices) + part.n_regions - 1
    dom = part.slice.domain
    a, b = dom, np.roll(dom, -1, axis=0)
    rel = part.vertices[:, None, :] - a[None]
    e = (b - a)[None]
    cross = np.abs(e[..., 0] * rel[..., 1] - e[..., 1] * rel[..., 0]) / np.linalg.norm(e, axis=-1)
    on = (cross < 1e-9 * part.slice.scale).any(1)
    return n_all - int(on.sum())


# -- import hygiene ------------------------------------------------------------------------
def test_import_maxaffine_does_not_import_matplotlib():
    code = ("import sys, maxaffine; maxaffine.partition_slice; maxaffine.Slice; "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_docstring_examples():
    res = doctest.testmod(plot, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.attempted >= 10 and res.failed == 0


# -- plot_partition -----------------------------------------------------------------------
@pytest.mark.parametrize("color_by", ["code", "tile", "layer_code", "class", "output", "slope",
                                      None])
def test_partition_counts_for_every_colouring(part2d, color_by):
    ax = plot.plot_partition(part2d, color_by=color_by, colorbar=True)
    regions = _by_gid(ax, "regions")
    if color_by == "output":  # Gouraud: a fan triangulation of every region
        assert len(regions.get_paths()) == int((part2d.vertex_counts - 2).sum())
        assert regions.get_array().shape == (len(part2d.vertices),)
    else:
        assert len(regions.get_paths()) == part2d.n_regions
    assert len(_by_gid(ax, "edges").get_segments()) == _euler_edges(part2d)
    db = _by_gid(ax, "decision-boundary")
    assert len(db.get_segments()) == len(part2d.decision_boundary().segments) > 0
    assert ax.get_xlim()[0] < -2 < 2 < ax.get_xlim()[1]


def test_partition_respects_given_ax(part2d):
    fig, axes = plt.subplots(1, 2)
    n_figs = len(plt.get_fignums())
    out = plot.plot_partition(part2d, ax=axes[1])
    assert out is axes[1] and len(plt.get_fignums()) == n_figs
    assert not axes[0].collections and axes[1].collections


def test_class_colours_follow_the_model(net2d, part2d):
    ax = plot.plot_partition(part2d, color_by="class", edges=False, boundary=False)
    face = _by_gid(ax, "regions").get_facecolors()[:, :3]
    pal = plot.class_colors(3)[:, :3]
    # a tint is c + (1 - c) a, so 1 - tint is parallel to 1 - c
    d = (1 - face) / np.linalg.norm(1 - face, axis=1, keepdims=True)
    p = (1 - pal) / np.linalg.norm(1 - pal, axis=1, keepdims=True)
    drawn = (d @ p.T).argmax(1)
    with torch.no_grad():
        truth = net2d(part2d.slice.points(part2d.interior)).argmax(1).numpy()
    np.testing.assert_array_equal(drawn, truth)
    labels = [t.get_text() for t in ax.get_legend().texts]
    assert labels == [f"class {c}" for c in np.unique(truth)]


def test_code_colours_are_deterministic_and_distinct(part2d):
    a = _by_gid(plot.plot_partition(part2d), "regions").get_facecolors()
    b = _by_gid(plot.plot_partition(part2d), "regions").get_facecolors()
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(np.round(a, 12), axis=0)) == part2d.n_regions
    # equal codes, equal colours; independent of row order
    flat = maxaffine.Codes(part2d.codes).flat().numpy()
    perm = np.random.default_rng(0).permutation(len(flat))
    np.testing.assert_array_equal(plot.code_colors(flat)[perm], plot.code_colors(flat[perm]))


def test_gouraud_output_is_the_network_at_the_vertices():
    net = _mlp([2, 10, 10, 1], seed=5)
    part = maxaffine.partition_slice(net, maxaffine.Slice.box((-1.5, 1.5, -1, 1)), progress=False)
    ax = plot.plot_partition(part, color_by="output")
    mesh = _by_gid(ax, "regions")
    with torch.no_grad():
        f = net(torch.from_numpy(part.vertices)).numpy()[:, 0]
    np.testing.assert_allclose(mesh.get_array(), f, rtol=1e-9, atol=1e-9)
    tri = plot._fan_triangles(part)
    P = part.vertices[tri]
    e1, e2 = P[:, 1] - P[:, 0], P[:, 2] - P[:, 0]
    area = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).sum()
    assert area == pytest.approx(3.0 * 2.0, rel=1e-12)  # the triangles tile the box
    assert len(_by_gid(ax, "decision-boundary").get_segments()) == \
        len(part.decision_boundary().segments)  # level set f = 0


def test_slope_colours_are_gradient_norms(net2d, part2d):
    ax = plot.plot_partition(part2d, color_by="slope")
    vals = _by_gid(ax, "regions").get_array()
    x = torch.from_numpy(part2d.interior)
    # (R, C, 2): the slice is the coordinate plane
    J = torch.vmap(torch.func.jacrev(net2d))(x).detach().numpy()
    np.testing.assert_allclose(vals, np.linalg.norm(J.reshape(len(J), -1), axis=1), rtol=1e-9)


def test_edges_by_layer_and_legend(part2d):
    ax = plot.plot_partition(part2d, color_by=None)
    lc = _by_gid(ax, "edges")
    colours = np.unique(np.round(lc.get_colors()[:, :3], 6), axis=0)
    assert len(colours) == 2  # two layers
    labels = [t.get_text() for t in ax.get_legend().texts]
    assert labels == ["layer 1", "layer 2", "decision boundary"]
    ax = plot.plot_partition(part2d, edge_color_by_layer=False, edge_color="red", legend=False)
    assert ax.get_legend() is None


def test_points_and_errors(part2d):
    X = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    ax = plot.plot_partition(part2d, points=X, point_labels=torch.arange(50) % 3)
    np.testing.assert_allclose(_by_gid(ax, "points").get_offsets(), X.numpy())
    with pytest.raises(InputError, match="color_by"):
        plot.plot_partition(part2d, color_by="nonsense")
    layer1 = part2d.upto(0)
    with pytest.raises(InputError, match="output map"):
        plot.plot_partition(layer1, color_by="class")
    with pytest.raises(InputError, match="output map"):
        plot.plot_partition(layer1, boundary=True)
    ax = plot.plot_partition(layer1)  # boundary=None: drawn only when available
    assert not [a for a in ax.get_children() if a.get_gid() == "decision-boundary"]
    with pytest.raises(InputError, match="anchor"):
        plot.plot_anchor_images(part2d)


def test_thousands_of_regions_draw_as_one_collection():
    # drawing time is measured in benchmarks/plot.py, not asserted here
    net = _mlp([2, 48, 48, 1], seed=0)
    part = maxaffine.partition_slice(net, maxaffine.Slice.box((-2, 2, -2, 2)), progress=False)
    assert part.n_regions > 2000
    ax = plot.plot_partition(part)
    ax.figure.canvas.draw()
    assert len(_by_gid(ax, "regions").get_paths()) == part.n_regions


# -- subdivision, boundary, path ----------------------------------------------------------
def test_subdivision_panels(part2d):
    axes = plot.plot_subdivision(part2d, boundary=True)
    assert len(axes) == len(part2d.layers) == 2
    for i, ax in enumerate(axes):
        sub = part2d.upto(i)
        assert len(_by_gid(ax, "regions").get_paths()) == sub.n_regions
        assert len(_by_gid(ax, "edges").get_segments()) == _euler_edges(sub)
        assert ax.get_xlim() == axes[0].get_xlim() and ax.get_ylim() == axes[0].get_ylim()
    assert part2d.upto(0).n_regions < part2d.n_regions
    assert [a.get_gid() for a in axes[1].get_children()].count("decision-boundary") == 1
    assert [a.get_gid() for a in axes[0].get_children()].count("decision-boundary") == 0
    fig, given = plt.subplots(1, 3)
    out = plot.plot_subdivision(part2d, layers=["3"], axes=given, color_by="code")
    assert out[0] is given[0] and len(out) == 1
    assert len(_by_gid(given[0], "regions").get_paths()) == part2d.n_regions
    with pytest.raises(InputError):
        plot.plot_subdivision(part2d, layers=[5])


def test_decision_boundary_by_pair(part2d):
    fig, ax = plt.subplots()
    out = plot.plot_decision_boundary(part2d, ax=ax, by_pair=True)
    assert out is ax
    db = part2d.decision_boundary()
    lc = _by_gid(ax, "decision-boundary")
    assert len(lc.get_segments()) == len(db.segments)
    pal = plot.class_colors(3)
    expected = 0.5 * (pal[db.classes[:, 0]] + pal[db.classes[:, 1]])
    np.testing.assert_allclose(lc.get_colors(), expected)


def test_path_plot(net2d):
    pts = torch.tensor([[-2.0, -1.0], [2.0, 0.5], [0.0, 2.0]], dtype=torch.float64)
    path = maxaffine.partition_path(net2d, pts)
    ax = plot.plot_path(path)
    assert len(_by_gid(ax, "path-pieces").get_paths()) == path.n_pieces
    assert len(_by_gid(ax, "path-breakpoints").get_segments()) == len(path.breakpoints)
    lines = _by_gid(ax, "path-outputs").get_segments()
    assert len(lines) == 3
    with torch.no_grad():  # the drawn polylines are the network's outputs at the knots
        y = net2d(path.inputs(path.knots)).numpy()
    for c in range(3):
        np.testing.assert_allclose(lines[c][:, 1], y[:, c], rtol=1e-9, atol=1e-12)
    assert lines[0][-1, 0] == pytest.approx(path.length)
    fig, given = plt.subplots()
    assert plot.plot_path(path, ax=given, x="tau", outputs=[1]) is given
    assert len(_by_gid(given, "path-outputs").get_segments()) == 1
    with pytest.raises(InputError):
        plot.plot_path(path, outputs=[7])


# -- image inputs -------------------------------------------------------------------------
def test_digits_mlp_slice_with_anchor_images(digit_data):
    net = _mlp([64, 24, 24, 10], seed=1)
    x1, x2, x3 = digit_data
    part = maxaffine.partition_slice(net, maxaffine.Slice.through(x1, x2, x3, margin=0.2),
                                     progress=False)
    ax = plot.plot_partition(part, color_by="class")
    assert len(_by_gid(ax, "regions").get_paths()) == part.n_regions
    assert len(_by_gid(ax, "edges").get_segments()) == _euler_edges(part)
    assert len(_by_gid(ax, "anchors").get_offsets()) == 3
    before = ax.get_xlim()
    out = plot.plot_anchor_images(part, ax=ax, labels=["0", "3", "8"])
    assert out is ax
    ims = [a for a in ax.images if a.get_gid() == "anchor-image"]
    assert len(ims) == 3
    for im, x in zip(ims, digit_data):  # the slice reproduces the anchor digits
        np.testing.assert_allclose(im.get_array(), x.numpy().reshape(8, 8), atol=1e-12)
    assert ax.get_xlim()[0] <= before[0] and ax.get_xlim()[1] >= before[1]


def test_anchor_images_28x28():
    rng = np.random.default_rng(0)
    X = rng.random((3, 784))
    slc = maxaffine.Slice.through(*X)
    ax = plot.plot_anchor_images(slc)
    ims = [a for a in ax.images if a.get_gid() == "anchor-image"]
    assert [im.get_array().shape for im in ims] == [(28, 28)] * 3
    ax = plot.plot_anchor_images(slc, X[::-1].copy(), shape=(28, 28))
    np.testing.assert_allclose(ax.images[0].get_array(), X[2].reshape(28, 28))
    with pytest.raises(InputError):
        plot.plot_anchor_images(maxaffine.Slice.through(*rng.random((3, 40))))


def test_small_cnn_slice(digit_data):
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(48, 10)).double().eval()
    imgs = digit_data.reshape(3, 1, 8, 8)
    part = maxaffine.partition_slice(net, maxaffine.Slice.through(*imgs, margin=0.1),
                                     progress=False)
    ax = plot.plot_partition(part, color_by="class")
    plot.plot_anchor_images(part, ax=ax)
    assert len(_by_gid(ax, "regions").get_paths()) == part.n_regions > 1
    assert len(_by_gid(ax, "edges").get_segments()) == _euler_edges(part)
    assert [im.get_array().shape for im in ax.images] == [(8, 8)] * 3
    axes = plot.plot_subdivision(part)
    assert [len(_by_gid(a, "regions").get_paths()) for a in axes] == \
        [part.upto(i).n_regions for i in range(len(part.layers))]


# -- templates ----------------------------------------------------------------------------
def test_templates_images_lines_and_given_axes(digit_data):
    net = _mlp([64, 16, 10], seed=0)
    T = maxaffine.templates(net, digit_data[:1])[0]  # (10, 64)
    axes = plot.plot_templates(T)
    assert len(axes) == 10
    for c, ax in enumerate(axes):
        im = ax.images[0]
        np.testing.assert_allclose(im.get_array(), T[c].numpy().reshape(8, 8))
        lo, hi = im.get_clim()
        assert lo == -hi == -float(T.abs().max())
    axes = plot.plot_templates(T, share_scale=False, colorbar=False)
    for c, ax in enumerate(axes):
        assert ax.images[0].get_clim()[1] == pytest.approx(float(T[c].abs().max()))
    fig, given = plt.subplots(2, 2)
    sig = np.random.default_rng(0).standard_normal((3, 40))  # 1D signals: curves
    out = plot.plot_templates(sig, axes=given)
    assert out[0] is given[0, 0] and len(out) == 3
    np.testing.assert_allclose(given[0, 1].lines[-1].get_ydata(), sig[1])
    with pytest.raises(InputError):
        plot.plot_templates(sig, axes=given[0])


# -- power diagrams -----------------------------------------------------------------------
def test_first_layer_power_diagram_matches_closed_form(net2d, part2d):
    ax = plot.plot_power_diagram(net2d, 0, part2d, circles=True)
    W = net2d[0].weight.detach().numpy()
    b = net2d[0].bias.detach().numpy()
    q = part2d.upto(0).codes["1"].numpy().astype(float)  # (R1, 12) codes of the cells
    q = np.unique(q, axis=0)
    mu = q @ W  # μ[q] = Wᵀq
    rad = (mu ** 2).sum(1) + 2 * q @ b
    got = _by_gid(ax, "power-centroids").get_offsets()
    key = lambda a: a[np.lexsort(np.round(a, 9).T[::-1])]  # noqa: E731
    np.testing.assert_allclose(key(np.asarray(got)), key(mu), atol=1e-10)
    circles = _by_gid(ax, "power-circles")
    np.testing.assert_allclose(np.sort(circles._widths * 2), np.sort(2 * np.sqrt(rad[rad > 0])),
                               rtol=1e-9)  # EllipseCollection stores half-widths
    # the cell of a point is its power-nearest centroid
    st = part2d.slice.sample(300, seed=1)
    pd = ((st[:, None, :] - mu[None]) ** 2).sum(-1) - rad[None]
    cell = q[pd.argmin(1)]
    with torch.no_grad():
        code = (net2d[0](torch.from_numpy(st)) > 0).numpy()
    np.testing.assert_array_equal(cell, code)


def test_power_diagram_modes():
    net = _mlp([2, 6, 6, 2], seed=4)
    ax = plot.plot_power_diagram(net, "3", (-2, 2, -2, 2))
    assert ax.get_title() == "power diagram of layer 2"
    n1 = len(_by_gid(ax, "power-centroids").get_offsets())
    assert n1 >= len(np.unique(maxaffine.partition_slice(
        net, maxaffine.Slice.box((-2, 2, -2, 2)), progress=False).codes["3"].numpy(), axis=0))
    g = np.stack(np.meshgrid(np.linspace(-2, 2, 30), np.linspace(-2, 2, 30)), -1).reshape(-1, 2)
    fig, given = plt.subplots()
    out = plot.plot_power_diagram(net, 0, g, ax=given)
    assert out is given and len(_by_gid(given, "regions").get_offsets()) == 900
    skew = maxaffine.Slice.box((-1, 1, -1, 1), origin=[0.0, 0.0], u=[1.0, 0.0], v=[1.0, 1.0])
    with pytest.raises(InputError, match="orthonormal"):
        plot.plot_power_diagram(net, 0, skew)
    with pytest.raises(InputError, match="piecewise"):
        plot.plot_power_diagram(net, "nope", (-1, 1, -1, 1))
