"""The :class:`Partition` result: an exact planar subdivision of a slice into linear regions."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch

from ..affine import Codes
from ..errors import InputError, MaxAffineError
from .slice import Slice

#: Relative area (of the domain) below which a region is reported as a sliver.
SLIVER_AREA = 1e-12

#: Accepted snapping tolerances (relative, closed range) of :func:`partition_slice` and
#: :func:`partition_path`. Below the lower end the tolerance is under the rounding of
#: interpolated vertex values (a few ulps), so the snapping that keeps adjacent regions
#: conforming no longer happens; above the upper end regions thinner than the tolerance are
#: merged into a neighbour over strips wider than the band in which
#: :meth:`Partition.verify` treats samples as ties.
TOL_RANGE = (1e-15, 1e-9)


def check_tol(tol: Any, where: str) -> float:
    """``tol`` as a float, or an :class:`~maxaffine.errors.InputError` naming the range."""
    lo, hi = TOL_RANGE
    ok = isinstance(tol, (int, float, np.floating, np.integer)) and not isinstance(tol, bool)
    if ok:
        tol = float(tol)
    if not ok or not (lo <= tol <= hi):  # also refuses NaN
        raise InputError(f"{where}: tol must be a finite number in [{lo:g}, {hi:g}] (the "
                         f"relative distance below which a vertex counts as lying on a "
                         f"switching line; default 1e-12); got {tol!r}")
    return tol


def next_entry(offsets: np.ndarray) -> np.ndarray:
    """For CSR polygons, the index of the next entry around each polygon (cyclic)."""
    M = int(offsets[-1])
    nxt = np.arange(1, M + 1, dtype=np.int64)
    if M:
        nxt[offsets[1:] - 1] = offsets[:-1]
    return nxt


def polygon_areas(vertices: np.ndarray, offsets: np.ndarray, pv: np.ndarray) -> np.ndarray:
    """Signed shoelace areas of CSR polygons, shape (R,), about each polygon's first vertex
    (coordinates relative to the polygon keep their digits far from the origin)."""
    if len(offsets) < 2:
        return np.zeros(0)
    p = vertices[pv]
    if len(p):
        p -= np.repeat(p[offsets[:-1]], np.diff(offsets), axis=0)
    q = p[next_entry(offsets)]
    c = p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1]
    return 0.5 * np.add.reduceat(c, offsets[:-1]) if len(c) else np.zeros(len(offsets) - 1)


@dataclass(frozen=True)
class Level:
    """The subdivision after one layer (see :meth:`Partition.upto`).

    Attributes
    ----------
    vertices : ndarray (V, 2); offsets : ndarray (R+1,); polygon_vertices : ndarray (M,);
    edge_layer, edge_unit : ndarray (M,) -- as in :class:`Partition`.
    """

    vertices: np.ndarray
    offsets: np.ndarray
    polygon_vertices: np.ndarray
    edge_layer: np.ndarray
    edge_unit: np.ndarray


@dataclass(frozen=True)
class DecisionBoundary:
    """Straight pieces of a decision boundary (or level set) inside linear regions.

    Attributes
    ----------
    segments : ndarray, shape (S, 2, 2)
        Segment endpoints in slice coordinates.
    classes : ndarray, shape (S, 2)
        The two classes tied on the segment and ahead of all others (regression: ``(0, 0)``).
    regions : ndarray, shape (S,)
        Region containing each segment.
    tolerance : float
        Endpoints closer than this are joined in :attr:`pieces` and :meth:`polylines`.
    tied_regions : ndarray, shape (T,)
        Regions on which the two top classes have the same affine map (regression: ``f = τ``
        on the whole region), e.g. where every unit of a layer is off at a zero-bias
        initialization: there the tie is the whole region, not a segment, so no segments are
        drawn inside it.
    """

    segments: np.ndarray
    classes: np.ndarray
    regions: np.ndarray
    tolerance: float
    tied_regions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __repr__(self) -> str:
        return (f"DecisionBoundary(segments={len(self.segments)}, length={self.length:.6g}, "
                f"pieces={self.pieces}, tied_regions={len(self.tied_regions)})")

    @property
    def length(self) -> float:
        """Total length in slice coordinates."""
        return float(np.linalg.norm(self.segments[:, 1] - self.segments[:, 0], axis=1).sum())

    @cached_property
    def _graph(self) -> tuple[np.ndarray, int, np.ndarray]:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components
        from scipy.spatial import cKDTree

        pts = self.segments.reshape(-1, 2)
        n = len(pts)
        if n == 0:
            return np.zeros(0, np.int64), 0, np.zeros(0, np.int64)
        pairs = cKDTree(pts).query_pairs(self.tolerance, output_type="ndarray")
        g = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
        _, node = connected_components(g, directed=False)  # merged endpoint ids
        s = node.reshape(-1, 2)
        m = int(node.max()) + 1
        g2 = coo_matrix((np.ones(len(s)), (s[:, 0], s[:, 1])), shape=(m, m))
        k, comp = connected_components(g2, directed=False)
        return s, k, comp

    @property
    def pieces(self) -> int:
        """Number of connected pieces (polylines joined at shared endpoints)."""
        return int(self._graph[1])

    def polylines(self) -> list[np.ndarray]:
        """The segments chained into polylines, each of shape (n_i, 2) (convenience; loops)."""
        s, k, comp = self._graph
        out: list[np.ndarray] = []
        if len(s) == 0:
            return out
        seg_comp = comp[s[:, 0]]
        for c in range(k):
            idx = np.flatnonzero(seg_comp == c)
            adj: dict[int, list[int]] = {}
            for i in idx:
                for end in (0, 1):
                    adj.setdefault(int(s[i, end]), []).append(int(i))
            start = next((n for n, v in adj.items() if len(v) == 1), int(s[idx[0], 0]))
            used: set[int] = set()
            node, pts = start, []
            while True:
                nxt = [i for i in adj[node] if i not in used]
                if not nxt:
                    break
                i = nxt[0]
                used.add(i)
                end = 0 if int(s[i, 0]) == node else 1
                if not pts:
                    pts.append(self.segments[i, end])
                pts.append(self.segments[i, 1 - end])
                node = int(s[i, 1 - end])
            out.append(np.array(pts))
            rest = [i for i in idx if i not in used]
            out.extend(self.segments[i] for i in rest)  # branches (e.g. triple junctions)
        return out


@dataclass(frozen=True)
class PartitionStats:
    """Summary statistics of a :class:`Partition` (see :meth:`Partition.stats`).

    Attributes
    ----------
    n_regions : int
    area_mean, area_std : float
        Region areas in slice units.
    vertices_mean, vertices_std : float
        Vertices per region.
    eccentricity_mean, eccentricity_median : float
        ``sqrt(1 - λ_min/λ_max)`` of each region's second-moment matrix (0 round, → 1 thin).
    n_above : int
        Regions with area at least ``area_threshold`` times the domain area.
    n_slivers : int
        Regions with area below ``sliver_threshold`` times the domain area.
    density : ndarray (K,) or None
        Regions meeting the disk of radius ``radius`` around each given point, per unit area.
    boundary_length : float or None
        Decision-boundary length (None when the output map is unavailable).
    boundary_pieces : int or None
    bytes_per_region : float
        Memory the partition holds per region (:attr:`Partition.nbytes` / ``n_regions``).
    """

    n_regions: int
    area_mean: float
    area_std: float
    vertices_mean: float
    vertices_std: float
    eccentricity_mean: float
    eccentricity_median: float
    n_above: int
    n_slivers: int
    density: np.ndarray | None
    boundary_length: float | None
    boundary_pieces: int | None
    bytes_per_region: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The statistics as one flat row (``density`` becomes ``density_0``, ``density_1``, ...)."""
        d: dict[str, Any] = {k: getattr(self, k) for k in self.__dataclass_fields__
                             if k != "density"}
        if self.density is not None:
            d.update({f"density_{k}": float(v) for k, v in enumerate(self.density)})
        return d

    def to_frame(self):
        """:meth:`to_dict` as a one-row pandas DataFrame (needs pandas)."""
        from .._tables import pandas

        return pandas().DataFrame([self.to_dict()])

    def __repr__(self) -> str:
        from .._tables import compact_repr

        return compact_repr(self)


