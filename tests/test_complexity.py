"""Local complexity and Hessian complexity against hand computations."""

import numpy as np
import pytest
import torch
from torch import nn

import maxaffine
from maxaffine.complexity import _cross_polytope, hessian_complexity, local_complexity
from maxaffine.errors import InputError


def _mlp(seed=0, widths=(3, 7, 6, 2)):
    torch.manual_seed(seed)
    layers = []
    for i in range(len(widths) - 1):
        layers += [nn.Linear(widths[i], widths[i + 1]), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double()


def _numpy_params(net):
    return [(m.weight.detach().numpy(), m.bias.detach().numpy()) for m in net if isinstance(m, nn.Linear)]


def test_cross_polytope_vertices_are_orthonormal_directions():
    x = torch.randn(3, 5, dtype=torch.float64)
    V = _cross_polytope(x, 0.3, 4, torch.Generator().manual_seed(0))
    assert V.shape == (3, 8, 5)
    v = V[:, :4] - x[:, None]
    torch.testing.assert_close(V[:, 4:] - x[:, None], -v)
    gram = v @ v.transpose(1, 2)
    torch.testing.assert_close(gram, 0.09 * torch.eye(4, dtype=torch.float64).expand(3, 4, 4))


def test_local_complexity_matches_per_sample_numpy_count():
    net = _mlp()
    params = _numpy_params(net)
    x = torch.randn(6, 3, dtype=torch.float64)
    lc = local_complexity(net, x, radius=0.7, n_vertices=6, seed=3, per_layer=True)
    # oracle: same vertices (same generator draw), explicit layer-by-layer numpy forward
    V = _cross_polytope(x, 0.7, 3, torch.Generator().manual_seed(3)).numpy()
    expect_total, expect_layers = [], []
    for n in range(6):
        h, per = V[n], []
        for i, (W, b) in enumerate(params):
            z = h @ W.T + b
            sign = z > 0
            per.append(int((sign != sign[:1]).any(0).sum()))
            h = np.maximum(z, 0)
        expect_total.append(sum(per))
        expect_layers.append(per)
    assert lc.total.tolist() == expect_total
    got = np.stack([t.numpy() for t in lc.layers.values()], 1)
    np.testing.assert_array_equal(got, np.array(expect_layers))
    assert list(lc.layers)[-1] == "output"


def test_local_complexity_limits():
    net = _mlp(widths=(3, 20, 20, 4))
    x = torch.randn(10, 3, dtype=torch.float64)
    tiny = local_complexity(net, x, radius=1e-9, n_vertices=6, seed=0)
    assert tiny.total.sum() == 0  # generic points are 1e-9 away from no boundary
    big = local_complexity(net, x, radius=1e4, n_vertices=6, seed=0, per_layer=True)
    # a huge cross-polytope is cut by every first-layer hyperplane
    assert big.layers[maxaffine.trace(net, x).piecewise[0]].eq(20).all()
    assert big.mean() > tiny.mean()


def test_local_complexity_chunking_and_errors():
    net = _mlp()
    x = torch.randn(5, 3, dtype=torch.float64)
    a = local_complexity(net, x, radius=0.5, n_vertices=4, seed=1, chunk_size=2)
    # chunks draw directions in sequence from one generator: replay the draws chunk by chunk
    gen = torch.Generator().manual_seed(1)
    V = torch.cat([_cross_polytope(x[i:i + 2], 0.5, 2, gen) for i in range(0, 5, 2)])
    h, total = V, torch.zeros(5, dtype=torch.long)
    for m in net:
        h = m(h)
        if isinstance(m, nn.Linear):
            s = h > 0
            total += (s != s[:, :1]).any(1).sum(1)
    assert a.total.tolist() == total.tolist()
    with pytest.raises(InputError, match="even"):
        local_complexity(net, x, radius=0.5, n_vertices=5)
    with pytest.raises(InputError, match="dimension"):
        local_complexity(net, x, radius=0.5, n_vertices=8)
    with pytest.raises(InputError, match="radius"):
        local_complexity(net, x, radius=0.0, n_vertices=4)


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
