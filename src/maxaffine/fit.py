"""Fitting max-affine splines to data (convex piecewise-linear regression).

Least-squares fit of a max-affine function with K pieces,

.. math::
    \\min_{\\{a_r, b_r\\}} \\sum_{n=1}^{N} \\Big( y_n - \\max_{r \\le K}
    \\big(\\langle a_r, x_n \\rangle + b_r\\big) \\Big)^2,

by the partition/refit heuristic of Magnani & Boyd: start from a partition of the samples
(k-means or the Voronoi cells of random samples), fit each piece by (ridge-stabilized) least
squares on its cell, reassign every sample to the piece that attains the max, and repeat;
keep the best of several restarts. :class:`MaxAffineRegressor` is a scikit-learn
estimator; :class:`MaxAffineSpline` is the same function as a torch module (a one-layer
MASO with K output units).

References
----------
.. [1] A. Magnani and S. P. Boyd, "Convex piecewise-linear fitting", Optimization and
   Engineering 10(1), 1-17, 2009.
.. [2] R. Balestriero and R. G. Baraniuk, "A Spline Theory of Deep Networks", ICML 2018.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .errors import InputError
from .power import MASO

try:  # scikit-learn is an optional dependency (the ``data`` extra)
    from sklearn.base import BaseEstimator, RegressorMixin

    _HAVE_SKLEARN = True
except ImportError:  # pragma: no cover - depends on the environment
    _HAVE_SKLEARN = False

    class BaseEstimator:  # type: ignore[no-redef]
        """Stand-in so that this module imports without scikit-learn."""

    class RegressorMixin:  # type: ignore[no-redef]
        """Stand-in so that this module imports without scikit-learn."""


_INITS = ("kmeans", "random")
_PATIENCE = 10  # iterations without a relative improvement > tol before a restart stops


# ----------------------------------------------------------------------------- numerics

def _refit(Xt: np.ndarray, y: np.ndarray, labels: np.ndarray, n_cells: int,
           ridge: float, moments: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Least-squares affine fit on every non-empty cell, batched over cells.

    Solves, for every cell k with ``n_k >= 1`` samples, the normal equations
    ``(X_kᵀ X_k + ridge · n_k · J) c_k = X_kᵀ y_k`` where ``Xt = [X, 1]`` and ``J`` is the
    identity on the slope coordinates (the intercept is not penalized). The system is
    non-singular for ``ridge > 0`` and ``n_k >= 1``; with ``ridge = 0`` the minimum-norm
    solution (pseudo-inverse) is used. The per-sample second moments ``x̃ x̃ᵀ`` and
    ``x̃ y`` do not depend on the partition, so each refit is two matrix products.

    Parameters
    ----------
    Xt : ndarray, shape (N, D + 1)
        Samples with a trailing column of ones.
    y : ndarray, shape (N,)
    labels : ndarray of int, shape (N,)
        Cell of each sample, in ``[0, n_cells)``.
    n_cells : int
    ridge : float
    moments : (ndarray (N, (D+1)^2), ndarray (N, D+1)), optional
        Precomputed ``x̃ x̃ᵀ`` (flattened) and ``x̃ y`` of every sample.

    Returns
    -------
    ndarray, shape (K', D + 1)
        Coefficients (slopes then intercept) of the K' non-empty cells, in cell order.
    """
    n, p = Xt.shape
    if moments is None:
        moments = _moments(Xt, y)
    outer, xty = moments
    counts = np.bincount(labels, minlength=n_cells).astype(float)
    alive = counts > 0
    relabel = np.cumsum(alive) - 1  # drop empty cells, keep the order of the others
    counts = counts[alive]
    k = counts.shape[0]
    onehot = np.zeros((k, n))
    onehot[relabel[labels], np.arange(n)] = 1.0
    gram = (onehot @ outer).reshape(k, p, p)
    rhs = onehot @ xty
    if ridge > 0:
        diag = np.ones(p)
        diag[-1] = 0.0
        gram = gram + ridge * counts[:, None, None] * np.diag(diag)[None]
        return np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]
    return np.einsum("kpq,kq->kp", np.linalg.pinv(gram, hermitian=True), rhs)


