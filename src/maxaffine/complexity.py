"""Complexity measures of the spline partition: local complexity and Hessian (rugosity) complexity.

- :func:`local_complexity` (Humayun, Balestriero & Baraniuk, ICML 2024) counts the neurons
  whose boundary crosses a small cross-polytope around each input.
- :func:`hessian_complexity` (LeJeune, Balestriero, Javadi & Baraniuk, 2019) measures how
  much the affine map ``A[x]`` changes around the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ._stream import batches, is_stream
from .affine import _chunks, _default_chunk, affine_map
from .errors import InputError
from .trace import Trace, as_trace


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

    def to_dict(self) -> dict[str, np.ndarray]:
        """One row per input: ``sample``, ``total`` and (if computed) one column per layer."""
        from ._tables import column

        d = {"sample": np.arange(len(self.total)), "total": column(self.total)}
        for k, v in (self.layers or {}).items():
            d[k] = column(v)
        return d

    def to_frame(self):
        """:meth:`to_dict` as a pandas DataFrame indexed by ``sample`` (needs pandas)."""
        from ._tables import frame

        return frame(self.to_dict(), index="sample")

    def __repr__(self) -> str:
        return (f"LocalComplexity(batch={len(self.total)}, mean={self.mean():.6g}, "
                f"radius={self.radius:.6g}, n_vertices={self.n_vertices}, "
                f"layers={None if self.layers is None else len(self.layers)})")


def _generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded by ``seed``, or by a draw from torch's global RNG if None."""
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    return torch.Generator().manual_seed(int(seed))


def _rng_streams(seed: int | None) -> list[np.random.Generator]:
    """Three independent numpy generators: Gaussian block, complement normals, chi-squares.

    Seeded by ``seed`` or, if None, by a draw from torch's global RNG (so ``torch.manual_seed``
    makes a run reproducible). Each kind of draw has its own stream and is drawn sample after
    sample, so the draws do not depend on the chunking. (numpy's ziggurat sampler draws
    float64 normals 2-3 times faster than ``torch.randn``.)
    """
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    if int(seed) < 0:
        raise InputError(f"seed must be a non-negative integer; got {seed}")
    return [np.random.Generator(np.random.SFC64(s))
            for s in np.random.SeedSequence(int(seed)).spawn(3)]


def _inverse_r(S: torch.Tensor) -> torch.Tensor:
    """``R⁻¹`` of ``S = Q R`` (B, M, P) with orthonormal ``Q`` and a positive diagonal of ``R``.

    Cholesky QR (``RᵀR = SᵀS``) with the P × P inverse formed explicitly, so everything is
    batched small matrix products. ``Q = S R⁻¹`` is then orthonormal up to about
    ``ε κ(S)²``: one round suffices for the Gaussian matrices with ``M ≥ 2P`` rows drawn
    here (``κ ≲ 6``), a second round (CholeskyQR2) is made for ``M < 2P``. Falls back to
    Householder QR when a Cholesky factorisation fails.
    """
    eye = torch.eye(S.shape[-1], dtype=S.dtype, device=S.device)
    rounds = 1 if S.shape[-2] >= 2 * S.shape[-1] else 2
    q, rinv = S, eye
    for round_ in range(rounds):
        L, info = torch.linalg.cholesky_ex(q.mT @ q)
        if bool((info != 0).any()):
            _, r = torch.linalg.qr(S)
            sign = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
            r = r * torch.where(sign == 0, 1.0, sign).unsqueeze(-1)
            return torch.linalg.solve_triangular(r, eye, upper=True)
        step = torch.linalg.solve_triangular(L.mT, eye, upper=True)
        rinv = step if round_ == 0 else rinv @ step
        if round_ + 1 < rounds:
            q = q @ step
    return rinv


def _nonconstant(code: torch.Tensor, B: int, V: int) -> torch.Tensor:
    """Number of units whose code differs among the V vertices of each sample: (B,)."""
    c = code.reshape(B, V, -1)
    return (c != c[:, :1]).any(1).sum(1)


