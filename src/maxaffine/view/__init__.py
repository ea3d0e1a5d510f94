"""Interactive, self-contained HTML view of a :class:`~maxaffine.Partition`.

One HTML component (a ``<div>`` with an inline ``<script>``, no network access and no
third-party code) draws the regions on a ``<canvas>``: zoom with the wheel (or the + / −
buttons), pan by dragging, double-click to reset. Hovering shows a region's id, area,
predicted class, its code layer by layer (units on, and a short key of each layer's code),
the norm of its slope and the top classes of its affine map on the slice
(``f_c = g_s s + g_t t + h``); clicking pins it. Check boxes toggle each layer's edges (the
edges of layers ``1..ℓ`` are the subdivision after layer ``ℓ``) and the decision boundary;
the fill can follow the predicted class, the full code, or the cell of any layer. Anchor
inputs are marked, with thumbnails when they are images.

The partition's arrays travel as one zlib-compressed, base64-encoded binary blob of typed
arrays (Float32/Int32/...); the browser unpacks it with ``DecompressionStream``, builds one
``Path2D`` per colour and per layer (so a frame is a few fill/stroke calls, not one per
region), draws only the longer edges when regions are smaller than a pixel, and finds the
region under the cursor through a uniform grid of region bounding boxes.

>>> import torch, maxaffine
>>> _ = torch.manual_seed(0)
>>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
>>> part = maxaffine.partition_slice(net, maxaffine.Slice.box(), progress=False)
>>> html = maxaffine.view.partition_html(part)
>>> html.startswith('<div id="maxaffine-view-') and "<canvas" not in html  # drawn by the script
True
"""

from __future__ import annotations

import base64
import html as _html
import json
import os
import uuid
import zlib
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import InputError

#: Region fills for the class colouring (tab10 lightened) and the code / cell colourings.
CLASS_FILLS = ("#a6c5e3", "#ffc999", "#aedcae", "#f0a8a8", "#cbb9dd", "#cfb3ad", "#f2c1e2",
               "#c7c7c7", "#e4e4a4", "#a3e2ea")
CLASS_STRONG = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                "#7f7f7f", "#bcbd22", "#17becf")
CODE_FILLS = ("#f4d6d6", "#f4e3cf", "#f1f0cd", "#dcefcf", "#cfeee0", "#cfe9ef", "#d4dcf3",
              "#e0d4f3", "#efd4ec", "#e9e2d7", "#d9e6d9", "#dde3ea", "#f7cfc0", "#c9e4c5",
              "#c5d5ea", "#ead0e8")
LAYER_COLORS = ("#1d3f8f", "#e07b00", "#138a6e", "#9b3fb5", "#7a5c2e", "#c2185b", "#5f6b73")
#: Classes listed per region in the hover panel.
TOP_CLASSES = 3


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


class _Blob:
    """Typed arrays packed into one byte string, each 8-byte aligned, with a JSON index."""

    _KINDS: ClassVar[dict] = {np.dtype(np.float32): "f4", np.dtype(np.int32): "i4", np.dtype(np.uint32): "u4",
              np.dtype(np.int16): "i2", np.dtype(np.uint8): "u1", np.dtype(np.int8): "i1"}

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.index: dict[str, list] = {}
        self.size = 0

    def add(self, name: str, a: np.ndarray, dtype: Any) -> None:
        a = np.ascontiguousarray(np.asarray(a), dtype=dtype)
        b = a.tobytes()
        self.index[name] = [self.size, self._KINDS[a.dtype], int(a.size), list(a.shape)]
        pad = (-len(b)) % 8
        self.parts.append(b + b"\0" * pad)
        self.size += len(b) + pad

    def encode(self, compress: bool) -> str:
        raw = b"".join(self.parts)
        return base64.b64encode(zlib.compress(raw, 1) if compress else raw).decode("ascii")


def _anchor_images(slc) -> tuple[np.ndarray, list[int]] | None:
    """Anchor inputs as uint8 images (A, H, W, C) when the input looks like an image."""
    shape = tuple(slc.in_shape)
    if len(shape) == 3 and shape[0] in (1, 3) and min(shape[1:]) >= 4:
        chw = True
    elif len(shape) == 2 and min(shape) >= 4:
        chw = False
    else:
        return None
    x = slc.points(slc.anchors).numpy()
    if chw:
        x = np.moveaxis(x, 1, -1)
    else:
        x = x[..., None]
    lo, hi = float(x.min()), float(x.max())
    img = np.round(255 * (x - lo) / (hi - lo or 1.0)).astype(np.uint8)
    return img, list(img.shape[1:])


