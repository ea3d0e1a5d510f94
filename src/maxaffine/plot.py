r"""Pictures of linear-region partitions, decision boundaries, paths, templates and power diagrams.

matplotlib is imported here only (``import maxaffine`` never loads this module). Every
function takes an ``ax`` (or ``axes``) argument, creates a figure when it is None, returns
the axes it drew on and never calls ``plt.show()``; all drawing is vectorized
(:class:`~matplotlib.collections.PolyCollection`, :class:`~matplotlib.collections.LineCollection`,
one artist per kind of object), so partitions with tens of thousands of regions draw in
about a second.

Artists carry a ``gid`` so callers (and tests) can find them: ``"regions"`` (the region
polygons; a ``TriMesh`` for Gouraud-shaded outputs), ``"edges"`` (region edges inside the
domain), ``"domain"`` (the domain outline),
``"decision-boundary"``, ``"anchors"``, ``"anchor-image"``, ``"points"``,
``"power-centroids"``, ``"power-circles"``, ``"path-outputs"``, ``"path-pieces"``,
``"path-breakpoints"``.

Examples
--------
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> import torch, maxaffine
>>> from maxaffine import plot
>>> _ = torch.manual_seed(0)
>>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
>>> part = maxaffine.partition_slice(net, maxaffine.Slice.box((-1, 1, -1, 1)), progress=False)
>>> ax = plot.plot_partition(part, color_by="class")
>>> len(ax.collections[0].get_paths()) == part.n_regions
True

References
----------
Balestriero & Baraniuk, "A Spline Theory of Deep Networks", ICML 2018.
Humayun, Balestriero, Balakrishnan, Baraniuk, "SplineCam: Exact Visualization and
Characterization of Deep Network Geometry and Decision Boundaries", CVPR 2023.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .errors import InputError

__all__ = [
    "plot_partition", "plot_subdivision", "plot_decision_boundary", "plot_path",
    "plot_anchor_images", "plot_templates", "plot_power_diagram", "code_colors",
    "tile_colors", "class_colors", "layer_colors",
]

#: Colours of region edges by the layer that created them (layer 1, 2, ...); cycled.
LAYER_COLORS = ("#1d3f8f", "#e07b00", "#138a6e", "#9b3fb5", "#7a5c2e", "#c2185b", "#5f6b73")
#: Colour of the domain outline (edges created by no layer).
DOMAIN_COLOR = "#303030"
#: Default decision-boundary colour.
BOUNDARY_COLOR = "#111111"

_COLOR_BY = ("code", "tile", "layer_code", "class", "output", "slope", None)


# -- small helpers ------------------------------------------------------------------------
def _plt():
    import matplotlib.pyplot as plt

    return plt

def _panel_grid(n: int, nr: int, nc: int, figsize: tuple[float, float], share: bool = False):
    """A new figure with an nr x nc grid; the first ``n`` axes (flat), the rest hidden."""
    _, grid = _plt().subplots(nr, nc, figsize=figsize, sharex=share, sharey=share, squeeze=False,
                              layout="constrained")
    flat = grid.reshape(-1)
    for a in flat[n:]:
        a.set_visible(False)
    return flat[:n]


def _given_axes(axes, n: int, what: str):
    """The first ``n`` of user-given axes, or a clear error when there are too few."""
    axes = np.asarray(axes, dtype=object).reshape(-1)
    if len(axes) < n:
        raise InputError(f"{n} {what} need {n} axes; got {len(axes)}")
    return axes[:n]



def _new_ax(ax, figsize=(5.2, 5.2)):
    if ax is None:
        _, ax = _plt().subplots(figsize=figsize)
    return ax


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _mix64(key: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer on uint64 keys (wrapping arithmetic is intended)."""
    with np.errstate(over="ignore"):
        z = key + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _code_hash(flat: np.ndarray) -> np.ndarray:
    """A deterministic 64-bit hash of each row of integer codes (N, n_units) -> (N,) uint64.

    Equal codes give equal hashes (so a region keeps its colour across pictures of the
    same network); the weights come from a fixed seed, nothing depends on global state.
    """
    flat = np.asarray(flat)
    if flat.ndim != 2:
        raise InputError(f"codes must be a (N, n_units) array; got shape {flat.shape}")
    if flat.shape[1] == 0:
        return np.zeros(len(flat), np.uint64)
    w = np.random.default_rng(0x5EED).integers(1, 2**63 - 1, flat.shape[1], dtype=np.int64)
    w = w.astype(np.uint64) | np.uint64(1)
    vals = (flat.astype(np.int64) + 1).astype(np.uint64)
    with np.errstate(over="ignore"):
        key = np.zeros(len(flat), np.uint64)
        for lo in range(0, flat.shape[1], 256):  # chunks of units bound the (N, 256) temporaries
            key = key + (vals[:, lo:lo + 256] * w[None, lo:lo + 256]).sum(1, dtype=np.uint64)
    return _mix64(key)


_BYTE_BITS = ((np.arange(256)[:, None] >> np.arange(7, -1, -1)[None]) & 1).astype(np.uint64)


def _codes_hash(codes: Any) -> np.ndarray:
    """``_code_hash(_flat_codes(codes))`` without building the (N, n_units) int64 table.

    Boolean layers (most of them) are packed to bytes and hashed by one 256-entry table per
    byte position (the hash is a wrapping sum of per-unit terms, so a byte's eight terms
    can be summed ahead); other layers go through the same sum chunk by chunk.
    """
    if not isinstance(codes, dict):
        return _code_hash(_flat_codes(codes))
    if not codes:
        raise InputError("no codes to colour (empty dict)")
    tensors = [c if isinstance(c, torch.Tensor) else torch.as_tensor(np.asarray(c))
               for c in codes.values()]
    widths = [int(np.prod(c.shape[1:], dtype=np.int64)) for c in tensors]
    n_units = sum(widths)
    N = int(tensors[0].shape[0])
    if n_units == 0:
        return np.zeros(N, np.uint64)
    w = np.random.default_rng(0x5EED).integers(1, 2**63 - 1, n_units, dtype=np.int64)
    w = w.astype(np.uint64) | np.uint64(1)
    key = np.zeros(N, np.uint64)
    j0 = 0
    with np.errstate(over="ignore"):
        for c, width in zip(tensors, widths):
            flat = c.detach().cpu().reshape(N, width)
            wl = w[j0:j0 + width]
            j0 += width
            if flat.dtype == torch.bool:
                key += wl.sum(dtype=np.uint64)  # the "+1" of every unit
                packed = np.packbits(flat.numpy(), axis=1)  # (N, ceil(width / 8)), MSB first
                pad = np.zeros(packed.shape[1] * 8, np.uint64)
                pad[:width] = wl
                table = _BYTE_BITS @ pad.reshape(-1, 8).T  # (256, n_bytes), wrapping sums
                for lo in range(0, packed.shape[1], 64):
                    cols = np.arange(lo, min(lo + 64, packed.shape[1]))
                    key += table[packed[:, cols], cols[None]].sum(1, dtype=np.uint64)
            else:
                for lo in range(0, width, 256):
                    vals = (flat[:, lo:lo + 256].long().numpy() + 1).astype(np.uint64)
                    key += (vals * wl[None, lo:lo + 256]).sum(1, dtype=np.uint64)
    return _mix64(key)


def _uniforms(h: np.ndarray, k: int) -> np.ndarray:
    """``k`` independent uniforms in [0, 1) per hash, shape (N, k)."""
    out = np.empty((len(h), k))
    z = h
    for j in range(k):
        z = _mix64(z + np.uint64(j + 1))
        out[:, j] = (z >> np.uint64(11)).astype(np.float64) / float(2**53)
    return out