def _sign_changes(u: torch.Tensor, B: int, V: int) -> torch.Tensor:
    """Number of units whose sign ``u > 0`` differs among the V vertices of each sample: (B,).

    Per unit the max and the min over the vertices (no boolean code per vertex): the sign
    is not constant iff ``max > 0 ≥ min``.
    """
    z = u.reshape(B, V, -1)
    return ((z.amax(1) > 0) & (z.amin(1) <= 0)).sum(1)


@dataclass(frozen=True)
class _Draws:
    """Random numbers of one chunk of samples.

    ``A`` (B, k, P) is the Gaussian block in the first ``k`` coordinates of the sampling
    basis; ``C`` the complement's block, (B, D - k, P) Gaussian or (B, P, P) Bartlett factor;
    ``rinv`` (B, P, P) the inverse R factor of the stacked ``[A; C]``.
    """

    A: torch.Tensor
    C: torch.Tensor | None
    rinv: torch.Tensor


class _CrossPolytopeSampler:
    """The cross-polytopes of :func:`local_complexity`, evaluated through the affine prefix.

    The affine prefix is the part of the graph computed from the input before any piecewise
    node (it is affine in ``x``); its *frontier* are the prefix values read by the rest of the
    graph. For a vertex ``x ± r v`` a frontier value is ``f(x) ± r L v`` with ``L`` the linear
    part of the prefix, so the prefix is evaluated once at the centre and once per direction
    instead of once per vertex.

    Directions: ``v = G R⁻¹`` with ``G`` (D, P) standard Gaussian and ``G = QR``, i.e. Haar
    orthonormal. With ``mode="auto"``, when the frontier has ``F < D`` entries and the
    prefix matrix ``M`` (F, D) is small enough to form, ``G`` is drawn in the orthonormal
    basis ``[Q_M, Q_⊥]`` with ``Q_M`` (D, F) spanning the row space of ``M`` (``Mᵀ = Q_M
    R_M``): ``A = Q_Mᵀ G`` (F, P) and ``B = Q_⊥ᵀ G`` (D - F, P) are independent Gaussians,
    ``M G = R_Mᵀ A`` and ``GᵀG = AᵀA + BᵀB``. Only ``BᵀB ~ Wishart_P(D - F, I)`` is needed,
    drawn as ``TᵀT`` with Bartlett's factor ``T`` (upper triangular, ``T_ii² ~ χ²(D - F -
    i + 1)``, ``T_ij ~ N(0, 1)`` for ``i < j``) when ``D - F ≥ P``, as ``B`` itself
    otherwise. The frontier values at every vertex then have exactly the joint law they
    have for Haar directions, and the counts depend on the input only through them.
    """

    #: largest D * (D + F) for which the prefix matrix is formed
    MATRIX_BUDGET = 2**25

    def __init__(self, tr: Trace, P: int, mode: str):
        self.tr = tr
        self.P = P
        by_fx = {n.fx_node.name: n for n in tr.nodes}
        self.prefix, frontier = tr.affine_prefix()
        self.frontier = list(frontier)
        self.shapes = {f: tuple(by_fx[f].shape) for f in self.frontier}
        self.widths = [math.prod(self.shapes[f]) for f in self.frontier]
        D, F = tr.in_features, sum(self.widths)
        self.D = D
        self.reduced = mode == "auto" and F < D and D * (D + F) <= self.MATRIX_BUDGET
        self.k = D
        if self.reduced:
            eye = torch.eye(D, dtype=tr.dtype, device=tr.device).reshape(D, *tr.in_shape)
            with torch.no_grad():
                MT = self._flat(self.run(eye, linear=True), D)  # (D, F): row i is M e_i
            Q, R = torch.linalg.qr(MT)
            sign = torch.sign(torch.diagonal(R))
            sign = torch.where(sign == 0, 1.0, sign)
            self.Q_M, self.R_M = Q * sign, R * sign.unsqueeze(1)  # unique: positive diagonal
            self.k = F

    # ---------------------------------------------------------------------------------
    def _flat(self, values: dict[str, torch.Tensor], rows: int) -> torch.Tensor:
        return torch.cat([values[f].reshape(rows, -1) for f in self.frontier], 1)

    def run(self, x: torch.Tensor, *, linear: bool) -> dict[str, torch.Tensor]:
        """Frontier values of the prefix at ``x`` (N, *in_shape); ``linear``: without constants."""
        tr = self.tr
        env: dict[str, Any] = dict(tr._consts)
        for n in tr.nodes:
            name = n.fx_node.name
            if n.kind == "input":
                env[name] = x
            elif n.kind == "meta" and all(a.name in env for a in n.fx_node.all_input_nodes):
                env[name] = tr._ctx(n, env).call()
            elif n.kind == "var" and name in self.prefix:
                ctx = tr._ctx(n, env)
                env[name] = n.rule.apply(ctx, None, 1, False) if linear else n.rule.forward(ctx)
        return {f: env[f] for f in self.frontier}

    def draw(self, nb: int, rngs: list[np.random.Generator]) -> _Draws:
        """The random numbers of ``nb`` samples (one direction set per sample)."""
        P, k, m = self.P, self.k, self.D - self.k

        def dev(a: np.ndarray) -> torch.Tensor:
            # drawn on the host so that every device sees the same numbers for one seed
            return torch.from_numpy(a).to(device=self.tr.device, dtype=self.tr.dtype)

        A = dev(rngs[0].standard_normal((nb, k, P)))
        C = None
        if m >= P:  # Bartlett factor of Wishart_P(m, I)
            Z = dev(rngs[1].standard_normal((nb, P, P)))
            chi2 = dev(rngs[2].chisquare(m - np.arange(P), size=(nb, P)))
            C = torch.triu(Z, 1) + torch.diag_embed(chi2.sqrt())
        elif m > 0:
            C = dev(rngs[1].standard_normal((nb, m, P)))
        S = A if C is None else torch.cat([A, C], 1)
        return _Draws(A, C, _inverse_r(S))

    def directions(self, d: _Draws) -> torch.Tensor:
        """The unit directions ``v_p`` in input space: (nb, P, D), orthonormal rows.

        Formed only for checks: the row-space part is ``Q_M A R⁻¹``; the complement part is
        ``Q_⊥ C R⁻¹`` with ``Q_⊥`` the first columns of a fixed orthonormal basis of the
        complement (the counts do not depend on it).
        """
        v = d.A @ d.rinv
        if self.reduced:
            v = self.Q_M @ v
            if d.C is not None:
                full, _ = torch.linalg.qr(self.Q_M, mode="complete")
                perp = full[:, self.k:self.k + d.C.shape[1]]
                v = v + perp @ (d.C @ d.rinv)
        return v.mT

    def vertex_values(self, xb: torch.Tensor, d: _Draws, radius: float) -> dict[str, torch.Tensor]:
        """Frontier values at the 2P vertices ``x ± r v_p`` of each sample: (nb * 2P, *shape)."""
        nb, P = xb.shape[0], self.P
        centre = self.run(xb, linear=False)
        ART = (radius * d.rinv).mT @ d.A.mT  # (nb, P, k): rows r (A R⁻¹)ᵀ
        if self.reduced:
            flat = ART.reshape(nb * P, self.k) @ self.R_M  # rows r M v_p
            cols = torch.split(flat, self.widths, 1)
            step = {f: c.reshape(nb * P, *self.shapes[f]) for f, c in zip(self.frontier, cols)}
        else:
            step = self.run(ART.reshape(nb * P, *self.tr.in_shape), linear=True)
        out = {}
        for f in self.frontier:
            c = centre[f].unsqueeze(1)  # (nb, 1, *shape)
            s = step[f].reshape(nb, P, *self.shapes[f])
            v = torch.empty((nb, 2, P) + self.shapes[f], dtype=s.dtype, device=s.device)
            torch.add(c, s, out=v[:, 0])
            torch.sub(c, s, out=v[:, 1])
            out[f] = v.reshape(nb * 2 * P, *self.shapes[f])
        return out

    def count(self, values: dict[str, torch.Tensor], nb: int, V: int) -> dict[str, torch.Tensor]:
        """Per piecewise node and for the output, the units not constant over each sample's
        V vertices, from the frontier values at the vertices: {name: (nb,)}."""
        tr = self.tr
        N = nb * V
        env: dict[str, Any] = dict(tr._consts)
        counts: dict[str, torch.Tensor] = {}
        for n in tr.nodes:
            name = n.fx_node.name
            if name in values:
                env[name] = values[name]
            elif name in self.prefix:  # only its shape can be read downstream (x.size(0))
                shape = n.shape if n.shape is not None else ()
                env[name] = torch.empty((N,) + tuple(shape), dtype=tr.dtype, device="meta")
            elif n.kind == "meta":
                env[name] = tr._ctx(n, env).call()
            elif n.kind == "output":
                counts["output"] = _sign_changes(env[n.fx_node.args[0].name], nb, V)
            elif n.kind == "var":
                ctx = tr._ctx(n, env)
                if n.piecewise:
                    if n.rule.sign_code(ctx):
                        counts[n.name] = _sign_changes(ctx.u, nb, V)
                    else:
                        counts[n.name] = _nonconstant(n.rule.code(ctx), nb, V)
                env[name] = n.rule.forward(ctx)
        return counts


