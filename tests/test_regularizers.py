"""Orthogonality and Hessian penalties: exact forms vs formulas, gradients, unbiasedness."""

import numpy as np
import pytest
import torch
from torch import nn

import maxaffine.regularizers as R
from maxaffine.errors import InputError
from maxaffine.regularizers import hessian_penalty, orthogonality_penalty


def _net(seed=0, D=3, H=8, C=4):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(D, H), nn.ReLU(), nn.Linear(H, C)).double()


def _slopes(net, X):
    W1, b1 = net[0].weight.detach().numpy(), net[0].bias.detach().numpy()
    W2 = net[2].weight.detach().numpy()
    masks = (X @ W1.T + b1) > 0
    return np.einsum("ch,nh,hd->ncd", W2, masks, W1)  # A[x] = W2 diag(mask) W1


def _orth_formula(A):
    G = np.einsum("ncd,nkd->nck", A, A)
    C = A.shape[1]
    off = (G ** 2).sum((1, 2)) - (np.diagonal(G, axis1=1, axis2=2) ** 2).sum(1)
    return off.mean() / C ** 2


def test_exact_orthogonality_equals_formula():
    net = _net()
    X = np.random.default_rng(0).standard_normal((10, 3))
    p = orthogonality_penalty(net, torch.tensor(X), estimator="exact")
    assert p.item() == pytest.approx(_orth_formula(_slopes(net, X)), rel=1e-12)


def test_exact_hessian_equals_formula():
    net = _net()
    rng = np.random.default_rng(1)
    X, Xa = rng.standard_normal((10, 3)), rng.standard_normal((10, 3))
    d = _slopes(net, X) - _slopes(net, Xa)
    p = hessian_penalty(net, torch.tensor(X), torch.tensor(Xa), estimator="exact")
    assert p.item() == pytest.approx(np.sqrt((d ** 2).sum((1, 2)) + 1e-4).mean(), rel=1e-12)
    q = hessian_penalty(net, torch.tensor(X), torch.tensor(Xa), estimator="exact", squared=True)
    assert q.item() == pytest.approx((d ** 2).sum((1, 2)).mean(), rel=1e-12)


@pytest.mark.parametrize("which", ["orth", "hess"])
def test_exact_penalty_gradient_matches_finite_differences(which):
    net = _net()
    rng = np.random.default_rng(2)
    X, Xa = torch.tensor(rng.standard_normal((6, 3))), torch.tensor(rng.standard_normal((6, 3)))

    def value():
        if which == "orth":
            return orthogonality_penalty(net, X, estimator="exact")
        return hessian_penalty(net, X, Xa, estimator="exact")

    net.zero_grad()
    value().backward()
    # the penalty depends on W2 and W1 polynomially (masks fixed for tiny steps): central
    # differences with h = 1e-6 are exact up to ~1e-9 relative
    for param in (net[0].weight, net[2].weight):
        g = param.grad.clone()
        fd = torch.zeros_like(param)
        for idx in np.ndindex(*param.shape):
            with torch.no_grad():
                param[idx] += 1e-6
                up = value().item()
                param[idx] -= 2e-6
                down = value().item()
                param[idx] += 1e-6
            fd[idx] = (up - down) / 2e-6
        torch.testing.assert_close(g, fd, rtol=1e-5, atol=1e-8)


def _draws(fn, n_batches=30):
    """Independent estimates: every row of a tiled batch gets its own signs."""
    return np.array([fn(torch.Generator().manual_seed(i)).item() for i in range(n_batches)])


def test_random_orthogonality_is_unbiased():
    net = _net(C=6)
    X = torch.randn(1, 3, dtype=torch.float64)
    exact = orthogonality_penalty(net, X, estimator="exact").item()
    tile = X.repeat(200, 1)  # 200 independent single-sample estimates per call
    for n_probes in (1, 2):
        v = _draws(lambda g: orthogonality_penalty(net, tile, n_probes=n_probes, generator=g))
        se = v.std(ddof=1) / np.sqrt(len(v))
        assert abs(v.mean() - exact) < 3 * se, (n_probes, v.mean(), exact, se)
    # relative std of a single-sample, single-probe estimate (documented in the report)
    single = np.array([orthogonality_penalty(net, X, n_probes=1, generator=torch.Generator()
                                             .manual_seed(i)).item() for i in range(400)])
    assert 0.1 < single.std() / exact < 10


def test_random_hessian_squared_is_unbiased_and_sqrt_biased_low():
    net = _net(C=6)
    rng = np.random.default_rng(3)
    X, Xa = torch.tensor(rng.standard_normal((1, 3))), torch.tensor(rng.standard_normal((1, 3)))
    exact_sq = hessian_penalty(net, X, Xa, estimator="exact", squared=True).item()
    assert exact_sq > 0
    T, Ta = X.repeat(200, 1), Xa.repeat(200, 1)
    v = _draws(lambda g: hessian_penalty(net, T, Ta, squared=True, generator=g))
    se = v.std(ddof=1) / np.sqrt(len(v))
    assert abs(v.mean() - exact_sq) < 3 * se
    exact = hessian_penalty(net, X, Xa, estimator="exact").item()
    s = _draws(lambda g: hessian_penalty(net, T, Ta, generator=g))
    assert s.mean() <= exact + 3 * s.std(ddof=1) / np.sqrt(len(s))  # Jensen: biased low


