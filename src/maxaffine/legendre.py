"""Max-affine (Legendre) approximation of smooth networks by a convex-concave split.

For every output :math:`f_o` of a network choose a curvature constant :math:`c_o` that bounds
the Hessian's spectrum over the data, so that

.. math::
    g_o(x) = f_o(x) + \\tfrac{c_o}{2}\\|x\\|^2 \\;\\text{is convex}, \\qquad
    h_o(x) = f_o(x) - \\tfrac{c_o}{2}\\|x\\|^2 \\;\\text{is concave},
    \\qquad f_o = \\tfrac12 (g_o + h_o).

Tangent planes of :math:`g_o` at points :math:`z_1..z_P` (slopes :math:`\\nabla g_o(z_i)`,
intercepts :math:`g_o(z_i) - \\langle \\nabla g_o(z_i), z_i\\rangle = -g_o^*(\\nabla g_o(z_i))`,
the Legendre transform) lie below :math:`g_o`, and their maximum :math:`\\hat g_o` is a
max-affine spline; likewise the minimum :math:`\\hat h_o` of the tangent planes of
:math:`h_o` lies above :math:`h_o`. The approximation is
:math:`\\hat f_o = \\tfrac12(\\hat g_o + \\hat h_o)`, a difference of two max-affine splines,
exact at every tangent point.

Convexity of :math:`g_o` needs :math:`c_o \\ge -\\lambda_{\\min}(\\nabla^2 f_o)` and concavity of
:math:`h_o` needs :math:`c_o \\ge \\lambda_{\\max}(\\nabla^2 f_o)`; we therefore use
:math:`c_o = (1 + \\text{margin}) \\max(0, -\\lambda_{\\min}, \\lambda_{\\max}, c^{\\rm sec}_o)`,
with both extreme eigenvalues estimated from Hessian-vector products by batched Lanczos
(:func:`estimate_curvature`) and :math:`c^{\\rm sec}_o` the secant curvature between the
tangent points and the data (:func:`secant_curvature`), which also covers piecewise-linear
networks whose Hessian vanishes almost everywhere.

References
----------
.. [1] Perrett, Wood, Brown, "Max-affine spline approximation of smooth networks via the
   Legendre transform" (convex-concave split of deep networks), arXiv:2307.09602.
.. [2] Balestriero, Baraniuk, "A spline theory of deep networks", ICML 2018.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from ._device import to_model_device
from .errors import InputError
from .power import MASO

_SELECT = ("kmeans", "kmedoids", "greedy", "random", "all")
_CURVATURE = ("auto", "hessian", "secant")
# target number of floats held by one chunk of a (N, O, P) or (n, O, k, D) intermediate
_CHUNK_FLOATS = 1 << 23


# ----------------------------------------------------------------------------- helpers


def _as_model(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A frozen eval-mode copy of ``model`` in ``dtype`` (the caller's model is untouched)."""
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    clone = copy.deepcopy(model).to(dtype).eval()
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone


def _as_inputs(X, dtype: torch.dtype, name: str = "X") -> torch.Tensor:
    X = torch.as_tensor(X)
    if not (X.is_floating_point() or X.dtype in (torch.int32, torch.int64)):
        raise InputError(f"{name} must be a real tensor, got dtype {X.dtype}")
    if X.dim() < 2 or X.shape[0] == 0:
        raise InputError(
            f"{name} must have shape (N, *in_shape) with N >= 1; got {tuple(X.shape)} "
            "(add a batch dimension with X[None] for a single input)"
        )
    X = X.to(dtype)
    if not torch.isfinite(X).all():
        bad = int((~torch.isfinite(X.reshape(len(X), -1))).any(1).sum())
        raise InputError(f"{name} has {bad} row(s) with NaN or inf; remove or impute them first")
    return X


def _single(model: nn.Module, in_shape: tuple[int, ...]):
    """``x (D,) -> f(x) (O,)`` for torch.func transforms."""

    def f(x: torch.Tensor) -> torch.Tensor:
        return model(x.reshape(1, *in_shape)).reshape(-1)

    return f


def _forward(model: nn.Module, Xf: torch.Tensor, in_shape, batch_size: int) -> torch.Tensor:
    outs = []
    with torch.no_grad():
        for i in range(0, len(Xf), batch_size):
            y = model(Xf[i:i + batch_size].reshape(-1, *in_shape))
            outs.append(y.reshape(len(y), -1))
    return torch.cat(outs)


