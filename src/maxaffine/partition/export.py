"""Saving, loading and exporting a :class:`~maxaffine.Partition` (tables, npz, shapely, GeoJSON, SVG).

The npz file holds plain numeric and string arrays only, so it loads with
``allow_pickle=False`` and needs neither the model nor maxaffine's tracer: every field of the
partition (slice, polygons, edge labels, codes, output maps, per-layer history) comes back
bit for bit. The trace is not stored; :meth:`~maxaffine.Partition.verify` and
:meth:`~maxaffine.Partition.locate` need the model again (``dataclasses.replace(part,
trace=maxaffine.trace(model))``).
"""

from __future__ import annotations

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
    from ..plot import _code_hash  # the hash that also picks region colours; no matplotlib

    flat = Codes({k: part.codes[k] for k in part.layers}).flat().cpu().numpy()
    h = _code_hash(flat)
    return np.char.zfill(np.char.mod("%x", h.astype(np.uint64)), 16) if len(h) else \
        np.zeros(0, "<U16")


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
        c = part.codes[k].detach().cpu()
        arrays[f"code_{i}"] = c.numpy()
    for name in ("G", "h", "ancestors"):
        if getattr(part, name) is not None:
            arrays[name] = getattr(part, name)
    arrays["n_history"] = np.array(len(part.history), np.int64)
    for i, lev in enumerate(part.history):
        for f in _LEVEL_FIELDS:
            arrays[f"history_{i}_{f}"] = getattr(lev, f)
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if overwrite else "xb"
    try:
        with open(target, mode) as fh:
            np.savez_compressed(fh, **arrays)
    except FileExistsError:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it, or choose "
                              f"another path") from None
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
    codes = Codes({str(k): torch.from_numpy(d[f"code_{i}"])
                   for i, k in enumerate(d["code_names"])})
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


__all__ = ["save", "load", "to_shapely", "to_geojson", "region_table", "code_keys",
           "region_classes", "slope_norms", "FORMAT"]