def _moments(Xt: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample ``x̃ x̃ᵀ`` flattened to (N, (D+1)^2) and ``x̃ y`` (N, D+1)."""
    n, p = Xt.shape
    return (Xt[:, :, None] * Xt[:, None, :]).reshape(n, p * p), Xt * y[:, None]


def _kmeans_labels(Z: np.ndarray, k: int, rng: np.random.Generator,
                   n_iter: int = 20) -> np.ndarray:
    """k-means++ seeding followed by Lloyd iterations (vectorized over samples)."""
    n = Z.shape[0]
    sq = (Z**2).sum(1)
    centers = np.empty((k, Z.shape[1]))
    centers[0] = Z[rng.integers(n)]
    d2 = ((Z - centers[0]) ** 2).sum(1)
    for j in range(1, k):  # one step per centre, not per sample
        total = d2.sum()
        idx = rng.choice(n, p=d2 / total) if total > 0 else rng.integers(n)
        centers[j] = Z[idx]
        d2 = np.minimum(d2, ((Z - centers[j]) ** 2).sum(1))
    labels = np.full(n, -1)
    for _ in range(n_iter):
        dist = sq[:, None] - 2 * Z @ centers.T + (centers**2).sum(1)[None]
        new = dist.argmin(1)
        if np.array_equal(new, labels):
            break
        labels = new
        onehot = np.zeros((n, k))
        onehot[np.arange(n), labels] = 1.0
        counts = onehot.sum(0)
        filled = counts > 0
        centers[filled] = (onehot.T @ Z)[filled] / counts[filled, None]
    return labels


def _voronoi_labels(Z: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Cells of k distinct random samples (the initialization of Magnani & Boyd)."""
    centers = Z[rng.choice(Z.shape[0], size=k, replace=False)]
    dist = (Z**2).sum(1)[:, None] - 2 * Z @ centers.T + (centers**2).sum(1)[None]
    return dist.argmin(1)


def _descend(Xt: np.ndarray, y: np.ndarray, labels: np.ndarray, k: int, ridge: float,
             max_iter: int, tol: float) -> tuple[np.ndarray, float, int]:
    """Partition/refit iterations from ``labels``; returns the best iterate, its MSE, #iters."""
    best_coef, best_loss, prev_loss = None, math.inf, math.inf
    n_iter = since_best = 0
    moments = _moments(Xt, y)
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (returned after the loop)
        coef = _refit(Xt, y, labels, k, ridge, moments)
        values = Xt @ coef.T  # (N, K')
        new_labels = values.argmax(1)
        loss = float(np.mean((values.max(1) - y) ** 2))
        since_best += 1
        if loss < best_loss * (1 - tol):
            since_best = 0
        if loss < best_loss:
            best_coef, best_loss = coef, loss
        # empty cells were dropped by the refit, so labels now index the K' pieces
        k = coef.shape[0]
        # stop at a fixed partition, when the loss stops moving, or when the iteration
        # cycles without improving on its best iterate (it is not monotone)
        stalled = math.isfinite(prev_loss) and abs(prev_loss - loss) <= tol * prev_loss
        if stalled or since_best >= _PATIENCE or np.array_equal(new_labels, labels):
            break
        labels, prev_loss = new_labels, loss
    assert best_coef is not None
    return best_coef, best_loss, n_iter


# ----------------------------------------------------------------------------- estimator

class MaxAffineRegressor(RegressorMixin, BaseEstimator):
    """Least-squares max-affine (convex piecewise-linear) regression, scikit-learn style.

    .. math::
        \\hat y(x) = \\max_{r \\le K} \\big(\\langle a_r, x\\rangle + b_r\\big), \\qquad
        \\min \\sum_n (y_n - \\hat y(x_n))^2,

    fitted by the Magnani-Boyd iteration: partition the samples, fit one affine piece per
    cell by least squares (batched normal equations with a small relative ridge on the
    slopes), move every sample to the piece attaining the max, repeat until the partition
    is stable, the loss changes by less than a relative ``tol``, or 10 iterations pass
    without improving the best loss (the iteration is not monotone and can cycle); keep
    the best iterate of ``n_restarts`` random restarts. Cells that become empty are
    dropped, and pieces that attain the max at no training sample are pruned at the end
    (this does not change the fitted values), so the model can end with fewer than
    ``n_pieces`` pieces. Features are
    standardized internally; the learned coefficients are in the original units.

    Parameters
    ----------
    n_pieces : int
        Maximal number K of affine pieces.
    n_restarts : int
        Number of random initial partitions; the fit with the lowest training MSE wins.
    max_iter : int
        Maximal partition/refit iterations per restart.
    tol : float
        Stop a restart when the MSE changes by less than ``tol`` times its previous value.
    init : {"kmeans", "random"}
        Initial partition: k-means++/Lloyd clusters of the (standardized) inputs, or the
        Voronoi cells of ``n_pieces`` random samples.
    ridge : float
        Relative ridge on the slopes, ``ridge * n_k`` added to each cell's normal matrix
        (in standardized units); keeps cells with fewer than D + 1 samples well posed.
    random_state : int, numpy Generator/RandomState or None

    Attributes
    ----------
    coef_ : ndarray, shape (K, D)
        Slopes a_r of the K fitted pieces.
    intercept_ : ndarray, shape (K,)
        Offsets b_r.
    n_features_in_ : int
    n_iter_ : int
        Iterations of the winning restart.
    loss_ : float
        Training mean squared error of the fit.

    Raises
    ------
    InputError
        (a ``ValueError``) from ``fit`` on invalid parameters.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, (500, 2))
    >>> y = np.maximum(X[:, 0] + X[:, 1], 2 * X[:, 0] - 1)
    >>> reg = MaxAffineRegressor(n_pieces=2, random_state=0).fit(X, y)
    >>> round(reg.score(X, y), 6)
    1.0

    References
    ----------
    .. [1] A. Magnani and S. P. Boyd, "Convex piecewise-linear fitting", Optimization and
       Engineering 10(1), 1-17, 2009.
    """

    def __init__(self, n_pieces: int = 5, n_restarts: int = 10, max_iter: int = 100,
                 tol: float = 1e-6, init: str = "kmeans", ridge: float = 1e-8,
                 random_state=None) -> None:
        self.n_pieces = n_pieces
        self.n_restarts = n_restarts
        self.max_iter = max_iter
        self.tol = tol
        self.init = init
        self.ridge = ridge
        self.random_state = random_state

    def _check_params(self) -> None:
        for name in ("n_pieces", "n_restarts", "max_iter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"{name} must be a positive integer; got {value!r}")
        for name in ("tol", "ridge"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.floating)) or not value >= 0 \
                    or not math.isfinite(value):
                raise InputError(f"{name} must be a finite number >= 0; got {value!r}")
        if self.init not in _INITS:
            raise InputError(f"init must be 'kmeans' or 'random'; got {self.init!r}")

    def fit(self, X, y) -> MaxAffineRegressor:
        """Fit the max-affine function to ``(X, y)``.

        Parameters
        ----------
        X : array-like, shape (N, D)
        y : array-like, shape (N,)

        Returns
        -------
        self
        """
        if not _HAVE_SKLEARN:  # pragma: no cover - depends on the environment
            raise ImportError("MaxAffineRegressor needs scikit-learn: "
                              "pip install 'maxaffine[data]'")
        from sklearn.utils import check_random_state

        self._check_params()
        X, y = _validate(self, X, y, reset=True)
        rng_legacy = check_random_state(self.random_state)
        rng = np.random.default_rng(rng_legacy.randint(np.iinfo(np.int32).max))
        mean = X.mean(0)
        scale = X.std(0)
        scale[scale == 0] = 1.0
        Z = (X - mean) / scale
        Xt = np.hstack([Z, np.ones((Z.shape[0], 1))])
        n_distinct = len(np.unique(Z, axis=0))
        k = int(min(self.n_pieces, n_distinct))
        best = (None, math.inf, 0)
        for _ in range(self.n_restarts):
            if self.init == "kmeans":
                labels = _kmeans_labels(Z, k, rng)
            else:
                labels = _voronoi_labels(Z, k, rng)
            coef, loss, n_iter = _descend(Xt, y, labels, k, float(self.ridge),
                                          int(self.max_iter), float(self.tol))
            if loss < best[1]:
                best = (coef, loss, n_iter)
        coef, loss, n_iter = best
        active = np.unique((Xt @ coef.T).argmax(1))
        coef = coef[active]
        slopes = coef[:, :-1] / scale
        self.coef_ = slopes
        self.intercept_ = coef[:, -1] - slopes @ mean
        self.loss_ = float(loss)
        self.n_iter_ = int(n_iter)
        return self

    def _pieces(self, X) -> np.ndarray:
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self)
        X = _validate(self, X, _NO_Y, reset=False)
        return X @ self.coef_.T + self.intercept_

    def predict(self, X) -> np.ndarray:
        """``max_r <a_r, x> + b_r`` for every row of ``X`` (shape (N, D)); returns (N,)."""
        return self._pieces(X).max(1)

    def region(self, X) -> np.ndarray:
        """Index of the active (maximal) piece for every row of ``X``; int array (N,).

        Ties go to the first maximal piece.
        """
        return self._pieces(X).argmax(1)