def _jacobian(model: nn.Module, Xf: torch.Tensor, in_shape, batch_size: int,
              progress: bool = False, desc: str = "gradients") -> torch.Tensor:
    """Rows of the Jacobian ``∇f_o(x_n)``, shape (N, O, D), one vmap(jacrev) per chunk."""
    jac = torch.func.vmap(torch.func.jacrev(_single(model, in_shape)))
    out = []
    starts = range(0, len(Xf), batch_size)
    for i in tqdm(starts, desc=desc, disable=not progress, leave=False):
        out.append(jac(Xf[i:i + batch_size]))
    return torch.cat(out)


# ----------------------------------------------------------------------------- curvature


@dataclass(frozen=True)
class CurvatureEstimate:
    """Extreme Hessian eigenvalues of every output over a set of inputs.

    Attributes
    ----------
    lambda_min, lambda_max : Tensor, shape (O,)
        Minimum over the samples of the smallest Ritz value, and maximum of the largest.
        Ritz values lie inside the spectrum, so these are inner estimates of
        :math:`\\min_x \\lambda_{\\min}(\\nabla^2 f_o(x))` and :math:`\\max_x \\lambda_{\\max}`;
        they are exact (up to round-off) when ``exact`` is True.
    argmin, argmax : Tensor, shape (O,), int64
        Index (into the samples used) where each extreme was found.
    n_samples : int
        Number of inputs the estimate is taken over.
    iters : int
        Lanczos iterations (Krylov dimension) per sample and output.
    exact : bool
        True when ``iters`` equals the input dimension, so the Krylov space is the whole space.
    """

    lambda_min: torch.Tensor
    lambda_max: torch.Tensor
    argmin: torch.Tensor
    argmax: torch.Tensor
    n_samples: int
    iters: int
    exact: bool

    @property
    def bound(self) -> torch.Tensor:
        """:math:`\\max(0, -\\lambda_{\\min}, \\lambda_{\\max})` per output, shape (O,)."""
        zero = torch.zeros_like(self.lambda_min)
        return torch.maximum(zero, torch.maximum(-self.lambda_min, self.lambda_max))


