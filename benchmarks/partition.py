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

``--sweep``: MLPs 2-w^d-C, w in {16, 32, 64, 128, 256}, d in {1, 2, 3, 4, 6}, on [-1,1]^2 and
[-2,2]^2, C in {1, 10}; maxaffine and regioncam alternate (pairs until a case has taken
about a second, at least one), the ratio of a case is the median of its per-pair ratios of
CPU time (``time.process_time``: on a shared machine the wall time of a millisecond call
mostly measures waiting for a core), and the worst ratio is printed last. ``--widths``/``--depths`` pick a subset.

``--cnn``: slices through three CIFAR-size inputs of the PyTorch tutorial ``Net``,
VGG11-for-CIFAR (conv-BN-ReLU-maxpool), torchvision resnet18 (10 classes) and a
SplineCam-scale ConvNet (five 3x3 stride-2 ReLU convs of widths 96-128-160-192-224, mean 160,
on 1x64x64), each in its own process (for its peak RSS) under the default memory budget:
through three unrelated random images (the first conv layer alone cuts such a triangle into
millions of regions, so these stop flagged at the budget) and through one random image
plus three small noise draws (scaled per network so the slice has many regions; these
finish and are verified).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import warnings

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


def mlp(width, depth, n_out, seed=0):
    torch.manual_seed(seed)
    layers, d = [], 2
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    return nn.Sequential(*layers, nn.Linear(d, n_out)).double()


def sweep(widths, depths, budget_s=1.0) -> None:
    """Median per-pair time ratio maxaffine / regioncam over the MLP sweep."""
    print("| MLP | box | regions | maxaffine CPU s | regioncam CPU s | ratio (median of pairs) |")
    print("|---|---|---|---|---|---|")
    worst = (0.0, "")
    for n_out in (1, 10):
        for size in (1.0, 2.0):
            for depth in depths:
                for width in widths:
                    net = mlp(width, depth, n_out)
                    box = maxaffine.Slice.box((-size, size, -size, size))
                    ratios, tm, tr_, spent = [], [], [], 0.0
                    maxaffine.partition_slice(net, box, progress=False, layers=0)  # warm-up
                    while not ratios or (spent < budget_s and len(ratios) < 25):
                        w, t = time.perf_counter(), time.process_time()
                        # the model itself: its trace comes from the cache after the first call
                        part = maxaffine.partition_slice(net, box, progress=False)
                        a = time.process_time() - t
                        t = time.process_time()
                        n_rc = regioncam_count(net, size)
                        b = time.process_time() - t
                        ratios.append(a / max(b, 1e-6))
                        tm.append(a)
                        tr_.append(b)
                        spent += time.perf_counter() - w
                    r = statistics.median(ratios)
                    name = f"2-{width}^{depth}-{n_out}"
                    flag = "" if part.n_regions == n_rc else f" (regioncam {n_rc})"
                    print(f"| {name} | [-{size:g},{size:g}]^2 | {part.n_regions}{flag} | "
                          f"{statistics.median(tm):.4f} | {statistics.median(tr_):.4f} | "
                          f"{r:.2f} |", flush=True)
                    if r > worst[0]:
                        worst = (r, f"{name} on [-{size:g},{size:g}]^2")
    print(f"worst ratio maxaffine/regioncam: {worst[0]:.2f} ({worst[1]})")


