"""Drawing time of ``plot_partition`` vs one matplotlib patch per region.

A 2 → 48 → 48 → 1 ReLU MLP (float64, seed 0) sliced on [−2, 2]² has a few thousand regions.
``plot_partition`` draws them as one PolyCollection; the obvious alternative adds one
``Polygon`` patch per region. Both render to an Agg canvas; times are medians of interleaved
repeats, one thread.

Run: python benchmarks/plot.py
"""

from __future__ import annotations

import statistics
import time

import matplotlib

matplotlib.use("Agg")  # a script may choose the backend; the library never does

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Polygon  # noqa: E402
from torch import nn  # noqa: E402

import maxaffine  # noqa: E402
from maxaffine import plot  # noqa: E402


def network(sizes: list[int], seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double().eval()


def draw_library(part) -> float:
    t = time.perf_counter()
    ax = plot.plot_partition(part)
    ax.figure.canvas.draw()
    elapsed = time.perf_counter() - t
    plt.close(ax.figure)
    return elapsed


def draw_patches(part) -> float:
    t = time.perf_counter()
    fig, ax = plt.subplots()
    for polygon in part.polygons():
        ax.add_patch(Polygon(polygon, closed=True, linewidth=0.3, edgecolor="k"))
    ax.autoscale_view()
    fig.canvas.draw()
    elapsed = time.perf_counter() - t
    plt.close(fig)
    return elapsed


def main(repeats: int = 5) -> None:
    torch.set_num_threads(1)
    part = maxaffine.partition_slice(network([2, 48, 48, 1], seed=0),
                                     maxaffine.Slice.box((-2, 2, -2, 2)), progress=False)
    ours, naive = [], []
    for _ in range(repeats):
        ours.append(draw_library(part))
        naive.append(draw_patches(part))
    a, b = statistics.median(ours), statistics.median(naive)
    print("| regions | plot_partition (s) | one patch per region (s) | ratio |")
    print("|---|---|---|---|")
    print(f"| {part.n_regions} | {a:.3f} | {b:.3f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