@dataclass(frozen=True)
class Partition:
    r"""Exact partition of a 2D slice into the linear regions of a network.

    Regions are convex polygons ``ω`` of slice coordinates on which every unit's VQ code is
    constant and the output is affine, :math:`f(x(s,t)) = G_ω (s,t)^\top + h_ω`. Storage is
    vectorized: one vertex table and CSR polygon lists.

    Attributes
    ----------
    slice : Slice
    layers : tuple of str
        The piecewise layers (trace node names) that were used, in graph order.
    vertices : ndarray, shape (V, 2)
        Vertex coordinates (slice coordinates), shared by adjacent regions.
    offsets : ndarray, shape (R + 1,)
        Region ``r`` has vertices ``polygon_vertices[offsets[r]:offsets[r+1]]``.
    polygon_vertices : ndarray, shape (M,)
        Vertex indices of each polygon, counter-clockwise.
    edge_layer : ndarray, shape (M,)
        For entry ``i`` of a polygon, index into ``layers`` of the layer whose unit created
        the edge from ``polygon_vertices[i]`` to the next vertex; ``-1`` on the domain boundary.
    edge_unit : ndarray, shape (M,)
        Flat unit index within that layer (for max-pooling: the pooled output unit; for
        clamps: the unit, with ``+n_units`` for its upper bound); ``-1`` on the boundary.
    interior : ndarray, shape (R, 2)
        A strictly interior point of each region (its vertex centroid).
    codes : Codes
        Full VQ code of each region: ``{layer: Tensor (R, *units)}`` as
        :func:`maxaffine.codes` returns at the interior points.
    G : ndarray, shape (R, C, 2) or None
        Output slope in slice coordinates on each region (None for partial or per-layer
        partitions, where regions are not linear regions of the output).
    h : ndarray, shape (R, C) or None
        Output offset: ``f = G @ (s, t) + h``.
    complete : bool
        False when ``max_regions`` stopped the refinement (the subdivision is then coarser
        than the linear regions).
    tolerance : float
        Relative tolerance used to decide that a vertex lies on a cutting line.
    n_snapped : int
        Number of times a vertex was within tolerance of a cutting line (treated as on it).
    history : tuple of Level
        The subdivision after each layer (``history[-1]`` is this partition's geometry).
    ancestors : ndarray, shape (R, L)
        Index of the region of ``history[l]`` that contains each region.
    trace : Trace
        The traced model (used by :meth:`verify`).

    References
    ----------
    Balestriero & Baraniuk, "A Spline Theory of Deep Networks", ICML 2018.
    Humayun et al., "SplineCam", CVPR 2023.
    """

    slice: Slice
    layers: tuple[str, ...]
    vertices: np.ndarray = field(repr=False)
    offsets: np.ndarray = field(repr=False)
    polygon_vertices: np.ndarray = field(repr=False)
    edge_layer: np.ndarray = field(repr=False)
    edge_unit: np.ndarray = field(repr=False)
    interior: np.ndarray = field(repr=False)
    codes: dict = field(repr=False)
    G: np.ndarray | None = field(repr=False)
    h: np.ndarray | None = field(repr=False)
    complete: bool = True
    tolerance: float = 0.0
    n_snapped: int = 0
    history: tuple = field(default=(), repr=False)
    ancestors: np.ndarray | None = field(default=None, repr=False)
    trace: Any = field(default=None, repr=False, compare=False)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays this partition holds: geometry, codes, output maps, ancestry
        and the per-layer history (the trace it refers to is not counted)."""
        arrays = [self.vertices, self.offsets, self.polygon_vertices, self.edge_layer,
                  self.edge_unit, self.interior, self.G, self.h, self.ancestors]
        total = sum(a.nbytes for a in arrays if a is not None)
        total += sum(c.numel() * c.element_size() for c in dict(self.codes).values())
        for lev in self.history:
            total += sum(getattr(lev, f).nbytes for f in ("vertices", "offsets",
                                                          "polygon_vertices", "edge_layer",
                                                          "edge_unit"))
        return int(total)

    def __repr__(self) -> str:
        return (f"Partition(n_regions={self.n_regions}, layers={len(self.layers)}, "
                f"complete={self.complete}, n_vertices={len(self.vertices)}, "
                f"n_outputs={self.n_outputs}, in_shape={self.slice.in_shape}, "
                f"domain_area={self.slice.area:.6g})")

    # -- tables, files and views (implemented in .export) ------------------------------
    def to_dict(self) -> dict[str, np.ndarray]:
        """One row per region: ``region``, ``area``, ``n_vertices``, interior ``s``, ``t``,
        ``code`` (16-hex-digit key of the full code), and with an output map ``class``
        (predicted class; single output: ``f > 0``) and ``slope_norm`` (Frobenius norm of
        ``G``). See :func:`maxaffine.partition.export.region_table`."""
        from .export import region_table

        return region_table(self)

    def to_frame(self):
        """:meth:`to_dict` as a pandas DataFrame indexed by ``region`` (needs pandas)."""
        from .._tables import frame

        return frame(self.to_dict(), index="region")

    def save(self, path: Any, *, overwrite: bool = False):
        """Write every field to an ``.npz`` file (no pickle); returns the path written.

        An existing file is never replaced unless ``overwrite=True``. Read it back with
        :meth:`Partition.load`, which needs no model.
        """
        from .export import save

        return save(self, path, overwrite=overwrite)

    @staticmethod
    def load(path: Any) -> Partition:
        """Read a partition written by :meth:`save`; exact round trip, ``trace`` is None."""
        from .export import load

        return load(path)

    def to_shapely(self) -> np.ndarray:
        """The regions as an array (R,) of ``shapely.Polygon`` (needs shapely)."""
        from .export import to_shapely

        return to_shapely(self)

    def to_svg(self, path: Any = None, **kwargs: Any) -> str:
        """A compact standalone SVG of the regions, edges (each once, by layer) and the
        decision boundary; written to ``path`` (never over an existing file unless
        ``overwrite=True``). See :func:`maxaffine.partition.export.to_svg`."""
        from .export import to_svg

        return to_svg(self, path, **kwargs)

    def show(self, **kwargs: Any):
        """The interactive view (zoom, pan, hover for each region's id, code, class and map;
        per-layer edge and decision-boundary toggles), displayed in Jupyter; save it as a
        standalone page with ``.save(path)``. See :func:`maxaffine.view.partition_html`."""
        from ..view import PartitionView

        view = PartitionView(self, **kwargs)
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return view
        if get_ipython() is not None:
            display(view)
            return None
        return view

    def _repr_html_(self) -> str | None:
        from ..view import partition_html

        try:
            return partition_html(self)
        except InputError:  # too many regions for a page: Jupyter falls back to the repr
            return None

    def to_geojson(self) -> dict:
        """The regions as a GeoJSON FeatureCollection dict, with :meth:`to_dict` properties."""
        from .export import to_geojson

        return to_geojson(self)

    # -- sizes --------------------------------------------------------------------------
    @property
    def n_regions(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_outputs(self) -> int | None:
        return None if self.G is None else self.G.shape[1]

    @cached_property
    def areas(self) -> np.ndarray:
        """Region areas in slice units, shape (R,)."""
        return polygon_areas(self.vertices, self.offsets, self.polygon_vertices)

    @property
    def vertex_counts(self) -> np.ndarray:
        """Vertices per region, shape (R,)."""
        return np.diff(self.offsets)

    @property
    def region_of_entry(self) -> np.ndarray:
        """Region index of each polygon entry, shape (M,)."""
        return np.repeat(np.arange(self.n_regions), self.vertex_counts)

    def polygon(self, r: int) -> np.ndarray:
        """Vertices of region ``r`` (counter-clockwise), shape (n_r, 2)."""
        return self.vertices[self.polygon_vertices[self.offsets[r]:self.offsets[r + 1]]]

    def polygons(self) -> list[np.ndarray]:
        """All region polygons as a list of (n_r, 2) arrays (for plotting)."""
        return np.split(self.vertices[self.polygon_vertices], self.offsets[1:-1])

    def input_vertices(self) -> torch.Tensor:
        """Vertices mapped to input space, shape (V, *in_shape)."""
        return self.slice.points(self.vertices)

    def input_polygon(self, r: int) -> torch.Tensor:
        """Region ``r``'s polygon in input space, shape (n_r, *in_shape)."""
        return self.slice.points(self.polygon(r))

    # -- graph --------------------------------------------------------------------------
    @cached_property
    def edges(self) -> dict[str, np.ndarray]:
        """Undirected edges of the planar subdivision.

        Returns
        -------
        dict with ``vertices`` (E, 2) vertex ids, ``layer`` (E,) and ``unit`` (E,) of the
        unit that created the edge (-1: domain boundary), ``regions`` (E, 2) the regions on
        both sides (-1: outside).
        """
        pv = self.polygon_vertices
        a, b = pv, pv[next_entry(self.offsets)]
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        key = lo * np.int64(len(self.vertices) + 1) + hi
        order = np.argsort(key, kind="stable")
        ks = key[order]
        first = np.ones(len(ks), bool)
        first[1:] = ks[1:] != ks[:-1]
        start = np.flatnonzero(first)
        eid = np.cumsum(first) - 1
        E = len(start)
        regions = np.full((E, 2), -1, np.int64)
        reg = self.region_of_entry[order]
        regions[eid[start], 0] = reg[start]
        second = ~first
        regions[eid[second], 1] = reg[second]
        sel = order[start]
        return dict(vertices=np.stack([lo[sel], hi[sel]], 1), layer=self.edge_layer[sel],
                    unit=self.edge_unit[sel], regions=regions)

    @cached_property
    def adjacency(self):
        """Region adjacency as a symmetric scipy.sparse CSR matrix (R, R) of edge counts."""
        from scipy.sparse import coo_matrix

        r = self.edges["regions"]
        r = r[(r >= 0).all(1)]
        R = self.n_regions
        m = coo_matrix((np.ones(2 * len(r)), (np.r_[r[:, 0], r[:, 1]], np.r_[r[:, 1], r[:, 0]])),
                       shape=(R, R))
        return m.tocsr()

    # -- outputs ------------------------------------------------------------------------
    def _need_map(self, what: str) -> None:
        if self.G is None or self.h is None:
            raise InputError(f"{what} needs each region's output map, which this partition does "
                             f"not have (a per-layer view or a partial result); use the full "
                             f"partition from partition_slice with complete=True")

    def output(self, st: Any, regions: Any) -> np.ndarray:
        """``G[r] @ st + h[r]`` for points (N, 2) in given regions (N,): shape (N, C)."""
        self._need_map("output")
        st = np.asarray(st, float).reshape(-1, 2)
        r = np.asarray(regions, np.int64)
        return np.einsum("ncd,nd->nc", self.G[r], st) + self.h[r]

    @cached_property
    def _locator(self):
        from ._locate import GridLocator

        return GridLocator(self.vertices, self.offsets, self.polygon_vertices)

    def locate(self, st: Any, *, tol: float = 1e-12) -> np.ndarray:
        """Region containing each point of slice coordinates, by geometry.

        Points are located over a uniform-grid index of the polygons, built once per
        partition (cost ~ the number of polygon entries; no forward pass, no code
        comparison), then ~O(1) candidate polygons per point. A point on an edge or vertex
        shared by several regions gets the one it lies deepest in (the lowest index among
        equals).

        Parameters
        ----------
        st : array-like, shape (N, 2)
            Slice coordinates; ``N = 0`` gives an empty result.
        tol : float
            Points outside every region by at most ``tol`` times the slice scale (rounding
            on the domain boundary) still get the nearest one.

        Returns
        -------
        ndarray, shape (N,)
            Region index, -1 for points outside the domain (or non-finite).

        Examples
        --------
        >>> import torch, maxaffine
        >>> _ = torch.manual_seed(0)
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
        >>> part = maxaffine.partition_slice(net, maxaffine.Slice.box(), progress=False)
        >>> r = part.locate([[0.1, 0.2], [5.0, 5.0]])
        >>> bool(r[0] >= 0), int(r[1])
        (True, -1)
        """
        st = _points2(st, "locate")
        reg, depth = self._locator.locate(st)
        reg[~(depth >= -tol * self.slice.scale)] = -1
        return reg

    def decision_boundary(self, tau: float = 0.0) -> DecisionBoundary:
        r"""Decision boundary (classification) or level set ``f = τ`` (regression, C = 1).

        For C ≥ 2 classes it is the set where the two largest scores tie,
        :math:`\{x : f_c(x) = f_{c'}(x) \ge f_m(x)\ \forall m\}`; in each region a segment of
        the line ``(G_c - G_{c'}) (s,t) + h_c - h_{c'} = 0`` clipped to the polygon and to the
        half-planes where ``c`` beats every other class. Pairs that tie but are not the top
        two are excluded. A pair whose maps agree on a whole region (relative ``1e-9`` of the
        output scale) draws nothing there; such regions are listed in
        ``tied_regions`` when the pair is the top two.

        Returns
        -------
        DecisionBoundary
        """
        self._need_map("decision_boundary")
        from ._boundary import decision_segments

        return decision_segments(self, tau)

    # -- statistics ---------------------------------------------------------------------
    def eccentricities(self) -> np.ndarray:
        """``sqrt(1 - λ_min/λ_max)`` of each region's area second-moment matrix, shape (R,)."""
        p = self.vertices[self.polygon_vertices]
        cen = np.repeat(self.interior, self.vertex_counts, axis=0)
        p = p - cen
        q = p[next_entry(self.offsets)]
        cr = p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1]
        sxx = cr * (p[:, 0] ** 2 + p[:, 0] * q[:, 0] + q[:, 0] ** 2)
        syy = cr * (p[:, 1] ** 2 + p[:, 1] * q[:, 1] + q[:, 1] ** 2)
        sxy = cr * (2 * p[:, 0] * p[:, 1] + p[:, 0] * q[:, 1] + q[:, 0] * p[:, 1] + 2 * q[:, 0] * q[:, 1])
        o = self.offsets[:-1]
        A = np.add.reduceat(cr, o) / 2
        mx = np.add.reduceat(cr * (p[:, 0] + q[:, 0]), o) / (6 * A)
        my = np.add.reduceat(cr * (p[:, 1] + q[:, 1]), o) / (6 * A)
        Ixx = np.add.reduceat(sxx, o) / (12 * A) - mx * mx
        Iyy = np.add.reduceat(syy, o) / (12 * A) - my * my
        Ixy = np.add.reduceat(sxy, o) / (24 * A) - mx * my
        tr, det = Ixx + Iyy, Ixx * Iyy - Ixy ** 2
        disc = np.sqrt(np.maximum(tr * tr / 4 - det, 0))
        lmax, lmin = tr / 2 + disc, np.maximum(tr / 2 - disc, 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            e = np.sqrt(np.clip(1 - lmin / lmax, 0, 1))
        return np.nan_to_num(e, nan=1.0)

    def density(self, points: Any, radius: float, *, space: str = "slice") -> np.ndarray:
        """Regions meeting the disk of ``radius`` around each point, divided by the disk area.

        Parameters
        ----------
        points : array, shape (K, 2) slice coordinates (``space="slice"``) or (K, *in_shape)
            inputs projected onto the slice (``space="input"``)
        radius : float (slice units)
        """
        pts = points.detach().cpu().double().numpy() if isinstance(points, torch.Tensor) \
            else np.asarray(points, float)
        if space == "input":
            pts = self.slice.project(pts)
        elif space != "slice":
            raise InputError(f"space must be 'slice' or 'input'; got {space!r}")
        pts = pts.reshape(-1, 2)
        if not radius > 0:
            raise InputError(f"radius must be positive; got {radius}")
        p = self.vertices[self.polygon_vertices]
        e = p[next_entry(self.offsets)] - p
        reg = self.region_of_entry
        out = np.zeros(len(pts))
        for k, c in enumerate(pts):  # K query points (few); vectorized over all edges
            rel = c[None] - p
            t = np.clip(np.einsum("md,md->m", rel, e) / np.maximum(np.einsum("md,md->m", e, e), 1e-300), 0, 1)
            d = np.linalg.norm(rel - t[:, None] * e, axis=1)
            near = np.zeros(self.n_regions, bool)
            near[reg[d <= radius]] = True
            cross = e[:, 0] * rel[:, 1] - e[:, 1] * rel[:, 0]
            inside = np.minimum.reduceat(cross, self.offsets[:-1]) >= 0
            out[k] = np.count_nonzero(near | inside) / (math.pi * radius ** 2)
        return out

    def stats(self, *, points: Any = None, radius: float | None = None, space: str = "slice",
              area_threshold: float = 1e-6, sliver_threshold: float = SLIVER_AREA) -> PartitionStats:
        """Region statistics without drawing.

        Parameters
        ----------
        points : array (K, 2) or (K, *in_shape), optional
            Points at which to report region density (needs ``radius``).
        radius : float, optional
        area_threshold : float
            ``n_above`` counts regions with area ≥ ``area_threshold`` × domain area.
        sliver_threshold : float
            ``n_slivers`` counts regions with area < ``sliver_threshold`` × domain area.

        Returns
        -------
        PartitionStats
        """
        a = self.areas
        vc = self.vertex_counts
        ecc = self.eccentricities()
        dom = self.slice.area
        dens = None
        if points is not None:
            if radius is None:
                raise InputError("give radius together with points for region density")
            dens = self.density(points, radius, space=space)
        bl = bp = None
        if self.G is not None:
            db = self.decision_boundary()
            bl, bp = db.length, db.pieces
        return PartitionStats(
            n_regions=self.n_regions, area_mean=float(a.mean()), area_std=float(a.std()),
            vertices_mean=float(vc.mean()), vertices_std=float(vc.std()),
            eccentricity_mean=float(ecc.mean()), eccentricity_median=float(np.median(ecc)),
            n_above=int(np.count_nonzero(a >= area_threshold * dom)),
            n_slivers=int(np.count_nonzero(a < sliver_threshold * dom)),
            density=dens, boundary_length=bl, boundary_pieces=bp,
            bytes_per_region=self.nbytes / max(self.n_regions, 1))

    # -- per-layer views ----------------------------------------------------------------
    def upto(self, layer: int | str) -> Partition:
        """The subdivision by the layers up to and including ``layer`` (name or index).

        Its regions are the cells of the codes of those layers (convex polygons); the
        cutting lines of later layers bend at earlier boundaries. The output map is not
        defined on them (``G = h = None``).
        """
        if isinstance(layer, str):
            if layer not in self.layers:
                raise InputError(f"no layer {layer!r} in this partition; layers: {self.layers}")
            i = self.layers.index(layer)
        else:
            i = int(layer) % len(self.layers) if self.layers else 0
        if not self.history or self.ancestors is None:
            raise InputError("this partition has no per-layer history")
        if i == len(self.layers) - 1 and i == len(self.history) - 1:
            return self
        if i >= len(self.history):
            raise InputError(f"the refinement stopped before layer {self.layers[i]!r} "
                             f"(partial result)")
        lev: Level = self.history[i]
        anc = self.ancestors[:, i]
        R = len(lev.offsets) - 1
        rep = np.zeros(R, np.int64)
        rep[anc[::-1]] = np.arange(len(anc))[::-1]
        names = self.layers[: i + 1]
        codes = Codes({k: self.codes[k][torch.from_numpy(rep)] for k in names})
        p = lev.vertices[lev.polygon_vertices]
        interior = np.add.reduceat(p, lev.offsets[:-1], axis=0) / np.diff(lev.offsets)[:, None]
        return Partition(self.slice, names, lev.vertices, lev.offsets, lev.polygon_vertices,
                         lev.edge_layer, lev.edge_unit, interior, codes, None, None,
                         self.complete, self.tolerance, self.n_snapped, self.history[: i + 1],
                         self.ancestors[rep, : i + 1], self.trace)

    # -- verification -------------------------------------------------------------------
    def verify(self, n_samples: int = 2000, *, seed: int = 0, rtol: float = 1e-7) -> dict:
        """Check the partition against the model at random points of the slice.

        Each sample is located by geometry (:meth:`locate`); its code from an independent
        forward pass (:func:`maxaffine.codes`) must equal the code stored for that region,
        and (if available) the region's map must give the model's output. Samples within
        ``1e-9`` (relative to the slice scale) of a region boundary are skipped since their
        code is a tie, as are samples whose code differs from the region's only where a
        switching function of that layer is zero up to ``1e-9`` of its largest value over
        the samples (a unit identically zero on its region, whose forward-pass sign is
        rounding noise). Cost: one forward pass over the samples plus point location, about
        ``O(n_samples)`` after the location index is built once (``O(M)`` for ``M``
        polygon entries), with memory ``O(n_samples × units + M)``.

        Parameters
        ----------
        n_samples : int
            Number of uniform random samples (at least 1).
        seed : int
        rtol : float
            Allowed output error relative to ``max(1, max |f|)``.

        Returns
        -------
        dict with ``n_checked``, ``n_skipped``, ``max_output_error``.

        Raises
        ------
        InputError
            ``n_samples < 1``, or a partial partition (``complete=False``) stopped within
            its last layer, whose regions are not yet the cells of that layer's codes (the
            message says so; earlier layers are checked first). A partial partition that
            stopped between layers verifies like a complete one.
        MaxAffineError
            With the offending points, codes and regions.
        """
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) \
                or n_samples < 1:
            raise InputError(f"verify needs n_samples >= 1 (an integer); got {n_samples!r}")
        st = self.slice.sample(int(n_samples), seed=seed)
        rec = self.trace.run(self.slice.points(st))
        reg, depth = self._locator.locate(st)
        tol = 1e-9 * self.slice.scale
        # near-boundary samples carry tie codes: skip them
        near = np.abs(depth) <= tol
        missing = (reg < 0) | (depth < -tol)
        found = ~missing
        ok_reg = torch.from_numpy(np.where(found, reg, 0))
        differ = np.zeros(len(st), bool)
        last = np.zeros(len(st), bool)
        for k in self.layers:
            mine = self.codes[k][ok_reg].reshape(len(st), -1)
            got = rec.codes[k].reshape(len(st), -1).to(mine.device, mine.dtype)
            d = (mine != got).any(1).numpy()
            if d.any():
                # a unit zero up to rounding at the sample (e.g. identically zero on its
                # region) has a noise code there: a tie, like a sample on a boundary
                near |= d & _value_ties(self.trace, rec, k)
            if k == self.layers[-1]:
                last = d
            else:
                differ |= d
        bad_missing = missing & ~near
        if not self.complete and not (found & differ & ~near).any() \
                and not bad_missing.any() and (found & last & ~near).any():
            n_bad = int((found & last & ~near).sum())
            raise InputError(
                f"this partition is partial (complete=False): the refinement stopped during "
                f"layer {self.layers[-1]!r} (max_regions or the memory budget), so {n_bad} "
                f"of {len(st)} samples fall in regions that layer has not cut yet; the layers "
                f"before it verified. Rerun partition_slice with a larger max_regions or "
                f"memory_budget to verify every layer")
        differ |= last
        bad_code = found & differ & ~near
        problems = []
        if bad_missing.any():
            i = np.flatnonzero(bad_missing)[:5]
            problems.append(f"{int(bad_missing.sum())} samples lie in no region (e.g. slice "
                            f"points {st[i].tolist()}, depths {depth[i].tolist()})")
        if bad_code.any():
            i = np.flatnonzero(bad_code)[:5]
            problems.append(f"{int(bad_code.sum())} samples have another code than the region "
                            f"containing them (points {st[i].tolist()}, regions "
                            f"{reg[i].tolist()})")
        err = 0.0
        checked = found & ~near
        if self.G is not None and checked.any():
            y = rec.output.reshape(len(st), -1).detach().cpu().numpy()
            pred = self.output(st[checked], reg[checked])
            diff = np.abs(pred - y[checked])
            err = float(diff.max())
            scale = max(1.0, float(np.abs(y).max()))
            if err > rtol * scale:
                i = np.flatnonzero(checked)[np.argmax(diff.max(1))]
                problems.append(f"output map differs from the model by {err:.3g} (point "
                                f"{st[i].tolist()}, region {int(reg[i])})")
        if problems:
            raise MaxAffineError("partition verification failed: " + "; ".join(problems))
        return dict(n_checked=int(checked.sum()), n_skipped=int((~checked).sum()),
                    max_output_error=err)


