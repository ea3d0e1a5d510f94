"""Layer-by-layer refinement of a slice into linear regions (see :func:`partition_slice`)."""

from __future__ import annotations

import itertools
import time
import warnings
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..affine import Codes
from ..errors import BudgetExceededError, BudgetWarning, InputError
from ..trace import Trace, as_trace
from ._arrange import cut_all
from ._budget import MEMORY_FRACTION, MemoryBudget
from ._mesh import TOL, Mesh, Polys, Rows, pack_label
from ._network import Evaluator, switch_of
from .partition import Level, Partition, check_tol
from .slice import Slice


def _as_trace(model: Any, slc: Slice) -> Trace:
    if not isinstance(model, (Trace, torch.nn.Module)):
        raise InputError(f"expected an nn.Module or a maxaffine Trace, got {type(model).__name__}")
    tr = as_trace(model, slc.points(np.vstack([slc.domain.mean(0), slc.domain[:2]])))
    if tuple(tr.in_shape) != tuple(slc.in_shape):
        raise InputError(f"the slice lives in inputs of shape {slc.in_shape} but the model takes "
                         f"{tr.in_shape}; build the slice from inputs of the model's shape")
    return tr


def _resolve_layers(tr: Trace, layers: Any) -> tuple[str, ...]:
    if layers is None:
        return tuple(tr.piecewise)
    if isinstance(layers, int):
        if not 0 <= layers <= len(tr.piecewise):
            raise InputError(f"layers={layers} but the model has {len(tr.piecewise)} piecewise "
                             f"layers")
        return tuple(tr.piecewise[:layers])
    if isinstance(layers, str):
        layers = [layers]
    names = [tr.node(n).name for n in layers]
    bad = [n for n in names if n not in tr.piecewise]
    if bad:
        raise InputError(f"{bad} are not piecewise layers; choose from {tr.piecewise}")
    return tuple(n for n in tr.piecewise if n in names)


#: Entries of one (functions x polygon entries) block when testing which lines cross which
#: regions at the start of a layer.
_BLOCK = 1 << 22