def test_penalties_train_through_float32_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(64, 5))
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 5, (8,))
    for pen in (lambda: orthogonality_penalty(net, x), lambda: orthogonality_penalty(net, x, estimator="exact"),
                lambda: hessian_penalty(net, x, x.roll(1, -1)),
                lambda: hessian_penalty(net, x, x.roll(1, -1), estimator="exact")):
        net.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y) + pen()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
        assert net[0].weight.grad.abs().sum() > 0


def test_penalty_errors():
    net = _net()
    x = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(InputError, match="estimator"):
        orthogonality_penalty(net, x, estimator="bogus")
    with pytest.raises(InputError, match="n_probes"):
        orthogonality_penalty(net, x, n_probes=0)
    with pytest.raises(InputError, match="shape"):
        hessian_penalty(net, x, x[:2])


def test_max_samples_is_unbiased_for_the_batch_mean():
    net = _net()
    rng = np.random.default_rng(4)
    X, Xa = torch.tensor(rng.standard_normal((6, 3))), torch.tensor(rng.standard_normal((6, 3)))
    full = orthogonality_penalty(net, X, estimator="exact").item()
    # averaging over all C(6,2)-subsets is the same as averaging every sample equally: use
    # many random subsets and compare within 3 standard errors
    v = np.array([orthogonality_penalty(net, X, estimator="exact", max_samples=2,
                                        generator=torch.Generator().manual_seed(i)).item()
                  for i in range(300)])
    assert abs(v.mean() - full) < 3 * v.std(ddof=1) / np.sqrt(len(v))
    h = hessian_penalty(net, X, Xa, estimator="exact", max_samples=6).item()
    assert h == pytest.approx(hessian_penalty(net, X, Xa, estimator="exact").item())
    with pytest.raises(InputError, match="max_samples"):
        hessian_penalty(net, X, Xa, max_samples=0)


def _conv_net(seed=0, bn=False):
    torch.manual_seed(seed)
    layers = [nn.Conv2d(1, 3, 3, padding=1)] + ([nn.BatchNorm2d(3)] if bn else []) + [
        nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 4, 3, padding=1), nn.LeakyReLU(0.1),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 5)]
    return nn.Sequential(*layers).double()


def _tiled_rows(net, x, cot):
    """Oracle: x tiled once per cotangent set, one forward and one reverse pass on the tiles."""
    m, B = cot.shape[:2]
    xr = x.repeat(m, *([1] * (x.dim() - 1))).requires_grad_(True)
    (g,) = torch.autograd.grad(net(xr), xr, grad_outputs=cot.reshape(m * B, -1), create_graph=True)
    return g.reshape(m, B, -1)


def _grads(net, value):
    net.zero_grad()
    value.backward()
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                      for p in net.parameters()])


def _value(r):
    return r[0] if isinstance(r, tuple) else r


# B = 6: small tiled batches (the library tiles too, shared forward or not);
# B = 70: more rows than the library tiles (one reverse pass per probe in every case)
@pytest.mark.parametrize("seed,B", [(0, 6), (1, 6), (2, 70)])
@pytest.mark.parametrize("shared", [False, True])
def test_random_estimators_equal_the_tiled_computation(seed, B, shared):
    """One forward + one reverse pass per probe == tiling the batch once per probe (same signs)."""
    net = _conv_net(seed)
    rng = torch.Generator().manual_seed(seed)
    x = torch.rand(B, 1, 8, 8, generator=rng, dtype=torch.float64)
    xa = x.roll(1, -1) + 0.05 * torch.rand(x.shape, generator=rng, dtype=torch.float64)
    m, C = 4, 5

    def signs(shape, s):
        g = torch.Generator().manual_seed(s)
        return torch.randint(0, 2, shape, generator=g).double() * 2 - 1

    # orthogonality, 2 probes = 4 sign vectors per sample (unbiased variance / 2, over C²)
    q = _tiled_rows(net, x, signs((m, B, C), 11)).pow(2).sum(2)
    want = q.var(0, unbiased=True).mean() / 2 / C**2
    got = _value(orthogonality_penalty(net, x, n_probes=2, return_outputs=shared,
                                       generator=torch.Generator().manual_seed(11)))
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    torch.testing.assert_close(_grads(net, got), _grads(net, want), rtol=1e-10, atol=1e-14)
    # Hessian, 2 probes: the same s at x and T(x)
    s = signs((2, B, C), 12)
    d = _tiled_rows(net, x, s) - _tiled_rows(net, xa, s)
    want = torch.sqrt(d.pow(2).sum(2).mean(0) + 1e-4).mean()
    got = _value(hessian_penalty(net, x, xa, n_probes=2, return_outputs=shared,
                                 generator=torch.Generator().manual_seed(12)))
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    torch.testing.assert_close(_grads(net, got), _grads(net, want), rtol=1e-10, atol=1e-14)


