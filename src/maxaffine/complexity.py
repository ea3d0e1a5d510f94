"""Complexity measures of the spline partition: local complexity and Hessian (rugosity) complexity.

- :func:`local_complexity` (Humayun, Balestriero & Baraniuk, ICML 2024) counts the neurons
  whose boundary crosses a small cross-polytope around each input.
- :func:`hessian_complexity` (LeJeune, Balestriero, Javadi & Baraniuk, 2019) measures how
  much the affine map ``A[x]`` changes around the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .affine import _as_trace, _chunks, affine_map
from .errors import InputError
from .layers.activation import TwoSlopeRule
from .trace import Trace


@dataclass(frozen=True)
class LocalComplexity:
    """Local complexity around each input (number of neurons cut by its cross-polytope).

    Attributes
    ----------
    total : Tensor, shape (B,), int64
        ``LC(x_n)`` summed over all layers, the output layer included.
    layers : dict of str -> Tensor (B,), or None
        Per-layer counts (piecewise layers in graph order, then ``"output"``) when requested.
    radius : float
    n_vertices : int
    """

    total: torch.Tensor
    layers: dict[str, torch.Tensor] | None
    radius: float
    n_vertices: int

    def mean(self) -> float:
        """Average local complexity over the batch."""
        return float(self.total.double().mean())


def _cross_polytope(x: torch.Tensor, radius: float, P: int, gen: torch.Generator) -> torch.Tensor:
    """Vertices ``x ± r v_p`` with ``v_p`` random orthonormal per sample: (B, 2P, *in_shape)."""
    B = x.shape[0]
    D = math.prod(x.shape[1:])
    g = torch.randn(B, D, P, generator=gen, dtype=torch.float64)
    q = _orthonormalize(g)  # (B, D, P) orthonormal columns, Haar-distributed
    v = (radius * q).transpose(1, 2).to(x.dtype)  # (B, P, D)
    xf = x.reshape(B, 1, D)
    verts = torch.cat([xf + v, xf - v], 1)  # (B, 2P, D)
    return verts.reshape(B, 2 * P, *x.shape[1:])


def _generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded by ``seed``, or by a draw from torch's global RNG if None."""
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    return torch.Generator().manual_seed(int(seed))


def _orthonormalize(g: torch.Tensor) -> torch.Tensor:
    """Q of the QR factorisation of ``g`` (B, D, P) with a positive diagonal of R.

    CholeskyQR2 (two rounds of ``Q = G R⁻¹`` with ``RᵀR = GᵀG``): batched matmuls and
    triangular solves, several times faster than Householder QR for P ≪ D and orthonormal to
    machine precision for the well-conditioned Gaussian matrices drawn here; falls back to
    Householder QR when a Cholesky factorisation fails.
    """
    q = g
    for _ in range(2):
        L, info = torch.linalg.cholesky_ex(q.transpose(1, 2) @ q)
        if bool((info != 0).any()):
            qh, r = torch.linalg.qr(g)
            return qh * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(1)
        # q R^{-1} with R = Lᵀ  <=>  solve X Lᵀ = q
        q = torch.linalg.solve_triangular(L.transpose(1, 2), q, upper=True, left=False)
    return q


def _nonconstant(code: torch.Tensor, B: int, V: int) -> torch.Tensor:
    """Number of units whose code differs among the V vertices of each sample: (B,)."""
    c = code.reshape(B, V, -1)
    return (c != c[:, :1]).any(1).sum(1)