_NO_Y = object()  # marks prediction-time validation (``y=None`` at fit time is an error)


def _validate(est, X, y, *, reset: bool):
    """scikit-learn's data validation across versions (function since 1.6, method before)."""
    try:
        from sklearn.utils.validation import validate_data
    except ImportError:  # pragma: no cover - scikit-learn < 1.6
        validate_data = None
    kwargs = dict(reset=reset, dtype=np.float64)
    if y is _NO_Y:
        if validate_data is not None:
            return validate_data(est, X, **kwargs)
        return est._validate_data(X, **kwargs)  # pragma: no cover
    if validate_data is not None:
        return validate_data(est, X, y, y_numeric=True, **kwargs)
    return est._validate_data(X, y, y_numeric=True, **kwargs)  # pragma: no cover


# ----------------------------------------------------------------------------- torch module

class MaxAffineSpline(nn.Module):
    """A bank of max-affine splines as a torch module (one MASO layer).

    .. math::
        f_k(x) = \\max_{r \\le R} \\big(\\langle W_{k,r}, x\\rangle + b_{k,r}\\big),
        \\qquad k = 1..K_{out}.

    Parameters
    ----------
    n_pieces : int
        Number of pieces R per output.
    in_features : int
        Input dimension D.
    out_features : int
        Number of max-affine outputs K.
    dtype : torch.dtype, optional

    Attributes
    ----------
    weight : Parameter, shape (out_features, n_pieces, in_features)
    bias : Parameter, shape (out_features, n_pieces)

    Examples
    --------
    >>> import torch
    >>> spline = MaxAffineSpline(3, in_features=2, out_features=1)
    >>> x = torch.randn(4, 2)
    >>> spline(x).shape, spline.region(x).shape, spline.gradient(x).shape
    (torch.Size([4, 1]), torch.Size([4, 1]), torch.Size([4, 1, 2]))

    References
    ----------
    .. [1] R. Balestriero and R. G. Baraniuk, "A Spline Theory of Deep Networks", ICML 2018.
    .. [2] A. Magnani and S. P. Boyd, "Convex piecewise-linear fitting", 2009.
    """

    def __init__(self, n_pieces: int, in_features: int, out_features: int = 1, *,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        for name, value in (("n_pieces", n_pieces), ("in_features", in_features),
                            ("out_features", out_features)):
            if int(value) != value or value < 1:
                raise InputError(f"{name} must be a positive integer; got {value!r}")
        self.n_pieces, self.in_features, self.out_features = (
            int(n_pieces), int(in_features), int(out_features))
        self.weight = nn.Parameter(torch.empty(out_features, n_pieces, in_features, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(out_features, n_pieces, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(-1/sqrt(D), 1/sqrt(D)) initialization, as ``nn.Linear``."""
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise InputError(f"MaxAffineSpline expects inputs of shape (N, {self.in_features}); "
                             f"got {tuple(x.shape)}")
        return x.to(self.weight.dtype)

    def pieces(self, x: torch.Tensor) -> torch.Tensor:
        """Value of every piece, shape (N, out_features, n_pieces)."""
        return torch.einsum("krd,nd->nkr", self.weight, self._check(x)) + self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``f(x)``, shape (N, out_features), for ``x`` of shape (N, in_features)."""
        return self.pieces(x).amax(-1)

    def region(self, x: torch.Tensor) -> torch.Tensor:
        """Active piece (VQ code) per output, int64 (N, out_features); ties: first piece."""
        with torch.no_grad():
            return self.pieces(x).argmax(-1)

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        """Slope of the active piece, shape (N, out_features, in_features).

        Equals the Jacobian of ``forward`` at ``x`` off the region boundaries.
        """
        code = self.region(x)
        k = torch.arange(self.out_features, device=code.device)
        return self.weight.detach()[k[None, :], code]

    def to_maso(self) -> MASO:
        """The same function as a :class:`maxaffine.power.MASO` (detached copies)."""
        return MASO(self.weight.detach().clone(), self.bias.detach().clone())

    @classmethod
    def from_regressor(cls, reg: MaxAffineRegressor, *,
                       dtype: torch.dtype = torch.float64) -> MaxAffineSpline:
        """Module computing exactly the function of a fitted :class:`MaxAffineRegressor`.

        Raises
        ------
        InputError
            If ``reg`` is not fitted.
        """
        if not hasattr(reg, "coef_"):
            raise InputError("from_regressor needs a fitted MaxAffineRegressor; call .fit first")
        coef = torch.as_tensor(np.asarray(reg.coef_), dtype=dtype)
        intercept = torch.as_tensor(np.asarray(reg.intercept_), dtype=dtype)
        module = cls(coef.shape[0], coef.shape[1], 1, dtype=dtype)
        with torch.no_grad():
            module.weight.copy_(coef[None])
            module.bias.copy_(intercept[None])
        return module

    def extra_repr(self) -> str:
        return (f"n_pieces={self.n_pieces}, in_features={self.in_features}, "
                f"out_features={self.out_features}")


__all__ = ["MaxAffineRegressor", "MaxAffineSpline"]