def code_colors(codes: Any, *, cmap: Any = None) -> np.ndarray:
    """Random but deterministic colours, one per code (equal codes, equal colours).

    Parameters
    ----------
    codes : Codes, dict of Tensors, or integer array of shape (N, n_units)
        VQ codes (e.g. ``partition.codes``); dicts are flattened in their key order.
    cmap : str or Colormap, optional
        Sample this colormap at a hashed position; default soft pastel colours (random
        hue, moderate saturation, high value).

    Returns
    -------
    ndarray, shape (N, 4)
        RGBA colours.

    Examples
    --------
    >>> import numpy as np
    >>> c = code_colors(np.array([[0, 1], [1, 0], [0, 1]]))
    >>> c.shape, bool(np.allclose(c[0], c[2])), bool(np.allclose(c[0], c[1]))
    ((3, 4), True, False)
    """
    u = _uniforms(_codes_hash(codes), 3)
    if cmap is not None:
        import matplotlib

        cm = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
        return np.asarray(cm(u[:, 0]))
    hsv = np.stack([u[:, 0], 0.16 + 0.30 * u[:, 1], 0.88 + 0.12 * u[:, 2]], 1)
    rgb = _hsv_to_rgb(hsv)
    return np.concatenate([rgb, np.ones((len(rgb), 1))], 1)


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    from matplotlib.colors import hsv_to_rgb

    return hsv_to_rgb(hsv)


def _flat_codes(codes: Any) -> np.ndarray:
    if isinstance(codes, dict):
        parts = [c.reshape(c.shape[0], -1).long() if isinstance(c, torch.Tensor)
                 else torch.as_tensor(np.asarray(c)).reshape(len(c), -1).long()
                 for c in codes.values()]
        if not parts:
            raise InputError("no codes to colour (empty dict)")
        return torch.cat(parts, 1).numpy()
    if isinstance(codes, torch.Tensor):
        codes = codes.detach().cpu().long().numpy()
    arr = np.asarray(codes)
    if arr.ndim == 1:
        arr = arr[:, None]
    return arr.reshape(len(arr), -1).astype(np.int64)


def tile_colors(codes: Any, first: str) -> np.ndarray:
    """Colours that show a subdivision: hue by the first layer's code, shade by the full code.

    Regions in one cell of layer ``first`` (a convex tile) share a hue and saturation
    level; their full codes set a lighter or darker shade, so the tile's subdivision by the
    later layers stays visible.

    Parameters
    ----------
    codes : dict str -> Tensor (N, *units)
        Full codes (e.g. ``partition.codes``).
    first : str
        The layer whose cells set the hue (e.g. ``partition.layers[0]``).

    Returns
    -------
    ndarray, shape (N, 4)
        RGBA colours.
    """
    if first not in codes:
        raise InputError(f"no codes for layer {first!r}; have {list(codes)}")
    base = _uniforms(_codes_hash({first: codes[first]}), 2)
    fine = _uniforms(_codes_hash(codes), 2)
    only_first = len(codes) == 1
    jit_s = 1.0 if only_first else 0.7 + 0.6 * fine[:, 0]
    jit_v = 0.94 if only_first else 0.84 + 0.16 * fine[:, 1]
    hsv = np.stack([base[:, 0], np.clip((0.22 + 0.22 * base[:, 1]) * jit_s, 0, 1),
                    np.broadcast_to(jit_v, (len(base),))], 1)
    rgb = _hsv_to_rgb(hsv)
    return np.concatenate([rgb, np.ones((len(rgb), 1))], 1)


def class_colors(n_classes: int) -> np.ndarray:
    """A qualitative palette of ``n_classes`` RGBA colours (tab10, tab20, then evenly spaced hues).

    Examples
    --------
    >>> class_colors(4).shape
    (4, 4)
    """
    import matplotlib

    if n_classes < 1:
        raise InputError(f"n_classes must be positive; got {n_classes}")
    if n_classes <= 10:
        return np.asarray(matplotlib.colormaps["tab10"](np.arange(n_classes)))
    if n_classes <= 20:
        return np.asarray(matplotlib.colormaps["tab20"](np.arange(n_classes)))
    rgb = np.array([colorsys.hls_to_rgb(i / n_classes, 0.5, 0.65) for i in range(n_classes)])
    return np.concatenate([rgb, np.ones((n_classes, 1))], 1)


def layer_colors(n_layers: int) -> np.ndarray:
    """Edge colours for layers 1..n_layers (:data:`LAYER_COLORS`, cycled), RGBA (n_layers, 4)."""
    from matplotlib.colors import to_rgba_array

    return to_rgba_array([LAYER_COLORS[i % len(LAYER_COLORS)] for i in range(max(n_layers, 0))])


def _layer_label(i: int, name: str) -> str:
    return f"layer {i + 1}" if name.isdigit() else f"layer {i + 1} ({name})"


def _padded_polygons(part) -> np.ndarray:
    """Region polygons as one (R, n_max, 2) array (short polygons repeat their last vertex)."""
    counts = np.diff(part.offsets)
    if len(counts) == 0:
        return np.zeros((0, 3, 2))
    n_max = int(counts.max())
    j = np.minimum(np.arange(n_max)[None, :], counts[:, None] - 1)
    return part.vertices[part.polygon_vertices[part.offsets[:-1, None] + j]]


def _region_outputs_at(part, st: np.ndarray, regions: np.ndarray) -> np.ndarray:
    return np.einsum("ncd,nd->nc", part.G[regions], st) + part.h[regions]


def _need_map(part, what: str) -> None:
    if part.G is None or part.h is None:
        raise InputError(
            f"color_by={what!r} needs each region's output map, which this partition does not "
            f"have (a per-layer view from upto() or a partial result); use color_by='code' or "
            f"the complete partition from partition_slice")


def _region_classes(part, level: float = 0.0) -> np.ndarray:
    """Predicted class of each region: argmax of its output map at its interior point."""
    y = _region_outputs_at(part, part.interior, np.arange(part.n_regions))
    if y.shape[1] == 1:
        return (y[:, 0] > level).astype(np.int64)
    return y.argmax(1)


def _lighten(rgba: np.ndarray, amount: np.ndarray) -> np.ndarray:
    out = rgba.copy()
    out[:, :3] = rgba[:, :3] + (1.0 - rgba[:, :3]) * amount[:, None]
    return out


def _is_coordinate_plane(slc) -> bool:
    return (slc.in_features == 2 and np.allclose(slc.origin, 0) and np.allclose(slc.u, [1, 0])
            and np.allclose(slc.v, [0, 1]))


def _set_domain_view(ax, slc, pad: float = 0.02) -> None:
    lo, hi = slc.domain.min(0), slc.domain.max(0)
    d = pad * (hi - lo)
    ax.set_xlim(lo[0] - d[0], hi[0] + d[0])
    ax.set_ylim(lo[1] - d[1], hi[1] + d[1])
    ax.set_aspect("equal")
    if _is_coordinate_plane(slc):
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
    else:
        ax.set_xlabel("$s$")
        ax.set_ylabel("$t$")