def _cnn_model(name):
    import torch.nn.functional as F

    torch.manual_seed(0)
    if name == "net":
        class Net(nn.Module):  # the PyTorch CIFAR-10 tutorial network
            def __init__(self):
                super().__init__()
                self.conv1, self.pool = nn.Conv2d(3, 6, 5), nn.MaxPool2d(2, 2)
                self.conv2 = nn.Conv2d(6, 16, 5)
                self.fc1, self.fc2 = nn.Linear(16 * 5 * 5, 120), nn.Linear(120, 84)
                self.fc3 = nn.Linear(84, 10)

            def forward(self, x):
                x = self.pool(F.relu(self.conv1(x)))
                x = self.pool(F.relu(self.conv2(x)))
                x = torch.flatten(x, 1)
                return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))
        return Net(), (3, 32, 32)
    if name == "vgg11":
        layers, c = [], 3
        for v in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU()]
                c = v
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(512, 10)), (3, 32, 32)
    if name == "resnet18":
        sys.modules.setdefault("torchvision._meta_registrations", type(sys)("stub"))
        import torchvision
        return torchvision.models.resnet18(num_classes=10), (3, 32, 32)
    if name == "splinecam":
        layers, c = [], 1
        for w in (96, 128, 160, 192, 224):
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1), nn.ReLU()]
            c = w
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(224 * 2 * 2, 10)), (1, 64, 64)
    raise ValueError(name)


def cnn_case(name: str, spread: float) -> dict:
    """One CNN slice (run in a fresh process: peak RSS is the process's)."""
    torch.set_num_threads(1)
    model, shape = _cnn_model(name)
    model = model.double().eval()
    gen = torch.Generator().manual_seed(1)
    if spread >= 1:
        xs = torch.rand((3,) + shape, dtype=torch.float64, generator=gen)
    else:
        base = torch.rand((1,) + shape, dtype=torch.float64, generator=gen)
        xs = base + spread * torch.randn((3,) + shape, dtype=torch.float64, generator=gen)
    slc = maxaffine.Slice.through(xs[0], xs[1], xs[2])
    tr = maxaffine.trace(model, xs)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t, c = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        part = maxaffine.partition_slice(tr, slc, progress=False)
    sec, cpu = time.perf_counter() - t, time.process_time() - c
    status = "partial"
    if part.complete:
        part.verify(300)
        status = "complete, verified"
    peak = max(rss0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024
    return {"regions": part.n_regions, "seconds": sec, "cpu": cpu, "status": status,
            "layers": f"{len(part.history)}/{len(tr.piecewise)}", "peak_rss_mib": peak}


def cnn_rows(names) -> None:
    print("| network, slice | regions | layers cut | s (CPU s) | regions per CPU s | peak RSS MiB "
          "| result |")
    print("|---|---|---|---|---|---|---|")
    # noise around one random image that gives a slice of thousands of regions
    near = {"net": 0.02, "vgg11": 3e-4, "resnet18": 1e-3, "splinecam": 3e-4}
    for name in names:
        for spread, what in ((1.0, "3 random images"),
                             (near[name], f"3 images, noise {near[name]:g}")):
            out = subprocess.run([sys.executable, __file__, "--cnn-case", name, str(spread)],
                                 capture_output=True, text=True, check=False)
            if out.returncode:
                print(f"| {name}, {what} | failed: {out.stderr.strip().splitlines()[-1]} |")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {name}, {what} | {r['regions']:,} | {r['layers']} | {r['seconds']:.1f} "
                  f"({r['cpu']:.1f}) | {r['regions'] / r['cpu']:,.0f} | "
                  f"{r['peak_rss_mib']:,.0f} | {r['status']} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--sweep", action="store_true", help="the MLP sweep against regioncam")
    ap.add_argument("--widths", default="16,32,64,128,256")
    ap.add_argument("--depths", default="1,2,3,4,6")
    ap.add_argument("--cnn", action="store_true", help="the CNN slices")
    ap.add_argument("--nets", default="net,vgg11,resnet18,splinecam")
    ap.add_argument("--cnn-case", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.cnn_case:
        print(json.dumps(cnn_case(args.cnn_case[0], float(args.cnn_case[1]))))
        return
    if args.sweep:
        sweep([int(w) for w in args.widths.split(",")], [int(d) for d in args.depths.split(",")])
        return
    if args.cnn:
        cnn_rows(args.nets.split(","))
        return
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