def test_exact_penalties_on_a_conv_net_equal_jacobian_formulas():
    net = _conv_net(3)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    xa = x.flip(-1)
    jac = torch.func.vmap(torch.func.jacrev(lambda v: net(v[None])[0]))  # (B, C, 1, 8, 8)
    A, Aa = (jac(v).detach().flatten(2).numpy() for v in (x, xa))
    p = orthogonality_penalty(net, x, estimator="exact")
    assert p.item() == pytest.approx(_orth_formula(A), rel=1e-12)
    sq = ((A - Aa) ** 2).sum((1, 2))
    assert hessian_penalty(net, x, xa, estimator="exact").item() == pytest.approx(
        np.sqrt(sq + 1e-4).mean(), rel=1e-12)


@pytest.mark.parametrize("bn", [False, True])
@pytest.mark.parametrize("max_samples", [None, 3])
def test_return_outputs_gives_model_outputs_and_the_same_penalty(bn, max_samples):
    net = _conv_net(4, bn=bn)  # bn: BatchNorm in training mode (batch statistics)
    x = torch.rand(7, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    xa = x.roll(1, -2)
    y = torch.arange(7) % 5
    calls = {
        "orth": lambda g, r: orthogonality_penalty(net, x, max_samples=max_samples, generator=g,
                                                   return_outputs=r),
        "hess": lambda g, r: hessian_penalty(net, x, xa, max_samples=max_samples, generator=g,
                                             return_outputs=r),
    }
    for fn in calls.values():
        value, out = fn(torch.Generator().manual_seed(2), True)
        ref = net(x)
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-14)
        plain = fn(torch.Generator().manual_seed(2), False)
        assert value.item() == pytest.approx(plain.item(), rel=1e-12)  # shared or not
        # the shared forward trains exactly like a separate one
        shared = _grads(net, nn.functional.cross_entropy(out, y) + value)
        separate = _grads(net, nn.functional.cross_entropy(net(x), y)
                          + fn(torch.Generator().manual_seed(2), False))
        torch.testing.assert_close(shared, separate, rtol=1e-10, atol=1e-14)


def _mlp_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(),
                         nn.Linear(12, 5)).double()


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize("which", ["orth", "hess"])
@pytest.mark.parametrize("max_samples", [None, 3])
def test_shared_tiled_forward_trains_like_the_unshared_path(arch, which, max_samples, monkeypatch):
    """return_outputs on the tiled rows: same penalty, outputs = model(x), same gradients."""
    net = _mlp_net(5) if arch == "mlp" else _conv_net(5)
    shape = (7, 6) if arch == "mlp" else (7, 1, 8, 8)
    rng = torch.Generator().manual_seed(3)
    x = torch.rand(shape, generator=rng, dtype=torch.float64)
    xa = x + 0.1 * torch.rand(shape, generator=rng, dtype=torch.float64)
    y = torch.arange(7) % 5
    lam = 0.7
    layouts = []
    affine_rows = R._affine_rows

    def recording(*args, **kw):
        layouts.append(kw["layout"])
        return affine_rows(*args, **kw)

    monkeypatch.setattr(R, "_affine_rows", recording)

    def pen(shared):
        g = torch.Generator().manual_seed(9)
        if which == "orth":
            return orthogonality_penalty(net, x, n_probes=2, max_samples=max_samples,
                                         generator=g, return_outputs=shared)
        return hessian_penalty(net, x, xa, n_probes=2, max_samples=max_samples, generator=g,
                               return_outputs=shared)

    value, out = pen(True)
    assert layouts[-1] == "tiled"
    torch.testing.assert_close(out, net(x), rtol=1e-12, atol=1e-14)
    shared = _grads(net, nn.functional.cross_entropy(out, y) + lam * value)
    # unshared: the loss on its own forward pass, the penalty computed as before (tiled)
    unshared = pen(False)
    assert value.item() == pytest.approx(unshared.item(), rel=1e-12)
    separate = _grads(net, nn.functional.cross_entropy(net(x), y) + lam * unshared)
    torch.testing.assert_close(shared, separate, rtol=1e-10, atol=1e-14)
    # and the untiled shared forward (one reverse pass per sign vector): the same again
    monkeypatch.setattr(R, "_TILE_MAX_ROWS", 0)
    value_j, out_j = pen(True)
    assert layouts[-1] == "joint"
    assert value_j.item() == pytest.approx(value.item(), rel=1e-12)
    torch.testing.assert_close(out_j, out, rtol=1e-12, atol=1e-14)
    joint = _grads(net, nn.functional.cross_entropy(out_j, y) + lam * value_j)
    torch.testing.assert_close(shared, joint, rtol=1e-10, atol=1e-14)
