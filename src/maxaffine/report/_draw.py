"""Private drawing helpers of the report (matplotlib is imported inside the functions).

Dense-grid pictures of VQ codes: every pixel gets the code of its centre, regions are the
sets of pixels with equal codes (prefix of the first ``n_layers`` piecewise layers), and
region edges are drawn where neighbouring pixels differ. Grids are lower bounds on the
region count (small regions can fall between pixels); the exact partitions come from
:func:`maxaffine.partition_slice`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..affine import codes as _codes
from ..trace import Trace

CLASS_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
                "#7f7f7f", "#bcbd22", "#17becf")


def class_color(c: int) -> str:
    return CLASS_COLORS[int(c) % len(CLASS_COLORS)]


@dataclass(frozen=True)
class GridCodes:
    """Region labels of the first layers and predicted classes on a regular grid.

    Attributes
    ----------
    labels : list of ndarray, shape (res, res)
        ``labels[l]`` labels the regions of the first ``l + 1`` piecewise layers.
    predicted : ndarray, shape (res, res)
        Argmax class (classification) or the output itself (single output).
    extent : tuple (s0, s1, t0, t1)
    """

    labels: list
    predicted: np.ndarray
    output: np.ndarray
    extent: tuple[float, float, float, float]

    def n_regions(self, n_layers: int | None = None) -> int:
        lab = self.labels[-1 if n_layers is None else n_layers - 1]
        return int(len(np.unique(lab)))


def grid_codes(tr: Trace, origin: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
               extent: tuple[float, float, float, float], res: int,
               chunk: int = 65536) -> GridCodes:
    """VQ codes of ``x(s, t) = origin + s u + t v`` on a ``res × res`` grid of pixel centres."""
    s0, s1, t0, t1 = extent
    s = s0 + (np.arange(res) + 0.5) * (s1 - s0) / res
    t = t0 + (np.arange(res) + 0.5) * (t1 - t0) / res
    S, T = np.meshgrid(s, t)  # rows = t (y), columns = s (x)
    st = torch.as_tensor(np.stack([S.ravel(), T.ravel()], 1), dtype=torch.float64)
    origin = origin.reshape(-1).double()
    basis = torch.stack([u.reshape(-1).double(), v.reshape(-1).double()])
    names = list(tr.piecewise)
    labels_per_layer: list[list[np.ndarray]] = [[] for _ in names]
    outputs = []
    with torch.no_grad():
        for i in range(0, len(st), chunk):
            x = (origin + st[i:i + chunk] @ basis).reshape(-1, *tr.in_shape)
            rec = tr.run(x)
            outputs.append(rec.output.reshape(len(x), -1).numpy())
            for l, name in enumerate(names):
                labels_per_layer[l].append(rec.codes[name].reshape(len(x), -1).numpy())
    out = np.concatenate(outputs)
    labels = []
    running = np.zeros(len(st), dtype=np.int64)
    for l in range(len(names)):
        codes_l = np.concatenate(labels_per_layer[l]).astype(np.int64)
        both = np.concatenate([running[:, None], codes_l], 1)
        running = np.unique(both, axis=0, return_inverse=True)[1].reshape(-1)
        labels.append(running.reshape(res, res).copy())
    if not labels:
        labels = [np.zeros((res, res), dtype=np.int64)]
    pred = out.argmax(1) if out.shape[1] > 1 else out[:, 0]
    return GridCodes(labels, pred.reshape(res, res), out.reshape(res, res, -1), extent)


def _edges(label: np.ndarray) -> np.ndarray:
    edge = np.zeros(label.shape, dtype=bool)
    edge[:, 1:] |= label[:, 1:] != label[:, :-1]
    edge[1:, :] |= label[1:, :] != label[:-1, :]
    return edge


def _region_colors(label: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(label.max()) + 1
    pastel = 0.55 + 0.4 * rng.random((n, 3))
    return pastel[label]


def draw_regions(ax, grid: GridCodes, n_layers: int | None = None, *, color_by: str = "region",
                 boundary: bool = True, edges: bool = True, seed: int = 0):
    """Regions of the first ``n_layers`` layers as pastel tiles with dark edges."""
    label = grid.labels[-1 if n_layers is None else n_layers - 1]
    if color_by == "class":
        import matplotlib.colors as mcolors

        base = np.array([mcolors.to_rgb(class_color(c)) for c in range(10)])
        img = 0.55 * base[grid.predicted.astype(int) % 10] + 0.45
        img = img * (0.9 + 0.1 * _region_colors(label, seed)[..., :1])
    else:
        img = _region_colors(label, seed)
    if edges:
        img = img.copy()
        img[_edges(label)] = (0.15, 0.15, 0.15)
    ax.imshow(img, origin="lower", extent=grid.extent, interpolation="nearest", aspect="auto")
    if boundary and grid.output.shape[-1] > 1:
        draw_decision_boundary(ax, grid)
    ax.set_xlim(grid.extent[:2])
    ax.set_ylim(grid.extent[2:])
    return ax


def draw_decision_boundary(ax, grid: GridCodes, color: str = "k", lw: float = 2.2):
    """The decision boundary: pixels where the argmax class differs from a neighbour's."""
    pred = grid.predicted.astype(int)
    res_t, res_s = pred.shape
    s0, s1, t0, t1 = grid.extent
    ds, dt = (s1 - s0) / res_s, (t1 - t0) / res_t
    segs = []
    ii, jj = np.nonzero(pred[:, 1:] != pred[:, :-1])
    for i, j in zip(ii, jj):
        x = s0 + (j + 1) * ds
        segs.append([(x, t0 + i * dt), (x, t0 + (i + 1) * dt)])
    ii, jj = np.nonzero(pred[1:, :] != pred[:-1, :])
    for i, j in zip(ii, jj):
        y = t0 + (i + 1) * dt
        segs.append([(s0 + j * ds, y), (s0 + (j + 1) * ds, y)])
    if segs:
        from matplotlib.collections import LineCollection

        ax.add_collection(LineCollection(segs, colors=color, linewidths=lw, capstyle="round"))
    return ax


def draw_points(ax, X: np.ndarray, y: np.ndarray, *, size: float = 10, edge: bool = True):
    colors = [class_color(c) for c in y]
    ax.scatter(X[:, 0], X[:, 1], c=colors, s=size, edgecolors="white" if edge else "none",
               linewidths=0.4, zorder=3)
    return ax


def legend_classes(ax, n: int, labels=None, **kw):
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", ls="", color=class_color(c),
                      label=(labels[c] if labels else f"class {c}")) for c in range(n)]
    ax.legend(handles=handles, **kw)
    return ax


def image_grid(images: np.ndarray, *, titles=None, ncols: int | None = None, cmap="gray",
               symmetric: bool = False, figsize_per: float = 1.1, suptitle: str | None = None):
    """A figure of small images (N, H, W); ``symmetric`` centres a diverging colormap at 0."""
    import matplotlib.pyplot as plt

    n = len(images)
    ncols = ncols or min(n, 10)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(figsize_per * ncols, figsize_per * nrows + 0.3),
                             squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if k >= n:
            continue
        img = images[k]
        if symmetric:
            m = float(np.abs(img).max()) or 1.0
            ax.imshow(img, cmap="RdBu_r", vmin=-m, vmax=m, interpolation="nearest")
        else:
            ax.imshow(img, cmap=cmap, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[k], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig
