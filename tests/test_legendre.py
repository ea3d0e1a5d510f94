"""Tests for maxaffine.legendre: curvature bounds, tangent-plane envelopes, exactness, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from maxaffine.errors import InputError
from maxaffine.legendre import (
    MaxAffineApproximation,
    approximate,
    estimate_curvature,
    secant_curvature,
)
from maxaffine.power import MASO


class Wave(nn.Module):
    """f(x) = (sin x1 + 0.5 cos 2 x2,  0.25 x1^2 - x1 x2): Hessians known in closed form."""

    def forward(self, x):
        a = torch.sin(x[:, 0]) + 0.5 * torch.cos(2 * x[:, 1])
        b = 0.25 * x[:, 0] ** 2 - x[:, 0] * x[:, 1]
        return torch.stack([a, b], 1)


def wave_hessian_extremes(X):
    """Closed-form min/max Hessian eigenvalues of Wave's outputs over the rows of X."""
    ev_a = torch.stack([-torch.sin(X[:, 0]), -2 * torch.cos(2 * X[:, 1])], 1)  # diagonal Hessian
    # output b: Hessian [[0.5, -1], [-1, 0]] everywhere; eigenvalues (0.5 ± sqrt(0.25 + 4)) / 2
    r = math.sqrt(0.25 + 4.0)
    lo = torch.tensor([ev_a.min().item(), (0.5 - r) / 2], dtype=torch.float64)
    hi = torch.tensor([ev_a.max().item(), (0.5 + r) / 2], dtype=torch.float64)
    return lo, hi


def grid(n=41, lim=3.0):
    s = torch.linspace(-lim, lim, n, dtype=torch.float64)
    return torch.cartesian_prod(s, s)


