"""A conforming planar subdivision into convex polygons, refined by cutting lines.

Vertices are shared between adjacent polygons (one table), polygons are CSR lists of
vertex ids, counter-clockwise, and every entry carries the label of the edge that starts at
it. A cutting function ``g`` is known by its values at the vertices; inside every polygon it
is affine, so a polygon is cut iff it has vertices strictly on both sides, and the crossing
point of an edge ``(a, b)`` is ``a + λ (b - a)`` with ``λ = g_a / (g_a - g_b)``. The point is
computed once per undirected edge from the endpoint with the smaller id, so both polygons
sharing the edge receive the same vertex and the subdivision stays conforming. All
operations are vectorized over polygons; the only Python loops are over cutting functions.

Tolerance: a vertex with ``|g| <= tol * max|g|`` (max over all current vertices, per
function) is taken to lie on the line; it is shared by both pieces instead of creating a
new vertex at distance ~``tol`` from it. Such events are counted (``n_snapped``).
"""

from __future__ import annotations

import numpy as np

#: Default relative tolerance for "a vertex lies on a cutting line".
TOL = 1e-12


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + c)`` for each (s, c)."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    cum = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(cum - starts, counts)


class Polys:
    """CSR polygon lists with per-entry edge labels and per-polygon tags."""

    __slots__ = ("counts", "pv", "el", "eu", "origin", "tag")

    def __init__(self, counts, pv, el, eu, origin, tag):
        self.counts = counts
        self.pv = pv
        self.el = el
        self.eu = eu
        self.origin = origin
        self.tag = tag

    @property
    def n(self) -> int:
        return len(self.counts)

    @property
    def offsets(self) -> np.ndarray:
        off = np.zeros(len(self.counts) + 1, np.int64)
        np.cumsum(self.counts, out=off[1:])
        return off

    def take(self, idx: np.ndarray) -> "Polys":
        off = self.offsets
        ent = _ranges(off[idx], self.counts[idx])
        return Polys(self.counts[idx], self.pv[ent], self.el[ent], self.eu[ent],
                     self.origin[idx], self.tag[idx])

    @staticmethod
    def concat(parts: list["Polys"]) -> "Polys":
        return Polys(*(np.concatenate([getattr(p, f) for p in parts]) for f in Polys.__slots__))