def local_complexity(model: nn.Module | Trace, x: torch.Tensor, *, radius: float,
                     n_vertices: int, per_layer: bool = False, seed: int | None = None,
                     chunk_size: int | None = None) -> LocalComplexity:
    """Local complexity: neurons whose pre-activation sign is not constant on a cross-polytope.

    .. math::
        V(x) = \\{x \\pm r\\, v_p\\}_{p=1}^{P},\\ v_p \\text{ random orthonormal};\\qquad
        \\mathrm{LC}(x) = \\#\\{\\text{neurons } k : \\operatorname{sign} z_k
        \\text{ is not constant on } V(x)\\}

    Every neuron of every layer counts, the output layer (logits) included. For ReLU-like
    units the sign of the pre-activation is the VQ code; for max-pooling, maxout and clamps
    the generalisation used is "the VQ code (argmax / regime) is not constant".

    Parameters
    ----------
    model : nn.Module or Trace
    x : Tensor, shape (B, *in_shape)
    radius : float
        ``r > 0``, the distance of every vertex from ``x``.
    n_vertices : int
        Number of vertices ``2P`` (even, ``P ≤ D``); Humayun et al. use 50 on MNIST.
    per_layer : bool
        Also return the count of every layer.
    seed : int, optional
        Seed for the random directions (a fresh draw per sample; the draws are made chunk
        by chunk from one generator, so they depend on ``chunk_size``).
    chunk_size : int, optional
        Samples per forward pass (each pass evaluates ``chunk_size * n_vertices`` points).

    Returns
    -------
    LocalComplexity
        ``total`` (B,) and, with ``per_layer``, ``layers`` {name: (B,)} ending with ``"output"``.

    Raises
    ------
    InputError
        If ``radius ≤ 0``, ``n_vertices`` is odd or not positive, or ``n_vertices / 2 > D``.

    Examples
    --------
    >>> import torch, maxaffine
    >>> net = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    >>> lc = maxaffine.local_complexity(net, torch.randn(4, 10), radius=0.1, n_vertices=10, seed=0)
    >>> lc.total.shape
    torch.Size([4])

    References
    ----------
    Humayun, Balestriero & Baraniuk, "Deep Networks Always Grok and Here is Why", ICML 2024.
    """
    if not (radius > 0 and math.isfinite(radius)):
        raise InputError(f"radius must be a positive finite number; got {radius}")
    if n_vertices <= 0 or n_vertices % 2:
        raise InputError(f"n_vertices must be a positive even number (2P vertices x ± r v_p); "
                         f"got {n_vertices}")
    tr = _as_trace(model, x)
    x = tr.prepare(x)
    P = n_vertices // 2
    D = tr.in_features
    if P > D:
        raise InputError(f"n_vertices / 2 = {P} orthonormal directions do not fit in the input "
                         f"dimension D = {D}; use n_vertices ≤ {2 * D}")
    gen = _generator(seed)
    B = x.shape[0]
    size = chunk_size or max(1, 2**12 // n_vertices)  # ~4k rows: cache-friendly, measured best
    names = list(tr.piecewise) + ["output"]
    counts: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    with torch.no_grad():
        for sl in _chunks(B, size):
            xb = x[sl]
            nb = xb.shape[0]
            verts = _cross_polytope(xb, float(radius), P, gen).reshape(nb * n_vertices, *tr.in_shape)
            rec = tr.run(verts, prepared=True)
            for name in tr.piecewise:
                rule = tr.node(name).rule
                if isinstance(rule, TwoSlopeRule):
                    code = tr.unit_inputs(rec, name)[0] > 0
                else:
                    code = rec.codes[name]
                counts[name].append(_nonconstant(code, nb, n_vertices))
            counts["output"].append(_nonconstant(rec.output > 0, nb, n_vertices))
    layers = {n: torch.cat(c) if c else torch.zeros(0, dtype=torch.long) for n, c in counts.items()}
    total = torch.stack(list(layers.values())).sum(0)
    return LocalComplexity(total, layers if per_layer else None, float(radius), int(n_vertices))


@dataclass(frozen=True)
class HessianComplexity:
    """Hessian (rugosity) complexity estimate.

    Attributes
    ----------
    value : float
        The estimate (mean over the batch, see :func:`hessian_complexity`).
    per_sample : Tensor, shape (B,)
        The per-sample terms whose mean is ``value``.
    estimator : {"perturbation", "augmentation"}
    """

    value: float
    per_sample: torch.Tensor
    estimator: str


def hessian_complexity(model: nn.Module | Trace, x: torch.Tensor, *,
                       x_aug: torch.Tensor | None = None, sigma: float = 1e-4,
                       eps: float = 1e-4, seed: int | None = None,
                       chunk_size: int | None = None) -> HessianComplexity:
    """Hessian (rugosity) complexity: how much the affine map changes around the data.

    Two estimators, as used by LeJeune et al.:

    .. math::
        \\text{perturbation (logged during training):}\\quad
        \\sum_c \\operatorname{mean}_n \\|A_c[x_n] - A_c[x_n + \\delta_n]\\|_2,
        \\quad \\delta_n \\sim \\mathcal N(0, \\sigma^2 I)

        \\text{augmentation (the regularizer's form):}\\quad
        \\operatorname{mean}_n \\sqrt{\\textstyle\\sum_c \\|A_c[x_n] - A_c[T(x_n)]\\|_2^2 + \\epsilon}

    The perturbation estimator is used when ``x_aug`` is None, the augmentation estimator
    (with ``T(x_n) = x_aug[n]``) otherwise. Both use the exact ``A[x]`` in float64. For a
    piecewise-affine net ``A`` is constant inside regions, so the perturbation estimator is
    nonzero only for samples within about ``σ`` of a boundary: it measures the density of
    boundaries near the data weighted by the jump of the slope across them.

    Parameters
    ----------
    model : nn.Module or Trace
    x : Tensor, shape (B, *in_shape)
    x_aug : Tensor, shape (B, *in_shape), optional
        Augmented copies ``T(x_n)``, paired row by row with ``x``.
    sigma : float
        Standard deviation of the perturbation (perturbation estimator).
    eps : float
        The ``ε`` under the square root (augmentation estimator).
    seed : int, optional
        Seed of the perturbation.
    chunk_size : int, optional

    Returns
    -------
    HessianComplexity
        ``value``, ``per_sample`` (B,) (for the perturbation estimator ``per_sample[n] =
        Σ_c ||ΔA_c||``, whose mean is ``value``) and ``estimator``.

    Raises
    ------
    InputError
        If ``x_aug`` does not have the shape of ``x`` or ``sigma ≤ 0``.

    References
    ----------
    LeJeune, Balestriero, Javadi & Baraniuk, "Implicit Rugosity Regularization via Data
    Augmentation", arXiv:1905.11639, 2019.
    """
    tr = _as_trace(model, x)
    x = tr.prepare(x)
    if x_aug is None:
        if not sigma > 0:
            raise InputError(f"sigma must be positive; got {sigma}")
        gen = _generator(seed)
        x2 = x + sigma * torch.randn(x.shape, generator=gen, dtype=x.dtype)
        estimator = "perturbation"
    else:
        x2 = tr.prepare(x_aug)
        if x2.shape != x.shape:
            raise InputError(f"x_aug must have the shape of x {tuple(x.shape)}; got {tuple(x2.shape)}")
        estimator = "augmentation"
    B = x.shape[0]
    A = affine_map(tr, torch.cat([x, x2]), chunk_size=chunk_size).A
    dA = A[:B] - A[B:]  # (B, C, D)
    if estimator == "perturbation":
        per = dA.norm(dim=2).sum(1)
    else:
        per = torch.sqrt(dA.pow(2).sum((1, 2)) + eps)
    return HessianComplexity(float(per.mean()) if B else 0.0, per, estimator)


__all__ = ["HessianComplexity", "LocalComplexity", "hessian_complexity", "local_complexity"]
