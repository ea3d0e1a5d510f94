"""An independent region oracle: breadth-first region walking with per-region half-planes.

Each region is found from one interior point: maxaffine.affine_map gives every piecewise
node's pre-activation as an affine map with that point's codes fixed; the region is the
intersection of the half-planes those codes impose (qhull), and its neighbours are found by
stepping across every edge. Shares no code with maxaffine.partition.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import ConvexHull, HalfspaceIntersection

import maxaffine
from maxaffine.layers.activation import ClampRule, TwoSlopeRule
from maxaffine.layers.pooling import MaxoutRule, MaxPoolRule


def _halfplanes(tr, x0, U, V, x):
    """Rows (a, b, c) meaning a s + b t + c <= 0 for the region of input x (1, *in)."""
    rows = []
    with torch.no_grad():
        rec = tr.run(x)
    for name in tr.piecewise:
        node = tr.node(name)
        arg = node.fx_node.args[0].name
        m = maxaffine.affine_map(tr, x, end=arg, progress=False)
        A = m.A[0].reshape(m.A.shape[1], -1).numpy()
        b = m.b[0].numpy()
        gs, gt, c = A @ U, A @ V, A @ x0 + b  # z = gs s + gt t + c
        z = tr.unit_inputs(rec, name)[0].reshape(-1).numpy()
        rule = node.rule
        if isinstance(rule, TwoSlopeRule):
            sgn = np.where(z > 0, -1.0, 1.0)  # code 1: z >= 0  ->  -z <= 0
            rows.append(np.stack([sgn * gs, sgn * gt, sgn * c], 1))
        elif isinstance(rule, ClampRule):
            lo, hi = rule.bounds(tr.context(rec, name))
            for bound, below in ((lo, True), (hi, False)):
                if np.isfinite(bound):
                    sgn = np.where(z < bound, 1.0, -1.0) if below else np.where(z > bound, -1.0, 1.0)
                    rows.append(np.stack([sgn * gs, sgn * gt, sgn * (c - bound)], 1))
        elif isinstance(rule, (MaxPoolRule, MaxoutRule)):
            ctx = tr.context(rec, name)
            if isinstance(rule, MaxPoolRule):
                table = rule.unit_table(ctx).numpy()
            else:
                dim = rule.dim_keepdim(ctx)[0]
                shape = tuple(ctx.u.shape[1:])
                table = np.arange(int(np.prod(shape))).reshape(shape)
                table = np.moveaxis(table, dim - 1, -1).reshape(-1, shape[dim - 1])
            for row in table:
                idx = row[row >= 0]
                q = idx[np.argmax(z[idx])]
                for j in idx[idx != q]:  # z_j - z_q <= 0
                    rows.append(np.array([[gs[j] - gs[q], gt[j] - gt[q], c[j] - c[q]]]))
        else:
            raise NotImplementedError(type(rule))
    return np.concatenate(rows) if rows else np.zeros((0, 3))


def oracle_regions(model, slc, max_regions=5000):
    """Count the regions of ``slc`` by walking; returns (count, total area)."""
    tr = maxaffine.trace(model, slc.points(slc.domain[:2]))
    x0, U, V = slc.origin, slc.u, slc.v
    dom = slc.domain
    e = np.roll(dom, -1, 0) - dom
    nrm = np.stack([e[:, 1], -e[:, 0]], 1)  # outward for CCW
    dom_rows = np.concatenate([nrm, -(nrm * dom).sum(1, keepdims=True)], 1)
    delta = 1e-7 * slc.scale

    def key(st):
        return maxaffine.codes(tr, slc.points(st[None])).region_keys()[0]

    start = dom.mean(0)
    seen = {key(start)}
    queue = [start]
    area = 0.0
    while queue:
        p = queue.pop()
        hs = np.concatenate([dom_rows, _halfplanes(tr, x0, U, V, slc.points(p[None]))])
        g = np.linalg.norm(hs[:, :2], axis=1)
        hs = hs[g > 1e-12 * max(g.max(), 1e-300)]  # constant units impose no line
        hs = hs / np.linalg.norm(hs[:, :2], axis=1, keepdims=True)
        pts = HalfspaceIntersection(hs, p).intersections
        hull = ConvexHull(pts)
        area += hull.volume
        poly = pts[hull.vertices]
        cen = poly.mean(0)
        for i in range(len(poly)):
            a, b = poly[i], poly[(i + 1) % len(poly)]
            mid = (a + b) / 2
            out = mid - cen
            d = np.array([b[1] - a[1], a[0] - b[0]])
            d = d / np.linalg.norm(d) * np.sign(np.dot(d, out))
            q = mid + delta * d
            if not slc.contains(q[None])[0]:
                continue
            k = key(q)
            if k not in seen:
                seen.add(k)
                queue.append(q)
        if len(seen) > max_regions:
            raise RuntimeError("too many regions for the oracle")
    return len(seen), area