# -- partitions ---------------------------------------------------------------------------
def plot_partition(partition, *, color_by: str | None = "code", ax=None, edges: bool = True,
                   edge_color_by_layer: bool = True, edge_color: Any = "0.35",
                   boundary: bool | None = None, level: float = 0.0, anchors: bool = True,
                   anchor_labels: Sequence[str] | None = None, points: Any = None,
                   point_labels: Any = None, cmap: Any = None, alpha: float = 1.0,
                   linewidth: float | None = None, boundary_color: Any = BOUNDARY_COLOR,
                   boundary_linewidth: float = 2.2, output: int = 0, shading: str = "gouraud",
                   colorbar: bool = False, legend: bool | str = "below",
                   edge_alpha: float = 0.85, rasterized: bool | None = None):
    r"""Draw the linear regions of a slice, their edges, the decision boundary and the anchors.

    Every region :math:`\omega` is a convex polygon of slice coordinates on which the
    network is affine, :math:`f(x(s,t)) = G_\omega (s,t)^\top + h_\omega`. Regions are
    filled according to ``color_by``; each edge is coloured by the layer whose unit
    created it (edges of the domain in dark grey).

    Parameters
    ----------
    partition : Partition
        From :func:`maxaffine.partition_slice` (or ``partition.upto(layer)``).
    color_by : {"code", "tile", "layer_code", "class", "output", "slope", None}
        ``"code"``: a random but deterministic colour per full VQ code (see
        :func:`code_colors`); ``"tile"``: the hue of the region's first-layer cell (a convex
        tile) in a shade set by its full code, so every tile shows its subdivision by the
        later layers (see :func:`tile_colors`); ``"layer_code"``: by the code of the last
        layer only, so same-coloured cells form that layer's (non-convex) regions; ``"class"``: the
        predicted class, argmax of the region's output map at its interior point, each region
        a slightly different tint (one output: ``f > level``); ``"output"``: the value of
        output ``output`` (exact: Gouraud shading of the piecewise-linear map, or one value
        per region with ``shading="flat"``); ``"slope"``: the norm :math:`\|G_\omega\|_F` of
        the region's slope in slice coordinates; None: white.
    ax : Axes, optional
    edges : bool
        Draw the region edges.
    edge_color_by_layer : bool
        Colour edges by the layer that created them (:data:`LAYER_COLORS`) with a legend;
        otherwise all in ``edge_color``.
    boundary : bool or None
        Draw the decision boundary (or the level set ``f = level`` for one output). None
        draws it when the partition has output maps; True requires them.
    level : float
        Level for one-output networks (regression or a single logit).
    anchors : bool
        Mark the slice's anchor inputs (``Slice.through``), labelled ``anchor_labels``
        (default :math:`x_1, x_2, x_3`).
    points : array, shape (N, 2) slice coordinates or (N, *in_shape) inputs, optional
        Data to scatter on top (inputs are projected onto the slice's plane; for 2-input
        models an (N, 2) array is read as inputs).
    point_labels : array, shape (N,), optional
        Class labels of ``points`` (class colours).
    cmap : str or Colormap, optional
        Colormap for ``"output"`` (default ``"RdBu_r"``), ``"slope"`` (``"viridis"``) or
        ``"code"`` (default: pastel colours).
    alpha : float
        Opacity of the region fill.
    linewidth : float, optional
        Width of region edges in points; default :func:`edge_linewidth` of the region count
        (0.5 up to 2,000 regions, thinner beyond so that dense pictures stay readable).
    boundary_color, boundary_linewidth
        Style of the decision boundary.
    output : int
        Output index for ``color_by="output"``.
    shading : {"gouraud", "flat"}
        For ``color_by="output"``.
    colorbar : bool
        Add a colorbar for ``"output"`` and ``"slope"``.
    legend : bool or str
        Legend of edge layers and the boundary: ``"below"`` (under the axes, default), a
        matplotlib ``loc`` string, True (``"best"``) or False.
    edge_alpha : float
        Opacity of the region edges.
    rasterized : bool, optional
        Rasterize the region fills in vector output (SVG, PDF) while edges, the boundary and
        text stay vector: the file size then no longer grows with the number of filled
        polygons (the raster resolution is ``savefig(dpi=...)``). Default: rasterize from
        :data:`RASTERIZE_ABOVE` regions on. Above :data:`MERGE_EDGES_ABOVE` edges, the edges
        of each layer are drawn as one path (a polyline broken by NaN gaps), so a vector
        file holds one element per layer instead of one per edge.

    Returns
    -------
    Axes

    Raises
    ------
    InputError
        Unknown ``color_by``, or a colouring/boundary that needs output maps on a partition
        without them.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import torch, maxaffine
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 6), torch.nn.ReLU(), torch.nn.Linear(6, 1))
    >>> part = maxaffine.partition_slice(net, maxaffine.Slice.box((-2, 2, -2, 2)), progress=False)
    >>> ax = maxaffine.plot.plot_partition(part, color_by="output", colorbar=True)
    >>> ax.get_xlabel()
    '$x_1$'
    """
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.patches import Patch

    if color_by not in _COLOR_BY:
        raise InputError(f"color_by must be one of {_COLOR_BY}; got {color_by!r}")
    if shading not in ("gouraud", "flat"):
        raise InputError(f"shading must be 'gouraud' or 'flat'; got {shading!r}")
    ax = _new_ax(ax)
    part = partition
    slc = part.slice
    R = part.n_regions
    if linewidth is None:
        linewidth = edge_linewidth(R)
    if rasterized is None:
        rasterized = R >= RASTERIZE_ABOVE
    has_map = part.G is not None and part.h is not None
    mappable = None
    label = None
    verts = _padded_polygons(part)
    class_handles: list = []

    # -- fill --
    if color_by in ("output", "slope"):
        _need_map(part, color_by)
        if color_by == "output":
            if not 0 <= output < part.G.shape[1]:
                raise InputError(f"output={output} but the network has {part.G.shape[1]} outputs")
            label = f"output {output}" if part.G.shape[1] > 1 else "output"
            cm = cmap or "RdBu_r"
            if shading == "gouraud":
                mappable = _gouraud_output(ax, part, output, cm, alpha)
                mappable.set_rasterized(rasterized)
            else:
                vals = _region_outputs_at(part, part.interior, np.arange(R))[:, output]
        else:
            label = r"slope norm $\|G_\omega\|$"
            cm = cmap or "viridis"
            vals = np.linalg.norm(part.G.reshape(R, -1), axis=1)
        if mappable is None:
            pc = PolyCollection(verts, array=vals, cmap=cm, edgecolors="none", alpha=alpha,
                                linewidths=0, antialiaseds=False)
            if color_by == "output":  # diverging colormap centred at the level
                m = float(np.max(np.abs(vals - level))) or 1.0
                pc.set_clim(level - m, level + m)
            pc.set_gid("regions")
            pc.set_rasterized(rasterized)
            ax.add_collection(pc, autolim=False)
            mappable = pc
    else:
        if color_by == "code":
            face = code_colors(part.codes, cmap=cmap)
        elif color_by == "tile":
            face = tile_colors(part.codes, part.layers[0])
        elif color_by == "layer_code":
            last = part.layers[-1]
            face = code_colors({last: part.codes[last]}, cmap=cmap)
        elif color_by == "class":
            _need_map(part, "class")
            cls = _region_classes(part, level)
            n_cls = max(part.G.shape[1], 2)
            u = _uniforms(_codes_hash(part.codes), 1)[:, 0]
            face = _lighten(class_colors(n_cls)[cls], 0.38 + 0.27 * u)
            class_handles = [Patch(facecolor=_lighten(class_colors(n_cls)[[c]], np.full(1, 0.5))[0],
                                   edgecolor="none", label=f"class {c}") for c in np.unique(cls)]
        else:
            face = np.ones((R, 4))
        face[:, 3] = alpha
        # antialiasing off for the fill: edges are drawn separately, and AA seams between
        # adjacent polygons would show as faint lines
        pc = PolyCollection(verts, facecolors=face, edgecolors="none", linewidths=0,
                            antialiaseds=False)
        pc.set_gid("regions")
        pc.set_rasterized(rasterized)
        ax.add_collection(pc, autolim=False)

    handles = list(class_handles)
    # -- edges by layer --
    from matplotlib.patches import Polygon

    outline = Polygon(slc.domain, closed=True, fill=False, ec=DOMAIN_COLOR,
                      lw=1.5 * linewidth + 0.4, zorder=4, joinstyle="round")
    outline.set_gid("domain")
    ax.add_patch(outline)
    if edges:
        from matplotlib.lines import Line2D

        e = part.edges
        inner = e["layer"] >= 0  # edges with layer -1 lie on the domain outline
        seg = part.vertices[e["vertices"][inner]]
        lay = e["layer"][inner]
        if edge_color_by_layer:
            pal = layer_colors(max(len(part.layers), 1))
            colors = pal[lay % len(pal)]
            handles += [Line2D([], [], color=pal[i], lw=1.5, label=_layer_label(i, part.layers[i]))
                        for i in np.unique(lay)]
        else:
            colors = np.repeat(_rgba(edge_color)[None], len(seg), 0)
        colors[:, 3] = edge_alpha
        order = np.argsort(lay, kind="stable")  # later layers drawn over earlier ones
        seg, colors = seg[order], colors[order]
        if len(seg) > MERGE_EDGES_ABOVE:
            seg, colors = _merged_by_layer(seg, lay[order], colors)
        # one scalar width and autolim=False keep matplotlib's per-segment work minimal
        lc = LineCollection(seg, colors=colors, linewidths=linewidth,
                            capstyle="round", joinstyle="round", zorder=3)
        lc.set_gid("edges")
        ax.add_collection(lc, autolim=False)

    # -- decision boundary --
    if boundary is None:
        boundary = has_map
    if boundary:
        if not has_map:
            raise InputError("boundary=True needs each region's output map, which this partition "
                             "does not have (a per-layer view or a partial result); pass "
                             "boundary=False or use the complete partition")
        plot_decision_boundary(part, ax=ax, level=level, color=boundary_color,
                               linewidth=boundary_linewidth)
        from matplotlib.lines import Line2D

        name = "decision boundary" if part.G.shape[1] > 1 else f"level set f = {level:g}"
        handles.append(Line2D([], [], color=boundary_color, lw=boundary_linewidth, label=name))

    # -- data points and anchors --
    if points is not None:
        _scatter_points(ax, part, points, point_labels)
    if anchors and slc.anchors is not None:
        _draw_anchors(ax, slc, anchor_labels)

    _set_domain_view(ax, slc)
    if colorbar and mappable is not None:
        ax.figure.colorbar(mappable, ax=ax, shrink=0.8, label=label)
    if legend and handles:
        _legend(ax, handles, legend)
    return ax