def test_curvature_exact_in_2d_matches_closed_form():
    X = torch.rand(300, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 6 - 3
    est = estimate_curvature(Wave(), X, iters=10)
    lo, hi = wave_hessian_extremes(X)
    assert est.exact and est.iters == 2
    # D = 2 Krylov steps span the whole space: Ritz values are the eigenvalues (round-off only)
    torch.testing.assert_close(est.lambda_min, lo, atol=1e-10, rtol=0)
    torch.testing.assert_close(est.lambda_max, hi, atol=1e-10, rtol=0)


def test_c_bounds_true_curvature_and_envelopes_hold_off_data():
    X = grid(31)
    approx = approximate(Wave(), X, 40, select="kmeans", progress=False)
    lo, hi = wave_hessian_extremes(X)
    true_bound = torch.maximum(-lo, hi)
    assert (approx.c >= true_bound).all()
    # on this grid sin and cos reach (almost) their extremes, so c also covers the global bound
    assert approx.c[0] >= 2.0 and approx.c[1] >= (0.5 + math.sqrt(4.25)) / 2
    # envelopes: ĝ <= g and ĥ >= h on a denser grid, including points between the data
    Y = grid(97, 3.2)
    f = Wave()(Y)
    q = 0.5 * approx.c * (Y * Y).sum(1, keepdim=True)
    g_hat, h_hat = approx.predict_parts(Y)
    assert (g_hat <= f + q + 1e-9).all()  # tolerance: float64 round-off of sums of ~10 terms
    assert (h_hat >= f - q - 1e-9).all()


def test_dense_hessian_oracle_on_small_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 8), nn.Sigmoid(),
                        nn.Linear(8, 3)).double()
    X = torch.randn(40, 5, dtype=torch.float64)
    H = torch.stack([torch.func.hessian(lambda x: net(x[None])[0])(x) for x in X])  # (N,3,5,5)
    ev = torch.linalg.eigvalsh(H)
    true_lo, true_hi = ev[..., 0].min(0).values, ev[..., -1].max(0).values
    exact = estimate_curvature(net, X, iters=5)
    torch.testing.assert_close(exact.lambda_min, true_lo, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(exact.lambda_max, true_hi, atol=1e-10, rtol=1e-8)
    # fewer iterations: Ritz values stay inside the spectrum (inner estimates)
    partial = estimate_curvature(net, X, iters=2)
    assert not partial.exact
    assert (partial.lambda_min >= true_lo - 1e-12).all()
    assert (partial.lambda_max <= true_hi + 1e-12).all()


def test_exact_at_tangent_points_and_to_maso():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 12), nn.GELU(), nn.Linear(12, 12), nn.SiLU(),
                        nn.Linear(12, 4)).double()
    X = torch.randn(120, 3, dtype=torch.float64)
    approx = approximate(net, X, 30, select="random", seed=3, progress=False)
    Z = approx.points
    f = net(Z)
    q = 0.5 * approx.c * (Z * Z).sum(1, keepdim=True)
    g_hat, h_hat = approx.predict_parts(Z)
    torch.testing.assert_close(g_hat, f + q, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(h_hat, f - q, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(approx.predict(Z), f, atol=1e-10, rtol=1e-10)
    # the tangent points are rows of X (random selection)
    assert ((Z[:, None] - X[None]).abs().sum(-1) == 0).any(1).all()

    G, Hm = approx.to_maso()
    assert isinstance(G, MASO) and isinstance(Hm, MASO)
    Y = torch.randn(200, 3, dtype=torch.float64) * 2
    torch.testing.assert_close((G.evaluate(Y) - Hm.evaluate(Y)) / 2, approx.predict(Y),
                               atol=1e-12, rtol=0)
    code_g, code_h = approx.region(Y)
    assert torch.equal(G.code(Y), code_g) and torch.equal(Hm.code(Y), code_h)
    assert approx.n_planes == 30 and approx.slopes_g.shape == (4, 30, 3)


def test_more_nested_planes_tighten_the_envelopes():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 2)).double()
    X = torch.rand(400, 2, dtype=torch.float64) * 4 - 2
    Y = torch.rand(300, 2, dtype=torch.float64) * 4 - 2
    f = net(Y)
    c = 1.1 * estimate_curvature(net, X).bound
    errs, prev = [], None
    for P in (5, 20, 80, 400):
        # same seed: the random subsets are nested prefixes of one permutation
        a = approximate(net, X, P, select="random", c=c, seed=0, progress=False)
        g_hat, h_hat = a.predict_parts(Y)
        if prev is not None:
            assert (g_hat >= prev[0] - 1e-12).all() and (h_hat <= prev[1] + 1e-12).all()
        prev = (g_hat, h_hat)
        errs.append((a.predict(Y) - f).abs().mean().item())
    assert errs[-1] < 0.5 * errs[0]
    assert errs == sorted(errs, reverse=True)


@pytest.mark.parametrize("select", ["kmeans", "kmedoids", "greedy", "random", "all"])
def test_select_methods_return_valid_approximations(select):
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3)).double()
    X = torch.randn(150, 4, dtype=torch.float64)
    a = approximate(net, X, 25, select=select, progress=False)
    assert isinstance(a, MaxAffineApproximation)
    expected = 150 if select == "all" else 25
    assert a.n_planes <= expected and a.n_planes >= (20 if select == "kmedoids" else expected)
    assert a.slopes_g.shape == (3, a.n_planes, 4) and a.intercepts_h.shape == (3, a.n_planes)
    err = (a.predict(X) - net(X)).abs().mean()
    assert err < 0.5 * net(X).std()


def test_secant_curvature_guarantees_envelopes_on_data_for_relu():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(2, 20), nn.ReLU(), nn.Linear(20, 2)).double()
    X = torch.randn(200, 2, dtype=torch.float64)
    a = approximate(net, X, 30, select="kmeans", curvature="secant", margin=0.0,
                    curvature_samples=None, progress=False)
    assert (a.c > 0).all()  # ReLU nets bend at their kinks though the Hessian is 0 a.e.
    assert a.curvature is None and a.c_secant is not None
    f = net(X)
    q = 0.5 * a.c * (X * X).sum(1, keepdim=True)
    g_hat, h_hat = a.predict_parts(X)
    assert (g_hat <= f + q + 1e-9).all() and (h_hat >= f - q - 1e-9).all()
    # Hessian estimate of a ReLU net is exactly zero
    assert (estimate_curvature(net, X).bound == 0).all()


