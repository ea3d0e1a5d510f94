"""Tests for maxaffine.fit: Magnani-Boyd max-affine regression and the MaxAffineSpline module."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from maxaffine.errors import InputError
from maxaffine.fit import MaxAffineRegressor, MaxAffineSpline, _refit
from maxaffine.power import MASO


def _planted(n, seed, noise=0.01, k=5, d=3):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(k, d))
    b = rng.normal(size=k)
    def f(X):
        return (X @ A.T + b).max(1)
    X = rng.uniform(-2, 2, (n, d))
    Xte = rng.uniform(-2, 2, (n, d))
    return X, f(X) + noise * rng.normal(size=n), Xte, f(Xte)


@parametrize_with_checks([MaxAffineRegressor(n_restarts=3),
                          MaxAffineRegressor(n_pieces=3, init="random", n_restarts=2)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("init", ["kmeans", "random"])
def test_recovers_planted_max_affine(init):
    X, y, Xte, yte = _planted(2000, seed=0)
    reg = MaxAffineRegressor(n_pieces=5, init=init, random_state=0).fit(X, y)
    assert r2_score(yte, reg.predict(Xte)) > 0.999
    assert reg.coef_.shape[1] == 3 and reg.coef_.shape[0] <= 5
    assert reg.intercept_.shape == (reg.coef_.shape[0],)
    # loss_ is the training MSE of the returned function; noise variance is 1e-4
    np.testing.assert_allclose(reg.loss_, np.mean((reg.predict(X) - y) ** 2), rtol=1e-10)
    assert reg.loss_ < 2e-4


@pytest.mark.parametrize("name", ["sqnorm", "logsumexp"])
def test_beats_affine_on_smooth_convex_function(name):
    rng = np.random.default_rng(1)
    X, Xte = rng.uniform(-1, 1, (1500, 3)), rng.uniform(-1, 1, (1500, 3))
    f = (lambda Z: (Z**2).sum(1)) if name == "sqnorm" else \
        (lambda Z: np.log(np.exp(2 * Z).sum(1)))
    reg = MaxAffineRegressor(n_pieces=10, random_state=0).fit(X, f(X))
    lin = LinearRegression().fit(X, f(X))
    rmse = np.sqrt(np.mean((reg.predict(Xte) - f(Xte)) ** 2))
    rmse_lin = np.sqrt(np.mean((lin.predict(Xte) - f(Xte)) ** 2))
    assert rmse < 0.4 * rmse_lin, (rmse, rmse_lin)
    # a max of tangent-like planes of a convex function: never far above it
    assert r2_score(f(Xte), reg.predict(Xte)) > 0.9


def test_refit_matches_per_cell_lstsq():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 4))
    y = rng.normal(size=300)
    labels = rng.integers(0, 6, 300)
    labels[labels == 3] = 4  # cell 3 empty: dropped
    Xt = np.hstack([X, np.ones((300, 1))])
    coef = _refit(Xt, y, labels, 6, ridge=0.0)
    cells = [c for c in range(6) if (labels == c).any()]
    assert coef.shape == (len(cells), 5)
    for row, c in zip(coef, cells):
        ref = np.linalg.lstsq(Xt[labels == c], y[labels == c], rcond=None)[0]
        np.testing.assert_allclose(row, ref, atol=1e-10)
    # a tiny relative ridge changes well-posed cells by ~ridge, and solves one-sample cells
    np.testing.assert_allclose(_refit(Xt, y, labels, 6, ridge=1e-10), coef, atol=1e-7)
    solo = np.zeros(300, dtype=int)
    solo[0] = 1
    coef1 = _refit(Xt, y, solo, 2, ridge=1e-8)
    assert np.isfinite(coef1).all()
    np.testing.assert_allclose(Xt[0] @ coef1[1], y[0], atol=1e-6)  # interpolates its sample


def test_scale_equivariance_and_reproducibility():
    X, y, Xte, _ = _planted(600, seed=3)
    a = MaxAffineRegressor(random_state=7).fit(X, y)
    b = MaxAffineRegressor(random_state=7).fit(X, y)
    np.testing.assert_array_equal(a.predict(Xte), b.predict(Xte))
    scale = np.array([1000.0, 1e-3, 1.0])
    c = MaxAffineRegressor(random_state=7).fit(X * scale, y)
    # features are standardized internally, so rescaling them gives the same function
    np.testing.assert_allclose(c.predict(Xte * scale), a.predict(Xte), atol=1e-6)


def test_region_is_argmax_of_pieces_and_pruning():
    X, y, Xte, _ = _planted(800, seed=4)
    reg = MaxAffineRegressor(n_pieces=8, random_state=0).fit(X, y)
    values = Xte @ reg.coef_.T + reg.intercept_
    np.testing.assert_array_equal(reg.region(Xte), values.argmax(1))
    np.testing.assert_allclose(reg.predict(Xte), values.max(1))
    # every kept piece is active at some training sample
    assert set(np.unique(reg.region(X))) == set(range(reg.coef_.shape[0]))


@pytest.mark.parametrize("params", [dict(n_pieces=0), dict(n_restarts=-1), dict(max_iter=1.5),
                                    dict(tol=-1.0), dict(init="pca"), dict(ridge=np.nan)])
def test_bad_parameters_raise(params):
    X, y, _, _ = _planted(50, seed=5)
    with pytest.raises(InputError):
        MaxAffineRegressor(**params).fit(X, y)


def test_spline_module_matches_regressor_and_maso():
    X, y, Xte, _ = _planted(600, seed=6)
    reg = MaxAffineRegressor(random_state=0).fit(X, y)
    spline = MaxAffineSpline.from_regressor(reg)
    xt = torch.from_numpy(Xte)
    np.testing.assert_allclose(spline(xt)[:, 0].detach().numpy(), reg.predict(Xte), atol=1e-12)
    np.testing.assert_array_equal(spline.region(xt)[:, 0].numpy(), reg.region(Xte))
    maso = spline.to_maso()
    assert isinstance(maso, MASO)
    np.testing.assert_allclose(maso.evaluate(xt).numpy(), spline(xt).detach().numpy())
    np.testing.assert_array_equal(maso.code(xt).numpy(), spline.region(xt).numpy())


def test_spline_gradient_and_region_match_autograd():
    torch.manual_seed(0)
    spline = MaxAffineSpline(6, in_features=4, out_features=3, dtype=torch.float64)
    x = torch.randn(20, 4, dtype=torch.float64)
    jac = torch.func.vmap(torch.func.jacrev(lambda v: spline(v[None])[0]))(x)  # (N, 3, 4)
    np.testing.assert_allclose(spline.gradient(x).numpy(), jac.detach().numpy(), atol=1e-12)
    # the region is the piece whose value is the output
    pieces = spline.pieces(x).detach()
    chosen = pieces.gather(-1, spline.region(x)[..., None])[..., 0]
    np.testing.assert_allclose(chosen.numpy(), spline(x).detach().numpy(), atol=0)
    # f(x) = <grad, x> + b_region on the region of x
    b = spline.bias.detach()[torch.arange(3)[None], spline.region(x)]
    affine = torch.einsum("nkd,nd->nk", spline.gradient(x), x) + b
    np.testing.assert_allclose(affine.numpy(), spline(x).detach().numpy(), atol=1e-12)


def test_spline_errors():
    with pytest.raises(InputError, match="positive integer"):
        MaxAffineSpline(0, 3)
    with pytest.raises(InputError, match=r"\(N, 3\)"):
        MaxAffineSpline(2, 3)(torch.zeros(4, 2))
    with pytest.raises(InputError, match="fitted"):
        MaxAffineSpline.from_regressor(MaxAffineRegressor())
