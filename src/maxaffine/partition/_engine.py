"""Layer-by-layer refinement of a slice into linear regions (see :func:`partition_slice`)."""

from __future__ import annotations

import itertools
import warnings
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..affine import Codes
from ..errors import BudgetWarning, InputError
from ..trace import Trace, trace
from ._mesh import TOL, Mesh, Polys
from ._network import Evaluator, switch_of
from .partition import Level, Partition
from .slice import Slice


def _as_trace(model: Any, slc: Slice) -> Trace:
    if isinstance(model, Trace):
        tr = model
    elif isinstance(model, torch.nn.Module):
        example = slc.points(np.vstack([slc.domain.mean(0), slc.domain[:2]]))
        tr = trace(model, example)
    else:
        raise InputError(f"expected an nn.Module or a maxaffine Trace, got {type(model).__name__}")
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


def _cut_sign(mesh: Mesh, polys: Polys, sw, li: int, budget: int | None) -> tuple[Polys, bool]:
    Z = mesh.Z[:, : mesh.n]
    if Z.shape[0] == 0:
        return polys, False
    scale = np.abs(Z).max(1)
    active = np.flatnonzero((Z.max(1) > mesh.tol * scale) & (Z.min(1) < -mesh.tol * scale))
    for f in active:
        polys = mesh.split(polys, mesh.Z[f, : mesh.n], li, int(sw.unit[f]))
        if budget is not None and polys.n > budget:
            return polys, True
    return polys, False


def _cut_argmax(mesh: Mesh, polys: Polys, sw, li: int, budget: int | None) -> tuple[Polys, bool]:
    table = sw.table
    for k in range(table.shape[0]):
        idx = table[k][table[k] >= 0]
        if len(idx) < 2:
            continue
        W = mesh.Z[idx, : mesh.n]
        top2 = np.partition(W, len(idx) - 2, axis=0)[-2:]
        scale = float(np.abs(W).max()) or 1.0
        amb = (top2[1] - top2[0]) <= mesh.tol * scale
        am = W.argmax(0)
        pv = polys.pv
        starts = polys.offsets[:-1]
        ae = am[pv]
        elig = (np.maximum.reduceat(ae, starts) != np.minimum.reduceat(ae, starts)) | \
            np.logical_or.reduceat(amb[pv], starts)
        if not elig.any():
            continue
        sub = polys.take(np.flatnonzero(elig))
        rest = polys.take(np.flatnonzero(~elig))
        sub.tag = np.arange(sub.n, dtype=np.int64)
        n_before = mesh.n
        for i, j in itertools.combinations(range(len(idx)), 2):
            g = mesh.Z[idx[i], : mesh.n] - mesh.Z[idx[j], : mesh.n]
            sub = mesh.split(sub, g, li, k)
        W2 = mesh.Z[idx, : mesh.n][:, sub.pv]
        mean = np.add.reduceat(W2, sub.offsets[:-1], axis=1) / sub.counts[None]
        group = sub.tag * len(idx) + mean.argmax(0)
        _, group = np.unique(group, return_inverse=True)
        merged = mesh.merge(sub, group.reshape(-1), n_before)
        polys = Polys.concat([rest, merged])
        if budget is not None and polys.n > budget:
            return polys, True
    return polys, False


def partition_slice(model: Any, slice: Slice, *, layers: Any = None, max_regions: int | None = None,
                    progress: bool = True, tol: float = TOL) -> Partition:
    r"""Exact partition of a 2D slice into the network's linear regions.

    Restricted to ``x(s,t) = x0 + s u + t v`` a continuous piecewise-affine network is a
    continuous piecewise-affine function of ``(s,t)``. Starting from the domain polygon,
    every piecewise layer (in graph order) cuts each current region by the zero lines of
    its units' switching functions, which are affine on the region:

    .. math::

        \text{ReLU-like: } z_k = 0, \quad \text{clamp: } z_k = lo,\ z_k = hi, \quad
        \text{max-pool / maxout: argmax cells of } \{z_j\}_{j \in \text{window}}

    Values at all vertices come from one batched forward pass of the real network per layer
    (no per-region matrices, no dense conv matrices); crossing points and the values there
    follow by exact linear interpolation along edges. Float64 throughout.

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
    progress : bool
        tqdm progress bar over layers.
    tol : float
        Relative tolerance (of each cutting function's largest value on the slice) below
        which a vertex counts as lying on the line. Regions thinner than this are not
        created; ``Partition.n_snapped`` counts the events.

    Returns
    -------
    Partition

    Raises
    ------
    InputError
        Shape mismatch between slice and model, unknown layers.
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
    tr = _as_trace(model, slice)
    names = _resolve_layers(tr, layers)
    ev = Evaluator(tr, slice)
    mesh = Mesh(slice.domain, tol)
    history: list[Level] = []
    parents: list[np.ndarray] = []
    stopped = False
    bar = tqdm(names, desc="partition", disable=not progress, leave=False)
    try:
        for li, name in enumerate(bar):
            sw = switch_of(tr, name, ev.context(name))
            ins = ev.unit_inputs(mesh.vertices, name)
            mesh.set_values(np.ascontiguousarray(sw.fn(ins), dtype=np.float64))
            polys = mesh.polys
            polys.origin = np.arange(polys.n, dtype=np.int64)
            cut = _cut_sign if sw.kind == "sign" else _cut_argmax
            polys, stopped = cut(mesh, polys, sw, li, max_regions)
            mesh.polys = polys
            mesh.compact()
            p = mesh.polys
            history.append(Level(mesh.vertices.copy(), p.offsets, p.pv.copy(), p.el.copy(),
                                 p.eu.copy()))
            parents.append(p.origin.copy())
            bar.set_postfix(regions=p.n)
            if stopped:
                break
    finally:
        bar.close()
    if stopped:
        warnings.warn(f"partition_slice stopped at {mesh.polys.n} regions (max_regions="
                      f"{max_regions}) during layer {names[len(history) - 1]!r}; the result is "
                      f"partial (complete=False)", BudgetWarning, stacklevel=2)
    return _finish(tr, ev, slice, mesh, names, history, parents, not stopped)


def _finish(tr, ev, slc, mesh, names, history, parents, complete) -> Partition:
    p = mesh.polys
    V = mesh.vertices.copy()
    off = p.offsets
    R = p.n
    interior = np.add.reduceat(V[p.pv], off[:-1], axis=0) / p.counts[:, None]
    y, all_codes = ev.outputs(interior)
    done = names if complete else names[: len(history)]
    codes = Codes({k: all_codes[k] for k in done})
    G = h = None
    if complete and names == tuple(tr.piecewise):
        d = max(slc.scale, 1e-300)
        st = np.concatenate([interior + [d, 0.0], interior + [0.0, d]])
        fixed = {k: torch.cat([v, v]) for k, v in all_codes.items()}
        y2, _ = ev.outputs(st, fixed)
        y0 = y.numpy()
        y2 = y2.numpy()
        G = np.stack([(y2[:R] - y0) / d, (y2[R:] - y0) / d], axis=-1)
        h = y0 - np.einsum("rcd,rd->rc", G, interior)
    L = len(history)
    anc = np.zeros((R, L), np.int64)
    if L:
        anc[:, L - 1] = np.arange(R)
        for l in range(L - 1, 0, -1):
            anc[:, l - 1] = parents[l][anc[:, l]]
    return Partition(slc, done, V, off, p.pv.copy(),
                     p.el.copy(), p.eu.copy(), interior, codes, G, h, complete, mesh.tol,
                     mesh.n_snapped, tuple(history), anc, tr)
