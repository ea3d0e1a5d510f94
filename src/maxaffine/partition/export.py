"""Saving, loading and exporting a :class:`~maxaffine.Partition` (tables, npz, shapely, GeoJSON, SVG).

The npz file holds plain numeric and string arrays only, so it loads with
``allow_pickle=False`` and needs neither the model nor maxaffine's tracer: every field of the
partition (slice, polygons, edge labels, codes, output maps, per-layer history) comes back
bit for bit. The trace is not stored; :meth:`~maxaffine.Partition.verify` and
:meth:`~maxaffine.Partition.locate` need the model again (``dataclasses.replace(part,
trace=maxaffine.trace(model))``).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..affine import Codes
from ..errors import InputError
from .partition import Level, Partition
from .slice import Slice

#: Version of the npz layout written by :func:`save`.
FORMAT = 1
_MAGIC = "maxaffine.Partition"
_LEVEL_FIELDS = ("vertices", "offsets", "polygon_vertices", "edge_layer", "edge_unit")
_ARRAY_FIELDS = ("vertices", "offsets", "polygon_vertices", "edge_layer", "edge_unit", "interior")


# -- tables ----------------------------------------------------------------------------
def code_keys(part: Partition) -> np.ndarray:
    """A 16-hex-digit key of each region's full code, shape (R,) of str.

    Equal codes give equal keys (a deterministic 64-bit hash of the codes of every layer);
    distinct regions of one partition have distinct codes, so distinct keys barring a
    2⁻⁶⁴-scale collision. The exact codes are ``part.codes``.
    """
    from ..plot import _codes_hash  # the hash that also picks region colours; no matplotlib

    h = _codes_hash({k: part.codes[k] for k in part.layers})
    return np.array([f"{v:016x}" for v in h.tolist()], dtype="<U16")


def region_classes(part: Partition) -> np.ndarray | None:
    """Predicted class (argmax output) in each region at its interior point, or None.

    For a single output the ``class`` is whether the output is positive (0/1).
    """
    if part.G is None or part.h is None:
        return None
    y = np.einsum("rcd,rd->rc", part.G, part.interior) + part.h
    return (y[:, 0] > 0).astype(np.int64) if y.shape[1] == 1 else y.argmax(1)


def slope_norms(part: Partition) -> np.ndarray | None:
    """Frobenius norm of each region's output slope ``G_ω`` in slice coordinates, or None."""
    if part.G is None:
        return None
    return np.sqrt((part.G ** 2).sum(axis=(1, 2)))


def region_table(part: Partition) -> dict[str, np.ndarray]:
    """One row per region: ``region``, ``area``, ``n_vertices``, ``s``, ``t`` (interior
    point), ``code`` (see :func:`code_keys`), and with an output map ``class`` and
    ``slope_norm``."""
    d: dict[str, np.ndarray] = {
        "region": np.arange(part.n_regions), "area": part.areas,
        "n_vertices": part.vertex_counts.astype(np.int64),
        "s": part.interior[:, 0], "t": part.interior[:, 1], "code": code_keys(part)}
    cls, norm = region_classes(part), slope_norms(part)
    if cls is not None:
        d["class"] = cls
        d["slope_norm"] = norm
    return d


# -- npz -------------------------------------------------------------------------------
def _target(path: Any) -> Path:
    p = Path(os.fspath(path))
    return p if p.suffix == ".npz" else p.with_name(p.name + ".npz")


def write_file(target: Path, write: Any, *, overwrite: bool, binary: bool = False) -> None:
    """Create ``target`` and fill it with ``write(file)``; an existing file is kept (and
    a FileExistsError names the way out) unless ``overwrite``."""
    mode = ("w" if overwrite else "x") + ("b" if binary else "")
    try:
        with open(target, mode, **({} if binary else {"encoding": "utf-8"})) as fh:
            write(fh)
    except FileExistsError:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it, or choose "
                              f"another path") from None


