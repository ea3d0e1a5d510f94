"""CPU vs GPU: the same maxaffine calls on the host and on a CUDA device, in one process.

Rows (float64 unless marked):

- ``affine_map``: exact ``A[x]`` (10 × 3072 per input) of torchvision ResNet-18 (10
  classes) at 3×32×32, batch 256 on the GPU;
- ``local_complexity``: ResNet-18, 1,024 CIFAR-sized inputs, 40 vertices, radius 0.005
  (Humayun et al.'s setting), also with a float32 trace;
- ``penalized step``: one training step of ResNet-18 (float32, batch 128) with the
  orthogonal-template penalty (random-sign estimator, 2 probes);
- ``partition slice``: the exact partition of one 2D slice through a 3-layer CNN at
  3×32×32 (the mesh stays on the host; the network runs at the vertices on the device).

The CPU side runs the same call on fewer inputs (it would take minutes on the full batch;
the training step on a batch of 8) and the table compares time per input; the slice is the
same work on both sides. The CPU uses all its cores. Expected on one H200 against 16 CPU cores: the
GPU far ahead on the dense rows (affine maps, local complexity, the training step: tens of
times), a smaller lead on the partition slice, whose host-side mesh work does not move.

Run: PYTHONPATH=src python benchmarks/gpu.py [--out DIR] [--quick]
On a machine without CUDA it says so and exits 0.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import types
import warnings
from pathlib import Path

import torch
from torch import nn

import maxaffine
from maxaffine import regularizers


def resnet18() -> nn.Module:
    # torchvision's C ops are built for another torch on some machines; this stub keeps
    # the import from loading them (only the Python model definitions are used)
    sys.modules.setdefault("torchvision._meta_registrations",
                           types.ModuleType("torchvision._meta_registrations"))
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)).eval()


def timed(fn, device: torch.device, repeats: int = 1) -> float:
    """Best wall time of ``fn()`` over ``repeats`` runs, synchronising the device."""
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


def row(name: str, cpu_n: int, cpu_s: float, dev_n: int, dev_s: float, unit: str) -> dict:
    per_cpu, per_dev = cpu_s / cpu_n, dev_s / dev_n
    return {"workload": name, "unit": unit, "cpu_items": cpu_n, "cpu_s": cpu_s,
            "gpu_items": dev_n, "gpu_s": dev_s, "cpu_per_item_ms": 1e3 * per_cpu,
            "gpu_per_item_ms": 1e3 * per_dev, "speedup": per_cpu / per_dev}


def bench_affine(dev, sizes) -> dict:
    net = resnet18()
    x = torch.rand(sizes["affine"], 3, 32, 32, generator=torch.Generator().manual_seed(1))
    n_cpu = sizes["affine_cpu"]
    tr_cpu = maxaffine.trace(net, x[:2])
    tr_dev = maxaffine.trace(copy.deepcopy(net).to(dev), x[:2].to(dev))
    maxaffine.affine_map(tr_dev, x[:2].to(dev))  # warm-up: kernels, allocator
    cpu = timed(lambda: maxaffine.affine_map(tr_cpu, x[:n_cpu]), torch.device("cpu"))
    xd = x.to(dev)
    gpu = timed(lambda: maxaffine.affine_map(tr_dev, xd), dev, repeats=2)
    return row(f"affine_map ResNet-18 3x32x32 (batch {len(x)})", n_cpu, cpu, len(x), gpu, "input")


def bench_lc(dev, sizes, dtype, label) -> dict:
    net = resnet18()
    x = torch.rand(sizes["lc"], 3, 32, 32, generator=torch.Generator().manual_seed(2))
    n_cpu = sizes["lc_cpu"]
    kw = dict(radius=0.005, n_vertices=40, seed=0)
    tr_cpu = maxaffine.trace(net, x[:2], dtype=dtype)
    tr_dev = maxaffine.trace(copy.deepcopy(net).to(dev), x[:2].to(dev), dtype=dtype)
    maxaffine.local_complexity(tr_dev, x[:2].to(dev), **kw)
    cpu = timed(lambda: maxaffine.local_complexity(tr_cpu, x[:n_cpu], **kw), torch.device("cpu"))
    xd = x.to(dev)
    gpu = timed(lambda: maxaffine.local_complexity(tr_dev, xd, **kw), dev)
    return row(f"local_complexity ResNet-18 {len(x)} inputs, 40 vertices{label}", n_cpu, cpu,
               len(x), gpu, "input")


def bench_train_step(dev, sizes) -> dict:
    net = resnet18().train()
    B = sizes["train"]
    x = torch.rand(B, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    y = torch.randint(0, 10, (B,), generator=torch.Generator().manual_seed(4))

    def step(model, opt, xb, yb):
        out_pen = regularizers.orthogonality_penalty(model, xb, n_probes=2,
                                                     generator=torch.Generator().manual_seed(0),
                                                     return_outputs=True)
        pen, out = out_pen
        loss = nn.functional.cross_entropy(out, yb) + 0.5 * pen
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    times = []
    for where, n in (("cpu", sizes["train_cpu"]), (dev, B)):
        m = copy.deepcopy(net).to(where)
        opt = torch.optim.SGD(m.parameters(), lr=0.01)
        xb, yb = x[:n].to(where), y[:n].to(where)
        step(m, opt, xb, yb)  # warm-up
        times.append(timed(lambda: step(m, opt, xb, yb), torch.device(where), repeats=2))
    return row(f"penalized train step ResNet-18 float32 (batch {B})", sizes["train_cpu"],
               times[0], B, times[1], "input")


def bench_slice(dev, sizes) -> dict:
    net = small_cnn()
    pts = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    slc = maxaffine.Slice.through(*pts, margin=sizes["slice_margin"])
    times, regions = {}, {}
    for where in ("cpu", str(dev)):
        tr = maxaffine.trace(copy.deepcopy(net).to(where), pts[:2].to(where))
        with warnings.catch_warnings():  # warm-up: a partial partition (budget warning)
            warnings.simplefilter("ignore")
            maxaffine.partition_slice(tr, slc, max_regions=500, progress=False)
        out = {}
        budget = sizes["slice_regions"]
        times[where] = timed(lambda: out.setdefault(
            "p", maxaffine.partition_slice(tr, slc, max_regions=budget, progress=False)),
            torch.device(where))
        regions[where] = out["p"].n_regions
    if regions["cpu"] != regions[str(dev)]:
        raise SystemExit(f"partition differs across devices: {regions}")
    return row(f"partition slice CNN 3x32x32 ({regions['cpu']} regions)", 1, times["cpu"], 1,
               times[str(dev)], "slice")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="folder for gpu.json / gpu.md")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (checks the script)")
    ap.add_argument("--device", default="cuda", help="accelerator device (default: cuda)")
    ap.add_argument("--rows", default="affine,lc,lc32,train,slice",
                    help="comma-separated subset of affine,lc,lc32,train,slice")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device on this machine; nothing to compare.")
        return 0
    sizes = (dict(affine=4, affine_cpu=2, lc=4, lc_cpu=2, train=4, train_cpu=2, slice_margin=0.0,
                  slice_regions=3000)
             if args.quick else
             dict(affine=256, affine_cpu=8, lc=1024, lc_cpu=16, train=128, train_cpu=8,
                  slice_margin=0.0, slice_regions=None))
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else str(dev)
    print(f"maxaffine {maxaffine.__version__}, torch {torch.__version__}, device {name}, "
          f"CPU threads {torch.get_num_threads()}", flush=True)
    benches = {"affine": lambda: bench_affine(dev, sizes),
               "lc": lambda: bench_lc(dev, sizes, torch.float64, ""),
               "lc32": lambda: bench_lc(dev, sizes, torch.float32, ", float32"),
               "train": lambda: bench_train_step(dev, sizes),
               "slice": lambda: bench_slice(dev, sizes)}
    rows = []
    for key in args.rows.split(","):
        r = benches[key.strip()]()
        rows.append(r)
        print(f"  {r['workload']}: CPU {r['cpu_per_item_ms']:.1f} ms/{r['unit']}, "
              f"GPU {r['gpu_per_item_ms']:.2f} ms/{r['unit']}, GPU {r['speedup']:.1f}x", flush=True)
    lines = ["| workload | CPU ms / item | GPU ms / item | GPU speed-up |", "|---|---|---|---|"]
    lines += [f"| {r['workload']} | {r['cpu_per_item_ms']:.1f} | {r['gpu_per_item_ms']:.2f} | "
              f"{r['speedup']:.1f}x |" for r in rows]
    table = "\n".join(lines)
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu.json").write_text(json.dumps({"device": name, "rows": rows}, indent=1))
        (args.out / "gpu.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