#: A switching function counts as zero at a sample (a tie) within this fraction of its
#: largest magnitude over the samples.
VALUE_TIE_RTOL = 1e-9


def _value_ties(tr, rec, name: str) -> np.ndarray:
    """(N,) bool: samples of the forward record ``rec`` at which some switching function of
    layer ``name`` is within :data:`VALUE_TIE_RTOL` of zero (relative to its largest value
    over the samples), or the top two entries of a max window are that close."""
    from ._network import switch_of

    with torch.no_grad():
        sw = switch_of(tr, name, tr.context(rec, name))
        Z = np.asarray(sw.fn(tr.unit_inputs(rec, name)), dtype=np.float64)
    N = len(Z)
    Z = Z.reshape(N, -1)
    if Z.shape[1] == 0:
        return np.zeros(N, bool)
    if sw.kind == "argmax":
        t = np.asarray(sw.table)
        if t.shape[1] < 2:
            return np.zeros(N, bool)
        W = np.where(t[None] >= 0, Z[:, np.maximum(t, 0)], -np.inf)  # (N, K, w)
        top = np.sort(W, axis=2)[..., -2:]
        scale = np.where(np.isfinite(W), np.abs(W), 0.0).max(axis=(0, 2))
        return (top[..., 1] - top[..., 0] <= VALUE_TIE_RTOL * scale[None]).any(1)
    scale = np.abs(Z).max(0)
    return (np.abs(Z) <= VALUE_TIE_RTOL * scale[None]).any(1)


def _points2(st: Any, where: str) -> np.ndarray:
    """Slice coordinates as a float64 (N, 2) array (real values only)."""
    if isinstance(st, torch.Tensor):
        if st.is_complex():
            raise InputError(f"{where}: slice coordinates must be real; got a complex tensor")
        st = st.detach().cpu().double().numpy()
    arr = np.asarray(st)
    if np.iscomplexobj(arr):
        raise InputError(f"{where}: slice coordinates must be real; got complex values")
    if arr.size % 2 or (arr.ndim >= 1 and arr.shape[-1] != 2 and arr.size):
        raise InputError(f"{where}: expected slice coordinates of shape (N, 2); got "
                         f"{arr.shape}")
    return arr.astype(np.float64).reshape(-1, 2)


__all__ = ["Partition", "DecisionBoundary", "PartitionStats", "Level", "SLIVER_AREA"]
