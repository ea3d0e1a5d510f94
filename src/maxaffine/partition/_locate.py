"""Point location in a planar subdivision of convex polygons, over a uniform grid index.

The index rasterizes every polygon onto a uniform grid of about ``2 R`` cells: for each grid
column a polygon meets, the polygon's extent in ``y`` within the column is the range of its
edges clipped to the column (a convex polygon's slab is bounded by its clipped edges), and
the polygon is listed in every cell of that range. The number of (cell, polygon) pairs is
about the number of cells plus the number of cells the edges pass through, so building the
index costs ``O(M)`` for ``M`` polygon entries of a typical subdivision, independent of any
network, and each query tests only the few polygons listed in its cell: the point's signed
distance to each candidate's edges (positive inside, counter-clockwise polygons), keeping
the candidate it is deepest in. Everything is vectorized over polygons, edges and queries.
"""

from __future__ import annotations

import math

import numpy as np

from ._mesh import _ranges

#: Polygon entries tested per chunk of queries (bounds the temporaries).
_CHUNK = 1 << 21


class GridLocator:
    """Uniform-grid point location over CSR convex polygons (counter-clockwise).

    Parameters
    ----------
    vertices : ndarray (V, 2)
    offsets : ndarray (R + 1,)
    polygon_vertices : ndarray (M,)
    """

    def __init__(self, vertices: np.ndarray, offsets: np.ndarray, polygon_vertices: np.ndarray):
        self.offsets = np.asarray(offsets, np.int64)
        R = len(self.offsets) - 1
        self.R = R
        counts = np.diff(self.offsets)
        self.counts = counts
        P = vertices[polygon_vertices]
        M = len(P)
        nxt = np.arange(1, M + 1, dtype=np.int64)
        if M:
            nxt[self.offsets[1:] - 1] = self.offsets[:-1]
        Q = P[nxt]
        # each edge by its start and unit normal: a (x - px) + b (y - py) is the signed
        # distance (> 0 inside), relative to the edge so that it keeps its digits far from
        # the origin
        e = Q - P
        ln = np.hypot(e[:, 0], e[:, 1])
        with np.errstate(divide="ignore", invalid="ignore"):
            a, b = -e[:, 1] / ln, e[:, 0] / ln
        zero = ~(ln > 0)  # repeated vertices carry no constraint
        a[zero], b[zero] = 0.0, 0.0
        self.line = np.stack([a, b, P[:, 0], P[:, 1], np.where(zero, np.inf, 0.0)], 1)
        lo = vertices.min(0) if len(vertices) else np.zeros(2)
        hi = vertices.max(0) if len(vertices) else np.ones(2)
        ext = np.maximum(hi - lo, 1e-300)
        self.scale = float(np.hypot(*ext))
        # a margin well above rounding, so that points on shared edges find both sides
        self.pad = 1e-9 * self.scale
        cells = max(1, 2 * R)
        nx = max(1, min(cells, math.ceil(math.sqrt(cells * ext[0] / ext[1]))))
        ny = max(1, math.ceil(cells / nx))
        self.lo, self.nx, self.ny = lo, nx, ny
        self.h = ext / np.array([nx, ny])
        if M == 0:
            self.cell_start = np.zeros(nx * ny + 1, np.int64)
            self.cell_poly = np.zeros(0, np.int64)
            return
        reg = np.repeat(np.arange(R, dtype=np.int64), counts)
        # (edge, column) pairs for every column each edge's x-range meets
        xmin, xmax = np.minimum(P[:, 0], Q[:, 0]), np.maximum(P[:, 0], Q[:, 0])
        c0 = self._col(xmin - self.pad)
        c1 = self._col(xmax + self.pad)
        n_e = c1 - c0 + 1
        ent = np.repeat(np.arange(M, dtype=np.int64), n_e)
        col = _ranges(c0, n_e)
        xl = lo[0] + col * self.h[0]
        xa = np.clip(xl, xmin[ent], xmax[ent])
        xb = np.clip(xl + self.h[0], xmin[ent], xmax[ent])
        px, py = P[ent, 0], P[ent, 1]
        dx, dy = e[ent, 0], e[ent, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = dy / dx
            ya = np.where(dx != 0, py + (xa - px) * slope, py)
            yb = np.where(dx != 0, py + (xb - px) * slope, py + dy)
        ylo, yhi = np.minimum(ya, yb), np.maximum(ya, yb)
        del xa, xb, px, py, dx, dy, slope, ya, yb, xl
        # the polygon's y-extent in each column it meets
        key = reg[ent] * nx + col
        order = np.argsort(key, kind="stable")
        ks = key[order]
        first = np.ones(len(ks), bool)
        first[1:] = ks[1:] != ks[:-1]
        st = np.flatnonzero(first)
        pc_key = ks[st]
        ymin = np.minimum.reduceat(ylo[order], st)
        ymax = np.maximum.reduceat(yhi[order], st)
        del key, order, ks, first, ylo, yhi, ent
        r0 = self._row(ymin - self.pad)
        r1 = self._row(ymax + self.pad)
        n_c = r1 - r0 + 1
        poly = np.repeat(pc_key // nx, n_c)
        cell = _ranges(r0, n_c) * nx + np.repeat(pc_key % nx, n_c)
        order = np.argsort(cell, kind="stable")  # within a cell: polygons in increasing order
        self.cell_poly = poly[order]
        self.cell_start = np.zeros(nx * ny + 1, np.int64)
        np.cumsum(np.bincount(cell, minlength=nx * ny), out=self.cell_start[1:])

    def _col(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.floor((x - self.lo[0]) / self.h[0]), 0, self.nx - 1).astype(np.int64)

    def _row(self, y: np.ndarray) -> np.ndarray:
        return np.clip(np.floor((y - self.lo[1]) / self.h[1]), 0, self.ny - 1).astype(np.int64)

    @property
    def n_pairs(self) -> int:
        """(cell, polygon) pairs in the index."""
        return len(self.cell_poly)

    def locate(self, st: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Deepest polygon containing each point and the depth there.

        Parameters
        ----------
        st : ndarray (N, 2)

        Returns
        -------
        region : ndarray (N,) int64
            The polygon with the largest signed distance from the point to its nearest edge
            (the lowest index among equals, e.g. a vertex shared by several); -1 when no
            polygon of the point's cell comes within the grid margin.
        depth : ndarray (N,)
            That signed distance: > 0 strictly inside, ~0 on an edge, < 0 outside (``-inf``
            with no candidate).
        """
        st = np.asarray(st, np.float64).reshape(-1, 2)
        N = len(st)
        region = np.full(N, -1, np.int64)
        depth = np.full(N, -np.inf)
        if N == 0 or self.R == 0:
            return region, depth
        inside = np.all((st >= self.lo - self.pad) & (st <= self.lo + self.h * [self.nx, self.ny]
                                                      + self.pad), axis=1)
        inside &= np.isfinite(st).all(1)
        q = np.flatnonzero(inside)
        cell = self._row(st[q, 1]) * self.nx + self._col(st[q, 0])
        s0 = self.cell_start[cell]
        nc = self.cell_start[cell + 1] - s0
        # work per query: its candidates' entries
        cand_len = np.zeros(len(q), np.int64)
        if len(q):
            cs = np.concatenate([[0], np.cumsum(self.counts[self.cell_poly])])
            cand_len = cs[s0 + nc] - cs[s0]
        i = 0
        cum = np.cumsum(cand_len)
        while i < len(q):
            base = cum[i - 1] if i else 0
            j = int(np.searchsorted(cum, base + _CHUNK, side="right"))
            j = max(j, i + 1)
            self._chunk(st, q[i:j], s0[i:j], nc[i:j], region, depth)
            i = j
        return region, depth

    def _chunk(self, st, q, s0, nc, region, depth) -> None:
        pair_q = np.repeat(np.arange(len(q), dtype=np.int64), nc)
        if len(pair_q) == 0:
            return
        poly = self.cell_poly[_ranges(s0, nc)]
        cnt = self.counts[poly]
        ent = _ranges(self.offsets[poly], cnt)
        pts = st[q[np.repeat(pair_q, cnt)]]
        L = self.line[ent]
        d = L[:, 0] * (pts[:, 0] - L[:, 2]) + L[:, 1] * (pts[:, 1] - L[:, 3]) + L[:, 4]
        pstart = np.cumsum(cnt) - cnt
        pd = np.minimum.reduceat(d, pstart)
        qstart = np.cumsum(nc) - nc
        has = nc > 0
        best = np.full(len(q), -np.inf)
        best[has] = np.maximum.reduceat(pd, qstart[has])
        is_best = pd == best[pair_q]
        bq, first = np.unique(pair_q[is_best], return_index=True)
        region[q[bq]] = poly[np.flatnonzero(is_best)[first]]
        depth[q[bq]] = best[bq]