#: Region count from which :func:`plot_partition` rasterizes the fills by default.
RASTERIZE_ABOVE = 10_000
#: Edge count above which each layer's edges are drawn as one NaN-separated path.
MERGE_EDGES_ABOVE = 20_000


def edge_linewidth(n_regions: int, base: float = 0.5) -> float:
    """Default edge width (points) for a picture of ``n_regions`` regions.

    ``base`` up to 2,000 regions, then ``base * sqrt(2000 / n_regions)`` (edges thin out as
    regions shrink, keeping the ink per area about constant), at least 0.05.

    Examples
    --------
    >>> edge_linewidth(500), round(edge_linewidth(68_000), 3)
    (0.5, 0.086)
    """
    return float(max(base * min(1.0, math.sqrt(2000 / max(n_regions, 1))), 0.05))


def _merged_by_layer(seg: np.ndarray, lay: np.ndarray, colors: np.ndarray):
    """Segments (E, 2, 2) sorted by layer -> one NaN-broken polyline per layer, and colours."""
    starts = np.flatnonzero(np.r_[True, lay[1:] != lay[:-1]])
    ends = np.r_[starts[1:], len(seg)]
    gap = np.full((len(seg), 1, 2), np.nan)
    pts = np.concatenate([seg, gap], axis=1)  # (E, 3, 2): a, b, NaN
    lines = [pts[a:b].reshape(-1, 2)[:-1] for a, b in zip(starts, ends)]  # one per layer
    return lines, colors[starts]


def _legend(ax, handles, where) -> None:
    if where == "below":
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.11),
                  ncols=len(handles) if len(handles) <= 7 else math.ceil(len(handles) / 2),
                  fontsize="small", frameon=False,
                  handlelength=1.6, columnspacing=1.2)
    else:
        ax.legend(handles=handles, loc="best" if where is True else where, fontsize="small",
                  framealpha=0.92, handlelength=1.6)


def _rgba(c: Any) -> np.ndarray:
    from matplotlib.colors import to_rgba

    return np.asarray(to_rgba(c))


def _fan_triangles(part) -> np.ndarray:
    """Fan triangulation of every region, vertex ids (T, 3) into ``part.vertices``."""
    counts = np.diff(part.offsets)
    nt = np.maximum(counts - 2, 0)
    reg = np.repeat(np.arange(len(counts)), nt)
    k = np.arange(nt.sum()) - np.repeat(np.cumsum(nt) - nt, nt) + 1  # 1..n-2 within region
    o = part.offsets[:-1][reg]
    pv = part.polygon_vertices
    return np.stack([pv[o], pv[o + k], pv[o + k + 1]], 1)


def _gouraud_output(ax, part, output: int, cmap, alpha: float):
    """Exact picture of a continuous piecewise-linear output: linear interpolation of the
    vertex values over a triangulation that refines the partition."""
    from matplotlib.tri import Triangulation

    reg = np.repeat(np.arange(part.n_regions), np.diff(part.offsets))
    P = part.vertices[part.polygon_vertices]
    F = np.einsum("md,md->m", part.G[reg, output], P) + part.h[reg, output]
    val = np.empty(len(part.vertices))
    val[part.polygon_vertices] = F  # the network is continuous: all regions agree at a vertex
    tri = Triangulation(part.vertices[:, 0], part.vertices[:, 1], _fan_triangles(part))
    m = float(np.max(np.abs(val))) or 1.0
    mesh = ax.tripcolor(tri, val, shading="gouraud", cmap=cmap, vmin=-m, vmax=m, alpha=alpha)
    mesh.set_gid("regions")
    return mesh


def _scatter_points(ax, part, points, labels) -> None:
    arr = _numpy(points)
    st = arr.reshape(-1, 2) if arr.ndim == 2 and arr.shape[1] == 2 and part.slice.in_features != 2 \
        else part.slice.project(arr)
    if labels is None:
        c = "k"
    else:
        lab = _numpy(labels).astype(np.int64).reshape(-1)
        if len(lab) != len(st):
            raise InputError(f"{len(lab)} point labels for {len(st)} points")
        base = class_colors(max(int(lab.max()) + 1, 2))[lab]
        c = base.copy()
        c[:, :3] *= 0.75  # darker than the region tints
    sc = ax.scatter(st[:, 0], st[:, 1], s=9, c=c, edgecolors="white", linewidths=0.35, zorder=6)
    sc.set_gid("points")


def _draw_anchors(ax, slc, labels) -> None:
    a = slc.anchors
    if labels is None:
        labels = [f"$x_{{{i + 1}}}$" for i in range(len(a))]
    sc = ax.scatter(a[:, 0], a[:, 1], s=46, c="white", edgecolors="black", linewidths=1.4,
                    zorder=8)
    sc.set_gid("anchors")
    cen = a.mean(0)
    scale = slc.scale
    for p, text in zip(a, labels):  # the three anchors, not per region
        d = p - cen
        d = d / (np.linalg.norm(d) or 1.0)
        q = p + 0.035 * scale * d
        ax.annotate(text, q, ha="center", va="center", fontsize=11, zorder=9,
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))