def view_data(part, *, layer_names: Any = None, max_regions: int = 500_000) -> dict:
    """The arrays and metadata the view draws from (see :func:`partition_html`).

    Returns
    -------
    dict with ``blob`` (a :class:`_Blob`) and ``meta`` (JSON-able).
    """
    from ..partition.export import region_classes, slope_norms
    from ..plot import _codes_hash, _mix64

    R = part.n_regions
    if R > max_regions:
        raise InputError(f"the partition has {R:,} regions, more than max_regions="
                         f"{max_regions:,} for the interactive view; pass a larger max_regions "
                         f"(the page grows by about 120 bytes per region) or view part of it")
    names = list(layer_names) if layer_names is not None else list(part.layers)
    if len(names) != len(part.layers):
        raise InputError(f"layer_names has {len(names)} names for {len(part.layers)} layers")
    lo = part.slice.domain.min(0)
    blob = _Blob()
    blob.add("vertices", part.vertices - lo, np.float32)
    blob.add("offsets", part.offsets, np.int32)
    blob.add("polys", part.polygon_vertices, np.int32)
    e = part.edges
    inner = e["layer"] >= 0
    blob.add("edges", e["vertices"][inner], np.int32)
    blob.add("edge_layer", e["layer"][inner], np.int8)
    blob.add("domain", part.slice.domain - lo, np.float32)
    blob.add("area", part.areas, np.float32)
    blob.add("nvert", part.vertex_counts, np.int32)
    full = _codes_hash({k: part.codes[k] for k in part.layers}) if R else np.zeros(0, np.uint64)
    blob.add("key_hi", (full >> np.uint64(32)).astype(np.uint32), np.uint32)
    blob.add("key_lo", (full & np.uint64(0xFFFFFFFF)).astype(np.uint32), np.uint32)
    blob.add("code_color", (full % np.uint64(len(CODE_FILLS))).astype(np.uint8), np.uint8)
    layers_meta = []
    for i, k in enumerate(part.layers):
        c = part.codes[k].reshape(R, -1)
        n_units = int(c.shape[1])
        h = _codes_hash({k: part.codes[k]}) if R else np.zeros(0, np.uint64)
        blob.add(f"lkey_{i}", (h & np.uint64(0xFFFFFFFF)).astype(np.uint32), np.uint32)
        binary = c.dtype == torch.bool
        if binary:
            blob.add(f"lon_{i}", np.count_nonzero(c.numpy(), axis=1), np.int32)
        layers_meta.append({"name": str(names[i]), "units": n_units, "binary": bool(binary),
                            "color": LAYER_COLORS[i % len(LAYER_COLORS)]})
        if part.ancestors is not None and i < part.ancestors.shape[1]:
            cell = part.ancestors[:, i].astype(np.uint64)
            blob.add(f"cell_{i}", (_mix64(cell + np.uint64(i * 7919)) %
                                  np.uint64(len(CODE_FILLS))).astype(np.uint8), np.uint8)
            layers_meta[-1]["cells"] = int(part.ancestors[:, i].max()) + 1 if R else 0
    meta: dict[str, Any] = {
        "regions": R, "layers": layers_meta, "origin": lo.tolist(),
        "span": np.ptp(part.slice.domain, axis=0).tolist(),
        "complete": bool(part.complete), "in_shape": list(part.slice.in_shape),
        "classFills": list(CLASS_FILLS), "classStrong": list(CLASS_STRONG),
        "codeFills": list(CODE_FILLS), "outputs": part.n_outputs,
    }
    cls = region_classes(part)
    if cls is not None:
        C = part.G.shape[1]
        blob.add("cls", cls, np.int16)
        blob.add("slope", slope_norms(part), np.float32)
        y = np.einsum("rcd,rd->rc", part.G, part.interior) + part.h
        k = min(TOP_CLASSES, C)
        top = np.argsort(-y, axis=1, kind="stable")[:, :k]
        rows = np.arange(R)[:, None]
        blob.add("top", top, np.int16)
        g = part.G[rows, top]  # (R, k, 2) slope in slice coordinates
        blob.add("top_g", g, np.float32)
        blob.add("top_h", part.h[rows, top], np.float32)  # in slice coordinates (s, t)
        meta["top"] = k
        db = part.decision_boundary()
        blob.add("boundary", db.segments.reshape(-1, 4) - np.tile(lo, 2), np.float32)
        meta["boundary"] = len(db.segments)
    if part.slice.anchors is not None:
        blob.add("anchors", part.slice.anchors - lo, np.float32)
        imgs = _anchor_images(part.slice)
        if imgs is not None:
            blob.add("anchor_images", imgs[0], np.uint8)
            meta["anchor_image_shape"] = imgs[1]
    meta["index"] = blob.index
    return {"blob": blob, "meta": meta}


