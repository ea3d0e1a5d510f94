"""Pictures of exact linear-region partitions (the figures in docs/figures/partition-*.png).

1. ``partition-mlp.png``: a 2 -> 32 -> 32 -> 4 ReLU classifier trained on four spirals; its
   linear regions coloured by predicted class, region edges by layer, the exact decision
   boundary in black and the training points.
2. ``partition-subdivision.png``: the layer-by-layer subdivision of a narrower 3-layer
   network on the same data (layer 1: convex tiles; later layers bend inside them).
3. ``partition-digits.png``: a 64 -> 64 -> 64 -> 10 MLP on the 8x8 digits, sliced through
   three test digits of different classes, the digits drawn at the triangle's corners.

Run ``python examples/partition_picture.py [--out DIR] [--quick]``; the pictures go to
``partition-pictures/`` in the current folder (``--out docs/figures`` regenerates the committed
figures). ``--quick`` trains for a few epochs on fewer samples (a smoke test; the pictures are
then less tidy).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import maxaffine  # noqa: E402
from maxaffine import plot  # noqa: E402
from maxaffine.datasets import digits, toy2d  # noqa: E402
from maxaffine.training import accuracy, train  # noqa: E402

BOX = (-2.4, 2.4, -2.4, 2.4)


def mlp(sizes: list[int], seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def trained(sizes: list[int], data, epochs: int, seed: int = 0) -> nn.Sequential:
    net = mlp(sizes, seed)
    train(net, data.X_train, data.y_train, epochs=epochs, lr=1e-2, batch_size=128, seed=seed,
          progress=False)
    acc = accuracy(net, data.X_test, data.y_test)
    print(f"  {'-'.join(map(str, sizes))} MLP on {data.name}: test accuracy {acc:.3f}")
    return net.double().eval()


def figure_mlp(out: Path, quick: bool) -> Path:
    data = toy2d("spirals", n_samples=300 if quick else 1200)
    net = trained([2, 32, 32, 4], data, epochs=2 if quick else 150)
    t = time.perf_counter()
    part = maxaffine.partition_slice(net, maxaffine.Slice.box(BOX), progress=False)
    t_part = time.perf_counter() - t
    fig, axes = plt.subplots(1, 2, figsize=(12.0, 6.2))
    fig.subplots_adjust(wspace=0.04, top=0.9, bottom=0.12)
    t = time.perf_counter()
    plot.plot_partition(part, color_by="class", ax=axes[0], points=data.X_train,
                        point_labels=data.y_train, edges=True)
    plot.plot_partition(part, color_by="code", ax=axes[1], legend=False)
    axes[1].set_ylabel("")
    axes[1].tick_params(labelleft=False)
    leg = axes[0].get_legend()  # one legend for both panels, centred under the figure
    fig.legend(handles=leg.legend_handles, labels=[t.get_text() for t in leg.texts],
               loc="lower center", ncols=len(leg.texts), frameon=False, fontsize="small",
               bbox_to_anchor=(0.5, 0.0))
    leg.remove()
    t_draw = time.perf_counter() - t
    st = part.stats()
    axes[0].set_title("regions coloured by predicted class, training data", fontsize="medium")
    axes[1].set_title(f"{part.n_regions:,} linear regions, each its own colour",
                      fontsize="medium")
    fig.suptitle("A 2-32-32-4 ReLU network on four spirals: its exact linear regions and "
                 f"decision boundary (length {st.boundary_length:.2f})")
    path = out / "partition-mlp.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"  {part.n_regions} regions: partition {t_part:.2f} s, drawing {t_draw:.2f} s")
    return path


def figure_subdivision(out: Path, quick: bool) -> Path:
    data = toy2d("spirals", n_samples=300 if quick else 1200)
    net = trained([2, 10, 10, 10, 4], data, epochs=2 if quick else 100)
    part = maxaffine.partition_slice(net, maxaffine.Slice.box(BOX), progress=False)
    axes = plot.plot_subdivision(part, boundary=True, panel_size=4.0)
    fig = axes[0].figure
    fig.suptitle("Subdivision layer by layer (2-10-10-10-4 ReLU network on four spirals): "
                 "layer 1 cuts convex tiles, later layers bend inside them")
    path = out / "partition-subdivision.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def figure_digits(out: Path, quick: bool) -> Path:
    data = digits(image=False)
    net = trained([64, 64, 64, 10], data, epochs=1 if quick else 60)
    X, y = data.X_test.double(), data.y_test
    picks = [int(torch.nonzero(y == c)[0]) for c in (0, 4, 7)]
    x1, x2, x3 = X[picks]
    slc = maxaffine.Slice.through(x1, x2, x3, margin=0.5)
    t = time.perf_counter()
    part = maxaffine.partition_slice(net, slc, progress=False)
    t_part = time.perf_counter() - t
    fig, ax = plt.subplots(figsize=(7.6, 7.4), layout="constrained")
    plot.plot_partition(part, color_by="class", ax=ax, linewidth=0.35, anchors=True)
    plot.plot_anchor_images(part, ax=ax, shape=(8, 8), size=0.2,
                            labels=[f"digit {int(y[i])}" for i in picks])
    ax.set_title(f"64-64-64-10 MLP on 8x8 digits: the plane through three test digits\n"
                 f"{part.n_regions:,} linear regions, coloured by predicted class",
                 fontsize="medium")
    path = out / "partition-digits.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"  digits slice: {part.n_regions} regions in {t_part:.2f} s")
    return path


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("partition-pictures"),
                        help="output folder (default: partition-pictures/)")
    parser.add_argument("--quick", action="store_true", help="train briefly (smoke test)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    paths = [figure_mlp(args.out, args.quick), figure_subdivision(args.out, args.quick),
             figure_digits(args.out, args.quick)]
    for p in paths:
        print(f"wrote {p}")
    return paths


if __name__ == "__main__":
    main()