def plot_decision_boundary(partition, ax=None, *, level: float = 0.0, color: Any = BOUNDARY_COLOR,
                           linewidth: float = 2.2, by_pair: bool = False, halo: bool = True):
    r"""Draw the exact decision boundary (or the level set of a one-output network).

    For :math:`C \ge 2` classes the boundary is
    :math:`\{x : f_c(x) = f_{c'}(x) \ge f_m(x)\ \forall m\}`, a union of straight segments,
    one per region it crosses (see :meth:`Partition.decision_boundary`); for one output it
    is the level set :math:`f = \text{level}`.

    Parameters
    ----------
    partition : Partition
        A complete partition (with output maps).
    ax : Axes, optional
    level : float
        Level for one-output networks.
    color : colour
        Used unless ``by_pair``.
    linewidth : float
    by_pair : bool
        Colour each segment by the pair of classes that tie on it (a blend of their colours).
    halo : bool
        Draw a thin white outline under the line so it stands out on any fill.

    Returns
    -------
    Axes

    Raises
    ------
    InputError
        The partition has no output maps.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import torch, maxaffine
    >>> _ = torch.manual_seed(1)
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> part = maxaffine.partition_slice(net, maxaffine.Slice.box((-3, 3, -3, 3)), progress=False)
    >>> ax = maxaffine.plot.plot_decision_boundary(part)
    >>> len(ax.collections[0].get_segments()) == len(part.decision_boundary().segments)
    True
    """
    from matplotlib import patheffects
    from matplotlib.collections import LineCollection

    created = ax is None
    ax = _new_ax(ax)
    db = partition.decision_boundary(level)
    if by_pair and len(db.segments):
        pal = class_colors(max(int(db.classes.max()) + 1, 2))
        colors = 0.5 * (pal[db.classes[:, 0]] + pal[db.classes[:, 1]])
    else:
        colors = [color]
    lc = LineCollection(db.segments, colors=colors, linewidths=linewidth, capstyle="round",
                        joinstyle="round", zorder=5)
    if halo:
        lc.set_path_effects([patheffects.Stroke(linewidth=linewidth + 1.6, foreground="white"),
                             patheffects.Normal()])
    lc.set_gid("decision-boundary")
    ax.add_collection(lc, autolim=False)
    if created:
        _set_domain_view(ax, partition.slice)
    return ax


def plot_subdivision(partition, *, layers: Sequence[int | str] | None = None, axes=None,
                     color_by: str | None = "tile", ncols: int | None = None,
                     panel_size: float = 3.6, boundary: bool = False, titles: bool = True,
                     legend: bool = True, **kwargs):
    r"""Multi-panel figure of the subdivision layer by layer.

    Panel :math:`\ell` shows ``partition.upto(ℓ)``: the cells of the codes of layers
    :math:`1..\ell`. Layer 1 cuts the slice by straight lines into convex tiles; the lines
    of later layers bend where they cross earlier boundaries (each is the zero set of a
    continuous piecewise-affine function), and a later layer's own regions are non-convex
    unions of cells (see ``color_by="layer_code"``). All panels share their limits.

    Parameters
    ----------
    partition : Partition
        A partition with per-layer history (from :func:`maxaffine.partition_slice`).
    layers : sequence of int or str, optional
        Layers to show (indices into ``partition.layers`` or names); default all.
    axes : sequence of Axes, optional
        At least ``len(layers)`` axes to draw into.
    color_by : {"tile", "code", "layer_code", None}, or any :func:`plot_partition` colouring for the
        complete last panel
    ncols : int, optional
        Columns of the panel grid (default up to 4).
    panel_size : float
        Inches per panel.
    boundary : bool
        Draw the decision boundary on the final (complete) panel.
    titles : bool
        Title each panel with its layer and region count.
    legend : bool
        A figure legend of the edge colours by layer (below the panels).
    **kwargs
        Passed to :func:`plot_partition` (``linewidth``, ``rasterized``, ``anchors``, ``cmap``...).

    Returns
    -------
    ndarray of Axes, shape (n_panels,)
        The panels (``axes[0].figure`` is the figure).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import torch, maxaffine
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 6), torch.nn.ReLU(), torch.nn.Linear(6, 6),
    ...                           torch.nn.ReLU(), torch.nn.Linear(6, 2))
    >>> part = maxaffine.partition_slice(net, maxaffine.Slice.box((-2, 2, -2, 2)), progress=False)
    >>> axes = maxaffine.plot.plot_subdivision(part)
    >>> drawn = [len(a.collections[0].get_paths()) for a in axes]
    >>> drawn == [part.upto(i).n_regions for i in range(2)]
    True
    """
    if not partition.history:
        raise InputError("this partition has no per-layer history; compute it with "
                         "maxaffine.partition_slice")
    n_avail = len(partition.history)
    if layers is None:
        idx = list(range(n_avail))
    else:
        idx = []
        for l in layers:
            if isinstance(l, str):
                if l not in partition.layers:
                    raise InputError(f"no layer {l!r}; layers are {partition.layers}")
                idx.append(partition.layers.index(l))
            else:
                i = int(l)
                if not -len(partition.layers) <= i < len(partition.layers):
                    raise InputError(f"layer index {i} out of range for {len(partition.layers)} "
                                     f"layers")
                idx.append(i % len(partition.layers))
    if not idx:
        raise InputError("no layers to show")
    n = len(idx)
    if axes is None:
        nc = ncols or min(n, 4)
        nr = math.ceil(n / nc)
        axes = _panel_grid(n, nr, nc, (panel_size * nc, panel_size * nr + 0.25), share=True)
    else:
        axes = _given_axes(axes, n, "panels")
    final = len(partition.layers) - 1
    kwargs.setdefault("linewidth", edge_linewidth(partition.n_regions, 0.8))
    for i, ax in zip(idx, axes):
        sub = partition.upto(i)
        cb = color_by
        if sub.G is None and cb in ("class", "output", "slope"):
            cb = "code"  # earlier layers have no output map; colour them by code
        draw_db = boundary and i == final and sub.G is not None
        plot_partition(sub, color_by=cb, ax=ax, boundary=draw_db, legend=False, **kwargs)
        if titles:
            ax.set_title(f"{_layer_label(i, partition.layers[i])}: {sub.n_regions:,} regions",
                         fontsize="medium")
        spec = ax.get_subplotspec()
        if spec is not None and not spec.is_first_col():
            ax.set_ylabel("")
    if legend:
        from matplotlib.lines import Line2D

        pal = layer_colors(len(partition.layers))
        shown = sorted({j for i in idx for j in range(i + 1)})
        handles = [Line2D([], [], color=pal[j], lw=1.5, label=_layer_label(j, partition.layers[j]))
                   for j in shown]
        if boundary and final in idx and partition.G is not None:
            handles.append(Line2D([], [], color=kwargs.get("boundary_color", BOUNDARY_COLOR),
                                  lw=2.2, label="decision boundary"))
        axes[0].figure.legend(handles=handles, loc="outside lower center",
                              ncols=min(len(handles), 6), fontsize="small", frameon=False)
    return np.asarray(list(axes), dtype=object)


# -- paths --------------------------------------------------------------------------------
def plot_path(path_partition, ax=None, *, outputs: Sequence[int] | None = None,
              x: str = "arclength", shade: bool = True, breakpoints: bool = True,
              vertex_labels: Sequence[str] | None = None, legend: bool = True,
              linewidth: float = 1.6):
    r"""Outputs along a path with the exact breakpoints of the linear regions.

    Between consecutive knots the network is affine in the path parameter, so the output
    curves are drawn exactly as polylines through the knots. Each maximal interval of
    constant code (a piece) is shaded with its region's colour (:func:`code_colors` of the
    full code, so a region revisited by the path has the same colour, and the colours match
    :func:`plot_partition` for the same layers); breakpoints are thin vertical lines.

    Parameters
    ----------
    path_partition : PathPartition
        From :func:`maxaffine.partition_path`.
    ax : Axes, optional
    outputs : sequence of int, optional
        Output indices to draw (default all, up to 10).
    x : {"arclength", "tau"}
        Horizontal axis: input-space distance along the path, or the polyline parameter
        (segment ``k`` spans ``[k, k+1]``).
    shade : bool
        Shade the pieces by region.
    breakpoints : bool
        Mark the breakpoints.
    vertex_labels : sequence of str, optional
        Labels of the polyline vertices (default :math:`x_1, x_2, \ldots`).
    legend : bool
    linewidth : float

    Returns
    -------
    Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import torch, maxaffine
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> path = maxaffine.partition_path(net, torch.tensor([[-2.0, 0.0], [2.0, 1.0]]))
    >>> ax = maxaffine.plot.plot_path(path)
    >>> len(ax.collections[0].get_paths()) == path.n_pieces
    True
    """
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.transforms import blended_transform_factory

    if x not in ("arclength", "tau"):
        raise InputError(f"x must be 'arclength' or 'tau'; got {x!r}")
    ax = _new_ax(ax, figsize=(7.0, 3.4))
    pp = path_partition
    knots = np.asarray(pp.knots, float)
    xs = np.asarray(pp.arclength, float) if x == "arclength" else knots
    Y = np.asarray(pp.outputs, float).reshape(len(knots), -1)
    C = Y.shape[1]
    sel = list(range(min(C, 10))) if outputs is None else [int(o) for o in outputs]
    bad = [o for o in sel if not 0 <= o < C]
    if bad:
        raise InputError(f"outputs {bad} out of range for {C} outputs")
    to_x = lambda tau: np.interp(tau, knots, xs)  # noqa: E731
    edges = np.r_[knots[0], np.asarray(pp.breakpoints, float), knots[-1]]
    bx = to_x(edges)
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    if shade:
        face = code_colors(pp.codes) if pp.codes and pp.codes.batch_size else \
            np.tile(_rgba("0.9"), (pp.n_pieces, 1))
        rect = np.stack([np.stack([bx[:-1], np.zeros(pp.n_pieces)], 1),
                         np.stack([bx[1:], np.zeros(pp.n_pieces)], 1),
                         np.stack([bx[1:], np.ones(pp.n_pieces)], 1),
                         np.stack([bx[:-1], np.ones(pp.n_pieces)], 1)], 1)
        pc = PolyCollection(rect, facecolors=face, edgecolors="none", transform=trans,
                            antialiaseds=False, zorder=0)
        pc.set_gid("path-pieces")
        ax.add_collection(pc, autolim=False)
    if breakpoints and len(pp.breakpoints):
        b = bx[1:-1]
        seg = np.stack([np.stack([b, np.zeros_like(b)], 1), np.stack([b, np.ones_like(b)], 1)], 1)
        lc = LineCollection(seg, colors="0.45", linewidths=0.5, transform=trans, zorder=1)
        lc.set_gid("path-breakpoints")
        ax.add_collection(lc, autolim=False)
    pal = class_colors(max(C, 2))
    segs = np.stack([np.stack([xs, Y[:, o]], 1) for o in sel])
    lines = LineCollection(segs, colors=pal[sel] if C > 1 else ["k"], linewidths=linewidth,
                           zorder=3)
    lines.set_gid("path-outputs")
    ax.add_collection(lines)
    ax.set_xlim(xs[0], xs[-1])
    lo, hi = float(Y[:, sel].min()), float(Y[:, sel].max())
    pad = 0.06 * (hi - lo or 1.0)
    ax.set_ylim(lo - pad, hi + pad)
    # polyline vertices on a secondary x axis (anchor inputs)
    n_vert = len(pp.points) - (1 if pp.closed else 0)
    tv = np.arange(len(pp.points), dtype=float)
    if vertex_labels is None:
        vertex_labels = [f"$x_{{{i + 1}}}$" for i in range(n_vert)]
        if pp.closed:
            vertex_labels = list(vertex_labels) + [vertex_labels[0]]
    top = ax.secondary_xaxis("top")
    top.set_ticks(to_x(tv), labels=list(vertex_labels)[: len(tv)])
    ax.set_xlabel("distance along the path" if x == "arclength" else r"path parameter $\tau$")
    ax.set_ylabel("output")
    if legend and C > 1:
        from matplotlib.lines import Line2D

        ax.legend(handles=[Line2D([], [], color=pal[o], lw=linewidth, label=f"output {o}")
                           for o in sel], fontsize="small", loc="best", framealpha=0.9,
                  ncols=2 if len(sel) > 4 else 1)
    ax.set_title(f"{pp.n_pieces} pieces, {len(pp.breakpoints)} breakpoints, "
                 f"{pp.n_regions} regions", fontsize="medium")
    return ax


# -- images ------------------------------------------------------------------------------
def _as_image(arr: np.ndarray, shape: Sequence[int] | None, what: str) -> np.ndarray:
    """One sample as a 2D (H, W) or RGB (H, W, 3) image, or 1D (L,) for signals."""
    a = np.asarray(arr, float)
    if shape is not None:
        a = a.reshape(tuple(shape))
    a = np.squeeze(a)
    if a.ndim == 1:
        r = math.isqrt(a.size)
        if shape is None and r * r == a.size and r > 1:
            return a.reshape(r, r)
        return a
    if a.ndim == 2:
        return a
    if a.ndim == 3 and a.shape[0] in (3, 4) and shape is None:
        return np.moveaxis(a[:3], 0, -1)
    if a.ndim == 3:
        return a.sum(0)
    raise InputError(f"cannot show {what} of shape {arr.shape} as an image; pass shape=(H, W)")


