"""Local complexity and Hessian complexity against hand computations."""

import numpy as np
import pytest
import torch
from torch import nn

import maxaffine
from maxaffine.complexity import cross_polytope_directions, hessian_complexity, local_complexity
from maxaffine.errors import InputError


def _mlp(seed=0, widths=(3, 7, 6, 2)):
    torch.manual_seed(seed)
    layers = []
    for i in range(len(widths) - 1):
        layers += [nn.Linear(widths[i], widths[i + 1]), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double()


def _numpy_params(net):
    return [(m.weight.detach().numpy(), m.bias.detach().numpy()) for m in net if isinstance(m, nn.Linear)]


def _literal_count(layers, verts):
    """Oracle: run the vertices (V, ...) of one sample through ``layers`` one module at a time;
    count the units whose sign (input of a ReLU, or the output) or max-pool argmax is not
    constant over the vertices."""
    h, count = verts, 0
    for m in layers:
        if isinstance(m, nn.ReLU):
            s = h > 0
            count += int((s != s[:1]).any(0).sum())
        if isinstance(m, nn.MaxPool2d):
            _, idx = nn.functional.max_pool2d(h, m.kernel_size, m.stride, return_indices=True)
            count += int((idx != idx[:1]).any(0).sum())
        h = m(h)
    s = h > 0
    return count + int((s != s[:1]).any(0).sum())


def _oracle(layers, x, dirs):
    return [_literal_count(layers, torch.cat([x[n:n + 1] + dirs[n], x[n:n + 1] - dirs[n]]))
            for n in range(len(x))]


@pytest.mark.parametrize("directions", ["auto", "input"])
@pytest.mark.parametrize("widths,P", [((3, 7, 6, 2), 3), ((12, 5, 6, 2), 3), ((12, 10, 6, 2), 3),
                                      ((12, 5, 6, 2), 6)])
def test_cross_polytope_directions_are_orthonormal(widths, P, directions):
    # (12, 5): prefix row space of rank 5 < D, complement via the Bartlett factor (D - F ≥ P);
    # (12, 10): complement drawn as a Gaussian block (D - F < P); (3, 7): full input space
    net = _mlp(widths=widths)
    x = torch.randn(5, widths[0], dtype=torch.float64)
    d = cross_polytope_directions(net, x, radius=0.3, n_vertices=2 * P, seed=2, directions=directions)
    assert d.shape == (5, P, widths[0])
    # orthonormal up to rounding (Cholesky QR of well-conditioned Gaussian matrices)
    torch.testing.assert_close(d @ d.mT, 0.09 * torch.eye(P, dtype=torch.float64).expand(5, P, P),
                               rtol=0, atol=1e-14)


@pytest.mark.parametrize("directions", ["auto", "input"])
@pytest.mark.parametrize("widths", [(3, 7, 6, 2), (12, 5, 6, 2), (12, 10, 6, 2)])
def test_local_complexity_matches_per_sample_numpy_count(widths, directions):
    net = _mlp(widths=widths)
    params = _numpy_params(net)
    x = torch.randn(6, widths[0], dtype=torch.float64)
    kw = dict(radius=0.7, n_vertices=6, seed=3, directions=directions)
    lc = local_complexity(net, x, per_layer=True, **kw)
    # oracle: same vertices, explicit layer-by-layer numpy forward
    d = cross_polytope_directions(net, x, **kw).numpy()
    V = np.concatenate([x.numpy()[:, None] + d, x.numpy()[:, None] - d], 1)
    expect_total, expect_layers = [], []
    for n in range(6):
        h, per = V[n], []
        for W, b in params:
            z = h @ W.T + b
            sign = z > 0
            per.append(int((sign != sign[:1]).any(0).sum()))
            h = np.maximum(z, 0)
        expect_total.append(sum(per))
        expect_layers.append(per)
    assert lc.total.tolist() == expect_total
    assert lc.total.sum() > 0  # the radius is large enough for the check to bite
    got = np.stack([t.numpy() for t in lc.layers.values()], 1)
    np.testing.assert_array_equal(got, np.array(expect_layers))
    assert list(lc.layers)[-1] == "output"


class _TwoBranch(nn.Module):
    """Affine prefix of several ops: relu(a(x) + b(x)), then a head."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(20, 6), nn.Linear(20, 6), nn.Linear(6, 3)

    def forward(self, x):
        return self.head(torch.relu(self.a(x) + 0.5 * self.b(x)))


def _conv_net():
    torch.manual_seed(4)
    bn = nn.BatchNorm2d(3)
    bn.running_mean.uniform_(-0.2, 0.2)
    bn.running_var.uniform_(0.5, 2.0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), bn, nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(3 * 3 * 3, 4)).double().eval()


def _deep_prefix():
    torch.manual_seed(5)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 9), nn.Linear(9, 7), nn.ReLU(),
                         nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 2)).double()


@pytest.mark.parametrize("directions", ["auto", "input"])
def test_local_complexity_affine_prefix_of_several_ops(directions):
    # conv + batch norm before the first ReLU (prefix wider than the input), max-pooling
    # counted by its argmax; and a prefix of two linear maps on a flattened image (rank 7 < 16)
    for net, shape, _layers in [(_conv_net(), (1, 8, 8), None), (_deep_prefix(), (1, 4, 4), None)]:
        x = torch.randn(5, *shape, dtype=torch.float64)
        kw = dict(radius=0.8, n_vertices=8, seed=7, directions=directions)
        lc = local_complexity(net, x, **kw)
        d = cross_polytope_directions(net, x, **kw)
        assert d.shape == (5, 4) + shape
        expect = _oracle(list(net), x, d)
        assert lc.total.tolist() == expect and sum(expect) > 0
    net = _TwoBranch().double()
    x = torch.randn(4, 20, dtype=torch.float64)
    kw = dict(radius=1.0, n_vertices=10, seed=8, directions=directions)
    lc = local_complexity(net, x, per_layer=True, **kw)
    d = cross_polytope_directions(net, x, **kw)
    for n in range(4):
        verts = torch.cat([x[n:n + 1] + d[n], x[n:n + 1] - d[n]])
        u = net.a(verts) + 0.5 * net.b(verts)
        y = net.head(torch.relu(u))
        expect = [int(((s := z > 0) != s[:1]).any(0).sum()) for z in (u, y)]
        assert [int(t[n]) for t in lc.layers.values()] == expect


def test_row_space_sampling_has_the_law_of_haar_directions():
    # E|W v|² = ||W||_F² / D for v uniform on the sphere; the split between the row space of
    # W (rank 5) and its complement comes from the Bartlett factor's chi-square degrees of
    # freedom, so a wrong law shows up here. Tolerance: 5 standard errors of the mean.
    net = _mlp(widths=(12, 5, 6, 2))
    W = net[0].weight.detach()
    x = torch.zeros(3000, 12, dtype=torch.float64)
    d = cross_polytope_directions(net, x, radius=1.0, n_vertices=8, seed=11, directions="auto")
    e = (d @ W.T).pow(2).sum(-1).flatten()
    se = float(e.std()) / len(e) ** 0.5
    assert abs(float(e.mean()) - float(W.pow(2).sum()) / 12) < 5 * se


def test_local_complexity_limits():
    net = _mlp(widths=(3, 20, 20, 4))
    x = torch.randn(10, 3, dtype=torch.float64)
    tiny = local_complexity(net, x, radius=1e-9, n_vertices=6, seed=0)
    assert tiny.total.sum() == 0  # generic points are 1e-9 away from no boundary
    big = local_complexity(net, x, radius=1e4, n_vertices=6, seed=0, per_layer=True)
    # a huge cross-polytope is cut by every first-layer hyperplane
    assert big.layers[maxaffine.trace(net, x).piecewise[0]].eq(20).all()
    assert big.mean() > tiny.mean()


@pytest.mark.parametrize("widths", [(3, 7, 6, 2), (12, 5, 6, 2)])
def test_local_complexity_chunking_seeds_and_errors(widths):
    net = _mlp(widths=widths)
    x = torch.randn(5, widths[0], dtype=torch.float64)
    kw = dict(radius=0.5, n_vertices=4, seed=1)
    a = local_complexity(net, x, chunk_size=2, per_layer=True, **kw)
    b = local_complexity(net, x, chunk_size=5, per_layer=True, **kw)
    # each kind of draw has its own stream, drawn sample after sample: chunking changes nothing
    assert a.total.tolist() == b.total.tolist()
    assert all(torch.equal(a.layers[k], b.layers[k]) for k in a.layers)
    torch.testing.assert_close(cross_polytope_directions(net, x, chunk_size=2, **kw),
                               cross_polytope_directions(net, x, chunk_size=3, **kw), rtol=0, atol=0)
    assert a.total.tolist() == _oracle(list(net), x, cross_polytope_directions(net, x, **kw))
    torch.manual_seed(0)
    c = local_complexity(net, x, radius=0.5, n_vertices=4)
    torch.manual_seed(0)
    assert torch.equal(c.total, local_complexity(net, x, radius=0.5, n_vertices=4).total)
    with pytest.raises(InputError, match="even"):
        local_complexity(net, x, radius=0.5, n_vertices=5)
    with pytest.raises(InputError, match="dimension"):
        local_complexity(net, x, radius=0.5, n_vertices=2 * widths[0] + 2)
    with pytest.raises(InputError, match="radius"):
        local_complexity(net, x, radius=0.0, n_vertices=4)
    with pytest.raises(InputError, match="seed"):
        local_complexity(net, x, radius=0.5, n_vertices=4, seed=-1)
    with pytest.raises(InputError, match="directions"):
        local_complexity(net, x, radius=0.5, n_vertices=4, directions="shared")


def _slopes(params, X):
    """Closed-form A[x] for a ReLU MLP: W_L D_{L-1} W_{L-1} ... D_1 W_1, per sample."""
    out = []
    for x in X:
        A, h = np.eye(len(x)), x
        for i, (W, b) in enumerate(params):
            z = h @ W.T + b
            A = W @ A
            if i < len(params) - 1:
                A = (z > 0)[:, None] * A
                h = np.maximum(z, 0)
        out.append(A)
    return np.stack(out)


def test_hessian_complexity_augmentation_formula():
    net = _mlp(widths=(3, 8, 8, 4))
    params = _numpy_params(net)
    x = torch.randn(9, 3, dtype=torch.float64)
    xa = x + 0.5 * torch.randn(9, 3, dtype=torch.float64)
    h = hessian_complexity(net, x, x_aug=xa)
    d = _slopes(params, x.numpy()) - _slopes(params, xa.numpy())
    expect = np.sqrt((d ** 2).sum((1, 2)) + 1e-4)
    np.testing.assert_allclose(h.per_sample.numpy(), expect, rtol=1e-12)
    assert h.value == pytest.approx(expect.mean(), rel=1e-12)
    assert h.estimator == "augmentation"


def test_hessian_complexity_perturbation_formula():
    net = _mlp(widths=(3, 8, 8, 4))
    params = _numpy_params(net)
    x = torch.randn(9, 3, dtype=torch.float64)
    h = hessian_complexity(net, x, sigma=0.3, seed=5)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    d = _slopes(params, x.numpy()) - _slopes(params, (x + 0.3 * noise).numpy())
    expect = np.linalg.norm(d, axis=2).sum(1)
    np.testing.assert_allclose(h.per_sample.numpy(), expect, rtol=1e-12, atol=1e-14)
    assert h.estimator == "perturbation"
    # inside a region the slope does not change: tiny perturbations give exactly zero
    assert hessian_complexity(net, x, sigma=1e-12, seed=0).value == 0.0