def partition_html(part, *, height: int = 560, compress: bool = True, title: str | None = None,
                   layer_names: Any = None, max_regions: int = 500_000) -> str:
    """The interactive view of ``part`` as one self-contained HTML fragment.

    Embed it in any page (several per page are fine) or return it from ``_repr_html_``;
    :func:`save_html` wraps it in a full document.

    Parameters
    ----------
    part : Partition
        A partition or a per-layer view (``part.upto(l)``); without output maps there is no
        class, slope or decision boundary to show.
    height : int
        Canvas height in CSS pixels (the width follows the container).
    compress : bool
        zlib-compress the data (the browser inflates it with ``DecompressionStream``).
    title : str, optional
        A caption above the canvas (default: region and layer counts).
    layer_names : sequence of str, optional
        Names shown for the layers (default ``part.layers``).
    max_regions : int
        Refuse larger partitions (the page holds about 120 bytes per region).

    Returns
    -------
    str
    """
    data = view_data(part, layer_names=layer_names, max_regions=max_regions)
    uid = "maxaffine-view-" + uuid.uuid4().hex[:12]
    meta = data["meta"]
    meta["compressed"] = bool(compress)
    meta["height"] = int(height)
    if title is None:
        title = (f"{part.n_regions:,} regions, {len(part.layers)} piecewise layers"
                 + ("" if part.complete else " (partial)"))
    payload = data["blob"].encode(compress)
    css = _asset("view.css").replace("__ID__", uid)
    js = _asset("view.js")
    meta_json = json.dumps(meta, separators=(",", ":")).replace("</", "<\\/")
    return (f'<div id="{uid}" class="maxaffine-view">'
            f"<style>{css}</style>"
            f'<div class="mv-title">{_html.escape(title)}</div>'
            f'<script type="application/json" class="mv-meta">{meta_json}</script>'
            f'<script type="application/octet-stream" class="mv-data">{payload}</script>'
            f"<script>{js}\nmaxaffineView(document.getElementById({json.dumps(uid)}));</script>"
            f"</div>")


def save_html(part, path: Any, *, overwrite: bool = False, **kwargs: Any) -> Path:
    """Write the view of ``part`` as a standalone HTML page; never over an existing file
    unless ``overwrite=True``. Keyword arguments go to :func:`partition_html`."""
    target = Path(os.fspath(path))
    body = partition_html(part, **kwargs)
    doc = ("<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
           "<title>maxaffine partition</title></head>"
           f"<body style=\"margin:16px;font-family:sans-serif\">{body}</body></html>")
    from ..partition.export import write_file

    write_file(target, lambda fh: fh.write(doc), overwrite=overwrite)
    return target


class PartitionView:
    """What :meth:`Partition.show` returns: rendered by Jupyter, or saved with :meth:`save`."""

    def __init__(self, part, **kwargs: Any) -> None:
        self.part, self.kwargs = part, kwargs

    def _repr_html_(self) -> str:
        return partition_html(self.part, **self.kwargs)

    def save(self, path: Any, *, overwrite: bool = False) -> Path:
        return save_html(self.part, path, overwrite=overwrite, **self.kwargs)

    def __repr__(self) -> str:
        return f"PartitionView({self.part!r})"


__all__ = ["PartitionView", "partition_html", "save_html", "view_data"]