def plot_anchor_images(partition_or_slice, images: Any = None, ax=None, *,
                       shape: Sequence[int] | None = None, size: float = 0.24,
                       cmap: Any = "gray_r", labels: Sequence[str] | None = None,
                       frame_color: Any = "black"):
    r"""Draw the anchor inputs of a slice as images at the corners of its triangle.

    For a slice through three inputs (``Slice.through(x1, x2, x3)``) each image is placed
    outside the domain beyond its anchor point, in the direction away from the anchors'
    centroid, and the axes limits grow to include the images. Gray-scale images share one
    intensity scale.

    Parameters
    ----------
    partition_or_slice : Partition or Slice
        Must have anchors.
    images : array, shape (A, *in_shape), optional
        The images to draw (default: the anchor inputs reconstructed from the slice,
        :math:`x_0 + s u + t v` at each anchor).
    ax : Axes, optional
        Typically the axes of :func:`plot_partition`.
    shape : (H, W), optional
        Image shape for flattened inputs (default: square if the length is a square,
        e.g. 64 -> 8x8, 784 -> 28x28; (1, H, W) is squeezed, (3, H, W) shown as RGB).
    size : float
        Image side as a fraction of the domain's diameter.
    cmap : str or Colormap
    labels : sequence of str, optional
        Captions under the images.
    frame_color : colour

    Returns
    -------
    Axes

    Raises
    ------
    InputError
        No anchors, or images that cannot be shown.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np, maxaffine
    >>> x = np.random.default_rng(0).random((3, 1, 8, 8))
    >>> slc = maxaffine.Slice.through(x[0], x[1], x[2])
    >>> ax = maxaffine.plot.plot_anchor_images(slc)
    >>> len([im for im in ax.images if im.get_gid() == "anchor-image"])
    3
    """
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Rectangle

    slc = getattr(partition_or_slice, "slice", partition_or_slice)
    if getattr(slc, "anchors", None) is None:
        raise InputError("this slice has no anchor inputs; build it with Slice.through(x1, x2, x3)")
    created = ax is None
    ax = _new_ax(ax)
    anchors = slc.anchors
    if images is None:
        imgs = _numpy(slc.points(anchors)).reshape(len(anchors), -1)
    else:
        imgs = _numpy(images).reshape(len(anchors), -1) if _numpy(images).shape[0] == len(anchors) \
            else None
        if imgs is None:
            raise InputError(f"give one image per anchor ({len(anchors)}); got array of shape "
                             f"{_numpy(images).shape}")
    in_shape = tuple(shape) if shape is not None else (slc.in_shape if images is None
                                                       else _numpy(images).shape[1:])
    pics = [_as_image(im.reshape(in_shape), shape, "an anchor image") for im in imgs]
    if any(p.ndim == 1 for p in pics):
        raise InputError(f"inputs of shape {slc.in_shape} are not images; pass shape=(H, W)")
    gray = pics[0].ndim == 2
    vmin = min(float(p.min()) for p in pics) if gray else None
    vmax = max(float(p.max()) for p in pics) if gray else None
    cen = anchors.mean(0)
    side = size * slc.scale
    boxes, links = [], []
    for i, (p, img) in enumerate(zip(anchors, pics)):  # one inset per anchor, not per region
        d = p - cen
        d = d / (np.linalg.norm(d) or 1.0)
        h, w = img.shape[:2]
        hw, hh = (side / 2, side / 2 * h / w) if w >= h else (side / 2 * w / h, side / 2)
        # centre beyond the domain along d (past its farthest vertex in that direction),
        # far enough that the box clears it
        reach = 1.0 / max(abs(d[0]) / hw if hw else 0, abs(d[1]) / hh if hh else 0, 1e-12)
        beyond = max(float(np.max((slc.domain - p) @ d)), 0.0)
        c = p + d * (beyond + reach + 0.02 * slc.scale)
        ext = (c[0] - hw, c[0] + hw, c[1] - hh, c[1] + hh)
        if not gray:
            lo_, hi_ = float(img.min()), float(img.max())
            img = (img - lo_) / (hi_ - lo_ or 1.0)
        im = ax.imshow(img, extent=ext, cmap=cmap if gray else None, vmin=vmin, vmax=vmax,
                       interpolation="nearest", zorder=7, aspect="auto")
        im.set_gid("anchor-image")
        ax.add_patch(Rectangle((ext[0], ext[2]), 2 * hw, 2 * hh, fill=False, ec=frame_color,
                               lw=1.0, zorder=7.5))
        if labels is not None:  # caption on the side away from the triangle
            above = d[1] > 0.3
            ax.text(c[0], ext[3] + 0.012 * slc.scale if above else ext[2] - 0.012 * slc.scale,
                    labels[i], ha="center", va="bottom" if above else "top",
                    fontsize="small", zorder=8)
        boxes.append(ext)
        links.append([p, c - d * reach])
    lc = LineCollection(np.array(links), colors=[frame_color], linewidths=0.8, linestyles=":",
                        zorder=6.5)
    lc.set_gid("anchor-links")
    ax.add_collection(lc, autolim=False)
    b = np.array(boxes)
    if created:
        _set_domain_view(ax, slc)
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    pad = 0.02 * slc.scale
    extra = 0.05 * slc.scale if labels is not None else 0.0
    ax.set_xlim(min(x0, b[:, 0].min() - pad), max(x1, b[:, 1].max() + pad))
    ax.set_ylim(min(y0, b[:, 2].min() - pad - extra), max(y1, b[:, 3].max() + pad + extra))
    ax.set_aspect("equal")
    return ax