def save(part: Partition, path: Any, *, overwrite: bool = False) -> Path:
    """Write ``part`` to ``path`` (``.npz`` is appended if missing) and return the path.

    Raises
    ------
    FileExistsError
        If the file exists and ``overwrite`` is False (nothing is written).
    """
    target = _target(path)
    arrays: dict[str, np.ndarray] = {
        "format": np.array([_MAGIC, str(FORMAT)]),
        "layers": np.array(part.layers, dtype=str).reshape(len(part.layers)),
        "scalars": np.array([part.tolerance]),
        "ints": np.array([int(part.complete), part.n_snapped], np.int64),
        "slice_origin": part.slice.origin, "slice_u": part.slice.u, "slice_v": part.slice.v,
        "slice_in_shape": np.array(part.slice.in_shape, np.int64),
        "slice_domain": part.slice.domain,
    }
    if part.slice.anchors is not None:
        arrays["slice_anchors"] = part.slice.anchors
    for name in _ARRAY_FIELDS:
        arrays[name] = getattr(part, name)
    keys = list(part.codes)
    arrays["code_names"] = np.array(keys, dtype=str).reshape(len(keys))
    for i, k in enumerate(keys):
        c = part.codes[k].detach().cpu().numpy()
        if c.dtype == np.bool_:  # eight units per byte; shape kept alongside
            arrays[f"code_{i}_bits"] = np.packbits(c.reshape(-1))
            arrays[f"code_{i}_shape"] = np.array(c.shape, np.int64)
        else:
            arrays[f"code_{i}"] = c
    for name in ("G", "h", "ancestors"):
        if getattr(part, name) is not None:
            arrays[name] = getattr(part, name)
    arrays["n_history"] = np.array(len(part.history), np.int64)
    for i, lev in enumerate(part.history):
        for f in _LEVEL_FIELDS:
            arrays[f"history_{i}_{f}"] = getattr(lev, f)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_file(target, lambda fh: np.savez_compressed(fh, **arrays), overwrite=overwrite,
               binary=True)
    return target


def load(path: Any) -> Partition:
    """Read a partition written by :func:`save` (no pickle, no model needed).

    Raises
    ------
    InputError
        If the file is not a saved partition (or of a newer format).
    """
    p = Path(os.fspath(path))
    if not p.exists() and _target(p).exists():
        p = _target(p)
    with np.load(p, allow_pickle=False) as z:
        if "format" not in z.files or str(z["format"][0]) != _MAGIC:
            raise InputError(f"{p} is not a partition saved by Partition.save")
        version = int(z["format"][1])
        if version > FORMAT:
            raise InputError(f"{p} was written by a newer maxaffine (format {version}; this "
                             f"version reads up to {FORMAT}); upgrade maxaffine to load it")
        d = {k: z[k] for k in z.files}
    anchors = d.get("slice_anchors")
    slc = Slice(d["slice_origin"], d["slice_u"], d["slice_v"],
                tuple(int(n) for n in d["slice_in_shape"]), d["slice_domain"], anchors)
    def code(i: int) -> torch.Tensor:
        if f"code_{i}_bits" in d:
            shape = tuple(int(n) for n in d[f"code_{i}_shape"])
            n = int(np.prod(shape, dtype=np.int64))
            return torch.from_numpy(np.unpackbits(d[f"code_{i}_bits"], count=n)
                                    .astype(bool).reshape(shape))
        return torch.from_numpy(d[f"code_{i}"])

    codes = Codes({str(k): code(i) for i, k in enumerate(d["code_names"])})
    history = tuple(Level(*(d[f"history_{i}_{f}"] for f in _LEVEL_FIELDS))
                    for i in range(int(d["n_history"])))
    return Partition(
        slc, tuple(str(s) for s in d["layers"]), *(d[f] for f in _ARRAY_FIELDS), codes,
        d.get("G"), d.get("h"), complete=bool(d["ints"][0]), tolerance=float(d["scalars"][0]),
        n_snapped=int(d["ints"][1]), history=history, ancestors=d.get("ancestors"), trace=None)


