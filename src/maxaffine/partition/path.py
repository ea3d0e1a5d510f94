"""Exact linear-region breakpoints along a segment or polyline through inputs."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..affine import Codes
from ..errors import DegenerateSliceError, InputError
from ..trace import as_trace
from ._mesh import TOL
from ._network import switch_of
from .partition import check_tol


@dataclass(frozen=True)
class PathPartition:
    r"""Linear pieces of a network along a polyline ``x(τ)``, ``τ ∈ [0, n_segments]``.

    On segment ``k`` (``k ≤ τ ≤ k + 1``) ``x(τ) = p_k + (τ - k)(p_{k+1} - p_k)``. Between
    consecutive ``knots`` the code is constant and the output is affine in ``τ``.

    Attributes
    ----------
    points : Tensor, shape (P, *in_shape)
        The polyline's vertices (the first repeated at the end when ``closed``).
    knots : ndarray, shape (K,)
        Sorted parameters: polyline vertices and every point where a code changes.
    breakpoints : ndarray, shape (B,)
        The knots where the full code changes (region boundaries crossed by the path).
    arclength : ndarray, shape (K,)
        Input-space distance along the path at each knot.
    codes : Codes
        Code of each piece (between consecutive breakpoints), ``{layer: (I, *units)}``.
    region : ndarray, shape (I,)
        Region label of each piece; equal labels = same region (revisits share a label).
    outputs : ndarray, shape (K, C)
        Network output at every knot (exact; linear in between).
    layers : tuple of str
    """

    points: torch.Tensor = field(repr=False)
    closed: bool
    knots: np.ndarray = field(repr=False)
    breakpoints: np.ndarray = field(repr=False)
    arclength: np.ndarray = field(repr=False)
    codes: Codes = field(repr=False)
    region: np.ndarray = field(repr=False)
    outputs: np.ndarray = field(repr=False)
    layers: tuple[str, ...] = ()

    @property
    def n_pieces(self) -> int:
        """Pieces of the path (maximal intervals of constant code)."""
        return len(self.region)

    @property
    def n_regions(self) -> int:
        """Distinct regions crossed."""
        return int(len(np.unique(self.region)))

    @property
    def length(self) -> float:
        return float(self.arclength[-1])

    @property
    def density(self) -> float:
        """Breakpoints per unit input-space length."""
        return len(self.breakpoints) / self.length

    def inputs(self, tau: Any) -> torch.Tensor:
        """Inputs ``x(τ)`` for parameters (N,), shape (N, *in_shape)."""
        return _at(self.points.reshape(len(self.points), -1).numpy(), np.asarray(tau, float)) \
            .reshape(-1, *self.points.shape[1:])

    def output(self, tau: Any) -> np.ndarray:
        """Exact output at parameters (N,) by interpolation between knots, shape (N, C)."""
        tau = np.asarray(tau, float)
        return np.stack([np.interp(tau, self.knots, self.outputs[:, c])
                         for c in range(self.outputs.shape[1])], 1)


def _at(P: np.ndarray, tau: np.ndarray) -> torch.Tensor:
    k = np.clip(np.floor(tau).astype(np.int64), 0, len(P) - 2)
    t = (tau - k)[:, None]
    return torch.from_numpy(P[k] + t * (P[k + 1] - P[k]))


def partition_path(model: Any, points: Any, closed: bool = False, *, layers: Any = None,
                   tol: float = TOL) -> PathPartition:
    r"""Exact breakpoints of the linear regions along a segment or polyline.

    On each interval between current knots every unit's switching function is affine in
    ``τ``, so its zero crosses at ``τ_i + λ(τ_{i+1} - τ_i)``, ``λ = z_i / (z_i - z_{i+1})``.
    Layers are processed in graph order with one batched forward pass per layer (all units
    of a layer at once); max-pool/maxout add every window pair's crossing and adjacent
    intervals with equal full codes are merged at the end.

    Parameters
    ----------
    model : nn.Module or Trace
    points : Tensor, shape (P >= 2, *in_shape)
        Polyline vertices (two points: a segment).
    closed : bool
        Also join the last point to the first.
    layers : optional
        As in :func:`partition_slice`.
    tol : float
        Relative tolerance for a knot lying on a switching line, in ``[1e-15, 1e-9]``
        (else :class:`~maxaffine.errors.InputError`).

    Returns
    -------
    PathPartition

    Raises
    ------
    DegenerateSliceError
        Fewer than two points, a zero-length segment, or non-finite values.

    Examples
    --------
    >>> import torch, maxaffine
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    >>> path = maxaffine.partition_path(net, torch.tensor([[-2.0, 0.0], [2.0, 0.0]]))
    >>> path.n_pieces == len(path.breakpoints) + 1
    True
    """
    from ._engine import _resolve_layers

    tol = check_tol(tol, "partition_path")
    pts = points if isinstance(points, torch.Tensor) else torch.as_tensor(np.asarray(points))
    if pts.is_complex():
        raise InputError("path points are complex; paths live in real input space")
    pts = pts.detach().to("cpu", torch.float64)
    if pts.dim() < 2 or len(pts) < 2:
        raise DegenerateSliceError("a path needs at least two points, shape (P >= 2, *in_shape)")
    if not bool(torch.isfinite(pts).all()):
        raise DegenerateSliceError("path points contain NaN or inf values")
    if closed:
        pts = torch.cat([pts, pts[:1]])
    tr = as_trace(model, pts[:2])
    if tuple(pts.shape[1:]) != tuple(tr.in_shape):
        raise InputError(f"path points have shape {tuple(pts.shape[1:])} but the model takes "
                         f"{tr.in_shape}")
    P = pts.reshape(len(pts), -1).numpy()
    seglen = np.linalg.norm(np.diff(P, axis=0), axis=1)
    if not np.all(seglen > 0):
        raise DegenerateSliceError(f"path segments {np.flatnonzero(seglen == 0).tolist()} have "
                                   f"zero length (repeated points)")
    names = _resolve_layers(tr, layers)
    knots = np.arange(len(P), dtype=np.float64)
    with torch.no_grad():
        anchor = tr.run(pts[:1])
        for name in names:
            rec = tr.run(_at(P, knots).reshape(-1, *tr.in_shape))
            sw = switch_of(tr, name, tr.context(anchor, name))
            Z = np.asarray(sw.fn(tr.unit_inputs(rec, name)), dtype=np.float64).T  # (F, knots)
            if sw.kind == "argmax":
                rows = [Z[i] - Z[j] for r in sw.table
                        for i, j in itertools.combinations(r[r >= 0], 2)]
                Z = np.array(rows) if rows else np.zeros((0, len(knots)))
            if len(Z) == 0:
                continue
            eps = tol * np.abs(Z).max(1, keepdims=True)
            pos, neg = Z > eps, Z < -eps
            a, b = Z[:, :-1], Z[:, 1:]
            cross = (pos[:, :-1] & neg[:, 1:]) | (neg[:, :-1] & pos[:, 1:])
            f, i = np.nonzero(cross)
            lam = a[f, i] / (a[f, i] - b[f, i])
            new = knots[i] + lam * (knots[i + 1] - knots[i])
            knots = np.unique(np.concatenate([knots, new]))
        mids = 0.5 * (knots[1:] + knots[:-1])
        x_mid = _at(P, mids).reshape(-1, *tr.in_shape)
        cm = Codes({k: v for k, v in tr.run(x_mid).codes.items() if k in names})
        out = tr.run(_at(P, knots).reshape(-1, *tr.in_shape)).output.reshape(len(knots), -1)
    flat = cm.flat().numpy()
    change = np.any(flat[1:] != flat[:-1], axis=1) if flat.shape[1] else np.zeros(len(flat) - 1, bool)
    breakpoints = knots[1:-1][change]
    first = np.r_[True, change]
    pieces = flat[first]
    codes = Codes({k: v[torch.from_numpy(np.flatnonzero(first))] for k, v in cm.items()})
    if pieces.shape[1]:
        region = np.unique(pieces, axis=0, return_inverse=True)[1].reshape(-1)
    else:
        region = np.zeros(len(pieces), np.int64)
    k = np.clip(np.floor(knots).astype(np.int64), 0, len(P) - 2)
    cum = np.r_[0.0, np.cumsum(seglen)]
    arclength = cum[k] + (knots - k) * seglen[k]
    return PathPartition(pts, closed, knots, breakpoints, arclength, codes, region,
                         out.numpy(), names)
