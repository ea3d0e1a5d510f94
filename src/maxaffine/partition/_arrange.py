"""One pass that cuts every region by all the lines crossing it: a batch of small line
arrangements, one per region of the previous layer.

Inside a region of the previous layer every cutting function of the layer is affine, so the
region's new cells are the faces of the arrangement of its crossing lines, clipped to the
(convex) region. In general position (no vertex on a line, no line through a crossing point,
no three lines through a point) the faces follow from vertex incidences alone:

* a region vertex is a corner of one face, the one with its sign vector;
* a crossing of line ``i`` with a region edge is a corner of the two faces with its sign
  vector and either sign of ``i``;
* a crossing of lines ``i`` and ``j`` inside the region is a corner of four faces.

A face is the set of incidences with one (region, sign vector) key; being convex, its
corners in counter-clockwise order are sorted by angle about their centroid. Edge crossings
are interpolated along the edge from its endpoint on the positive side, once per undirected
edge and line, so the regions on both sides share them; crossings inside a region are
interpolated along the chord of the lower-index line. This replaces the one-line-per-round
refinement (:func:`~maxaffine.partition._engine._rounds`), whose round count grows with the
longest chain of cuts, by a fixed number of vectorized operations per layer.

Anything outside general position (a value within the snapping tolerance where a sign is
read) makes :func:`cut_all` return None before it touches the mesh, and the caller falls
back to the rounds, which snap such events. The result is also checked combinatorially
(each region with ``k`` lines and ``c`` inner crossings gives ``1 + k + c`` faces, every face
has positive area) before it is accepted.
"""

from __future__ import annotations

import numpy as np

from ._mesh import Mesh, Polys, _ranges, pack_label, unpack_label

#: Largest table (rows x lines of a region, or line pairs) one pass may build; bigger layers
#: go through the rounds, whose memory grows with the cuts actually made.
MAX_ENTRIES = 1 << 24


class _Lines:
    """The listed (region, function) pairs of a layer, grouped by region."""

    def __init__(self, origin_of: np.ndarray, flat: np.ndarray, n_regions: int):
        self.region = origin_of
        self.fn = flat
        self.start = np.searchsorted(origin_of, np.arange(n_regions + 1))
        self.k = np.diff(self.start)
        self.kmax = int(self.k.max()) if len(self.k) else 0
        self.cols = np.arange(self.kmax)

    def local(self, pair: np.ndarray) -> np.ndarray:
        """Index of each pair among its region's lines."""
        return pair - self.start[self.region[pair]]

    def values(self, Z: np.ndarray, vid: np.ndarray, reg: np.ndarray):
        """(N, kmax) values of region ``reg[i]``'s lines at vertex ``vid[i]`` of table ``Z``
        (n, F), the mask of real (not padding) columns, and the functions."""
        J = self.start[reg][:, None] + self.cols
        ok = J < self.start[reg + 1][:, None]
        f = self.fn[np.minimum(J, len(self.fn) - 1)]
        return np.take(Z.reshape(-1), vid[:, None] * Z.shape[1] + f), ok, f


def _groups(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group ids (in increasing key order) of int64 keys and one index per group."""
    order = np.argsort(key)
    ks = key[order]
    new = np.ones(len(key), bool)
    new[1:] = ks[1:] != ks[:-1]
    inv = np.empty(len(key), np.int64)
    inv[order] = np.cumsum(new) - 1
    return inv, order[new]


def _face_ids(signs: np.ndarray, reg: np.ndarray) -> tuple[np.ndarray, int]:
    """Ids of the distinct (region, sign vector) rows of a bool table, and their number."""
    words = np.packbits(signs, axis=1, bitorder="little")
    pad = -words.shape[1] % 8
    if pad:
        words = np.concatenate([words, np.zeros((len(words), pad), np.uint8)], axis=1)
    words = np.ascontiguousarray(words).view("<i8")
    order = np.lexsort([*words.T, reg])
    ws, rs = words[order], reg[order]
    new = np.ones(len(reg), bool)
    new[1:] = (rs[1:] != rs[:-1]) | (ws[1:] != ws[:-1]).any(1)
    face = np.empty(len(reg), np.int64)
    face[order] = np.cumsum(new) - 1
    return face, int(new.sum())


def _incident_faces(pos: np.ndarray, reg: np.ndarray, i2: int, i3: int, l2: np.ndarray,
                    lp: np.ndarray, lq: np.ndarray, kmax: int) -> tuple[np.ndarray, int]:
    """Face ids of every corner incidence, and the number of faces.

    ``pos`` (N, kmax) holds the signs (value > 0) of each vertex occurrence for its region's
    lines: rows ``[0, i2)`` region vertices, ``[i2, i3)`` edge crossings (of local line
    ``l2``), ``[i3, N)`` inner crossings (of local lines ``lp`` and ``lq``). The incidence
    rows are the region vertices, the edge crossings twice (line ``l2`` negative, then
    positive) and the inner crossings four times (``lp`` / ``lq`` negative-negative,
    positive-negative, negative-positive, positive-positive). When region and sign bits fit
    one int64 the variants are bit operations on one key per occurrence; otherwise the sign
    table is expanded and grouped word by word.
    """
    if int(reg.max(initial=0)).bit_length() + kmax <= 62:
        if kmax <= 52:  # a float product is exact below 2**53 and uses BLAS (~20x faster)
            base = (pos @ np.ldexp(1.0, np.arange(kmax))).astype(np.int64)
        else:
            base = (pos.astype(np.int64) << np.arange(kmax)).sum(1)
        base |= reg << kmax
        b2, m2 = base[i2:i3], np.left_shift(1, l2)
        mp, mq = np.left_shift(1, lp), np.left_shift(1, lq)
        b3 = base[i3:] & ~(mp | mq)
        face, first = _groups(np.concatenate([base[:i2], b2 & ~m2, b2 | m2, b3, b3 | mp,
                                              b3 | mq, b3 | mp | mq]))
        return face, len(first)
    s2, s3 = pos[i2:i3], pos[i3:]
    sides2 = [s2.copy() for _ in range(2)]
    for bit, s in enumerate(sides2):
        s[np.arange(len(s2)), l2] = bool(bit)
    sides3 = [s3.copy() for _ in range(4)]
    for bits, s in enumerate(sides3):
        s[np.arange(len(s3)), lp] = bool(bits & 1)
        s[np.arange(len(s3)), lq] = bool(bits & 2)
    rows = np.concatenate([reg[:i2], reg[i2:i3], reg[i2:i3]] + [reg[i3:]] * 4)
    return _face_ids(np.concatenate([pos[:i2]] + sides2 + sides3), rows)


def _by_angle(face: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray | None:
    """Order of the rows by face, then by angle of (dx, dy) within the face; None when two
    rows of a face are not strictly ordered (a degenerate face).

    The angle is a pseudo-angle in [0, 4), monotone in the true angle; one float sort of
    ``face + 0.24 * angle`` orders faces apart (their keys differ by at least 0.04) and is
    checked exactly afterwards: rounding could only swap rows of one face whose angles
    differ by about the key's resolution, and then the angles read back in sorted order are
    not strictly increasing.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        p = dy / (np.abs(dx) + np.abs(dy))
    ang = np.where(dx >= 0, np.where(dy >= 0, p, 4.0 + p), 2.0 - p)
    if not np.isfinite(ang).all():
        return None  # a corner at the centroid
    order = np.argsort(face + 0.24 * ang)
    fs, an = face[order], ang[order]
    same = fs[1:] == fs[:-1]
    if np.any(an[1:][same] <= an[:-1][same]):
        return None
    return order


def cut_all(mesh: Mesh, polys: Polys, origin_of: np.ndarray, flat: np.ndarray,
            labels: np.ndarray, tol: np.ndarray, budget: int | None = None) -> Polys | None:
    """Cut every polygon by all its listed lines at once (see the module docstring).

    ``mesh.Z`` holds the layer's function values, ``tol[f]`` the snapping tolerance of
    function ``f`` (a value with ``|z| <= tol[f]`` lies on the line); ``(origin_of[i],
    flat[i])`` lists function ``flat[i]`` for polygon ``origin_of[i]``
    (sorted by polygon, then function, as :func:`numpy.nonzero` gives them) and
    ``labels[f]`` is the packed edge label of function ``f``. Returns the new polygons
    (``origin`` = the polygon cut) with the new vertices appended to the mesh, or None,
    with ``mesh.n`` as it was (the tables may have been moved to larger buffers: re-read
    them), when the layer is not in general position, too large, or
    would exceed ``budget`` regions (the rounds then stop at the budget).
    """
    if len(flat) == 0:
        return polys
    n = mesh.n
    out = _cut_all(mesh, polys, origin_of, flat, labels, tol, budget)
    if out is None:
        mesh.n = n  # drop the vertices appended so far
    return out


def _cut_all(mesh, polys, origin_of, flat, labels, tol, budget):
    n, F = mesh.n, mesh.Z.shape[1]
    if n * n * F >= 1 << 62:  # edge-and-line keys must fit in int64
        return None
    Z = mesh.Z[:n]
    lines = _Lines(origin_of, flat, polys.n)
    P = len(flat)
    off = polys.offsets
    cnt_p = polys.counts[origin_of]
    if len(cnt_p) and int(cnt_p.sum()) * 2 > MAX_ENTRIES:
        return None
    # -- every listed line against every edge of its polygon
    ent = _ranges(off[origin_of], cnt_p)
    succ = ent + 1
    succ = np.where(succ == np.repeat(off[origin_of + 1], cnt_p),
                    np.repeat(off[origin_of], cnt_p), succ)
    f_e = np.repeat(flat, cnt_p)
    a, b = polys.pv[ent], polys.pv[succ]
    Zf = Z.reshape(-1)
    ga, gb = Zf[a * F + f_e], Zf[b * F + f_e]
    if np.any(np.abs(ga) <= tol[f_e]):
        return None  # a vertex lies on a line
    # no vertex on a listed line, and vertices beyond both sides: exactly two edges cross
    ci = np.flatnonzero((ga > 0) != (gb > 0))
    if len(ci) != 2 * P:
        return None
    ca, cb, gca, gcb, fc = a[ci], b[ci], ga[ci], gb[ci], f_e[ci]
    # one vertex per undirected edge and line (both polygons on the edge list it)
    inv, first = _groups((np.minimum(ca, cb) * n + np.maximum(ca, cb)) * F + fc)
    X = len(first)
    later = lines.start[origin_of + 1] - np.arange(P) - 1
    if int(later.sum()) > MAX_ENTRIES:
        return None
    mesh.reserve(X)
    up = gca[first] > 0
    lo = np.where(up, ca[first], cb[first])
    hi = np.where(up, cb[first], ca[first])
    glo = np.where(up, gca[first], gcb[first])
    lam = (glo / (glo - np.where(up, gcb[first], gca[first])))[:, None]
    mesh.interpolate(n, lo, hi, lam)
    mesh.n = n + X
    x1, x2 = n + inv[0::2], n + inv[1::2]  # the chord of each pair, in polygon order
    # -- crossings of two lines of one polygon: on the first one's chord, or not at all
    pp = np.repeat(np.arange(P), later)
    qq = _ranges(np.arange(P) + 1, later)
    Zf = mesh.Z.reshape(-1)
    fq = flat[qq]
    z1, z2 = Zf[x1[pp] * F + fq], Zf[x2[pp] * F + fq]
    if np.any(np.abs(z1) <= tol[fq]) or np.any(np.abs(z2) <= tol[fq]):
        return None  # a line through another's crossing with an edge
    inside = np.flatnonzero((z1 > 0) != (z2 > 0))
    pp, qq, z1, z2 = pp[inside], qq[inside], z1[inside], z2[inside]
    Y = len(pp)
    crossed = np.flatnonzero(lines.k > 0)
    if budget is not None and polys.n + P + Y > budget:
        return None
    mesh.reserve(Y)
    mesh.interpolate(n + X, x1[pp], x2[pp], (z1 / (z1 - z2))[:, None])
    mesh.n = n + X + Y
    V, Z = mesh.V, mesh.Z
    # -- incidences: (vertex, region, sign vector) of every corner of every face
    ent1 = _ranges(off[crossed], polys.counts[crossed])
    reg1 = np.repeat(crossed, polys.counts[crossed])
    pair_c = np.repeat(np.arange(P), cnt_p)[ci]
    reg2 = origin_of[pair_c]
    reg3 = origin_of[pp]
    rows = len(ent1) + 4 * P + 4 * Y
    if rows * max(lines.kmax, 1) > MAX_ENTRIES:
        return None
    vid = np.concatenate([polys.pv[ent1], n + inv, n + X + np.arange(Y)])
    reg_occ = np.concatenate([reg1, reg2, reg3])
    vals, ok, fns = lines.values(Z, vid, reg_occ)
    pos = (vals > 0) & ok
    i2, i3 = len(ent1), len(ent1) + 2 * P
    lp, lq = lines.local(pp), lines.local(qq)
    near = (np.abs(vals[i3:]) <= tol[fns[i3:]]) & ok[i3:]
    near[np.arange(Y), lp] = False
    near[np.arange(Y), lq] = False
    if near.any():
        return None  # three lines through a point
    l2 = lines.local(pair_c)
    reg = np.concatenate([reg1, reg2, reg2] + [reg3] * 4)
    vid = np.concatenate([vid[:i2]] + [vid[i2:i3]] * 2 + [vid[i3:]] * 4)
    xy = np.take(V, vid, axis=0)  # (fancy indexing of a 2-column array is far slower)
    none2, none3 = np.full(2 * P, -1), np.full(Y, -1)
    on1 = np.concatenate([np.full(len(ent1), -1), l2, l2] + [lp] * 4)
    on2 = np.concatenate([np.full(len(ent1), -1), none2, none2] + [lq] * 4)
    edge_lab = pack_label(polys.el, polys.eu)
    out_lab = np.concatenate([edge_lab[ent1], edge_lab[ent[ci]], edge_lab[ent[ci]]]
                             + [none3] * 4)
    # -- faces: one per (region, sign vector), corners by angle about their centroid
    face, n_faces = _incident_faces(pos, reg_occ, i2, i3, l2, lp, lq, lines.kmax)
    if n_faces != len(crossed) + P + Y:
        return None
    counts = np.bincount(face, minlength=n_faces)
    cx = np.bincount(face, xy[:, 0], n_faces) / counts
    cy = np.bincount(face, xy[:, 1], n_faces) / counts
    dx, dy = xy[:, 0] - cx[face], xy[:, 1] - cy[face]
    order = _by_angle(face, dx, dy)
    if order is None or counts.min() < 3:
        return None
    fstart = np.cumsum(counts) - counts
    succ = np.arange(1, rows + 1)  # position of the next corner in the sorted rows
    succ[fstart + counts - 1] = fstart
    nxt = order[succ]
    # twice the signed areas, from corners relative to the centroid (no cancellation)
    cross = dx[order] * dy[nxt] - dy[order] * dx[nxt]
    if np.any(np.bincount(face[order], cross, n_faces) <= 0):
        return None
    # convex corners (collinear ones up to rounding): values that are not quite affine on a
    # region could otherwise pass as a star-shaped face
    ex, ey = dx[nxt] - dx[order], dy[nxt] - dy[order]  # edge from each sorted corner
    prv = np.empty(rows, np.int64)
    prv[succ] = np.arange(rows)
    turn = ex[prv] * ey - ey[prv] * ex  # previous edge x this edge
    if np.any(turn < -1e-9 * np.hypot(ex[prv], ey[prv]) * np.hypot(ex, ey)):
        return None
    # -- edge labels: the line both ends lie on, else the polygon edge the corner starts
    a1, a2, b1, b2 = on1[order], on2[order], on1[nxt], on2[nxt]
    shared = np.where((a1 >= 0) & ((a1 == b1) | (a1 == b2)), a1,
                      np.where((a2 >= 0) & ((a2 == b1) | (a2 == b2)), a2, -1))
    rs = reg[order]
    fn = flat[lines.start[rs] + np.maximum(shared, 0)]
    lab = np.where(shared >= 0, labels[fn], out_lab[order])
    if np.any(lab < 0):
        return None
    el, eu = unpack_label(lab)
    faces = Polys(counts, vid[order], el, eu, polys.origin[rs[fstart]],
                  np.zeros(n_faces, np.int64))
    return Polys.concat([polys.take(np.flatnonzero(lines.k == 0)), faces])