class Mesh:
    """Vertex table (grown by doubling) plus values of the current layer's cutting functions."""

    def __init__(self, domain: np.ndarray, tol: float = TOL):
        P = len(domain)
        self.cap = 1024
        self.V = np.zeros((self.cap, 2))
        self.V[:P] = domain
        self.n = P
        self.Z = np.zeros((0, self.cap))
        self.tol = tol
        self.n_snapped = 0
        self.polys = Polys(np.array([P], np.int64), np.arange(P, dtype=np.int64),
                           np.full(P, -1, np.int32), np.full(P, -1, np.int64),
                           np.zeros(1, np.int64), np.zeros(1, np.int64))

    # -- vertex table ----------------------------------------------------------------
    def _reserve(self, extra: int) -> None:
        need = self.n + extra
        if need <= self.cap:
            return
        cap = self.cap
        while cap < need:
            cap *= 2
        V = np.zeros((cap, 2))
        V[: self.n] = self.V[: self.n]
        Z = np.zeros((self.Z.shape[0], cap))
        Z[:, : self.n] = self.Z[:, : self.n]
        self.V, self.Z, self.cap = V, Z, cap

    def set_values(self, Z: np.ndarray) -> None:
        """Values (F, n) of the cutting functions of the next layer at all vertices."""
        buf = np.zeros((Z.shape[0], self.cap))
        buf[:, : self.n] = Z
        self.Z = buf

    def compact(self) -> None:
        """Drop vertices that no polygon uses and renumber."""
        used = np.zeros(self.n, bool)
        used[self.polys.pv] = True
        if used.all():
            return
        new_id = np.cumsum(used) - 1
        keep = np.flatnonzero(used)
        self.V[: len(keep)] = self.V[keep]
        self.n = len(keep)
        self.Z = np.zeros((0, self.cap))
        self.polys.pv = new_id[self.polys.pv]

    @property
    def vertices(self) -> np.ndarray:
        return self.V[: self.n]

    # -- cutting ---------------------------------------------------------------------
    def split(self, polys: Polys, g: np.ndarray, layer: int, unit: int,
              eligible: np.ndarray | None = None) -> Polys:
        """Cut every (eligible) polygon crossed by the zero line of ``g`` (values (n,))."""
        scale = float(np.abs(g).max()) if len(g) else 0.0
        if scale == 0.0:
            return polys
        eps = self.tol * scale
        pos = g > eps
        neg = g < -eps
        pv = polys.pv
        off = polys.offsets
        starts = off[:-1]
        pe = pos[pv]
        has_pos = np.logical_or.reduceat(pe, starts)
        if not has_pos.any():
            return polys
        ne = neg[pv]
        has_neg = np.logical_or.reduceat(ne, starts)
        crossed = has_pos & has_neg
        if eligible is not None:
            crossed &= eligible
        if not crossed.any():
            return polys
        cidx = np.flatnonzero(crossed)
        cnt = polys.counts[cidx]
        ent = _ranges(starts[cidx], cnt)
        m = len(ent)
        lstart = np.cumsum(cnt) - cnt
        nxt = np.arange(1, m + 1, dtype=np.int64)
        nxt[lstart + cnt - 1] = lstart
        a = pv[ent]
        b = a[nxt]
        pa, na = pos[a], neg[a]
        pb, nb = pos[b], neg[b]
        za = ~pa & ~na
        self.n_snapped += int(np.count_nonzero(za))
        cross = (pa & nb) | (na & pb)
        # new vertices: one per undirected crossed edge, from the smaller vertex id
        ca, cb = a[cross], b[cross]
        lo, hi = np.minimum(ca, cb), np.maximum(ca, cb)
        key = lo * np.int64(self.n) + hi
        ukey, inv = np.unique(key, return_inverse=True)
        ulo, uhi = ukey // self.n, ukey % self.n
        gl, gh = g[ulo], g[uhi]
        lam = gl / (gl - gh)
        k = len(ukey)
        self._reserve(k)
        n0 = self.n
        self.V[n0:n0 + k] = self.V[ulo] + lam[:, None] * (self.V[uhi] - self.V[ulo])
        if self.Z.shape[0]:
            Zl, Zh = self.Z[:, ulo], self.Z[:, uhi]
            self.Z[:, n0:n0 + k] = Zl + lam[None] * (Zh - Zl)
        self.n = n0 + k
        newv = np.full(m, -1, np.int64)
        newv[cross] = n0 + inv.reshape(-1)
        el, eu = polys.el[ent], polys.eu[ent]
        pieces = []
        for keep_v, cut_v, cut_x in ((~na, za & nb, pa), (~pa, za & pb, na)):
            c = keep_v.astype(np.int64) + cross
            s = np.cumsum(c) - c
            tot = int(c.sum())
            out_v = np.empty(tot, np.int64)
            out_l = np.empty(tot, np.int32)
            out_u = np.empty(tot, np.int64)
            iv = s[keep_v]
            out_v[iv] = a[keep_v]
            out_l[iv] = np.where(cut_v[keep_v], layer, el[keep_v])
            out_u[iv] = np.where(cut_v[keep_v], unit, eu[keep_v])
            ix = s[cross] + keep_v[cross]
            out_v[ix] = newv[cross]
            out_l[ix] = np.where(cut_x[cross], layer, el[cross])
            out_u[ix] = np.where(cut_x[cross], unit, eu[cross])
            pc = np.add.reduceat(c, lstart)
            pieces.append(Polys(pc, out_v, out_l, out_u, polys.origin[cidx], polys.tag[cidx]))
        rest = np.flatnonzero(~crossed)
        if len(rest) == 0:
            return Polys.concat(pieces)
        keep_ent = np.repeat(~crossed, polys.counts)
        kept = Polys(polys.counts[rest], pv[keep_ent], polys.el[keep_ent], polys.eu[keep_ent],
                     polys.origin[rest], polys.tag[rest])
        return Polys.concat([kept] + pieces)

    # -- argmax cells ----------------------------------------------------------------
    def merge(self, polys: Polys, group: np.ndarray, n_before: int) -> Polys:
        """Merge the pieces of each group (a convex union) into one polygon.

        Boundary edges of a group are its directed edges whose reverse is not in the group;
        their start vertices, sorted by angle about the group's centroid, form the union.
        Afterwards vertices created since ``n_before`` that are collinear in every polygon
        using them are removed (they were cut points of lines that do not bound a cell).
        """
        off = polys.offsets
        pv = polys.pv
        m = len(pv)
        nxt = np.arange(1, m + 1, dtype=np.int64)
        nxt[off[1:] - 1] = off[:-1]
        gid = np.repeat(group, polys.counts)
        n = np.int64(self.n)
        a, b = pv, pv[nxt]
        G = np.int64(group.max() + 1) if len(group) else np.int64(1)
        fwd = (gid * n + a) * n + b
        rev = (gid * n + b) * n + a
        boundary = ~np.isin(fwd, rev)
        # new polygons
        ug, pidx = np.unique(group, return_index=True)
        bg = gid[boundary]
        bv = a[boundary]
        P = self.V[bv]
        sums = np.zeros((int(G), 2))
        np.add.at(sums, bg, P)
        cnts = np.bincount(bg, minlength=int(G))
        cen = sums / np.maximum(cnts, 1)[:, None]
        ang = np.arctan2(P[:, 1] - cen[bg, 1], P[:, 0] - cen[bg, 0])
        order = np.lexsort((ang, bg))
        counts = cnts[ug]
        merged = Polys(counts.astype(np.int64), bv[order], polys.el[boundary][order],
                       polys.eu[boundary][order], polys.origin[pidx], polys.tag[pidx])
        return self.remove_collinear(merged, n_before)

    def remove_collinear(self, polys: Polys, n_before: int) -> Polys:
        off = polys.offsets
        pv = polys.pv
        m = len(pv)
        if m == 0:
            return polys
        nxt = np.arange(1, m + 1, dtype=np.int64)
        nxt[off[1:] - 1] = off[:-1]
        prv = np.empty(m, np.int64)
        prv[nxt] = np.arange(m)
        p = self.V[pv]
        e1 = p - p[prv]
        e2 = p[nxt] - p
        cr = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        dot = np.einsum("md,md->m", e1, e2)
        flat = (np.abs(cr) <= 1e-10 * np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1)) \
            & (dot > 0)
        new = pv >= n_before
        refs = np.bincount(pv[new], minlength=self.n)
        cand = np.bincount(pv[new & flat], minlength=self.n)
        drop_v = (refs > 0) & (refs == cand)
        drop = drop_v[pv] & (polys.counts[np.repeat(np.arange(polys.n), polys.counts)] > 3)
        if not drop.any():
            return polys
        counts = polys.counts - np.add.reduceat(drop.astype(np.int64), off[:-1])
        keep = ~drop
        return Polys(counts, pv[keep], polys.el[keep], polys.eu[keep], polys.origin, polys.tag)
