"""A conforming planar subdivision into convex polygons, refined by cutting lines.

Vertices are shared between adjacent polygons (one table), polygons are CSR lists of
vertex ids, counter-clockwise, and every entry carries the label of the edge that starts at
it. A cutting function ``g`` is known by its values at the vertices; inside every polygon it
is affine, so a polygon is cut iff it has vertices strictly on both sides, and the crossing
point of an edge ``(a, b)`` is ``a + λ (b - a)`` with ``λ = g_a / (g_a - g_b)``. The point is
computed once per undirected edge from the endpoint with the smaller id, so both polygons
sharing the edge receive the same vertex and the subdivision stays conforming. All
operations are vectorized over polygons; the only Python loops are over cutting functions.

Between layers polygons are CSR (:class:`Polys`); while a layer cuts, they live in padded
rows (:class:`Rows`) so that a line touches only the rows it can cross
(:meth:`Mesh.split_rows` cuts them in place and appends the second pieces). Vertex values
of the layer's cutting functions are stored (n, F), one row per vertex, so a new vertex
interpolates one contiguous row.

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

    def take(self, idx: np.ndarray) -> Polys:
        off = self.offsets
        ent = _ranges(off[idx], self.counts[idx])
        return Polys(self.counts[idx], self.pv[ent], self.el[ent], self.eu[ent],
                     self.origin[idx], self.tag[idx])

    @staticmethod
    def concat(parts: list[Polys]) -> Polys:
        return Polys(*(np.concatenate([getattr(p, f) for p in parts]) for f in Polys.__slots__))


_LAB = np.int64(1 << 40)


def pack_label(layer: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """One int64 per edge label: ``(layer + 1) * 2**40 + (unit + 1)`` (both may be -1)."""
    return (np.asarray(layer, np.int64) + 1) * _LAB + (np.asarray(unit, np.int64) + 1)


def unpack_label(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_label`: (layer int32, unit int64)."""
    return (lab // _LAB - 1).astype(np.int32), lab % _LAB - 1


class Rows:
    """Polygons stored as padded rows, so a subset can be cut and written back in place.

    Row ``r < R`` holds ``cnt[r]`` vertex ids ``P[r, :cnt[r]]``, padded to the full width
    with its first vertex (so the entry after the last is the first: successors are a column
    shift, and a padding edge joins a vertex to itself), with packed edge labels ``LAB``
    (:func:`pack_label`; padding labels are unused), the row's ``origin`` (region of the
    previous layer) and
    ``ptr`` (position in the list of functions still to try on the row, see
    :func:`~maxaffine.partition._engine._cut_sign`). :meth:`take` gathers rows as :class:`Polys`;
    :meth:`replace` writes the polygons cut from those rows back: the first piece of each
    row over the row itself, further pieces appended. The cost of both is proportional to
    the rows touched, not to the whole subdivision.
    """

    def __init__(self, polys: Polys):
        R = polys.n
        self.R = 0
        self.cap = max(64, 2 * R)
        self.K = max(8, int(polys.counts.max()) + 2 if R else 8)
        # rows at and past R are written before they are read: no need to clear them
        self.P = np.empty((self.cap, self.K), np.int64)
        self.LAB = np.empty((self.cap, self.K), np.int64)
        self.cnt = np.empty(self.cap, np.int64)
        self.origin = np.empty(self.cap, np.int64)
        self.ptr = np.empty(self.cap, np.int64)
        self._put(np.arange(R), polys)
        self.R = R

    def _grow(self, rows: int, width: int) -> None:
        if rows <= self.cap and width <= self.K:
            return
        cap = self.cap
        while cap < rows:
            cap *= 2
        K = max(self.K, width + 2)
        for name in ("P", "LAB"):
            old = getattr(self, name)
            new = np.empty((cap, K), old.dtype)
            new[: self.R, : self.K] = old[: self.R]
            setattr(self, name, new)
        self.P[: self.R, self.K:] = self.P[: self.R, :1]  # padding repeats the first vertex
        for name in ("cnt", "origin", "ptr"):
            old = getattr(self, name)
            new = np.empty(cap, old.dtype)
            new[: self.R] = old[: self.R]
            setattr(self, name, new)
        self.cap, self.K = cap, K

    def _put(self, dest: np.ndarray, polys: Polys) -> None:
        counts = polys.counts
        if len(dest) == 0:
            return
        self._grow(int(dest.max()) + 1, int(counts.max()))
        r = np.repeat(dest, counts)
        col = np.arange(len(polys.pv), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts,
                                                                    counts)
        self.P[dest] = polys.pv[np.cumsum(counts) - counts][:, None]  # padding: first vertex
        self.P[r, col] = polys.pv
        self.LAB[r, col] = pack_label(polys.el, polys.eu)
        self.cnt[dest] = counts
        self.origin[dest] = polys.origin

    def take(self, rows: np.ndarray) -> Polys:
        """Rows ``rows`` as CSR polygons with ``tag`` = position in ``rows``."""
        cnt = self.cnt[rows]
        kmax = int(cnt.max()) if len(rows) else 0
        mask = np.arange(kmax)[None] < cnt[:, None]
        el, eu = unpack_label(self.LAB[rows, :kmax][mask])
        return Polys(cnt, self.P[rows, :kmax][mask], el, eu, self.origin[rows],
                     np.arange(len(rows), dtype=np.int64))

    def replace(self, rows: np.ndarray, out: Polys) -> None:
        """Write polygons ``out`` (``tag`` = position of the parent in ``rows``) back."""
        n = out.n
        if n == 0:
            return
        first = np.full(len(rows), -1, np.int64)
        first[out.tag[::-1]] = np.arange(n - 1, -1, -1)
        is_first = first[out.tag] == np.arange(n)
        extra = np.cumsum(~is_first)
        dest = np.where(is_first, rows[out.tag], self.R + extra - 1)
        self._put(dest, out)
        self.R += int(extra[-1])

    def polys(self) -> Polys:
        """All rows as CSR polygons (``tag`` zero)."""
        p = self.take(np.arange(self.R))
        p.tag = np.zeros(self.R, np.int64)
        return p


class Mesh:
    """Vertex table (grown by doubling) plus values of the current layer's cutting functions."""

    def __init__(self, domain: np.ndarray, tol: float = TOL):
        P = len(domain)
        self.cap = 1024
        self.V = np.zeros((self.cap, 2))
        self.V[:P] = domain
        self.n = P
        self.Z = np.zeros((self.cap, 0))
        self._spare: np.ndarray | None = None  # a value buffer to reuse
        self.tol = tol
        self.n_snapped = 0
        self.polys = Polys(np.array([P], np.int64), np.arange(P, dtype=np.int64),
                           np.full(P, -1, np.int32), np.full(P, -1, np.int64),
                           np.zeros(1, np.int64), np.zeros(1, np.int64))

    # -- vertex table ----------------------------------------------------------------
    def reserve(self, extra: int) -> None:
        """Room for ``extra`` more vertices (capacity doubles as needed)."""
        need = self.n + extra
        if need <= self.cap:
            return
        cap = self.cap
        while cap < need:
            cap *= 2
        V = np.empty((cap, 2))
        V[: self.n] = self.V[: self.n]
        Z = np.empty((cap, self.Z.shape[1]))
        Z[: self.n] = self.Z[: self.n]
        self.V, self.Z, self.cap = V, Z, cap

    def interpolate(self, at: int, lo: np.ndarray, hi: np.ndarray, lam: np.ndarray) -> None:
        """Write rows ``at, at + 1, ...`` of the vertex and value tables (capacity reserved,
        ``lo`` and ``hi`` below ``at``): ``A[lo] + lam (A[hi] - A[lo])``, in place."""
        k = len(lo)
        for A in (self.V, self.Z) if self.Z.shape[1] else (self.V,):
            out = A[at:at + k]
            src = A[:at]  # disjoint from ``out``: numpy would otherwise copy all of A first
            low = np.take(src, lo, axis=0)
            np.take(src, hi, axis=0, out=out, mode="clip")
            out -= low
            out *= lam
            out += low

    def set_values(self, Z: np.ndarray) -> None:
        """Values (n, F) of the cutting functions of the next layer at all vertices, one row
        per vertex (new vertices interpolate whole rows)."""
        spare = self.Z if self.Z.shape[1] else self._spare
        self.Z = np.empty((self.cap, 0))  # the old values go: nothing to copy when growing
        self.reserve(max(1024, self.n // 2))  # room for a layer's typical new vertices
        # reuse the last layer's buffer when it fits: fresh pages cost a fault each
        buf = spare if spare is not None and spare.shape == (self.cap, Z.shape[1]) else None
        if buf is None:
            self._spare = spare = None  # do not hold a table of the wrong shape meanwhile
            buf = np.empty((self.cap, Z.shape[1]))
        buf[: self.n] = Z
        self.Z = buf

    def compact(self) -> np.ndarray | None:
        """Drop vertices that no polygon uses and renumber; returns the kept old ids (None
        when all are kept)."""
        used = np.zeros(self.n, bool)
        used[self.polys.pv] = True
        if used.all():
            return None
        new_id = np.cumsum(used) - 1
        keep = np.flatnonzero(used)
        self.V[: len(keep)] = self.V[keep]
        self.n = len(keep)
        self._spare, self.Z = self.Z, np.zeros((self.cap, 0))  # rows no longer match V
        self.polys.pv = new_id[self.polys.pv]
        return keep

    @property
    def vertices(self) -> np.ndarray:
        return self.V[: self.n]

    # -- cutting ---------------------------------------------------------------------
    def split(self, polys: Polys, g: np.ndarray, layer: int, unit: int,
              scale: float | None = None) -> Polys:
        """Cut every polygon of ``polys`` crossed by the zero line of ``g`` (values (n,)).

        Only the vertices of ``polys`` are read, so the cost is proportional to the size of
        ``polys`` (callers pass the subset a line can cross). ``scale`` is ``max |g|`` over
        all vertices (computed here when not given); the snapping tolerance is
        ``tol * scale``. Returns the pieces and the uncrossed polygons, each carrying the
        ``origin`` and ``tag`` of the polygon it came from.
        """
        if scale is None:
            scale = float(np.abs(g).max()) if len(g) else 0.0
        if scale == 0.0 or polys.n == 0:
            return polys
        eps = self.tol * scale
        pv = polys.pv
        ge = g[pv]
        pos_e = ge > eps
        neg_e = ge < -eps
        off = polys.offsets
        starts = off[:-1]
        has_pos = np.logical_or.reduceat(pos_e, starts)
        has_neg = np.logical_or.reduceat(neg_e, starts)
        crossed = has_pos & has_neg
        if not crossed.any():
            return polys
        all_crossed = bool(crossed.all())
        if all_crossed:
            cidx = np.arange(polys.n)
            cnt = polys.counts
            ent = None
            a, pa, na = pv, pos_e, neg_e
            el, eu = polys.el, polys.eu
        else:
            cidx = np.flatnonzero(crossed)
            cnt = polys.counts[cidx]
            ent = _ranges(starts[cidx], cnt)
            a, pa, na = pv[ent], pos_e[ent], neg_e[ent]
            el, eu = polys.el[ent], polys.eu[ent]
        m = len(a)
        lstart = np.cumsum(cnt) - cnt
        nxt = np.arange(1, m + 1, dtype=np.int64)
        nxt[lstart + cnt - 1] = lstart
        b, pb, nb = a[nxt], pa[nxt], na[nxt]
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
        self.reserve(k)
        n0 = self.n
        Vl = self.V[ulo]
        self.V[n0:n0 + k] = Vl + lam[:, None] * (self.V[uhi] - Vl)
        if self.Z.shape[1]:
            Zl = self.Z[ulo]
            self.Z[n0:n0 + k] = Zl + lam[:, None] * (self.Z[uhi] - Zl)
        self.n = n0 + k
        newv = np.full(m, -1, np.int64)
        newv[cross] = n0 + inv.reshape(-1)
        pieces = []
        for keep_v, cut_v, cut_x in ((~na, za & nb, pa), (~pa, za & pb, na)):
            c = keep_v.astype(np.int64) + cross
            s = np.cumsum(c) - c
            tot = int(s[-1] + c[-1]) if m else 0
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
        if all_crossed:
            return Polys.concat(pieces)
        rest = np.flatnonzero(~crossed)
        keep_ent = np.repeat(~crossed, polys.counts)
        kept = Polys(polys.counts[rest], pv[keep_ent], polys.el[keep_ent], polys.eu[keep_ent],
                     polys.origin[rest], polys.tag[rest])
        return Polys.concat([kept] + pieces)

    def cut_rows(self, rows: Rows, cand: np.ndarray, P: np.ndarray, valid: np.ndarray,
                 g: np.ndarray, here: np.ndarray) -> None:
        """Cut each row ``cand[i]`` of ``rows`` by its own line, in place.

        ``P`` (c, K) holds the rows' vertex ids (``valid`` marks the first ``cnt`` entries;
        the padding after them repeats the first vertex, as in :class:`Rows`) and ``g`` the
        values of each row's cutting function there, in units of its snapping tolerance:
        entries with ``|g| <= 1`` lie on the line, and every row has entries beyond it on
        both sides. Vertices on the line are shared by both pieces; each crossed edge gets a
        new vertex, interpolated from its endpoint on the positive side. The two rows sharing
        an edge cut it by the same function (see :func:`_cut_sign`), possibly in different
        rounds: they create twins with bitwise identical coordinates and values, which
        :meth:`merge_twins` unifies once the layer is done. The positive piece overwrites
        its row, the negative one is appended with the row's ``origin`` and ``ptr``; edges
        along the line get the label ``here[i]``.
        """
        c = len(cand)
        if c == 0:
            return
        K = g.shape[1]
        # the entry after the last one of a row is its padding, which repeats the first
        # vertex: the next vertex around every row is the next column (column 0 after K - 1)
        nxt = np.empty((c, K), np.int64)
        nxt[:, :-1] = P[:, 1:]
        nxt[:, -1] = P[:, 0]
        gn = np.empty_like(g)
        gn[:, :-1] = g[:, 1:]
        gn[:, -1] = g[:, 0]
        pos = g > 1
        neg = g < -1
        pb = gn > 1
        nb = gn < -1
        za = valid & ~(pos | neg)
        self.n_snapped += int(np.count_nonzero(za))
        cross = (pos & nb) | (neg & pb)  # padding edges join a vertex to itself: never crossed
        at = np.flatnonzero(cross)
        # interpolate from the endpoint on the positive side: the same geometric vertex for
        # both rows sharing the edge, whichever way round they traverse it
        up = pos.ravel()[at]
        ca, cb = P.ravel()[at], nxt.ravel()[at]
        ga, gb = g.ravel()[at], gn.ravel()[at]
        lo = np.where(up, ca, cb)
        hi = np.where(up, cb, ca)
        glo = np.where(up, ga, gb)
        lam = (glo / (glo - np.where(up, gb, ga)))[:, None]
        k = len(at)
        self.reserve(k)
        n0 = self.n
        self.interpolate(n0, lo, hi, lam)
        self.n = n0 + k
        # both pieces at once: rows [0, c) keep the positive side, [c, 2c) the negative
        keep = np.concatenate([valid & ~neg, valid & ~pos])
        cut_v = np.concatenate([za & nb, za & pb])
        cut_x = np.concatenate([pos, neg])
        cr2 = np.concatenate([cross, cross])
        n_out = keep.astype(np.int64)
        n_out += cr2
        s = np.cumsum(n_out, 1)
        counts = s[:, -1].copy()
        s -= n_out
        rows._grow(rows.R + c, K + 1)
        W = rows.K
        s += (np.arange(2 * c) * W)[:, None]
        lab2 = np.concatenate([rows.LAB[cand, :K]] * 2)
        here2 = np.concatenate([here, here])[:, None]
        oP = np.empty((2 * c, W), np.int64)
        oL = np.empty((2 * c, W), np.int64)
        fk = s[keep]
        PP = np.concatenate([P, P])
        oP.ravel()[fk] = PP[keep]
        oL.ravel()[fk] = np.where(cut_v, here2, lab2)[keep]
        fx = (s + keep)[cr2]
        nv = np.arange(n0, n0 + k)
        oP.ravel()[fx] = np.concatenate([nv, nv])
        oL.ravel()[fx] = np.where(cut_x, here2, lab2)[cr2]
        # padding repeats the first vertex (a piece always keeps at least three entries)
        np.copyto(oP, oP[:, :1], where=np.arange(W) >= counts[:, None])
        dest = np.concatenate([cand, np.arange(rows.R, rows.R + c)])
        rows.P[dest] = oP
        rows.LAB[dest] = oL
        rows.cnt[dest] = counts
        rows.origin[rows.R:rows.R + c] = rows.origin[cand]
        rows.ptr[rows.R:rows.R + c] = rows.ptr[cand]
        rows.R += c

    def merge_twins(self, rows: Rows, start: int) -> None:
        """Unify vertices created since ``start`` with bitwise equal coordinates (the twins
        :meth:`cut_rows` makes on edges cut from both sides) and renumber ``rows``."""
        if self.n - start < 2:
            return
        V = self.V[start:self.n]
        order = np.lexsort((V[:, 1], V[:, 0]))
        Vs = V[order]
        first = np.ones(len(order), bool)
        first[1:] = (Vs[1:] != Vs[:-1]).any(1)
        if first.all():
            return
        rep = order[np.flatnonzero(first)[np.cumsum(first) - 1]]
        remap = np.arange(self.n)
        remap[start + order] = start + rep
        R = rows.R
        rows.P[:R] = remap[rows.P[:R]]

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
        width = self.n - n_before
        refs = np.bincount(pv[new] - n_before, minlength=width)
        cand = np.bincount(pv[new & flat] - n_before, minlength=width)
        drop_v = (refs > 0) & (refs == cand)
        drop = np.zeros(m, bool)
        drop[new] = drop_v[pv[new] - n_before]
        drop &= np.repeat(polys.counts > 3, polys.counts)
        if not drop.any():
            return polys
        counts = polys.counts - np.add.reduceat(drop.astype(np.int64), off[:-1])
        keep = ~drop
        return Polys(counts, pv[keep], polys.el[keep], polys.eu[keep], polys.origin, polys.tag)