# -- shapely and GeoJSON -----------------------------------------------------------------
def _closed_rings(part: Partition) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of every polygon with its first vertex repeated, and ring offsets."""
    R = part.n_regions
    counts = part.vertex_counts
    closed_off = np.r_[0, np.cumsum(counts + 1)]
    idx = np.empty(int(closed_off[-1]), np.int64)
    mask = np.ones(len(idx), bool)
    mask[closed_off[1:] - 1] = False
    idx[mask] = part.polygon_vertices
    idx[~mask] = part.polygon_vertices[part.offsets[:-1]] if R else []
    return part.vertices[idx], closed_off


def to_shapely(part: Partition) -> np.ndarray:
    """The regions as a numpy array of ``shapely.Polygon`` (R,), in slice coordinates.

    Needs shapely ≥ 2 (``pip install shapely``); built in one vectorized call.
    """
    try:
        import shapely
    except ImportError as e:  # pragma: no cover - shapely is installed in the test env
        raise ImportError("to_shapely() needs shapely, which is not installed; install it "
                          "with `pip install shapely`") from e
    coords, ring_off = _closed_rings(part)
    return shapely.from_ragged_array(shapely.GeometryType.POLYGON, coords,
                                     (ring_off, np.arange(part.n_regions + 1)))


def to_geojson(part: Partition) -> dict:
    """A GeoJSON ``FeatureCollection`` (a plain dict for :func:`json.dump`) of the regions.

    Each feature is a ``Polygon`` in slice coordinates ``(s, t)`` (counter-clockwise outer
    ring, first vertex repeated, as RFC 7946 asks) with the :meth:`Partition.to_dict`
    columns as ``properties``. Slice coordinates are not longitude/latitude: GIS tools
    should treat them as a projected plane.
    """
    coords, ring_off = _closed_rings(part)
    table = region_table(part)
    pts = coords.tolist()
    cols = {k: v.tolist() for k, v in table.items()}
    features = []
    for r in range(part.n_regions):  # building JSON objects is per region by nature
        features.append({"type": "Feature", "id": r,
                         "geometry": {"type": "Polygon",
                                      "coordinates": [pts[ring_off[r]:ring_off[r + 1]]]},
                         "properties": {k: v[r] for k, v in cols.items()}})
    return {"type": "FeatureCollection", "features": features}


# -- SVG -----------------------------------------------------------------------------
#: Edge colours by layer (the same palette as :mod:`maxaffine.plot`).
LAYER_COLORS = ("#1d3f8f", "#e07b00", "#138a6e", "#9b3fb5", "#7a5c2e", "#c2185b", "#5f6b73")
#: Region fills for ``color_by="class"`` (tab10) and ``"code"`` (pastels).
CLASS_FILLS = ("#a6c5e3", "#ffc999", "#aedcae", "#f0a8a8", "#cbb9dd", "#cfb3ad", "#f2c1e2",
               "#c7c7c7", "#e4e4a4", "#a3e2ea")
CODE_FILLS = ("#f4d6d6", "#f4e3cf", "#f1f0cd", "#dcefcf", "#cfeee0", "#cfe9ef", "#d4dcf3",
              "#e0d4f3", "#efd4ec", "#e9e2d7", "#d9e6d9", "#dde3ea")


def _ints(a: np.ndarray) -> list[str]:
    return list(map(str, a.tolist()))


def _join(*columns: Any) -> str:
    """Concatenate columns of tokens (lists of str, or one str repeated) row after row."""
    n = max(len(c) for c in columns if not isinstance(c, str))
    cols = [itertools.repeat(c, n) if isinstance(c, str) else c for c in columns]
    return "".join(map("".join, zip(*cols)))


def _path_data(q: np.ndarray, offsets: np.ndarray) -> str:
    """SVG path data for CSR polygons of quantized points: ``M x y l dx dy ... z`` each."""
    if len(offsets) < 2 or offsets[-1] == 0:
        return ""
    first = np.zeros(len(q), bool)
    first[offsets[:-1]] = True
    d = np.diff(q, axis=0, prepend=q[:1])
    xy = np.where(first[:, None], q, d)
    sep = np.full(len(q), " ", dtype=object)
    sep[offsets[:-1]] = "l"
    sep[offsets[1:] - 1] = "z"
    head = np.where(first, "M", "").tolist()
    return _join(head, _ints(xy[:, 0]), " ", _ints(xy[:, 1]), sep.tolist())


def _segment_data(q: np.ndarray) -> str:
    """Path data for segments (S, 2, 2) of quantized points: ``M x y l dx dy`` each."""
    if len(q) == 0:
        return ""
    d = q[:, 1] - q[:, 0]
    return _join("M", _ints(q[:, 0, 0]), " ", _ints(q[:, 0, 1]), "l", _ints(d[:, 0]), " ",
                 _ints(d[:, 1]))


def _fill_groups(part: Partition, color_by: str | None):
    """(colour, region ids) pairs and, for classes, whether shapely merged them."""
    if color_by is None:
        return [("#ffffff", np.arange(part.n_regions))]
    if color_by == "class":
        cls = region_classes(part)
        if cls is None:
            raise InputError("color_by='class' needs each region's output map, which this "
                             "partition does not have; use color_by='code'")
        key = cls
        pal = CLASS_FILLS
    elif color_by == "code":
        from ..plot import _codes_hash

        h = _codes_hash({k: part.codes[k] for k in part.layers})
        key = (h % np.uint64(len(CODE_FILLS))).astype(np.int64)
        pal = CODE_FILLS
    else:
        raise InputError(f"color_by must be 'class', 'code' or None; got {color_by!r}")
    order = np.argsort(key, kind="stable")
    ks = key[order]
    cuts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1], True])
    return [(pal[int(ks[a]) % len(pal)], order[a:b]) for a, b in itertools.pairwise(cuts)]


def _subset_csr(part: Partition, regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = part.vertex_counts[regions]
    off = np.r_[0, np.cumsum(counts)]
    start = np.repeat(part.offsets[regions], counts)
    within = np.arange(int(off[-1])) - np.repeat(off[:-1], counts)
    return part.polygon_vertices[start + within], off


def to_svg(part: Partition, path: Any = None, *, color_by: str | None = "auto",
           resolution: int = 4000, width: float = 800, edges: bool = True,
           boundary: bool | None = None, linewidth: float | None = None,
           merge: bool = True, overwrite: bool = False) -> str:
    """A compact standalone SVG picture of the partition; written to ``path`` if given.

    Unlike a generic plotting backend, each shared edge is written once (grouped into one
    path per layer), region fills are grouped into one path per colour (with shapely and
    ``color_by="class"``, each class's regions are merged into their union first, whose
    boundary is the decision boundary), and coordinates are integers on a grid of
    ``resolution`` steps across the domain written as relative moves.

    Parameters
    ----------
    path : str or Path, optional
        File to write; an existing file is kept unless ``overwrite=True``.
    color_by : {"auto", "class", "code", None}
        ``"class"``: predicted class; ``"code"``: one of 12 pastel colours picked by the
        region's code (adjacent regions may share one; edges separate them); ``"auto"``:
        class when the partition has output maps, else code.
    resolution : int
        Grid steps across the larger side of the domain (4000: below 0.03 % of the width,
        finer than a 300 dpi print of a full page).
    width : float
        Displayed width in px (the height follows the aspect ratio).
    edges, boundary : bool
        Draw region edges (coloured by layer) and the decision boundary (default: when the
        partition has output maps).
    linewidth : float, optional
        Edge width in displayed px; default :func:`maxaffine.plot.edge_linewidth`.
    merge : bool
        Merge same-class fills with shapely when it is installed.

    Returns
    -------
    str
        The SVG document.
    """
    if color_by == "auto":
        color_by = "class" if part.G is not None else "code"
    if boundary is None:
        boundary = part.G is not None
    if linewidth is None:
        from ..plot import edge_linewidth

        linewidth = edge_linewidth(part.n_regions)
    lo = part.slice.domain.min(0)
    span = float(np.ptp(part.slice.domain, axis=0).max())
    step = span / resolution

    def quant(p: np.ndarray) -> np.ndarray:
        q = np.rint((p - lo) / step).astype(np.int64)
        q[..., 1] = hi_y - q[..., 1]  # SVG's y axis points down
        return q

    hi_y = int(np.rint(np.ptp(part.slice.domain[:, 1]) / step))
    W = int(np.rint(np.ptp(part.slice.domain[:, 0]) / step))
    height = width * hi_y / max(W, 1)
    px = W / width  # grid steps per displayed px
    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {hi_y}" '
            f'width="{width:g}" height="{height:.6g}">'),
           f"<!-- maxaffine partition: {part.n_regions} regions, {len(part.layers)} layers -->",
           '<g stroke="none">']
    Vq = quant(part.vertices)
    for colour, regions in _fill_groups(part, color_by):
        data = None
        if merge and color_by == "class":
            data = _merged_fill(part, regions, quant)
        if data is None:
            pv, off = _subset_csr(part, regions)
            data = _path_data(Vq[pv], off)
        out.append(f'<path fill="{colour}" d="{data}"/>')
    out.append("</g>")
    if edges:
        e = part.edges
        inner = e["layer"] >= 0
        lay = e["layer"][inner]
        seg = Vq[e["vertices"][inner]]
        out.append(f'<g fill="none" stroke-width="{linewidth * px:.3g}" stroke-opacity="0.85" '
                   f'stroke-linecap="round">')
        for i in np.unique(lay):
            out.append(f'<path stroke="{LAYER_COLORS[int(i) % len(LAYER_COLORS)]}" '
                       f'd="{_segment_data(seg[lay == i])}"/>')
        out.append("</g>")
    dq = quant(part.slice.domain)
    out.append(f'<path fill="none" stroke="#303030" stroke-width="{(1.5 * linewidth + 0.4) * px:.3g}" '
               f'd="{_path_data(dq, np.array([0, len(dq)]))}"/>')
    if boundary:
        db = part.decision_boundary()
        out.append(f'<path fill="none" stroke="#111111" stroke-width="{2.2 * px:.3g}" '
                   f'stroke-linecap="round" d="{_segment_data(quant(db.segments))}"/>')
    if part.slice.anchors is not None:
        aq = quant(part.slice.anchors)
        r = 4 * px
        out += [f'<circle cx="{x}" cy="{y}" r="{r:.3g}" fill="white" stroke="black" '
                f'stroke-width="{1.4 * px:.3g}"/>' for x, y in aq]
    out.append("</svg>\n")
    text = "\n".join(out)
    if path is not None:
        target = Path(os.fspath(path))
        write_file(target, lambda fh: fh.write(text), overwrite=overwrite)
    return text


def _merged_fill(part: Partition, regions: np.ndarray, quant) -> str | None:
    """Path data of the union of ``regions`` (shapely's coverage union), or None without it."""
    try:
        import shapely
    except ImportError:
        return None
    pv, off = _subset_csr(part, regions)
    counts = np.diff(off)
    closed = np.r_[0, np.cumsum(counts + 1)]
    idx = np.empty(int(closed[-1]), np.int64)
    last = np.zeros(len(idx), bool)
    last[closed[1:] - 1] = True
    idx[~last] = pv
    idx[last] = pv[off[:-1]]
    polys = shapely.from_ragged_array(shapely.GeometryType.POLYGON, part.vertices[idx],
                                      (closed, np.arange(len(regions) + 1)))
    union = shapely.coverage_union_all(polys)
    rings = shapely.get_rings(shapely.get_parts(union))
    coords, ring_idx = shapely.get_coordinates(rings, return_index=True)
    # drop each ring's closing vertex; the path closes with z
    keep = np.r_[ring_idx[1:] == ring_idx[:-1], False]
    coords, ring_idx = coords[keep], ring_idx[keep]
    if not len(coords):
        return ""
    cut = np.flatnonzero(np.r_[True, ring_idx[1:] != ring_idx[:-1], True])
    return _path_data(quant(coords), cut)


__all__ = [
    "FORMAT",
    "code_keys",
    "load",
    "region_classes",
    "region_table",
    "save",
    "slope_norms",
    "to_geojson",
    "to_shapely",
    "to_svg",
]
