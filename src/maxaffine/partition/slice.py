"""Two-dimensional affine slices of a network's input space."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import DegenerateSliceError, InputError

#: Relative tolerance below which anchor points count as collinear and domains as flat.
DEGENERATE_TOL = 1e-9


def _real(x: Any, name: str) -> np.ndarray:
    """``x`` as a float64 array; complex values are refused (a cast would drop their
    imaginary parts silently)."""
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise InputError(f"{name} is complex ({x.dtype}); slices live in real input space")
        return x.detach().to("cpu", torch.float64).numpy()
    arr = np.asarray(x)
    if np.iscomplexobj(arr):
        raise InputError(f"{name} is complex; slices live in real input space")
    try:
        return arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be numeric; got {arr.dtype} ({exc})") from None


def _flat(x: Any, name: str) -> tuple[np.ndarray, tuple[int, ...]]:
    arr = _real(x, name)
    if arr.size == 0:
        raise InputError(f"{name} is empty; pass one input of the model's per-sample shape")
    if not np.all(np.isfinite(arr)):
        raise DegenerateSliceError(f"{name} contains NaN or inf values; slices need finite inputs")
    return arr.reshape(-1).copy(), tuple(arr.shape)


def _shoelace(poly: np.ndarray) -> float:
    """Signed area about the vertex centroid: products of coordinates relative to the
    polygon, so a small polygon far from the origin keeps its digits."""
    p = poly - poly.mean(0)
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _sin_angle(u: np.ndarray, v: np.ndarray) -> float:
    """|sin| of the angle between nonzero vectors, from a QR factorization of the normalized
    pair (Householder: accurate down to rounding even for (nearly) parallel directions,
    where the square root of a difference of squares loses every digit)."""
    B = np.stack([u / np.linalg.norm(u), v / np.linalg.norm(v)], 1)
    return float(abs(np.linalg.qr(B, mode="r")[1, 1]))


def _convex_ccw(poly: np.ndarray) -> np.ndarray:
    """Validate a convex polygon in (s, t) and return it counter-clockwise."""
    poly = _real(poly, "the slice domain")
    if poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 3:
        raise InputError(f"a slice domain is a polygon of shape (P >= 3, 2); got {poly.shape}")
    if not np.all(np.isfinite(poly)):
        raise DegenerateSliceError("the slice domain has NaN or inf coordinates")
    area = _shoelace(poly)
    scale = float(np.ptp(poly, axis=0).max()) ** 2
    if not abs(area) > DEGENERATE_TOL * max(scale, 1e-300):
        raise DegenerateSliceError(
            f"the slice domain has zero area (area {area:.3g}); give a polygon or box of "
            f"positive extent in both directions")
    if area < 0:
        poly = poly[::-1].copy()
    e = np.roll(poly, -1, axis=0) - poly
    cross = e[:, 0] * np.roll(e, -1, axis=0)[:, 1] - e[:, 1] * np.roll(e, -1, axis=0)[:, 0]
    if np.any(cross < -DEGENERATE_TOL * scale):
        raise InputError("the slice domain must be a convex polygon (vertices in order)")
    return poly


@dataclass(frozen=True)
class Slice:
    r"""A 2D affine slice of the input space with a convex polygonal domain.

    .. math::

        x(s, t) = x_0 + s\,u + t\,v, \qquad (s, t) \in \Omega \subset \mathbb{R}^2

    Restricted to a slice, a continuous piecewise-affine network is a continuous
    piecewise-affine function of ``(s, t)`` whose linear regions are convex polygons
    (see :func:`maxaffine.partition_slice`). Construct with :meth:`box`, :meth:`through`
    or :meth:`plane`; shaped inputs (images) are flattened internally and mapped back by
    :meth:`points`.

    Attributes
    ----------
    origin, u, v : ndarray, shape (D,)
        Flattened float64 origin and direction vectors (``D = prod(in_shape)``).
    in_shape : tuple of int
        Per-sample input shape the slice lives in.
    domain : ndarray, shape (P, 2)
        Convex polygon in slice coordinates, counter-clockwise.
    anchors : ndarray, shape (A, 2) or None
        Slice coordinates of the anchor inputs (for :meth:`through` / :meth:`plane`).

    References
    ----------
    Humayun, Balestriero, Balakrishnan, Baraniuk, "SplineCam: Exact Visualization and
    Characterization of Deep Network Geometry and Decision Boundaries", CVPR 2023.
    """

    origin: np.ndarray = field(repr=False)
    u: np.ndarray = field(repr=False)
    v: np.ndarray = field(repr=False)
    in_shape: tuple[int, ...]
    domain: np.ndarray = field(repr=False)
    anchors: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        D = math.prod(self.in_shape)
        for name in ("origin", "u", "v"):
            a = getattr(self, name)
            if a.shape != (D,):
                raise InputError(f"Slice.{name} must have {D} entries (in_shape {self.in_shape}), "
                                 f"got shape {a.shape}")
            if not np.all(np.isfinite(a)):
                raise DegenerateSliceError(f"Slice.{name} contains NaN or inf values")
        nu, nv = np.linalg.norm(self.u), np.linalg.norm(self.v)
        if not (nu > 0 and nv > 0 and np.isfinite(nu * nv)
                and _sin_angle(self.u, self.v) > DEGENERATE_TOL):
            raise DegenerateSliceError(
                "the slice directions u and v are zero or parallel, so the slice is not 2D; "
                "choose linearly independent directions (or three non-collinear inputs)")
        object.__setattr__(self, "domain", _convex_ccw(self.domain))

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def box(cls, bounds: Sequence[float] = (-1.0, 1.0, -1.0, 1.0), *, origin: Any = None,
            u: Any = None, v: Any = None) -> Slice:
        """The rectangle ``s0 ≤ s ≤ s1, t0 ≤ t ≤ t1`` of the plane ``origin + s u + t v``.

        Parameters
        ----------
        bounds : (s0, s1, t0, t1)
        origin, u, v : array-like of the input shape, optional
            Default (only for 2-input models): the coordinate plane, origin 0,
            ``u = e1``, ``v = e2``.

        Raises
        ------
        DegenerateSliceError
            Zero-area bounds, parallel directions, non-finite values.
        """
        if origin is None and u is None and v is None:
            origin, u, v = np.zeros(2), np.array([1.0, 0.0]), np.array([0.0, 1.0])
        elif origin is None or u is None or v is None:
            raise InputError("give all of origin, u and v, or none (the 2D coordinate plane)")
        o, shape = _flat(origin, "origin")
        uu, su = _flat(u, "u")
        vv, sv = _flat(v, "v")
        if not (shape == su == sv):
            raise InputError(f"origin, u and v must have one shape; got {shape}, {su}, {sv}")
        b = _real(bounds, "bounds")
        if b.shape != (4,):
            raise InputError(f"bounds must be (s0, s1, t0, t1); got {bounds!r}")
        if not np.all(np.isfinite(b)):
            raise DegenerateSliceError(f"bounds must be finite; got {bounds!r}")
        s0, s1, t0, t1 = b
        if not (s1 > s0 and t1 > t0):
            raise DegenerateSliceError(f"the box {tuple(b)} has zero area; need s0 < s1 and t0 < t1")
        dom = np.array([[s0, t0], [s1, t0], [s1, t1], [s0, t1]])
        return cls(o, uu, vv, shape, dom)

    @classmethod
    def polygon(cls, vertices: Any, *, origin: Any, u: Any, v: Any) -> Slice:
        """A convex polygon ``vertices`` (P, 2) of slice coordinates in ``origin + s u + t v``."""
        o, shape = _flat(origin, "origin")
        uu, _ = _flat(u, "u")
        vv, _ = _flat(v, "v")
        return cls(o, uu, vv, shape, _real(vertices, "vertices"))

    @classmethod
    def through(cls, x1: Any, x2: Any, x3: Any, *, margin: float = 0.0,
                shape: str = "triangle") -> Slice:
        r"""The plane through three inputs, with the triangle (or a box) around them.

        The basis is orthonormal (Gram-Schmidt, deterministic), so slice coordinates are
        Euclidean coordinates of the input-space plane: ``x0 = x1``,
        ``u = (x2 - x1)/|x2 - x1|``, ``v`` the normalized part of ``x3 - x1`` orthogonal
        to ``u``. Anchors sit at ``(0, 0)``, ``(|x2 - x1|, 0)`` and ``(a, b)`` with ``b > 0``.

        Parameters
        ----------
        x1, x2, x3 : array-like of the model's per-sample input shape (images allowed)
        margin : float
            ``shape="triangle"``: the triangle scaled by ``1 + margin`` about its centroid.
            ``shape="box"``: the anchors' bounding box padded by ``margin`` times its size.
        shape : {"triangle", "box"}

        Raises
        ------
        DegenerateSliceError
            If the three inputs are (numerically) collinear or not finite.
        """
        a, sh1 = _flat(x1, "x1")
        b, sh2 = _flat(x2, "x2")
        c, sh3 = _flat(x3, "x3")
        if not (sh1 == sh2 == sh3):
            raise InputError(f"x1, x2, x3 must have one shape; got {sh1}, {sh2}, {sh3}")
        if margin < 0 or not math.isfinite(margin):
            raise InputError(f"margin must be finite and >= 0; got {margin}")
        d2, d3 = b - a, c - a
        n2 = float(np.linalg.norm(d2))
        n3 = float(np.linalg.norm(d3))
        if n2 == 0 or n3 == 0:
            raise DegenerateSliceError("two of the three anchor inputs coincide; the plane "
                                       "through them is undefined")
        u = d2 / n2
        p = float(np.dot(d3, u))
        w = d3 - p * u
        h = float(np.linalg.norm(w))
        if not h > DEGENERATE_TOL * n3:
            raise DegenerateSliceError(
                f"the three anchor inputs are collinear (relative distance of x3 from the line "
                f"x1-x2 is {h / n3:.2g}); choose inputs spanning a plane")
        v = w / h
        anchors = np.array([[0.0, 0.0], [n2, 0.0], [p, h]])
        if shape == "triangle":
            cen = anchors.mean(0)
            dom = cen + (1.0 + margin) * (anchors - cen)
        elif shape == "box":
            lo, hi = anchors.min(0), anchors.max(0)
            pad = margin * (hi - lo)
            lo, hi = lo - pad, hi + pad
            dom = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])
        else:
            raise InputError(f"shape must be 'triangle' or 'box'; got {shape!r}")
        return cls(a, u, v, sh1, dom, anchors)

    # -- geometry -----------------------------------------------------------------------
    @property
    def in_features(self) -> int:
        return math.prod(self.in_shape)

    @property
    def area(self) -> float:
        """Area of the domain in slice coordinates."""
        return _shoelace(self.domain)

    @property
    def scale(self) -> float:
        """Diameter of the domain's bounding box (sets the geometric tolerances)."""
        return float(np.hypot(*np.ptp(self.domain, axis=0)))

    def basis(self) -> np.ndarray:
        """The directions stacked, shape (2, D)."""
        return np.stack([self.u, self.v])

    def points(self, st: Any, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Input-space points ``x0 + s u + t v`` for slice coordinates ``st`` (N, 2).

        Returns
        -------
        Tensor, shape (N, *in_shape)
        """
        st = np.asarray(st, dtype=np.float64).reshape(-1, 2)
        x = self.origin[None] + st[:, :1] * self.u[None] + st[:, 1:] * self.v[None]
        return torch.from_numpy(x).to(dtype).reshape(len(st), *self.in_shape)

    def project(self, x: Any) -> np.ndarray:
        """Slice coordinates (N, 2) of the orthogonal-in-(u, v) least-squares projection of x."""
        arr = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, float)
        arr = arr.reshape(-1, self.in_features) - self.origin[None]
        Bm = self.basis()
        gram = Bm @ Bm.T
        return np.linalg.solve(gram, Bm @ arr.T).T

    def contains(self, st: Any, *, tol: float = 0.0) -> np.ndarray:
        """Whether slice coordinates (N, 2) lie in the domain (boolean (N,))."""
        st = np.asarray(st, dtype=np.float64).reshape(-1, 2)
        p = self.domain
        e = np.roll(p, -1, axis=0) - p
        rel = st[:, None, :] - p[None]
        cross = e[None, :, 0] * rel[..., 1] - e[None, :, 1] * rel[..., 0]
        return np.all(cross >= -tol * self.scale * np.linalg.norm(e, axis=1)[None], axis=1)

    def sample(self, n: int, *, seed: int = 0) -> np.ndarray:
        """``n`` uniform random points of the domain (slice coordinates, (n, 2)), seeded."""
        rng = np.random.default_rng(seed)
        p = self.domain
        tri = np.stack([np.repeat(p[:1], len(p) - 2, 0), p[1:-1], p[2:]], 1)  # fan (T,3,2)
        e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
        w = np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
        k = rng.choice(len(tri), size=n, p=w / w.sum())
        a, b = rng.random(n), rng.random(n)
        flip = a + b > 1
        a[flip], b[flip] = 1 - a[flip], 1 - b[flip]
        return tri[k, 0] + a[:, None] * e1[k] + b[:, None] * e2[k]


__all__ = ["Slice", "DEGENERATE_TOL"]