def plot_templates(templates: Any, *, shape: Sequence[int] | None = None, axes=None,
                   titles: Sequence[str] | None = None, cmap: Any = "RdBu_r",
                   share_scale: bool = True, ncols: int | None = None, panel_size: float = 1.8,
                   colorbar: bool = True):
    r"""Show templates (rows of the slope :math:`A[x]`, shaped like the input) as images.

    :math:`f_c(x) = \langle A_c[x], x \rangle + b_c[x]`: template :math:`A_c[x]` is the
    matched filter of class :math:`c` on the region of :math:`x`. A diverging colormap
    centred at 0 shows where increasing a pixel raises (red) or lowers (blue) the score.

    Parameters
    ----------
    templates : array, shape (C, *in_shape)
        E.g. ``maxaffine.templates(model, x)[0]`` for one input ``x``. Images of shape
        (1, H, W) or (H, W), flattened square images (64 -> 8x8, 784 -> 28x28), multi-channel
        images (shown as the sum over channels) or 1D signals (drawn as curves).
    shape : (H, W), optional
        Reshape each template to this.
    axes : sequence of Axes, optional
    titles : sequence of str, optional
        Default ``"class c"``.
    cmap : str or Colormap
    share_scale : bool
        One symmetric colour scale ``[-m, m]`` for all templates (else one per template).
    ncols : int, optional
    panel_size : float
    colorbar : bool
        One colorbar for the figure (with ``share_scale``).

    Returns
    -------
    ndarray of Axes, shape (C,)

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from maxaffine.plot import plot_templates
    >>> axes = plot_templates(np.random.default_rng(0).standard_normal((10, 1, 8, 8)))
    >>> len(axes), axes[0].images[0].get_clim()[0] == -axes[0].images[0].get_clim()[1]
    (10, True)
    """
    T = _numpy(templates)
    if T.ndim < 2:
        raise InputError(f"templates must have shape (C, *in_shape); got {T.shape}")
    C = T.shape[0]
    pics = [_as_image(T[c], shape, "a template") for c in range(C)]
    if any(p.ndim == 3 for p in pics):
        pics = [p.sum(-1) if p.ndim == 3 else p for p in pics]
    if axes is None:
        nc = ncols or min(C, 5 if pics[0].ndim == 2 else 2)
        nr = math.ceil(C / nc)
        w = panel_size if pics[0].ndim == 2 else 2.2 * panel_size
        axes = _panel_grid(C, nr, nc, (w * nc + (0.8 if colorbar else 0), panel_size * nr + 0.2))
    else:
        axes = _given_axes(axes, C, "templates")
    m_all = max(float(np.abs(p).max()) for p in pics) or 1.0
    im = None
    for c, (ax, p) in enumerate(zip(axes, pics)):  # one panel per class
        m = m_all if share_scale else (float(np.abs(p).max()) or 1.0)
        if p.ndim == 2:
            im = ax.imshow(p, cmap=cmap, vmin=-m, vmax=m, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            ax.axhline(0, color="0.6", lw=0.8)
            ax.plot(np.arange(len(p)), p, color="#1d3f8f", lw=1.2)
            ax.set_ylim(-1.05 * m, 1.05 * m)
            ax.tick_params(labelsize="small")
        ax.set_title(titles[c] if titles is not None else f"class {c}", fontsize="small")
    if colorbar and share_scale and im is not None:
        axes[0].figure.colorbar(im, ax=list(axes), shrink=0.85, label="template value")
    return np.asarray(list(axes), dtype=object)


# -- power diagrams ----------------------------------------------------------------------
def plot_power_diagram(model, layer: int | str, slice_or_points, ax=None, *,
                       centroids: bool = True, circles: bool | None = None,
                       extent: str = "domain", color_by: str = "code", linewidth: float = 0.6,
                       max_circles: int = 16, legend: bool | str = "below"):
    r"""A layer's power-diagram cells with their centroids and radii.

    For one MASO layer with code :math:`q`, centroid :math:`\mu[q] = \sum_k A_{k,q_k}` and
    :math:`\mathrm{rad}[q] = \|\mu[q]\|^2 + 2\sum_k B_{k,q_k}`, the cell of :math:`x` is
    :math:`\arg\min_q \|x - \mu[q]\|^2 - \mathrm{rad}[q]` (a power diagram; for deeper layers
    it is restricted to each region of the earlier layers, see
    :func:`maxaffine.power_diagram`). On a slice with an orthonormal basis the restriction
    is again a power diagram, with the centroid projected onto the slice's plane,
    :math:`c = \Pi\mu`, and :math:`\mathrm{rad}' = \mathrm{rad} - \|\mu - \Pi\mu\|^2`. The
    cells are drawn exactly (``partition.upto(layer)``), centroids as dots in their cell's
    colour, and the circles of radius :math:`\sqrt{\max(\mathrm{rad}', 0)}` around them
    (drawn when the radius is positive; in a first-layer diagram adjacent circles meet the
    cell boundary at the same points, the radical axis).

    Parameters
    ----------
    model : nn.Module or Trace
    layer : int or str
        A piecewise layer: index into ``trace(model, x).piecewise`` or its name.
    slice_or_points : Slice, Partition, (s0, s1, t0, t1) bounds, or array (N, 2)
        Where to draw: the exact cells on a slice (a bounds tuple means the coordinate
        plane of a 2-input model; a Partition of this model is reused), or the cells of
        given points of a 2-input model (e.g. a grid), drawn as dots coloured by cell.
    ax : Axes, optional
    centroids : bool
        Draw the centroids :math:`\mu`.
    circles : bool or None
        Draw the power circles; None (default): for the first piecewise layer only (where
        the diagram is global) and when there are at most ``max_circles`` cells.
    extent : {"domain", "all"}
        Keep the view on the slice, or widen it to show all centroids and circles.
    color_by : {"code"}
        Cells coloured by the layer's own code (:func:`code_colors`).
    linewidth : float
    max_circles : int
        With ``circles=None``, draw circles only up to this many cells (they clutter).
    legend : bool or str
        As in :func:`plot_partition` (``"below"`` the axes by default).

    Returns
    -------
    Axes

    Raises
    ------
    InputError
        Unknown layer, points for a model that does not have 2 inputs, or a slice whose
        basis is not orthonormal (use ``Slice.through`` or a unit-vector box).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import torch, maxaffine
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> ax = maxaffine.plot.plot_power_diagram(net, 0, (-2, 2, -2, 2))
    >>> ax.get_title()
    'power diagram of layer 1'
    """
    from matplotlib.collections import EllipseCollection

    from .partition import Partition, Slice, partition_slice
    from .power import power_diagram
    from .trace import as_trace

    if color_by != "code":
        raise InputError(f"color_by must be 'code' for power diagrams; got {color_by!r}")
    if extent not in ("domain", "all"):
        raise InputError(f"extent must be 'domain' or 'all'; got {extent!r}")
    obj = slice_or_points
    if isinstance(obj, (tuple, list)) and len(obj) == 4 and np.ndim(obj) == 1:
        obj = Slice.box(tuple(float(b) for b in obj))
    if isinstance(obj, Partition):
        tr = obj.trace
    else:
        if isinstance(obj, Slice):
            example = obj.points(obj.domain[:2])
        else:
            example = torch.as_tensor(_numpy(obj)[:2])
        tr = as_trace(model, example)
    names = tuple(tr.piecewise)
    if isinstance(layer, str):
        if layer not in names:
            raise InputError(f"{layer!r} is not a piecewise layer; choose one of {names}")
        li = names.index(layer)
    else:
        li = int(layer)
        if not -len(names) <= li < len(names):
            raise InputError(f"layer index {li} out of range: the model has {len(names)} "
                             f"piecewise layers {names}")
        li %= len(names)
    name = names[li]
    ax = _new_ax(ax)
    handles = []
    from matplotlib.lines import Line2D

    if isinstance(obj, (Slice, Partition)):
        if isinstance(obj, Partition):
            part = obj.upto(name)
        else:
            part = partition_slice(tr, obj, layers=li + 1, progress=False)
        slc = part.slice
        Bm = slc.basis()
        if not np.allclose(Bm @ Bm.T, np.eye(2), atol=1e-9):
            raise InputError("power circles need a slice with an orthonormal basis (u, v); "
                             "use Slice.through(x1, x2, x3) or unit, orthogonal u and v")
        plot_partition(part, color_by="layer_code", ax=ax, boundary=False, linewidth=linewidth,
                       legend=False)
        X = slc.points(part.interior)
        pdg = power_diagram(tr, name, X)
        mu = _numpy(pdg.centroid).reshape(part.n_regions, -1)
        rad = _numpy(pdg.radius).reshape(-1)
        c_st = slc.project(mu)
        off_plane = mu - (slc.origin[None] + c_st @ Bm)
        rad_st = rad - np.einsum("nd,nd->n", off_plane, off_plane)
        # cells sharing the layer's own code share the centroid (first layer: globally)
        key = _flat_codes({name: part.codes[name]})
        face = code_colors({name: part.codes[name]})
        _, first = np.unique(np.c_[key.astype(np.float64), np.round(c_st, 9)], axis=0,
                             return_index=True)
        c_st, rad_st, face = c_st[first], rad_st[first], face[first]
        view_pts = [slc.domain]
    else:
        pts = _numpy(obj)
        if tr.in_features != 2:
            raise InputError(f"points mode needs a 2-input model; this one takes {tr.in_shape}; "
                             f"pass a Slice instead")
        pts = pts.reshape(-1, 2)
        pdg = power_diagram(tr, name, torch.as_tensor(pts).reshape(-1, *tr.in_shape))
        code = pdg.code.reshape(len(pts), -1)
        face = code_colors(code)
        sc = ax.scatter(pts[:, 0], pts[:, 1], c=face, s=6, marker="s", linewidths=0)
        sc.set_gid("regions")
        mu = _numpy(pdg.centroid).reshape(len(pts), -1)
        rad = _numpy(pdg.radius).reshape(-1)
        _, first = np.unique(code.numpy(), axis=0, return_index=True)
        c_st, rad_st, face = mu[first], rad[first], face[first]
        view_pts = [pts]
        ax.set_aspect("equal")
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        lo, hi = pts.min(0), pts.max(0)
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
    dark = face.copy()
    dark[:, :3] *= 0.55
    if circles is None:
        circles = li == 0 and len(c_st) <= max_circles
    if circles:
        pos = rad_st > 0
        r = np.sqrt(rad_st[pos])
        ec = EllipseCollection(2 * r, 2 * r, np.zeros(len(r)), units="xy", offsets=c_st[pos],
                               offset_transform=ax.transData, facecolors="none",
                               edgecolors=dark[pos], linewidths=1.0, linestyles="--", zorder=6,
                               alpha=0.8)
        ec.set_gid("power-circles")
        ax.add_collection(ec)
        handles.append(Line2D([], [], color="0.3", ls="--", lw=0.9,
                              label=r"circle $\sqrt{\mathrm{rad}[q]}$"))
        if len(r):
            view_pts.append(np.r_[c_st[pos] - r[:, None], c_st[pos] + r[:, None]])
    if centroids:
        sc = ax.scatter(c_st[:, 0], c_st[:, 1], s=28, c=face, edgecolors=dark, linewidths=1.3,
                        zorder=7)
        sc.set_gid("power-centroids")
        handles.append(Line2D([], [], marker="o", ls="", mfc="white", mec="0.3",
                              label=r"centroid $\mu[q]$"))
        view_pts.append(c_st)
    if extent == "all":
        allp = np.concatenate(view_pts)
        lo, hi = allp.min(0), allp.max(0)
        d = 0.03 * (hi - lo)
        ax.set_xlim(lo[0] - d[0], hi[0] + d[0])
        ax.set_ylim(lo[1] - d[1], hi[1] + d[1])
    ax.set_title(f"power diagram of {_layer_label(li, name)}", fontsize="medium")
    if legend and handles:
        _legend(ax, handles, legend)
    return ax