def _hvp_operator(model: nn.Module, in_shape, n_out: int):
    """``(x (n, D), V (n, O, D)) -> [H_o(x_n) V[n, o]]`` as one vmap of forward-over-reverse."""
    f = _single(model, in_shape)

    def hvp(x: torch.Tensor, w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        grad = torch.func.grad(lambda x_: (f(x_) * w).sum())
        return torch.func.jvp(grad, (x,), (v,))[1]

    over_outputs = torch.func.vmap(hvp, in_dims=(None, 0, 0))
    return torch.func.vmap(over_outputs, in_dims=(0, None, 0))


def _lanczos_extremes(hvp, x: torch.Tensor, eye: torch.Tensor, k: int,
                      gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest and largest Ritz values of every (sample, output) Hessian, shapes (n, O).

    Lanczos with full re-orthogonalisation builds an orthonormal Krylov basis Q; the Ritz
    values are the eigenvalues of the projected matrix ``Q^T H Q`` (formed from the stored
    products, not from the three-term recurrence, so lost orthogonality cannot push them
    outside the spectrum). A vanishing residual restarts with a random orthogonal vector.
    """
    n, D = x.shape
    O = eye.shape[0]
    Q = x.new_zeros(n, O, k, D)
    HQ = x.new_zeros(n, O, k, D)
    # drawn on the host: one seed gives the same starting vectors on every device
    q = torch.randn(n, O, D, generator=gen, dtype=x.dtype).to(x.device)
    q = q / q.norm(dim=-1, keepdim=True)
    for j in range(k):
        Q[:, :, j] = q
        w = hvp(x, eye, q)
        HQ[:, :, j] = w
        if j == k - 1:
            break
        r = w
        for _ in range(2):  # classical Gram-Schmidt, twice
            coef = torch.einsum("nojd,nod->noj", Q[:, :, :j + 1], r)
            r = r - torch.einsum("noj,nojd->nod", coef, Q[:, :, :j + 1])
        norm = r.norm(dim=-1, keepdim=True)
        scale = w.norm(dim=-1, keepdim=True).clamp_min(1e-300)
        dead = (norm <= 1e-10 * scale) | (norm == 0)
        if dead.any():
            fresh = torch.randn(n, O, D, generator=gen, dtype=x.dtype).to(x.device)
            for _ in range(2):
                coef = torch.einsum("nojd,nod->noj", Q[:, :, :j + 1], fresh)
                fresh = fresh - torch.einsum("noj,nojd->nod", coef, Q[:, :, :j + 1])
            r = torch.where(dead, fresh, r)
            norm = r.norm(dim=-1, keepdim=True)
        q = r / norm
    T = torch.einsum("noid,nojd->noij", Q, HQ)
    T = 0.5 * (T + T.transpose(-1, -2))
    evals = torch.linalg.eigvalsh(T)
    return evals[..., 0], evals[..., -1]


def estimate_curvature(model: nn.Module, X, *, iters: int = 20, n_samples: int | None = 2048,
                       batch_size: int | None = None, dtype: torch.dtype = torch.float64,
                       seed: int = 0, progress: bool = False) -> CurvatureEstimate:
    """Extreme Hessian eigenvalues of every output over the data, from Hessian-vector products.

    .. math::
        \\lambda^{\\min}_o = \\min_n \\lambda_{\\min}\\big(\\nabla^2 f_o(x_n)\\big), \\qquad
        \\lambda^{\\max}_o = \\max_n \\lambda_{\\max}\\big(\\nabla^2 f_o(x_n)\\big)

    Batched Lanczos (full re-orthogonalisation, Rayleigh-Ritz on the Krylov basis) runs for all
    samples and outputs at once; each step is one ``vmap`` of ``jvp(grad f_o)`` (forward over
    reverse mode). No dense ``D x D`` Hessian is ever formed.

    Parameters
    ----------
    model : nn.Module
        Any twice-differentiable network mapping (N, *in_shape) to (N, O) (or (N,)). A copy in
        eval mode and ``dtype`` is used.
    X : Tensor, shape (N, *in_shape)
        Inputs over which the extremes are taken.
    iters : int
        Krylov dimension per (sample, output), capped at D. With ``iters >= D`` the result is
        exact.
    n_samples : int or None
        Use a seeded random subset of this many rows of X (None: all rows).
    batch_size : int, optional
        Samples per vectorized chunk; by default chosen to keep about 8M floats per chunk.
    dtype : torch.dtype
        Computation dtype (float64 by default).
    seed : int
        Seeds the subset and the Lanczos start vectors.
    progress : bool
        Show a progress bar over chunks.

    Returns
    -------
    CurvatureEstimate

    Raises
    ------
    InputError
        If X is not (N, *in_shape), contains NaN/inf, or ``iters < 1``.

    References
    ----------
    .. [1] Perrett, Wood, Brown, arXiv:2307.09602 (curvature constant of the convex-concave split).
    """
    if int(iters) < 1:
        raise InputError(f"iters must be >= 1, got {iters}")
    net = _as_model(model, dtype)
    X = to_model_device(net, _as_inputs(X, dtype))
    in_shape = tuple(X.shape[1:])
    Xf = X.reshape(len(X), -1)
    gen = torch.Generator().manual_seed(int(seed))
    if n_samples is not None and len(Xf) > int(n_samples):
        Xf = Xf[torch.randperm(len(Xf), generator=gen)[: int(n_samples)]]
    n, D = Xf.shape
    n_out = _forward(net, Xf[:1], in_shape, 1).shape[1]
    k = min(int(iters), D)
    if batch_size is None:
        batch_size = max(1, _CHUNK_FLOATS // (2 * n_out * k * D))
    hvp = _hvp_operator(net, in_shape, n_out)
    eye = torch.eye(n_out, dtype=dtype, device=Xf.device)
    lo, hi = [], []
    for i in tqdm(range(0, n, batch_size), desc="curvature", disable=not progress, leave=False):
        a, b = _lanczos_extremes(hvp, Xf[i:i + batch_size], eye, k, gen)
        lo.append(a)
        hi.append(b)
    lo_t, hi_t = torch.cat(lo), torch.cat(hi)
    lam_min, arg_min = lo_t.min(0)
    lam_max, arg_max = hi_t.max(0)
    return CurvatureEstimate(lam_min, lam_max, arg_min, arg_max, n, k, k == D)


def secant_curvature(points: torch.Tensor, f_points: torch.Tensor, grad_points: torch.Tensor,
                     X: torch.Tensor, f_X: torch.Tensor, *, chunk: int | None = None
                     ) -> torch.Tensor:
    """Smallest ``c`` that keeps every tangent plane on the right side at every data point.

    With :math:`T_i(x) = f(z_i) + \\langle \\nabla f(z_i), x - z_i \\rangle` the first-order
    Taylor expansion at tangent point :math:`z_i`,

    .. math::
        c^{\\rm sec}_o = \\max\\Big(0, \\max_{i, j:\\, x_j \\ne z_i}
        \\frac{2\\, |f_o(x_j) - T_{o,i}(x_j)|}{\\|x_j - z_i\\|^2}\\Big),

    which is exactly the condition for the g-plane at :math:`z_i` to lie below
    :math:`g_o(x_j)` and the h-plane above :math:`h_o(x_j)` for all pairs (every such ratio
    is at most the Hessian's spectral radius on the segment, so this is also an inner
    estimate of the Hessian bound; it stays meaningful for piecewise-linear networks).

    Parameters
    ----------
    points : Tensor, shape (P, D)
    f_points : Tensor, shape (P, O)
    grad_points : Tensor, shape (P, O, D)
    X : Tensor, shape (N, D)
    f_X : Tensor, shape (N, O)
    chunk : int, optional
        Tangent points per chunk.

    Returns
    -------
    Tensor, shape (O,)
    """
    P, O, D = grad_points.shape
    if chunk is None:
        chunk = max(1, _CHUNK_FLOATS // max(1, len(X) * O))
    xx = (X * X).sum(1)
    best = X.new_zeros(O)
    tiny = 1e-12 * float(xx.mean().clamp_min(1e-300))
    for i in range(0, P, chunk):
        z, fz, gz = points[i:i + chunk], f_points[i:i + chunk], grad_points[i:i + chunk]
        taylor = torch.einsum("pod,nd->pno", gz, X) + (fz - torch.einsum("pod,pd->po", gz, z))[:, None]
        d2 = ((z * z).sum(1)[:, None] + xx[None] - 2 * z @ X.T).clamp_min(0.0)  # (p, N)
        ratio = 2 * (f_X[None] - taylor).abs() / d2[..., None].clamp_min(tiny)
        ratio = torch.where((d2 > tiny)[..., None], ratio, torch.zeros_like(ratio))
        best = torch.maximum(best, ratio.amax((0, 1)))
    return best


# ----------------------------------------------------------------------------- selection


def _kmeans(X: torch.Tensor, k: int, iters: int, gen: torch.Generator) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding; empty clusters take the farthest point."""
    N = len(X)
    first = int(torch.randint(N, (1,), generator=gen))
    centres = [X[first]]
    d2 = ((X - X[first]) ** 2).sum(1)
    for _ in range(1, k):
        probs = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full_like(d2, 1.0 / N)
        idx = int(torch.multinomial(probs, 1, generator=gen))
        centres.append(X[idx])
        d2 = torch.minimum(d2, ((X - X[idx]) ** 2).sum(1))
    C = torch.stack(centres)
    for _ in range(iters):
        dist = torch.cdist(X, C)
        assign = dist.argmin(1)
        counts = torch.bincount(assign, minlength=k).to(X.dtype)
        sums = torch.zeros_like(C).index_add_(0, assign, X)
        new = sums / counts.clamp_min(1)[:, None]
        empty = counts == 0
        if empty.any():
            far = dist.min(1).values.topk(int(empty.sum())).indices
            new[empty] = X[far]
        if torch.allclose(new, C):
            C = new
            break
        C = new
    return C


def _greedy(Xf, fX, cand_idx, f_cand, J_cand, c, n_planes, progress):
    """Add, one at a time, the candidate with the largest current error sum_o |f_o - f̂_o|."""
    N, O = fX.shape
    Z = Xf[cand_idx]
    zz = (Z * Z).sum(1)
    base = f_cand - torch.einsum("mod,md->mo", J_cand, Z)  # f(z) - <∇f(z), z>
    gmax = torch.full((N, O), -math.inf, dtype=Xf.dtype, device=Xf.device)
    hmin = torch.full((N, O), math.inf, dtype=Xf.dtype, device=Xf.device)
    chosen = torch.zeros(len(cand_idx), dtype=torch.bool, device=Xf.device)
    # the chosen index stays a device scalar: no host round trip per plane
    order: list[torch.Tensor] = []
    centre = Xf.mean(0)
    m = ((Z - centre) ** 2).sum(1).argmin()
    for _ in tqdm(range(n_planes), desc="greedy planes", disable=not progress, leave=False):
        order.append(m)
        chosen[m] = True
        lin = Xf @ J_cand[m].T + base[m]  # (N, O): Taylor plane of f
        quad = c[None] * (Xf @ Z[m])[:, None] - 0.5 * c[None] * zz[m]  # c<z,x> - c|z|^2/2
        gmax = torch.maximum(gmax, lin + quad)
        hmin = torch.minimum(hmin, lin - quad)
        if len(order) == n_planes:
            break
        err = (fX - 0.5 * (gmax + hmin)).abs().sum(1)[cand_idx]
        err[chosen] = -math.inf
        m = err.argmax()
    return cand_idx[torch.stack(order).to(cand_idx.device)]


# ----------------------------------------------------------------------------- result


@dataclass(frozen=True)
class MaxAffineApproximation:
    """A network approximated by a difference of two max-affine splines (per output).

    .. math::
        \\hat g_o(x) = \\max_p \\langle A^g_{o,p}, x\\rangle + B^g_{o,p}, \\quad
        \\hat h_o(x) = \\min_p \\langle A^h_{o,p}, x\\rangle + B^h_{o,p}, \\quad
        \\hat f_o = \\tfrac12(\\hat g_o + \\hat h_o)

    Attributes
    ----------
    slopes_g, slopes_h : Tensor, shape (O, P, D)
        :math:`\\nabla f_o(z_p) \\pm c_o z_p`, the gradients of g and h at the tangent points.
    intercepts_g, intercepts_h : Tensor, shape (O, P)
        :math:`f_o(z_p) - \\langle\\nabla f_o(z_p), z_p\\rangle \\mp \\tfrac{c_o}{2}\\|z_p\\|^2`
        (:math:`-g_o^*(\\nabla g_o(z_p))`, resp. the concave conjugate of h).
    c : Tensor, shape (O,)
        Curvature constants used.
    points : Tensor, shape (P, D)
        Tangent points (flattened inputs).
    in_shape : tuple of int
        Shape of one input.
    curvature : CurvatureEstimate or None
        The Hessian estimate behind ``c`` (None when c was given or curvature="secant").
    c_secant : Tensor, shape (O,), or None
        Secant curvature between tangent points and the curvature samples (None when c was given
        or curvature="hessian").
    select : str
        How the tangent points were chosen.
    build_seconds : float
        Wall time of :func:`approximate`.
    """

    slopes_g: torch.Tensor
    intercepts_g: torch.Tensor
    slopes_h: torch.Tensor
    intercepts_h: torch.Tensor
    c: torch.Tensor
    points: torch.Tensor
    in_shape: tuple[int, ...]
    curvature: CurvatureEstimate | None = None
    c_secant: torch.Tensor | None = None
    select: str = "all"
    build_seconds: float = 0.0

    @property
    def n_planes(self) -> int:
        """Number of tangent planes P per output (for each of g and h)."""
        return self.slopes_g.shape[1]

    @property
    def n_outputs(self) -> int:
        return self.slopes_g.shape[0]

    def _flat(self, x) -> torch.Tensor:
        x = torch.as_tensor(x)
        D = self.slopes_g.shape[2]
        if x.dim() >= 1 and x.dim() == len(self.in_shape) and x.numel() == D:
            raise InputError(
                f"x has shape {tuple(x.shape)}, one input without a batch dimension; pass x[None]"
            )
        x = _as_inputs(x, self.slopes_g.dtype, "x")
        if x[0].numel() != D:
            raise InputError(
                f"x has shape {tuple(x.shape)} but the approximation expects inputs of shape "
                f"(N, {', '.join(map(str, self.in_shape))}) or (N, {D})"
            )
        return x.reshape(len(x), D).to(self.slopes_g.device)

    def _reduce(self, x: torch.Tensor, slopes, intercepts, mode: str):
        O, P, D = slopes.shape
        chunk = max(1, _CHUNK_FLOATS // max(1, O * P))
        vals, idx = [], []
        for i in range(0, len(x), chunk):
            planes = torch.einsum("opd,nd->nop", slopes, x[i:i + chunk]) + intercepts
            v, j = planes.max(-1) if mode == "max" else planes.min(-1)
            vals.append(v)
            idx.append(j)
        return torch.cat(vals), torch.cat(idx)

    def predict_parts(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """The convex part ĝ and the concave part ĥ, each of shape (N, O).

        Parameters
        ----------
        x : Tensor, shape (N, *in_shape) or (N, D)
        """
        xf = self._flat(x)
        g = self._reduce(xf, self.slopes_g, self.intercepts_g, "max")[0]
        h = self._reduce(xf, self.slopes_h, self.intercepts_h, "min")[0]
        return g, h

    def predict(self, x) -> torch.Tensor:
        """:math:`\\hat f(x) = (\\hat g(x) + \\hat h(x)) / 2`, shape (N, O)."""
        g, h = self.predict_parts(x)
        return 0.5 * (g + h)

    def region(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """VQ code: index of the active plane of ĝ (argmax) and of ĥ (argmin), each (N, O) int64.

        Ties go to the lowest plane index. Inputs sharing both codes for output o lie in one
        convex cell on which :math:`\\hat f_o` is affine.
        """
        xf = self._flat(x)
        code_g = self._reduce(xf, self.slopes_g, self.intercepts_g, "max")[1]
        code_h = self._reduce(xf, self.slopes_h, self.intercepts_h, "min")[1]
        return code_g, code_h

    def to_maso(self) -> tuple[MASO, MASO]:
        """The pair ``(G, H)`` of max-affine spline operators with ``f̂ = (G(x) - H(x)) / 2``.

        ``G`` holds the planes of ĝ (one unit per output, P pieces), ``H`` the negated planes of
        ĥ, so ``H.evaluate(x) = -ĥ(x)`` is convex.
        """
        return (MASO(self.slopes_g, self.intercepts_g), MASO(-self.slopes_h, -self.intercepts_h))


# ----------------------------------------------------------------------------- driver


def approximate(model: nn.Module, X, n_planes: int | None = 256, *, select: str = "kmeans",
                c: float | Sequence[float] | torch.Tensor | None = None, curvature: str = "auto",
                curvature_iters: int = 20, curvature_samples: int | None = 2048,
                hessian: CurvatureEstimate | None = None, margin: float = 0.1, kmeans_iters: int = 30, max_candidates: int = 4096,
                batch_size: int = 256, dtype: torch.dtype = torch.float64, seed: int = 0,
                progress: bool = True) -> MaxAffineApproximation:
    """Approximate a (smooth or piecewise) network by tangent planes of its convex-concave split.

    .. math::
        \\hat f_o(x) = \\tfrac12\\Big(\\max_p [\\,T_{o,p}(x) - \\tfrac{c_o}{2}\\|x - z_p\\|^2
        + \\tfrac{c_o}{2}\\|x\\|^2] + \\min_p [\\,T_{o,p}(x) + \\tfrac{c_o}{2}\\|x - z_p\\|^2
        - \\tfrac{c_o}{2}\\|x\\|^2]\\Big)

    with :math:`T_{o,p}` the first-order Taylor expansion of :math:`f_o` at tangent point
    :math:`z_p` (the quadratic terms in x cancel inside each bracket, so each is affine).

    Parameters
    ----------
    model : nn.Module
        Network mapping (N, *in_shape) to (N, O) or (N,): MLPs and CNNs with tanh, sigmoid,
        GELU, SiLU, softplus, ReLU, ... An eval-mode copy in ``dtype`` is used.
    X : Tensor, shape (N, *in_shape)
        Data: tangent points are chosen from it and the curvature is estimated over it.
    n_planes : int or None
        Number P of tangent planes (per output, for each of g and h). None, or P >= N, uses every
        row of X (``select="all"``).
    select : {"kmeans", "kmedoids", "greedy", "random", "all"}
        ``kmeans``: k-means centres of X (points off the data); ``kmedoids``: the data point
        nearest each k-means centre; ``greedy``: start at the candidate nearest the data mean and
        repeatedly add the candidate with the largest current error
        :math:`\\sum_o |f_o - \\hat f_o|`; ``random``: a seeded random subset; ``all``: every row.
    c : float or sequence or Tensor of shape (O,), optional
        Curvature constants. By default estimated (see ``curvature``).
    curvature : {"auto", "hessian", "secant"}
        ``hessian``: the Hessian spectral bound from :func:`estimate_curvature`; ``secant``: the
        secant bound from :func:`secant_curvature` between tangent points and the curvature
        samples (for ``greedy`` between all candidates and the samples, since c is needed before
        the planes are chosen); ``auto``: the larger of the two. Piecewise-linear networks
        (ReLU) have zero Hessian almost everywhere, so their c comes from the secant term.
    curvature_iters : int
        Lanczos iterations per sample and output (capped at D; exact when >= D).
    curvature_samples : int or None
        Seeded subset of X used for the curvature estimate (None: all of X).
    hessian : CurvatureEstimate, optional
        Reuse a result of :func:`estimate_curvature` (on the same model) instead of recomputing
        it, e.g. when building approximations with several plane budgets.
    margin : float
        Relative safety margin, ``c = (1 + margin) * estimate``. Both estimates are inner
        bounds (Ritz values lie inside the spectrum; the data is a finite sample of the domain),
        so a margin makes ``ĝ <= g`` and ``ĥ >= h`` hold beyond the samples.
    kmeans_iters : int
        Lloyd iterations for ``kmeans``/``kmedoids``.
    max_candidates : int
        ``greedy`` chooses among a seeded random subset of at most this many rows of X.
    batch_size : int
        Inputs per vectorized chunk for gradients and forward passes.
    dtype : torch.dtype
        Computation dtype (float64 by default).
    seed : int
        Seeds every random choice.
    progress : bool
        Show progress bars.

    Returns
    -------
    MaxAffineApproximation

    Raises
    ------
    InputError
        If X is not (N, *in_shape) or has NaN/inf, the model's output is not (N, O), ``select``
        or ``curvature`` is unknown, ``n_planes < 1``, or ``c`` is negative, non-finite or of the
        wrong shape.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from maxaffine.legendre import approximate
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 3))
    >>> X = torch.randn(200, 2)
    >>> approx = approximate(net, X, 50, select="greedy", progress=False)
    >>> approx.slopes_g.shape, approx.c.shape
    (torch.Size([3, 50, 2]), torch.Size([3]))
    >>> err = (approx.predict(X) - net.double()(X.double())).abs().mean()
    >>> bool(err < 0.05)
    True

    References
    ----------
    .. [1] Perrett, Wood, Brown, arXiv:2307.09602.
    .. [2] Balestriero, Baraniuk, "A spline theory of deep networks", ICML 2018.
    """
    t0 = time.perf_counter()
    if select not in _SELECT:
        raise InputError(f"select must be one of {', '.join(_SELECT)}; got {select!r}")
    if curvature not in _CURVATURE:
        raise InputError(f"curvature must be one of {', '.join(_CURVATURE)}; got {curvature!r}")
    if n_planes is not None and (int(n_planes) != n_planes or int(n_planes) < 1):
        raise InputError(f"n_planes must be a positive integer or None, got {n_planes!r}")
    if not (margin >= 0 and math.isfinite(margin)):
        raise InputError(f"margin must be a finite number >= 0, got {margin}")
    net = _as_model(model, dtype)
    X = to_model_device(net, _as_inputs(X, dtype))
    in_shape = tuple(X.shape[1:])
    N = len(X)
    Xf = X.reshape(N, -1)
    try:
        fX = _forward(net, Xf, in_shape, batch_size)
    except RuntimeError as exc:
        raise InputError(
            f"the model could not be applied to inputs of shape (N, {', '.join(map(str, in_shape))})"
            f": {exc}"
        ) from exc
    if fX.shape[0] != N:
        raise InputError(f"the model maps {N} inputs to {fX.shape[0]} rows; it must act per sample")
    O = fX.shape[1]
    gen = torch.Generator().manual_seed(int(seed))

    c_given = None
    if c is not None:
        c_given = torch.as_tensor(c, dtype=dtype).reshape(-1).to(X.device)
        if c_given.numel() == 1:
            c_given = c_given.expand(O).clone()
        if c_given.shape != (O,) or not torch.isfinite(c_given).all() or (c_given < 0).any():
            raise InputError(
                f"c must be a finite non-negative scalar or have shape ({O},) (one per output); "
                f"got {c!r}"
            )

    P = N if (n_planes is None or select == "all" or int(n_planes) >= N) else int(n_planes)
    if P == N:
        select = "all"

    # curvature samples (shared by the Hessian and secant estimates)
    if curvature_samples is not None and N > int(curvature_samples):
        sample_idx = torch.randperm(N, generator=gen)[: int(curvature_samples)]
    else:
        sample_idx = torch.arange(N, device=Xf.device)
    Xs, fs = Xf[sample_idx], fX[sample_idx]

    est = hessian
    if hessian is not None and hessian.lambda_min.shape != (O,):
        raise InputError(
            f"hessian has {hessian.lambda_min.numel()} outputs but the model has {O}; pass the "
            "estimate of this model"
        )
    if c_given is None and curvature in ("auto", "hessian") and est is None:
        est = estimate_curvature(net, Xs.reshape(-1, *in_shape), iters=curvature_iters,
                                 n_samples=None, dtype=dtype, seed=seed, progress=progress)
    use_hessian = c_given is None and curvature in ("auto", "hessian")
    c_hess = (est.bound.to(dtype) if (est is not None and use_hessian)
              else torch.zeros(O, dtype=dtype, device=X.device))
    if not use_hessian:
        est = None
    use_secant = c_given is None and curvature in ("auto", "secant")

    c_sec = None
    if select == "greedy":
        if N > max_candidates:
            cand = torch.randperm(N, generator=gen)[:max_candidates].sort().values
        else:
            cand = torch.arange(N, device=Xf.device)
        J_cand = _jacobian(net, Xf[cand], in_shape, batch_size, progress)
        if use_secant:
            c_sec = secant_curvature(Xf[cand], fX[cand], J_cand, Xs, fs)
        if c_given is not None:
            c_val = c_given
        else:
            c_val = (1 + margin) * torch.maximum(c_hess, c_sec if c_sec is not None else c_hess)
        idx = _greedy(Xf, fX, cand, fX[cand], J_cand, c_val, P, progress)
        pos = torch.searchsorted(cand, idx)
        Z, fZ, JZ = Xf[idx], fX[idx], J_cand[pos]
    else:
        if select == "all":
            Z, fZ = Xf, fX
        elif select == "random":
            idx = torch.randperm(N, generator=gen)[:P].sort().values
            Z, fZ = Xf[idx], fX[idx]
        else:
            centres = _kmeans(Xf, P, kmeans_iters, gen)
            if select == "kmedoids":
                idx = torch.unique(torch.cdist(centres, Xf).argmin(1))
                Z, fZ = Xf[idx], fX[idx]
            else:
                Z, fZ = centres, _forward(net, centres, in_shape, batch_size)
        JZ = _jacobian(net, Z, in_shape, batch_size, progress)
        if use_secant:
            c_sec = secant_curvature(Z, fZ, JZ, Xs, fs)
        if c_given is not None:
            c_val = c_given
        else:
            c_val = (1 + margin) * torch.maximum(c_hess, c_sec if c_sec is not None else c_hess)

    zz = (Z * Z).sum(1)  # (P,)
    base = fZ.T - torch.einsum("pod,pd->op", JZ, Z)  # (O, P)
    cz = c_val[:, None, None] * Z[None]  # (O, P, D)
    grads = JZ.permute(1, 0, 2)
    half = 0.5 * c_val[:, None] * zz[None]
    return MaxAffineApproximation(
        slopes_g=grads + cz, intercepts_g=base - half,
        slopes_h=grads - cz, intercepts_h=base + half,
        c=c_val.clone(), points=Z, in_shape=in_shape, curvature=est,
        c_secant=c_sec, select=select, build_seconds=time.perf_counter() - t0,
    )


__all__ = [
    "CurvatureEstimate",
    "MaxAffineApproximation",
    "approximate",
    "estimate_curvature",
    "secant_curvature",
]