def test_secant_curvature_closed_form_quadratic():
    # f(x) = -x^2 / 2 in 1D: f(x) - T_z(x) = -(x - z)^2 / 2, so every ratio equals 1
    z = torch.tensor([[0.3], [-1.0]], dtype=torch.float64)
    X = torch.tensor([[0.0], [2.0], [0.3]], dtype=torch.float64)
    f = lambda t: -0.5 * t**2  # noqa: E731
    c = secant_curvature(z, f(z), (-z)[:, :, None], X, f(X))
    torch.testing.assert_close(c, torch.tensor([1.0], dtype=torch.float64))


def test_cnn_and_float32_model():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5)).float()
    X = torch.rand(60, 1, 6, 6, dtype=torch.float32)
    a = approximate(net, X, 10, select="random", curvature_iters=8, progress=False)
    assert a.in_shape == (1, 6, 6) and a.slopes_g.shape == (5, 10, 36)
    assert a.slopes_g.dtype == torch.float64 and net[0].weight.dtype == torch.float32
    f = net.double()(a.points.reshape(-1, 1, 6, 6))
    torch.testing.assert_close(a.predict(a.points.reshape(-1, 1, 6, 6)), f, atol=1e-9, rtol=1e-9)


def test_bad_inputs_raise():
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    X = torch.randn(20, 3, dtype=torch.float64)
    bad = X.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        approximate(net, bad, 5, progress=False)
    with pytest.raises(InputError, match="shape"):
        approximate(net, torch.randn(3), 5, progress=False)
    with pytest.raises(InputError, match="could not be applied"):
        approximate(net, torch.randn(20, 5, dtype=torch.float64), 5, progress=False)
    with pytest.raises(InputError, match="select"):
        approximate(net, X, 5, select="best", progress=False)
    with pytest.raises(InputError, match="curvature"):
        approximate(net, X, 5, curvature="exact", progress=False)
    with pytest.raises(InputError, match="n_planes"):
        approximate(net, X, 0, progress=False)
    with pytest.raises(InputError, match="c must be"):
        approximate(net, X, 5, c=-1.0, progress=False)
    with pytest.raises(InputError, match="c must be"):
        approximate(net, X, 5, c=[1.0, 2.0, 3.0], progress=False)
    with pytest.raises(InputError, match="iters"):
        estimate_curvature(net, X, iters=0)
    a = approximate(net, X, 5, select="random", progress=False)
    with pytest.raises(InputError, match="expects inputs"):
        a.predict(torch.randn(4, 5, dtype=torch.float64))
    with pytest.raises(InputError, match="batch dimension"):
        a.predict(torch.randn(3))
    with pytest.raises(InputError, match="inf"):
        a.predict(torch.full((2, 3), float("inf")))


def test_digits_tanh_mlp_keeps_95_percent_of_accuracy():
    from maxaffine.datasets import digits
    from maxaffine.training import accuracy, train

    torch.manual_seed(0)
    ds = digits(image=False)
    net = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10)).float()
    train(net, ds.X_train, ds.y_train, epochs=15, lr=3e-3, progress=False)
    acc_f = accuracy(net, ds.X_test, ds.y_test)
    assert acc_f > 0.9
    a = approximate(net, ds.X_train, 30, select="kmeans", curvature_samples=300,
                    curvature_iters=10, progress=False)
    acc_hat = (a.predict(ds.X_test).argmax(1) == ds.y_test).double().mean().item()
    assert acc_hat >= 0.95 * acc_f


def test_reusing_a_hessian_estimate_gives_the_same_approximation():
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(3, 10), nn.Sigmoid(), nn.Linear(10, 2)).double()
    X = torch.randn(80, 3, dtype=torch.float64)
    a = approximate(net, X, 12, select="kmeans", progress=False)
    b = approximate(net, X, 12, select="kmeans", hessian=a.curvature, progress=False)
    torch.testing.assert_close(a.slopes_g, b.slopes_g, atol=0, rtol=0)
    torch.testing.assert_close(a.c, b.c, atol=0, rtol=0)
    with pytest.raises(InputError, match="outputs"):
        approximate(nn.Linear(3, 4).double(), X, 5, hessian=a.curvature, progress=False)
