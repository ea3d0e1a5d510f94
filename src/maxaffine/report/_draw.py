"""Private helpers of the reports (matplotlib is imported inside the functions)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


def boundary_segments(part) -> np.ndarray:
    """Decision-boundary segments (S, 2, 2) (none inside regions where the top two tie)."""
    return part.decision_boundary().segments


def draw_boundary(ax, segments: np.ndarray, *, color: str = "#111111", lw: float = 2.2):
    """Draw boundary segments with a thin white halo."""
    from matplotlib.collections import LineCollection

    if len(segments):
        ax.add_collection(LineCollection(segments, colors="white", linewidths=lw + 1.6,
                                         zorder=5, capstyle="round", gid="decision-halo"))
        ax.add_collection(LineCollection(segments, colors=color, linewidths=lw, zorder=6,
                                         capstyle="round", gid="decision-boundary"))
    return ax


def gif_bytes(draw: Callable[[object, int], None], n_frames: int, *, size: float = 3.4,
              fps: int = 6, dpi: int = 64) -> bytes:
    """An animated GIF: ``draw(ax, i)`` draws frame ``i`` on a cleared axes."""
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    fig, ax = plt.subplots(figsize=(size, size))

    def frame(i):
        ax.clear()
        draw(ax, i)
        return ()

    anim = FuncAnimation(fig, frame, frames=n_frames, blit=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "anim.gif"
        anim.save(path, writer=PillowWriter(fps=fps), dpi=dpi)
        data = path.read_bytes()
    plt.close(fig)
    return data


def draw_layer_edges(ax, part, layer: int, *, width: float = 2.0, color=None):
    """Draw the region edges created by ``layer`` (0-based index into ``part.layers``) on top."""
    from matplotlib.collections import LineCollection

    from .. import plot

    e = part.edges
    sel = e["layer"] == layer
    if color is None:
        color = plot.layer_colors(max(len(part.layers), 1))[layer]
    if sel.any():
        ax.add_collection(LineCollection(part.vertices[e["vertices"][sel]], colors=[color],
                                         linewidths=width, zorder=4, capstyle="round",
                                         gid=f"edges-layer-{layer}"), autolim=False)
    return ax
