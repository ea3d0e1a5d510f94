"""Decision boundaries and level sets inside the linear regions of a :class:`Partition`."""

from __future__ import annotations

import numpy as np

from .partition import DecisionBoundary, next_entry

#: Two affine maps count as equal on a region when they differ by at most this fraction of
#: the output scale (largest |G| times the slice scale plus largest |h|).
TIE_RTOL = 1e-9


def decision_segments(part, tau: float = 0.0) -> DecisionBoundary:
    """Segments where the top two scores tie (C ≥ 2) or where ``f = tau`` (C = 1).

    A pair of scores with the same map on a region (within :data:`TIE_RTOL`) ties on the
    whole region: its sign is noise there, so the region contributes no segment for the
    pair, and is reported in ``tied_regions`` if the pair is the top two."""
    G, h = part.G, part.h
    C = G.shape[1]
    nx = next_entry(part.offsets)
    reg = part.region_of_entry
    P = part.vertices[part.polygon_vertices]
    F = np.einsum("mcd,md->mc", G[reg], P) + h[reg]
    if C == 1:
        ci, cj = np.zeros(1, np.int64), np.zeros(1, np.int64)
        D = F[:, :1] - tau
        dG, dh = G[:, :1], h[:, :1] - tau
    else:
        ci, cj = np.triu_indices(C, 1)
        D = F[:, ci] - F[:, cj]
        dG, dh = G[:, ci] - G[:, cj], h[:, ci] - h[:, cj]
    out_scale = np.abs(G).max() * part.slice.scale + np.abs(h).max() + abs(tau) + 1e-300
    same = np.abs(dG).sum(-1) * part.slice.scale + np.abs(dh) <= TIE_RTOL * out_scale  # (R, pairs)
    D = np.where(same[reg], 0.0, D)
    fi = np.einsum("rcd,rd->rc", G, part.interior) + h
    if C == 1:
        tied = np.flatnonzero(same[:, 0])
    else:
        top = np.sort(np.argsort(-fi, axis=1, kind="stable")[:, :2], axis=1)
        pair = top[:, 0] * C - top[:, 0] * (top[:, 0] + 1) // 2 + top[:, 1] - top[:, 0] - 1
        tied = np.flatnonzero(same[np.arange(len(G)), pair])
    npair = len(ci)
    s = D > 0
    sn = s[nx]
    ends = []
    for mask in (s & ~sn, ~s & sn):  # leaving and entering the side c > c'
        e, p = np.nonzero(mask)
        key = reg[e] * npair + p
        key, first = np.unique(key, return_index=True)
        ends.append((key, e[first], p[first]))
    (k1, e1, p1), (k2, e2, p2) = ends
    common, i1, i2 = np.intersect1d(k1, k2, return_indices=True)
    e1, p1, e2 = e1[i1], p1[i1], e2[i2]
    out_pts, out_F = [], []
    for e in (e1, e2):
        d0, d1 = D[e, p1], D[nx[e], p1]
        lam = (d0 / (d0 - d1))[:, None]
        out_pts.append(P[e] + lam * (P[nx[e]] - P[e]))
        out_F.append(F[e] + lam * (F[nx[e]] - F[e]))
    A, B = out_pts
    FA, FB = out_F
    lo = np.zeros(len(A))
    hi = np.ones(len(A))
    c, c2 = ci[p1], cj[p1]
    if C > 2:
        rows = np.arange(len(A))[:, None]
        EA = FA[rows[:, 0], c][:, None] - FA
        EB = FB[rows[:, 0], c][:, None] - FB
        other = np.ones_like(EA, bool)
        other[rows[:, 0], c] = False
        other[rows[:, 0], c2] = False
        with np.errstate(divide="ignore", invalid="ignore"):
            t = EA / (EA - EB)
        empty = other & (EA < 0) & (EB < 0)
        lower = np.where(other & (EA < 0) & (EB >= 0), t, 0.0).max(1)
        upper = np.where(other & (EA >= 0) & (EB < 0), t, 1.0).min(1)
        lo, hi = lower, upper
        hi = np.where(empty.any(1), -1.0, hi)
    keep = hi - lo > 1e-12
    A2 = A + lo[:, None] * (B - A)
    B2 = A + hi[:, None] * (B - A)
    seg = np.stack([A2, B2], 1)[keep]
    classes = np.stack([c, c2], 1)[keep]
    regions = (common // npair)[keep]
    return DecisionBoundary(seg, classes, regions, 1e-9 * part.slice.scale, tied)