def _setup(model: nn.Module | Trace, x: torch.Tensor, radius: float, n_vertices: int,
           directions: str) -> tuple[Trace, torch.Tensor, _CrossPolytopeSampler]:
    if not (radius > 0 and math.isfinite(radius)):
        raise InputError(f"radius must be a positive finite number; got {radius}")
    if n_vertices <= 0 or n_vertices % 2:
        raise InputError(f"n_vertices must be a positive even number (2P vertices x ± r v_p); "
                         f"got {n_vertices}")
    if directions not in ("auto", "input"):
        raise InputError(f"directions must be 'auto' or 'input'; got {directions!r}")
    tr = as_trace(model, x)
    x = tr.prepare(x)
    P = n_vertices // 2
    D = tr.in_features
    if P > D:
        raise InputError(f"n_vertices / 2 = {P} orthonormal directions do not fit in the input "
                         f"dimension D = {D}; use n_vertices ≤ {2 * D}")
    return tr, x, _CrossPolytopeSampler(tr, P, directions)


#: numbers held at once by one pass of local complexity (2^25 float64 = 256 MiB; a GPU
#: gets 8 times more, so that its passes are large enough to fill it)
_LC_BUDGET = 2**25


def _default_lc_chunk(n_vertices: int, tr: Trace | None = None) -> int:
    """Samples per pass: ~2k rows (fits in cache, measured best on small networks), fewer
    when the pass's values (every node's output at the 2P vertices of each sample) would
    exceed :data:`_LC_BUDGET` numbers (wide convolutional networks)."""
    size = max(1, 2**11 // n_vertices)
    if tr is not None:
        per_row = sum(math.prod(n.shape or (1,)) for n in tr.nodes if n.kind == "var")
        budget = _LC_BUDGET * (8 if tr.device.type == "cuda" else 1)
        size = min(size, max(1, budget // max(1, n_vertices * per_row)))
    return size


def cross_polytope_directions(model: nn.Module | Trace, x: torch.Tensor, *, radius: float,
                              n_vertices: int, seed: int | None = None,
                              chunk_size: int | None = None,
                              directions: str = "auto") -> torch.Tensor:
    """The directions ``r v_p`` that :func:`local_complexity` uses with the same arguments.

    .. math::
        V(x_n) = \\{x_n + r v_{n,p}\\}_{p=1}^{P} \\cup \\{x_n - r v_{n,p}\\}_{p=1}^{P},\\qquad
        v_{n,p}^\\top v_{n,q} = \\delta_{pq}

    :func:`local_complexity` never forms them (it works with their images under the
    network's affine prefix); they are returned for checks and pictures. With
    ``directions="auto"`` the part of ``v`` orthogonal to the prefix's row space lies in a
    fixed P-dimensional subspace (chosen so that the vertices realise the same random
    numbers); the counts do not depend on that part.

    Parameters
    ----------
    model, x, radius, n_vertices, seed, chunk_size, directions
        As in :func:`local_complexity`; ``x`` has shape (B, *in_shape).

    Returns
    -------
    Tensor, shape (B, P, *in_shape)
        ``r v_{n,p}``; the vertices are ``x[:, None] ± r v``.

    Raises
    ------
    InputError
        As :func:`local_complexity`.
    """
    tr, x, sampler = _setup(model, x, radius, n_vertices, directions)
    rngs = _rng_streams(seed)
    size = chunk_size or _default_lc_chunk(n_vertices)
    with torch.no_grad():
        parts = [radius * sampler.directions(sampler.draw(x[sl].shape[0], rngs))
                 for sl in _chunks(x.shape[0], size)]
    P = n_vertices // 2
    out = torch.cat(parts) if parts else torch.zeros((0, P, tr.in_features), dtype=tr.dtype,
                                                    device=tr.device)
    return out.reshape(x.shape[0], P, *tr.in_shape)


DEFAULT_N_VERTICES = 50
"""Default number of cross-polytope vertices of :func:`local_complexity` (Humayun et al.
use 50 on MNIST); at most ``2D`` are used."""


def relative_radius(x: torch.Tensor, fraction: float) -> float:
    """``fraction`` times the median Euclidean norm of the samples of ``x`` (B, *in_shape).

    A radius on the scale of the data, for :func:`local_complexity` (which also accepts it
    as the string ``"0.05*median_norm"``).

    Examples
    --------
    >>> import torch
    >>> relative_radius(torch.tensor([[3.0, 4.0], [6.0, 8.0], [0.0, 1.0]]), 0.1)
    0.5
    """
    if not (isinstance(fraction, (int, float)) and fraction > 0):
        raise InputError(f"fraction must be a positive number; got {fraction!r}")
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] == 0:
        raise InputError("relative_radius needs a non-empty batch x of shape (B, *in_shape)")
    norms = x.detach().reshape(x.shape[0], -1).double().norm(dim=1)
    med = float(np.median(norms.cpu().numpy()))
    if not med > 0:
        raise InputError("the samples of x have median norm 0; give radius as a number")
    return fraction * med


def _lc_scale(x: torch.Tensor, radius: float | str, n_vertices: int | None) -> tuple[float, int]:
    """Resolve a relative radius (``"0.05*median_norm"``) and the default vertex count."""
    if isinstance(radius, str):
        import re

        m = re.fullmatch(r"\s*([0-9.]+(?:[eE][-+]?[0-9]+)?)\s*\*\s*median_norm\s*", radius)
        if m is None:
            raise InputError(f"radius must be a number or '<fraction>*median_norm' (e.g. "
                             f"'0.05*median_norm'); got {radius!r}")
        radius = relative_radius(x, float(m.group(1)))
    if n_vertices is None:
        D = int(math.prod(x.shape[1:])) if isinstance(x, torch.Tensor) and x.dim() > 1 else 1
        n_vertices = min(DEFAULT_N_VERTICES, 2 * D)
    return radius, n_vertices


def local_complexity(model: nn.Module | Trace, x: Any, *, radius: float | str,
                     n_vertices: int | None = None, per_layer: bool = False,
                     seed: int | None = None, chunk_size: int | None = None,
                     directions: str = "auto", progress: bool = False) -> LocalComplexity:
    """Local complexity: neurons whose pre-activation sign is not constant on a cross-polytope.

    .. math::
        V(x) = \\{x \\pm r\\, v_p\\}_{p=1}^{P},\\quad v_p^\\top v_q = \\delta_{pq}
        \\text{ (Haar-random, fresh per sample)};\\qquad
        \\mathrm{LC}(x) = \\#\\{\\text{neurons } k : \\operatorname{sign} z_k
        \\text{ is not constant on } V(x)\\}

    Every neuron of every layer counts, the output layer (logits) included. For ReLU-like
    units the sign of the pre-activation is the VQ code; for max-pooling, maxout and clamps
    the generalisation used is "the VQ code (argmax / regime) is not constant".

    How it is computed: the affine prefix ``f`` of the network (everything before the first
    piecewise node, e.g. the first ``nn.Linear``) is evaluated as ``f(x ± r v_p) = f(x) ± r
    L v_p`` (``L`` its linear part): once at the centre and once per direction. When
    ``f`` has fewer outputs ``F`` than inputs ``D`` (an MLP's first layer), the directions
    are drawn in the row space of ``L`` plus a P × P Bartlett factor for the rest, which
    costs ``F P`` instead of ``D P`` normals and gives the frontier values at the vertices,
    hence the counts, exactly the law they have for Haar directions (see
    :func:`cross_polytope_directions` for the implied directions). The rest of the network
    runs batched over samples and vertices; signs are tested by the max and min over the
    vertices.

    Parameters
    ----------
    model : nn.Module or Trace
    x : Tensor, shape (B, *in_shape), or an iterable of batches
        The inputs: one tensor, or a stream of batches (a ``DataLoader``, a generator, a
        list; each batch a tensor or an ``(x, y, ...)`` tuple whose first entry is used).
        A stream is processed batch after batch, ``chunk_size`` samples per pass, so the
        memory held does not grow with the dataset (only the ``B`` counts are kept); its
        result equals that of the concatenated tensor with the same seed.
    radius : float or str
        ``r > 0``, the distance of every vertex from ``x``; or relative to the data,
        ``"0.05*median_norm"`` = 0.05 × the median of ``‖x_n‖₂`` over the batch (see
        :func:`relative_radius`; with a stream, over its first batch).
    n_vertices : int, optional
        Number of vertices ``2P`` (even, ``P ≤ D``); default ``min(50, 2D)`` (Humayun et
        al. use 50 on MNIST).
    per_layer : bool
        Also return the count of every layer.
    seed : int, optional
        Non-negative seed of the directions (fresh directions for every sample). The draws
        do not depend on ``chunk_size``. With ``directions="auto"`` and a reduced prefix
        the random numbers are coordinates in the prefix's row-space basis, so the same seed
        on a different network gives different (equally distributed) directions.
    chunk_size : int, optional
        Samples per forward pass (each pass evaluates ``chunk_size * n_vertices`` points;
        default: about 2k points, fewer for wide networks so that a pass holds at most
        ``2^25`` numbers).
    directions : {"auto", "input"}
        ``"auto"``: draw in the prefix's row space when that is cheaper (above).
        ``"input"``: always draw the full (D, P) Gaussian matrix in input space, so one
        seed gives the same directions for every network with this input shape (common
        random numbers across training epochs). Both give the same law of the counts.
    progress : bool
        Show a progress bar over the samples.

    Returns
    -------
    LocalComplexity
        ``total`` (B,) and, with ``per_layer``, ``layers`` {name: (B,)} ending with ``"output"``.

    Raises
    ------
    InputError
        If ``radius ≤ 0``, ``n_vertices`` is odd or not positive, ``n_vertices / 2 > D``,
        ``seed < 0`` or ``directions`` is unknown.

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
    Bartlett, "On the theory of statistical regression", Proc. R. Soc. Edinburgh 53, 1933
    (the triangular factor of a Wishart matrix).
    """
    stream = is_stream(x)
    parts = batches(x) if stream else iter([(x, None)])
    first = next(parts, None)
    if first is None:
        raise InputError("local_complexity got an empty stream of batches")
    radius, n_vertices = _lc_scale(first[0], radius, n_vertices)
    tr, xb, sampler = _setup(model, first[0], radius, n_vertices, directions)
    rngs = _rng_streams(seed)
    size = chunk_size or _default_lc_chunk(n_vertices, tr)
    names = list(tr.piecewise) + ["output"]
    counts: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    total_rows = None if stream else xb.shape[0]
    with torch.no_grad(), tqdm(total=total_rows, desc="local complexity", unit="sample",
                               disable=not progress, leave=False) as bar:
        while xb is not None:
            for sl in _chunks(xb.shape[0], size):
                xc = xb[sl]
                nb = xc.shape[0]
                values = sampler.vertex_values(xc, sampler.draw(nb, rngs), float(radius))
                for name, c in sampler.count(values, nb, n_vertices).items():
                    counts[name].append(c)
                bar.update(nb)
            nxt = next(parts, None)
            xb = None if nxt is None else tr.prepare(nxt[0])
    layers = {n: torch.cat(c) if c else torch.zeros(0, dtype=torch.long, device=tr.device)
              for n, c in counts.items()}
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

    def to_dict(self) -> dict[str, np.ndarray]:
        """One row per input: ``sample`` and its term ``hessian`` (their mean is ``value``)."""
        from ._tables import column

        return {"sample": np.arange(len(self.per_sample)), "hessian": column(self.per_sample)}

    def to_frame(self):
        """:meth:`to_dict` as a pandas DataFrame indexed by ``sample`` (needs pandas)."""
        from ._tables import frame

        return frame(self.to_dict(), index="sample")

    def __repr__(self) -> str:
        return (f"HessianComplexity(value={self.value:.6g}, estimator={self.estimator!r}, "
                f"batch={len(self.per_sample)})")


def hessian_complexity(model: nn.Module | Trace, x: Any, *,
                       x_aug: torch.Tensor | None = None, sigma: float = 1e-4,
                       eps: float = 1e-4, seed: int | None = None,
                       chunk_size: int | None = None, progress: bool = False) -> HessianComplexity:
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
    x : Tensor, shape (B, *in_shape), or an iterable of batches
        The inputs, or a stream of batches (a ``DataLoader``, a generator; each batch a
        tensor, or an ``(x, x_aug)`` pair for the augmentation estimator). A stream is
        processed batch after batch with bounded memory; the perturbations of its batches
        are drawn in turn from one generator.
    x_aug : Tensor, shape (B, *in_shape), optional
        Augmented copies ``T(x_n)``, paired row by row with ``x`` (with a stream: inside
        the batches).
    sigma : float
        Standard deviation of the perturbation (perturbation estimator).
    eps : float
        The ``ε`` under the square root (augmentation estimator).
    seed : int, optional
        Seed of the perturbation (drawn on the host, so every device sees the same numbers).
    chunk_size : int, optional
        Samples per batched pass (each pass forms ``A`` of ``2 chunk_size`` inputs).
    progress : bool
        Show a progress bar over the samples.

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
    if x_aug is None and not sigma > 0:
        raise InputError(f"sigma must be positive; got {sigma}")
    stream = is_stream(x)
    if stream and x_aug is not None:
        raise InputError("with a stream of batches pass (x, x_aug) pairs as the batches, "
                         "not x_aug separately")
    parts = batches(x) if stream else iter([(x, x_aug)])
    first = next(parts, None)
    if first is None:
        raise InputError("hessian_complexity got an empty stream of batches")
    tr = as_trace(model, first[0])
    estimator = "perturbation" if first[1] is None else "augmentation"
    gen = _generator(seed) if estimator == "perturbation" else None
    size = chunk_size or max(1, _default_chunk(tr, tr.in_features, tr.n_outputs) // 2)
    per_parts: list[torch.Tensor] = []
    item: tuple[Any, Any] | None = first
    with tqdm(total=None if stream else len(tr.prepare(first[0])), desc="hessian complexity",
              unit="sample", disable=not progress, leave=False) as bar:
        while item is not None:
            xb = tr.prepare(item[0])
            if (item[1] is None) != (estimator == "perturbation"):
                raise InputError("every batch of the stream must be an (x, x_aug) pair, or "
                                 "none of them")
            if gen is not None:
                # drawn on the host: one seed gives the same perturbation on every device
                noise = torch.randn(xb.shape, generator=gen, dtype=xb.dtype).to(xb.device)
                x2 = xb + sigma * noise
            else:
                x2 = tr.prepare(item[1])
                if x2.shape != xb.shape:
                    raise InputError(f"x_aug must have the shape of x {tuple(xb.shape)}; "
                                     f"got {tuple(x2.shape)}")
            for sl in _chunks(len(xb), size):
                n = sl.stop - sl.start
                A = affine_map(tr, torch.cat([xb[sl], x2[sl]]), chunk_size=2 * n).A
                dA = A[:n] - A[n:]  # (n, C, D)
                if estimator == "perturbation":
                    per_parts.append(dA.norm(dim=2).sum(1))
                else:
                    per_parts.append(torch.sqrt(dA.pow(2).sum((1, 2)) + eps))
                bar.update(n)
            item = next(parts, None)
    per = torch.cat(per_parts) if per_parts else torch.zeros(0, dtype=tr.dtype, device=tr.device)
    B = len(per)
    return HessianComplexity(float(per.mean()) if B else 0.0, per, estimator)


__all__ = [
    "DEFAULT_N_VERTICES",
    "HessianComplexity",
    "LocalComplexity",
    "cross_polytope_directions",
    "hessian_complexity",
    "local_complexity",
    "relative_radius",
]
