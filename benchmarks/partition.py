"""Exact 2D slice partitions: maxaffine.partition_slice vs regioncam and dense code sampling.

All measured in this process (one thread; maxaffine and regioncam run alternately,
best of ``--repeat`` runs each):
1. the reference MLP 2-64-64-64-1 (torch.manual_seed(0)) on [-2, 2]^2 (12,042 regions);
2. a 784-64-64-64-10 MLP on the plane through three 28x28 inputs (regioncam gets the plane
   composed into its first layer, so both partition exactly the same square);
3. dense activation-code sampling of case 1 on a 1000x1000 grid (a lower bound on the count);
4. a small CNN (conv-ReLU-maxpool x2, linear head) on the triangle through three nearby 28x28
   inputs (a random image plus small noise: a triangle through unrelated images cuts the
   first conv layer's 2,704 lines into millions of regions).
regioncam computes in float32, maxaffine in float64. Run: python benchmarks/partition.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

import maxaffine


def best(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def interleaved(fns, repeat):
    """Best time and last result of each callable, run alternately ``repeat`` times (on a
    shared machine, load drifts; alternating gives both sides the same conditions)."""
    times = [float("inf")] * len(fns)
    outs = [None] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            outs[i] = fn()
            times[i] = min(times[i], time.perf_counter() - t)
    return [(t, o) for t, o in zip(times, outs)]


def regioncam_count(net, size, first=None):
    import regioncam

    rc = regioncam.Regioncam(size)
    for i, m in enumerate(net):
        if isinstance(m, nn.Linear):
            W, b = m.weight.detach().double(), m.bias.detach().double()
            if i == 0 and first is not None:
                W, b = first(W, b)
            rc.linear(W.T.float().numpy(), b.float().numpy())
        else:
            rc.relu()
    return rc.num_faces


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []

    # 1. reference MLP
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                        nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1)).double()
    box = maxaffine.Slice.box((-2, 2, -2, 2))
    tr = maxaffine.trace(ref, torch.zeros(2, 2))
    (t_ours, part), (t_rc, n_rc) = interleaved(
        [lambda: maxaffine.partition_slice(tr, box, progress=False),
         lambda: regioncam_count(ref, 2.0)], args.repeat)
    rows.append(("MLP 2-64-64-64-1, [-2,2]^2", part.n_regions, t_ours, n_rc, t_rc))

    # 2. 784-input MLP through three inputs
    torch.manual_seed(0)
    big = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                        nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)).double()
    xs = torch.rand(3, 784, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    tri = maxaffine.Slice.through(xs[0], xs[1], xs[2])
    centre = xs.mean(0).numpy()
    size = 1.2 * float(np.abs(tri.anchors - tri.anchors.mean(0)).max())
    plane = maxaffine.Slice.box((-size, size, -size, size), origin=centre, u=tri.u, v=tri.v)
    U = torch.from_numpy(np.stack([tri.u, tri.v], 1))
    c = torch.from_numpy(centre)
    tr2 = maxaffine.trace(big, xs)
    (t_ours2, part2), (t_rc2, n_rc2) = interleaved(
        [lambda: maxaffine.partition_slice(tr2, plane, progress=False),
         lambda: regioncam_count(big, size, lambda W, b: (W @ U, W @ c + b))], args.repeat)
    rows.append(("MLP 784-64-64-64-10, plane of 3 inputs", part2.n_regions, t_ours2, n_rc2, t_rc2))

    # 3. dense sampling on a 1000x1000 grid (case 1)
    def dense():
        g = np.linspace(-2, 2, 1000)
        S, T = np.meshgrid(g, g)
        pts = torch.from_numpy(np.c_[S.ravel(), T.ravel()])
        flat = torch.cat([maxaffine.codes(tr, pts[i:i + 100_000]).flat()
                          for i in range(0, len(pts), 100_000)])
        return len(torch.unique(flat, dim=0))

    t_dense, n_dense = best(dense, 1)

    # 4. CNN through three 28x28 inputs
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 8, 3),
                        nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 5 * 5, 10)).double()
    gen = torch.Generator().manual_seed(2)
    base = torch.rand(1, 1, 28, 28, dtype=torch.float64, generator=gen)
    imgs = base + 0.05 * torch.randn(3, 1, 28, 28, dtype=torch.float64, generator=gen)
    cslice = maxaffine.Slice.through(imgs[0], imgs[1], imgs[2])
    tr3 = maxaffine.trace(cnn.eval(), imgs)
    t_cnn, part3 = best(lambda: maxaffine.partition_slice(tr3, cslice, progress=False), 2)

    print("| case | maxaffine regions | maxaffine s | regions/s | regioncam regions | "
          "regioncam s | time ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, n, t, nr, tr_ in rows:
        print(f"| {name} | {n} | {t:.3f} | {n / t:,.0f} | {nr} | {tr_:.3f} | {t / tr_:.2f} |")
    print(f"| dense 1000x1000 code grid (case 1) | {n_dense} found | {t_dense:.3f} | "
          f"{n_dense / t_dense:,.0f} | - | - | ours/dense time {t_ours / t_dense:.4f} |")
    print(f"| CNN conv-relu-maxpool x2, triangle of 3 28x28 inputs | {part3.n_regions} | "
          f"{t_cnn:.3f} | {part3.n_regions / t_cnn:,.0f} | - | - | - |")


if __name__ == "__main__":
    main()
