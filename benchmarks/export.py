"""Exporting a large slice partition: file size and time of each way to a vector figure.

A 2 → 144 → 144 → 144 → 4 ReLU MLP (float64, seed 0) on [−4, 4]² has about 71,500 linear
regions (``--width 64`` gives a quick case of a few thousand). Rows, all in this process on
the same network (one thread, best of ``--repeat``):

* ``Partition.to_svg`` (shared edges once per layer, fills grouped by class and merged with
  shapely, integer coordinates), and without the shapely merge;
* regioncam's ``write_svg`` on the same network and square (regioncam partitions in float32;
  its region count is shown);
* ``plot_partition`` saved by matplotlib as SVG and PDF, with the fills rasterized (the
  default above 10,000 regions) and as vectors (``rasterized=False``).

Run: python benchmarks/export.py [--width 144] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a script may choose the backend; the library never does

import matplotlib.pyplot as plt
import torch
from torch import nn

import maxaffine
from maxaffine import plot


def best(fn, repeat: int) -> float:
    out = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=144)
    ap.add_argument("--size", type=float, default=4.0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--no-vector", action="store_true", help="skip the slow vector-fill rows")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    w = args.width
    net = nn.Sequential(nn.Linear(2, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, w),
                        nn.ReLU(), nn.Linear(w, 4)).double()
    s = args.size
    part = maxaffine.partition_slice(net, maxaffine.Slice.box((-s, s, -s, s)), progress=False)
    R = part.n_regions
    tmp = Path(tempfile.mkdtemp(prefix="maxaffine-export-"))
    rows = []

    def row(name, regions, fn, file):
        t = best(fn, args.repeat)
        rows.append((name, regions, t, os.path.getsize(file) / 1e6))
        file.unlink()

    f = tmp / "ours.svg"
    row("maxaffine Partition.to_svg", R, lambda: part.to_svg(f, overwrite=True), f)
    row("maxaffine to_svg(merge=False)", R, lambda: part.to_svg(f, overwrite=True, merge=False), f)

    try:
        import regioncam
    except ImportError:
        regioncam = None
    if regioncam is not None:
        rc = regioncam.Regioncam(s)
        for m in net:
            if isinstance(m, nn.Linear):
                rc.linear(m.weight.detach().T.float().numpy(), m.bias.detach().float().numpy())
            else:
                rc.relu()
        f = tmp / "regioncam.svg"
        row("regioncam write_svg", rc.num_faces, lambda: rc.write_svg(str(f)), f)

    for ext in ("svg", "pdf"):
        for rasterized in (True, False):
            if not rasterized and args.no_vector:
                continue
            f = tmp / f"mpl.{ext}"

            def draw(f=f, rasterized=rasterized):
                ax = plot.plot_partition(part, color_by="class", rasterized=rasterized)
                ax.figure.savefig(f, dpi=200)
                plt.close(ax.figure)

            how = "fills rasterized" if rasterized else "vector fills"
            row(f"plot_partition -> matplotlib {ext.upper()} ({how})", R, draw, f)
    tmp.rmdir()

    print(f"{'export':<52} {'regions':>8} {'seconds':>8} {'MB':>7}")
    for name, n, t, mb in rows:
        print(f"{name:<52} {n:>8,} {t:>8.2f} {mb:>7.2f}")


if __name__ == "__main__":
    main()