def _row_extremes(Zt: np.ndarray, rows: Rows, R: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row max and min over each polygon's vertices of the columns of ``Zt`` (n, f)."""
    cnt = rows.cnt[:R]
    mx = Zt[rows.P[:R, 0]]
    mn = mx.copy()
    for j in range(1, int(cnt.max()) if R else 0):
        idx = np.where(j < cnt, rows.P[:R, j], rows.P[:R, 0])
        w = Zt[idx]
        np.maximum(mx, w, out=mx)
        np.minimum(mn, w, out=mn)
    return mx, mn


def _blocks(F: int, rows: Rows, per: int = 1):
    step = max(1, _BLOCK // max(1, rows.R * rows.K * per))
    return [slice(i, i + step) for i in range(0, F, step)]


#: Weight of "below the line" in :func:`_crossing_sums` (vertex counts stay far below it).
_BELOW = 1 << 20


def _crossing_sums(S: _Summing, Zt: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """(R, F) bool: polygon ``r`` (row of the vertex-summing matrix ``S``) has vertices
    above ``thr[f]`` and below ``-thr[f]`` for function ``f``. Both counts come from one sparse
    product (counts below weighted by :data:`_BELOW`, exact in float64); blocked over
    functions."""
    n, F = Zt.shape
    out = np.empty((S.shape[0], F), bool)
    step = max(1, _BLOCK // max(1, n))
    for i in range(0, F, step):
        Zb, tb = Zt[:, i:i + step], thr[i:i + step]
        sides = (Zb > tb).astype(np.float64)
        sides += _BELOW * (Zb < -tb)
        cnt = (S @ sides).astype(np.int64)
        out[:, i:i + step] = cnt >= _BELOW
        out[:, i:i + step] &= (cnt & (_BELOW - 1)) > 0
    return out


#: Whether :func:`_cut_sign` tries the one-pass cut first (tests switch it off to compare
#: the two algorithms).
_ONE_PASS = True

#: Most candidate functions tested per row and round in :func:`_cut_sign`.
_WINDOW = 16


def _cut_sign(mesh: Mesh, polys: Polys, labels: np.ndarray, budget: int | None,
              S: _Summing, tick=None) -> tuple[Polys, bool]:
    """Cut by every function's zero line: in one pass when the layer is in general
    position, else in rounds that cut all rows at once.

    Each function is affine on every region of the previous layer, so its line crosses a
    region iff the region has vertices strictly on both sides. One blocked pass lists, for
    every previous region, the functions crossing it (in increasing order). The one pass
    (:func:`~maxaffine.partition._arrange.cut_all`) builds every region's arrangement of
    its listed lines at once; it declines (a vertex or a crossing within tolerance of a
    line, three lines through a point, a table too large, the budget) and the rounds,
    which snap such events, take the layer instead. In the rounds a row then works
    through its region's list: in each round every unfinished row tests its next few
    functions on its own vertices and is cut by the first that crosses it (the ones before
    it miss the row and all its future pieces), so one vectorized cut per round serves all
    rows, each with its own line. Rounds ~ the longest chain of cuts, not the number of
    functions.

    Conformity: an edge is crossed by a function only if both rows sharing it list the
    function (the candidate test is looser than the cut test), and both rows apply the
    functions crossing the edge in the same increasing order, so both cut an edge by the
    same function from the same endpoint values: the two new vertices are bitwise twins,
    unified after the layer (:meth:`~maxaffine.partition._mesh.Mesh.merge_twins`).
    """
    Zt = mesh.Z[: mesh.n]
    if Zt.shape[1] == 0 or polys.n == 0:
        return polys, False
    # each function's snapping tolerance: a vertex with |z| <= unit lies on its line
    eps = mesh.tol * np.maximum(Zt.max(0), -Zt.min(0))
    unit = np.where(eps > 0, eps, 1.0)
    # half the cut tolerance, so that every function a cut will find crossing an edge is
    # listed for the regions on both sides despite rounding in interpolated vertex values
    origin_of, flat = np.nonzero(_crossing_sums(S, Zt, 0.5 * unit))
    if len(flat) == 0:
        return polys, False
    if _ONE_PASS:
        cut = cut_all(mesh, polys, origin_of, flat, labels, unit, budget)
        if cut is not None:
            return cut, False
    # the rounds work in units of each function's tolerance (the cut is scale invariant);
    # re-read the table: a declined one pass may have moved it to a larger buffer
    Zt = mesh.Z[: mesh.n]
    Zt /= unit
    rows = Rows(polys)
    # room for a typical layer's new vertices in one copy (at most doubling the table: a
    # long candidate list must not reserve rows of F values it may never use)
    mesh.reserve(min(2 * len(flat), mesh.n))
    stopped = _rounds(mesh, rows, origin_of, flat, labels, budget, tick)
    mesh.Z[: mesh.n] *= unit
    return rows.polys(), stopped


def _rounds(mesh: Mesh, rows: Rows, origin_of: np.ndarray, flat: np.ndarray, labels: np.ndarray,
            budget: int | None, tick=None) -> bool:
    """The rounds of :func:`_cut_sign` on values scaled to unit tolerance; True if stopped
    by the budget."""
    start = np.searchsorted(origin_of, np.arange(rows.R + 1))
    rows.ptr[: rows.R] = start[:-1]
    end_of = start[1:]
    live = np.flatnonzero(end_of > start[:-1])
    first_new = mesh.n
    last = len(flat) - 1
    cols = np.arange(max(_WINDOW, rows.K))
    F = mesh.Z.shape[1]
    stopped = False
    window = 2  # the first listed function nearly always crosses: widen as rows shrink
    while len(live):
        p0 = rows.ptr[live]
        e = end_of[rows.origin[live]]
        cnt = rows.cnt[live]
        K = int(cnt.max())
        w = int(min(window, (e - p0).max(), max(1, _BLOCK // (len(live) * K))))
        window = min(2 * window, _WINDOW)
        J = p0[:, None] + cols[:w]
        ok = J < e[:, None]
        fc = flat[np.minimum(J, last)]  # (L, w)
        if K > len(cols):
            cols = np.arange(K)
        valid = cols[:K] < cnt[:, None]
        P = rows.P[live, :K]  # padding repeats the first vertex
        # (L, K, w) values of the candidates at the rows' vertices; Z grows, so read it anew
        vals = np.take(mesh.Z[: mesh.n].reshape(-1), (P * F)[:, :, None] + fc[:, None, :])
        hit = (vals > 1).any(1)
        hit &= (vals < -1).any(1)
        hit &= ok
        has = hit.any(1)
        j = hit.argmax(1)
        rows.ptr[live] = np.where(has, p0 + j + 1, p0 + ok.sum(1))
        sel = np.flatnonzero(has)
        js = j[sel]
        R0 = rows.R
        mesh.cut_rows(rows, live[sel], P[sel], valid[sel], vals[sel, :, js], labels[fc[sel, js]])
        if budget is not None and rows.R > budget:
            stopped = True
            break
        if tick is not None:
            tick(rows.R)
        nxt = np.concatenate([live, np.arange(R0, rows.R)])
        live = nxt[rows.ptr[nxt] < end_of[rows.origin[nxt]]]
    mesh.merge_twins(rows, first_new)
    return stopped


class _Diff:
    """``Z[:, i] - Z[:, j]`` of the mesh's current values, evaluated only where indexed."""

    def __init__(self, mesh: Mesh, i: int, j: int):
        self.mesh, self.i, self.j = mesh, i, j

    def __getitem__(self, v):
        Z = self.mesh.Z
        return Z[v, self.i] - Z[v, self.j]


def _cut_argmax(mesh: Mesh, polys: Polys, table: np.ndarray, li: int, budget: int | None,
                unit_ids: np.ndarray | None = None, tick=None) -> tuple[Polys, bool]:
    """Cut into the argmax cells of every max unit (max-pool window, maxout group).

    A region needs cutting for unit ``k`` iff the argmax over the window differs between its
    vertices: the window values are affine on the region, so if one of them is largest at
    every vertex it is largest on the whole (convex) region, and the code is constant there
    (ties that hold on the whole region are broken the same way everywhere). These regions
    are found for all units in one blocked pass; per unit only the pieces of those regions
    are split by all pairwise difference lines, regrouped by argmax (the first element within
    its pair's snapping tolerance of the largest, as the forward pass breaks exact ties) and
    merged back into convex cells. ``table`` (K, w) holds the value columns of each unit's
    window (-1 padding) and ``unit_ids[k]`` the label of unit ``k`` (default ``k``).
    """
    if polys.n == 0 or table.shape[0] == 0:
        return polys, False
    Zt = mesh.Z[: mesh.n]
    valid = table >= 0
    units = np.flatnonzero(valid.sum(1) >= 2)
    if len(units) == 0:
        return polys, False
    rows = Rows(polys)
    elig = np.zeros((table.shape[0], rows.R), bool)
    w = table.shape[1]
    pairs = list(itertools.combinations(range(w), 2))
    pscale = np.zeros((table.shape[0], len(pairs)))  # max |z_i - z_j| per window pair
    for b in _blocks(len(units), rows, 2 * w):
        ks = units[b]
        tb = np.maximum(table[ks], 0)
        vk = valid[ks]
        W = np.where(vk[None], Zt[:, tb], -np.inf)  # (n, k, w)
        for p, (i, j) in enumerate(pairs):
            d = np.abs(Zt[:, tb[:, i]] - Zt[:, tb[:, j]]).max(0) if len(Zt) else 0.0
            pscale[ks, p] = np.where(vk[:, i] & vk[:, j], d, 0.0)
        mx, mn = _row_extremes(W.argmax(2), rows, rows.R)
        elig[ks] = (mx != mn).T
    stopped = False
    for k in units[elig[units].any(1)]:
        cand = np.flatnonzero(elig[k][rows.origin[: rows.R]])
        idx = table[k][valid[k]]
        sub = rows.take(cand)
        # only pieces on which the argmax changes are cut and regrouped
        am = mesh.Z[sub.pv[:, None], idx[None]].argmax(1)
        starts = sub.offsets[:-1]
        need = np.maximum.reduceat(am, starts) != np.minimum.reduceat(am, starts)
        if not need.any():
            continue
        cand = cand[need]
        sub = rows.take(cand)
        n_before = mesh.n
        for p, (i, j) in enumerate(pairs):
            if valid[k, i] and valid[k, j]:
                sub = mesh.split(sub, _Diff(mesh, table[k, i], table[k, j]), li,
                                 int(k if unit_ids is None else unit_ids[k]),
                                 float(pscale[k, p]))
        W2 = mesh.Z[sub.pv[:, None], idx[None]].T
        mean = np.add.reduceat(W2, sub.offsets[:-1], axis=1) / sub.counts[None]
        # the cell is the first window element within tolerance of the largest, as the
        # forward pass breaks exact ties (e.g. two inputs clamped to one value on a whole
        # piece, whose interpolated vertex values differ only by rounding)
        # with each pair's own snapping tolerance (the one its difference line was cut with)
        pair_tol = np.zeros((w, w))
        for p, (i, j) in enumerate(pairs):
            pair_tol[i, j] = pair_tol[j, i] = mesh.tol * pscale[k, p]
        pos_k = np.flatnonzero(valid[k])
        best = mean.argmax(0)
        slack = pair_tol[np.ix_(pos_k, pos_k)][best].T  # (window, pieces)
        top = mean >= mean[best, np.arange(mean.shape[1])] - slack
        group = sub.tag * len(idx) + top.argmax(0)
        _, group = np.unique(group, return_inverse=True)
        merged = mesh.merge(sub, group.reshape(-1), n_before)
        rows.replace(cand, merged)
        if budget is not None and rows.R > budget:
            stopped = True
            break
        if tick is not None:
            tick(rows.R)
    return rows.polys(), stopped


def partition_slice(model: Any, slice: Slice, *, layers: Any = None, max_regions: int | None = None,
                    memory_budget: float | None = MEMORY_FRACTION, progress: bool = True,
                    tol: float = TOL) -> Partition:
    r"""Exact partition of a 2D slice into the network's linear regions.

    Restricted to ``x(s,t) = x0 + s u + t v`` a continuous piecewise-affine network is a
    continuous piecewise-affine function of ``(s,t)``. Starting from the domain polygon,
    every piecewise layer (in graph order) cuts each current region by the zero lines of
    its units' switching functions, which are affine on the region:

    .. math::

        \text{ReLU-like: } z_k = 0, \quad \text{clamp: } z_k = lo,\ z_k = hi, \quad
        \text{max-pool / maxout: argmax cells of } \{z_j\}_{j \in \text{window}}

    Values at the vertices come from the real network's own ops, batched over all vertices
    (no per-region matrices, no dense conv matrices): each layer's unit inputs are computed
    from the previous piecewise layer's values at the vertices (one layer of work, as in
    regioncam) when the graph between them depends on nothing else, otherwise by a forward
    pass from the slice coordinates; crossing points and the values there follow by exact
    linear interpolation along edges and lines. Each region of the previous layer is cut
    only by the lines that cross it, all regions at once: in general position the faces of
    each region's line arrangement come from one vectorized pass (corners keyed by region
    and sign vector), otherwise (vertices or crossings within ``tol`` of a line, concurrent
    lines) from vectorized rounds of one line per region that snap such events. Codes come
    from the values at the vertices (argmax codes from a forward pass at region interiors). Float64
    throughout. Layers with more than ``1024`` switching functions are cut in blocks of
    columns (each block's values at the current vertices), so the value table holds
    (vertices, block) rather than (vertices, all units). The output map of a region is solved from the outputs at its vertices
    (exact for affine maps; rounding amplified by at most ``1e5`` for regions thinner than
    ``1e-5`` of the slice scale, which instead use a fixed-code forward difference):
    slopes agree with autograd to about ``1e-11`` relative.

    Parameters
    ----------
    model : nn.Module or Trace
        Any network :func:`maxaffine.trace` accepts (eval mode).
    slice : Slice
    layers : int, str or sequence of str, optional
        Use only these piecewise layers (or the first ``n``); default all. With a subset the
        regions are cells of those layers' codes and no output map is attached.
    max_regions : int, optional
        Stop once the number of regions exceeds this; the result has ``complete=False``
        and a :class:`~maxaffine.errors.BudgetWarning` is issued.
    memory_budget : int, float or None
        Memory the call may add to the process: bytes (int), or a fraction in (0, 1] of
        the RAM available when the call starts (default ``0.25``); None for no limit.
        Before each layer (and each block of a wide layer) the memory still free is turned
        into a region cap from the predicted bytes per region (the vertex values being cut,
        the polygon rows, and the codes, geometry and maps the result keeps); the cut stops
        there with a flagged partial result, as for ``max_regions``. An allocation that
        fails anyway returns the partition after the last finished layer, flagged.
    progress : bool
        tqdm progress bar over layers; within a long layer it shows the regions so far
        and their rate.
    tol : float
        Relative tolerance (of each cutting function's largest value on the slice) below
        which a vertex counts as lying on the line. Regions thinner than this are not
        created; ``Partition.n_snapped`` counts the events. Accepted range
        ``[1e-15, 1e-9]`` (:data:`~maxaffine.partition.partition.TOL_RANGE`); anything
        else (zero, negative, NaN, larger) raises :class:`~maxaffine.errors.InputError`.
        Every accepted value gives areas summing to the domain and region codes equal to
        :func:`maxaffine.codes` at the interior points.

    Returns
    -------
    Partition

    Raises
    ------
    InputError
        Shape mismatch between slice and model, unknown layers, ``tol`` out of range.
    DegenerateSliceError
        Raised by :class:`Slice` for collinear anchors, zero area, non-finite values.
    UnsupportedLayerError
        From tracing, or for a custom piecewise rule whose switching lines are unknown.

    Examples
    --------
    >>> import torch, maxaffine
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    >>> part = maxaffine.partition_slice(net, maxaffine.Slice.box((-1, 1, -1, 1)), progress=False)
    >>> part.n_regions > 1, part.G.shape[1:]
    (True, (3, 2))

    References
    ----------
    Balestriero & Baraniuk, "A Spline Theory of Deep Networks", ICML 2018.
    Humayun, Balestriero, Balakrishnan, Baraniuk, "SplineCam", CVPR 2023.
    """
    if not isinstance(slice, Slice):
        raise InputError(f"slice must be a maxaffine.Slice, got {type(slice).__name__}")
    if max_regions is not None and max_regions < 1:
        raise InputError(f"max_regions must be positive; got {max_regions}")
    tol = check_tol(tol, "partition_slice")
    mem = MemoryBudget(memory_budget)
    tr = _as_trace(model, slice)
    names = _resolve_layers(tr, layers)
    ev = Evaluator(tr, slice)
    mesh = Mesh(slice.domain, tol)
    history: list[Level] = []
    parents: list[np.ndarray] = []
    level_codes: list[torch.Tensor | None] = []
    stopped = during = None  # why and in which layer the refinement stopped early
    prev: tuple | None = None  # (layer name, Switch, function values at the vertices)
    S = _summing(mesh.polys, mesh.n)  # sums vertex rows over the current polygons
    keep_bytes = 24 * tr.n_outputs + 64  # kept per region by the result: maps, interior
    # no bar object at all when disabled: a disabled tqdm still costs ~0.1 ms per update
    bar = tqdm(names, desc="partition", leave=False) if progress else None
    tick = _ticker(bar)
    try:
        for li, name in enumerate(names if bar is None else bar):
            sw = switch_of(tr, name, ev.context(name))
            # the codes, geometry and ancestry the result keeps per region for this layer
            # (codes twice: the result gathers them from the per-layer tables)
            keep_bytes += 2 * _code_bytes(ev, name) + 160
            try:
                step = _layer(mesh, ev, sw, name, li, prev, max_regions, mem, keep_bytes,
                              S, tick)
            except MemoryError:
                step = None
            if step is None or step[0] is None:  # nothing of this layer fits
                stopped, during = "memory", name
                if step is None:
                    mesh, S = _restore(slice, tol, mesh, history), None
                    prev = None
                break
            polys, Z, codes, stop = step
            S = _summing(polys, mesh.n)
            if codes is None and Z is not None:
                codes = _region_codes(sw, Z, polys, S)
            level_codes.append(codes)
            prev = (name, sw, Z) if Z is not None else None
            history.append(Level(mesh.vertices.copy(), polys.offsets, polys.pv.copy(),
                                 polys.el.copy(), polys.eu.copy()))
            parents.append(polys.origin.copy())
            if bar is not None:
                bar.set_postfix(regions=polys.n)
            if stop is not None:
                stopped, during = stop, name
                break
    finally:
        if bar is not None:
            bar.close()
    if S is None:
        S = _summing(mesh.polys, mesh.n)
    if stopped is not None:
        why = (f"max_regions={max_regions}" if stopped == "max_regions"
               else f"the memory budget, {mem.describe()}")
        warnings.warn(f"partition_slice stopped at {mesh.polys.n} regions ({why}) during layer "
                      f"{during!r}; the result is partial (complete=False)", BudgetWarning,
                      stacklevel=2)
    try:
        return _finish(tr, ev, slice, mesh, names, history, parents, level_codes, prev, S,
                       stopped is None)
    except MemoryError as e:
        raise BudgetExceededError(
            f"partition_slice could not assemble the result of {mesh.polys.n} regions in "
            f"memory; give a smaller memory_budget= or max_regions= (the budget is checked "
            f"before each layer)") from e


def _ticker(bar):
    """Progress within a layer: regions so far and their rate, at most twice a second."""
    if bar is None:
        return None
    state = {"t0": time.perf_counter(), "last": 0.0}

    def tick(n_regions: int) -> None:
        now = time.perf_counter()
        if now - state["last"] >= 0.5:
            state["last"] = now
            rate = n_regions / max(now - state["t0"], 1e-9)
            bar.set_postfix_str(f"regions={n_regions:,}, {rate:,.0f}/s", refresh=True)

    return tick


def _code_bytes(ev: Evaluator, name: str) -> int:
    """Bytes of one region's code of layer ``name``."""
    c = ev.anchor.codes.get(name)
    return 0 if c is None else c[0].numel() * c.element_size()


def _restore(slc: Slice, tol: float, mesh: Mesh, history: list) -> Mesh:
    """The mesh of the last finished layer (or the bare domain), after a layer ran out of
    memory half way."""
    if not history:
        fresh = Mesh(slc.domain, tol)
        fresh.n_snapped = mesh.n_snapped
        return fresh
    lev = history[-1]
    n = len(lev.vertices)
    mesh.V[:n] = lev.vertices
    mesh.n = n
    mesh.Z = np.zeros((mesh.cap, 0))
    mesh._spare = None
    counts = np.diff(lev.offsets)
    R = len(counts)
    mesh.polys = Polys(counts, lev.polygon_vertices.copy(), lev.edge_layer.copy(),
                       lev.edge_unit.copy(), np.arange(R, dtype=np.int64),
                       np.zeros(R, np.int64))
    return mesh


#: Most value columns cut at once in a wide layer: the layer's functions are cut in blocks of
#: columns, each block's values evaluated at the current vertices (a region's functions are
#: affine on it whatever was cut before), so the value table holds (vertices, block).
_BLOCK_COLS = 1024


#: Tests switch these to compare the blocked cut with the whole one: cut every wide layer
#: in blocks even when its values would fit, and keep (or not) the values at the layer's
#: first vertices for all its blocks.
_ALWAYS_BLOCK = False
_REUSE_START = True


def _value_blocks(sw) -> list | None:
    """Blocks of a wide layer, as (value columns, None) for sign switches and (value
    columns, (unit ids, window table remapped to the columns)) for argmax switches; None
    when the layer is cut whole."""
    if sw.kind == "sign":
        F = sw.n_functions
        if F <= _BLOCK_COLS:
            return None
        step = -(-F // -(-F // _BLOCK_COLS))  # equal blocks
        return [(np.arange(i, min(i + step, F)), None) for i in range(0, F, step)]
    table = sw.table
    K, w = table.shape
    if int(table.max(initial=-1)) + 1 <= _BLOCK_COLS:
        return None
    per = max(1, _BLOCK_COLS // max(w, 1))
    per = -(-K // -(-K // per))
    out = []
    for i in range(0, K, per):
        ks = np.arange(i, min(i + per, K))
        tb = table[ks]
        cols = np.unique(tb[tb >= 0])
        out.append((cols, (ks, np.where(tb >= 0, np.searchsorted(cols, tb), -1))))
    return out


def _fewest_regions(sw, Z: np.ndarray, mesh: Mesh, S: _Summing) -> int:
    """A lower bound on the regions a layer cuts the mesh into, from its values ``Z`` at the
    current vertices: every line crossing a region adds at least one (argmax layers: the
    regions there are)."""
    R = mesh.polys.n
    if sw.kind != "sign" or Z.shape[1] == 0:
        return R
    return int(R + _crossing_sums(S, Z, np.zeros(Z.shape[1])).sum())


def _layer(mesh: Mesh, ev: Evaluator, sw, name: str, li: int, prev, max_regions, mem,
           keep_bytes: int, S: _Summing, tick):
    """Cut the mesh by one layer; returns (polys, values or None, codes or None, why it
    stopped or None), or (None, ...) when not even the layer's first table fits the memory
    budget."""
    R0, n0 = mesh.polys.n, mesh.n
    blocks = fallback = _value_blocks(sw)
    full = sw.n_functions if sw.kind == "sign" else int(sw.table.max(initial=-1)) + 1
    Z0 = None  # the whole layer's values at the vertices it starts from, when they fit
    if blocks is not None and _REUSE_START and n0 * (full + 2) * 24 <= mem.free() / 4:
        Z0 = np.asarray(sw.fn(_unit_inputs(ev, mesh, prev, name)), np.float64)
        # try the whole layer unless even its fewest possible regions could not hold all
        # its values; if its region cap stops it, it is cut again in blocks
        whole = keep_bytes + 40 * (full + 2) + full + 800
        if not _ALWAYS_BLOCK and _fewest_regions(sw, Z0, mesh, S) * whole <= mem.free():
            blocks = None
    why = None
    if blocks is None:
        # per region while cutting: the values at ~1.2 vertices per region (twice, for the
        # doubling table, and once more while evaluating), the crossing table, padded rows
        per_region = keep_bytes + 40 * (full + 2) + full + 800
        cap = mem.regions(per_region)
        if cap is not None and (cap < R0 or n0 * (full + 2) * 24 > mem.free()):
            if fallback is None:
                return None, None, None, None
        else:
            limit = cap if max_regions is None else max_regions if cap is None \
                else min(cap, max_regions)
            before, snapped = mesh.polys, mesh.n_snapped
            mesh.set_values(Z0 if Z0 is not None else sw.fn(_unit_inputs(ev, mesh, prev, name)))
            polys = mesh.polys
            polys.origin = np.arange(polys.n, dtype=np.int64)
            if sw.kind == "sign":
                polys, stop = _cut_sign(mesh, polys, pack_label(li, sw.unit), limit, S, tick)
            else:
                polys, stop = _cut_argmax(mesh, polys, sw.table, li, limit, None, tick)
            by_memory = stop and not (max_regions is not None and polys.n > max_regions)
            if not (by_memory and fallback is not None):
                mesh.polys = polys
                Z = mesh.Z[: mesh.n]
                keep = mesh.compact()
                Z = Z if keep is None else np.take(Z, keep, axis=0)
                if stop:
                    why = "memory" if by_memory else "max_regions"
                return mesh.polys, Z, None, why
            # the memory ran out for the whole layer: drop its cuts, cut it in blocks
            mesh.polys, mesh.n, mesh.n_snapped = before, n0, snapped
        blocks = fallback
    width = max(len(c) for c, _ in blocks)
    per_region = keep_bytes + 40 * (width + 2) + width + 800
    cap = mem.regions(per_region)
    if cap is not None and (cap < R0 or n0 * (width + 2) * 24 > mem.free()):
        return None, None, None, None
    limit = cap if max_regions is None else max_regions if cap is None else min(cap, max_regions)
    basis = ev.affine_values(name, sw.fn)
    origin = np.arange(R0, dtype=np.int64)
    for cols, arg in blocks:
        if cap is not None:
            cap = mem.regions(per_region)
            limit = cap if max_regions is None else min(cap, max_regions)
            if cap < mesh.polys.n:
                why = "memory"
                break
        if Z0 is not None and basis is None:
            # the layer's first vertices keep their ids (cuts only add vertices), so only
            # the vertices earlier blocks created need a forward pass
            vals = np.empty((mesh.n, len(cols)))
            vals[:n0] = Z0[:, cols]
            vals[n0:] = ev.values(mesh.vertices[n0:], name, sw.fn, cols)
        else:
            vals = ev.values(mesh.vertices, name, sw.fn, cols, basis)
        mesh.set_values(vals)
        del vals
        polys = mesh.polys
        polys.origin = np.arange(polys.n, dtype=np.int64)
        if sw.kind == "sign":
            polys, stop = _cut_sign(mesh, polys, pack_label(li, sw.unit[cols]), limit,
                                    _summing(polys, mesh.n), tick)
        else:
            polys, stop = _cut_argmax(mesh, polys, arg[1], li, limit, arg[0], tick)
        origin = origin[polys.origin]
        mesh.polys = polys
        mesh.compact()
        if tick is not None:
            tick(polys.n)
        if stop:
            why = "max_regions" if max_regions is not None and polys.n > max_regions \
                else "memory"
            break
    mesh.polys.origin = origin
    mesh.Z = np.zeros((mesh.cap, 0))
    mesh._spare = None
    codes = None
    if sw.kind == "sign":
        # codes at the vertex centroids (the functions are affine on each region), in
        # chunks of regions so that no (regions, all functions) value table is built
        p = mesh.polys
        interior = (_summing(p, mesh.n) @ mesh.vertices) / p.counts[:, None]
        cols = np.arange(sw.n_functions)
        step = max(1, _BLOCK // max(1, len(cols)))
        parts = [sw.code_of(ev.values(interior[i:i + step], name, sw.fn, cols, basis))
                 for i in range(0, max(p.n, 1), step)]
        codes = None if any(c is None for c in parts) else torch.cat(parts)
    return mesh.polys, None, codes, why


def _unit_inputs(ev: Evaluator, mesh: Mesh, prev: tuple | None, name: str) -> list:
    """Unit inputs of ``name`` at all vertices: continued from the previous piecewise
    layer's values when the network allows (cost of one layer, like regioncam's per-layer
    update), else by a forward pass from the slice coordinates."""
    if prev is not None and ev.plan(prev[0], name) is not None:
        value = prev[1].value_of(prev[2])
        if value is not None:
            return ev.segment(prev[0], value, name)
    return ev.unit_inputs(mesh.vertices, name)


class _Summing:
    """The sparse (R, n) matrix summing rows ``cols[offsets[r]:offsets[r + 1]]`` of an
    (n, k) array for each polygon ``r``; ``S @ A`` returns a numpy array.

    A CSR product, in torch: np.add.reduceat along rows is an order of magnitude slower,
    scipy's CSR product about twice as slow (and building a scipy matrix checks its
    indices). Small products (below :data:`_SMALL_SUM` entries) use reduceat instead: there
    the sparse tensor's construction and dispatch cost more than the sums."""

    def __init__(self, offsets: np.ndarray, cols: np.ndarray, n: int):
        self.offsets, self.cols, self.n = offsets, cols, n
        self.shape = (len(offsets) - 1, n)
        self._t = None

    def rows(self, i: int, j: int) -> _Summing:
        o = self.offsets
        return _Summing(o[i:j + 1] - o[i], self.cols[o[i]:o[j]], self.n)

    def __matmul__(self, A: np.ndarray) -> np.ndarray:
        cols = self.cols
        if len(cols) * (A.shape[1] if A.ndim > 1 else 1) <= _SMALL_SUM and self.shape[0]:
            # every polygon has entries, so reduceat's segments are never empty
            return np.add.reduceat(np.take(A, cols, axis=0), self.offsets[:-1], axis=0)
        if self._t is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
                self._t = torch.sparse_csr_tensor(
                    torch.from_numpy(self.offsets), torch.from_numpy(cols),
                    torch.ones(len(cols), dtype=torch.float64, device="cpu"), self.shape,
                    check_invariants=False, device="cpu")  # the mesh lives on the host
        return (self._t @ torch.from_numpy(A)).numpy()


#: Largest product (entries x columns) :class:`_Summing` computes with numpy's reduceat.
_SMALL_SUM = 1 << 15


def _summing(p: Polys, n: int) -> _Summing:
    """Sums of vertex rows over each polygon of ``p``."""
    return _Summing(p.offsets, p.pv, n)


#: A function whose mean over a region's vertices is within this fraction of its largest
#: value is zero there up to rounding (a few hundred ulps: far below any real distance from a
#: line, far above the noise of interpolated vertex values).
_ZERO_RTOL = 1e-13


def _region_codes(sw, Z: np.ndarray, p: Polys, S: _Summing) -> torch.Tensor | None:
    """Codes of the layer on each polygon, from the mean of its vertex values (the values
    are affine on the polygon, so this is their value at the vertex centroid; ``S`` sums
    vertex rows over polygons). Chunked over polygons; None when the switch cannot map
    values to codes.

    A function within :data:`_ZERO_RTOL` of zero at the centroid (relative to its largest
    value; it does not cut the region, so it keeps one sign there and is about that small
    on the whole region) is zero there: a unit identically zero on the region (zero biases behind dead units,
    duplicated or integer weights) whose interpolated mean is rounding noise. It gets the
    code of an exact zero under the library's tie convention (``1[u > 0]``: off),
    as :func:`maxaffine.codes` gives wherever the forward pass computes the zero exactly
    (where the forward pass itself rounds to either sign, its code is noise that depends
    even on the batch)."""
    if sw.kind != "sign":
        return None
    F = Z.shape[1]
    eps = _ZERO_RTOL * np.maximum(Z.max(0), -Z.min(0)) if len(Z) and F else np.zeros(F)
    step = max(1, _BLOCK // max(1, F))
    out = []
    for i in range(0, max(p.n, 1), step):
        j = min(i + step, p.n)
        Si = S if i == 0 and j == p.n else S.rows(i, j)
        mean = Si @ Z
        mean /= p.counts[i:j, None]  # in place: no second (R, F) temporary
        mean[np.abs(mean) <= eps] = 0.0
        code = sw.code_of(mean)
        if code is None:
            return None
        out.append(code)
    return torch.cat(out) if len(out) > 1 else out[0]


#: Regions whose vertex spread (square root of the smaller eigenvalue of the vertex
#: second-moment matrix) is at least this fraction of the slice scale get their output map
#: from the vertex values; thinner ones from a fixed-code finite difference.
_WELL_SPREAD = 1e-5


def _output_maps(slc, ev, p, V, interior, y0, yv, codes) -> tuple[np.ndarray, np.ndarray]:
    r"""Output slope ``G`` (R, C, 2) and offset ``h`` (R, C) of every region.

    The output is affine on a region, so its values at the region's vertices ``v_i`` and at
    the vertex centroid ``c`` (their mean, ``y0``) satisfy ``f(v_i) - f(c) = G (v_i - c)``;
    ``G`` solves these in the least-squares sense (exact for affine data):

    .. math::

        G = \Big(\sum_i (f(v_i) - f(c)) (v_i - c)^\top\Big)
            \Big(\sum_i (v_i - c)(v_i - c)^\top\Big)^{-1}, \qquad h = f(c) - G c.

    Rounding in the vertex values is amplified by the inverse spread of the vertices, so
    regions thinner than ``_WELL_SPREAD`` times the slice scale instead take ``G`` from a
    forward difference of step ``slc.scale`` with the region's codes held fixed.
    """
    R = p.n
    C = yv.shape[1]
    M = len(p.pv)
    rep = np.repeat(np.arange(R), p.counts)
    # (np.take: fancy indexing of narrow 2D arrays is several times slower)
    X = np.take(V, p.pv, axis=0)
    X -= np.take(interior, rep, axis=0)
    Y = np.take(yv, p.pv, axis=0)
    Y -= np.take(y0, rep, axis=0)
    # per-entry products, summed over each polygon's entries by one sparse product
    Q = np.empty((M, 3 + 2 * C))
    np.multiply(X[:, :1], X, out=Q[:, :2])
    np.multiply(X[:, 1], X[:, 1], out=Q[:, 2])
    np.multiply(X[:, :1], Y, out=Q[:, 3:3 + C])
    np.multiply(X[:, 1:], Y, out=Q[:, 3 + C:])
    sums = _Summing(p.offsets, np.arange(M), M) @ Q
    sxx, sxy, syy = sums[:, 0], sums[:, 1], sums[:, 2]
    t0, t1 = sums[:, 3:3 + C], sums[:, 3 + C:]
    det = sxx * syy - sxy * sxy
    tr_ = 0.5 * (sxx + syy)
    lmin = (tr_ - np.sqrt(np.maximum(tr_ * tr_ - det, 0.0))) / p.counts
    d = max(slc.scale, 1e-300)
    good = lmin >= (_WELL_SPREAD * d) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        G = np.stack([(syy[:, None] * t0 - sxy[:, None] * t1) / det[:, None],
                      (sxx[:, None] * t1 - sxy[:, None] * t0) / det[:, None]], axis=-1)
    thin = np.flatnonzero(~good)
    if len(thin):
        c = interior[thin]
        st = np.concatenate([c + [d, 0.0], c + [0.0, d]])
        sel = torch.from_numpy(np.concatenate([thin, thin]))
        fixed = {k: v[sel] for k, v in codes.items()}
        y2 = ev.outputs(st, fixed)[0].numpy()
        n = len(thin)
        G[thin] = np.stack([(y2[:n] - y0[thin]) / d, (y2[n:] - y0[thin]) / d], axis=-1)
    h = y0 - G[:, :, 0] * interior[:, :1] - G[:, :, 1] * interior[:, 1:]
    return G, h


def _finish(tr, ev, slc, mesh, names, history, parents, level_codes, prev, S,
            complete) -> Partition:
    p = mesh.polys
    V = mesh.vertices.copy()
    off = p.offsets
    R = p.n
    counts = p.counts[:, None]
    interior = (S @ V) / counts
    want_map = complete and names == tuple(tr.piecewise)
    done = names if complete else names[: len(history)]
    L = len(history)
    anc = np.zeros((R, L), np.int64)
    if L:
        anc[:, L - 1] = np.arange(R)
        for l in range(L - 1, 0, -1):
            anc[:, l - 1] = parents[l][anc[:, l]]
    # layers without codes from their vertex values (argmax units, wide layers cut in
    # blocks) take them from a forward pass at the region interiors
    fwd = {}
    if any(c is None for c in level_codes[:L]):
        fwd = ev.codes(interior, done[max(l for l in range(L) if level_codes[l] is None)])
    codes = Codes({k: fwd[k] if level_codes[l] is None
                   else level_codes[l][torch.from_numpy(anc[:, l])]
                   for l, k in enumerate(done)})
    G = h = None
    if want_map:
        # outputs at the vertices (continuous: one value per vertex); continued from the last
        # piecewise layer when the network allows; the centroid's output is their mean
        yv = None
        if prev is not None and ev.plan(prev[0], None) is not None:
            value = prev[1].value_of(prev[2])
            if value is not None:
                yv = ev.segment(prev[0], value, None)
        if yv is None:
            yv = ev.outputs(V)[0]
        yv = yv.numpy()
        y0 = (S @ yv) / counts
        G, h = _output_maps(slc, ev, p, V, interior, y0, yv, codes)
    return Partition(slc, done, V, off, p.pv.copy(),
                     p.el.copy(), p.eu.copy(), interior, codes, G, h, complete, mesh.tol,
                     mesh.n_snapped, tuple(history), anc, tr)
