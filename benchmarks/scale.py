"""Streams with bounded memory: peak RSS against the number of inputs.

Each row runs in a fresh process (so its peak resident memory is its own) and streams the
inputs from a ``DataLoader`` of batches of 64:

- ``local_complexity`` of torchvision ResNet-18 (10 classes) at 3×32×32, radius 0.005,
  over 256, 512 and 1,024 inputs;
- a :class:`maxaffine.distributed.DatasetJob` (VQ code statistics with exact distinct
  regions, memorization, Hessian complexity) over a small CNN, 256 / 512 / 1,024 inputs.

Peak memory stays flat as the input count grows: one chunk is held at a time, and the
per-input results kept (a few integers per input) are negligible. For contrast, the
``materialised`` column is what the inputs alone take as one float64 tensor.

Run: PYTHONPATH=src python benchmarks/scale.py [--n-vertices 8] [--counts 256,512,1024]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _worker(kind: str, n: int, n_vertices: int) -> dict:
    import types

    sys.modules.setdefault("torchvision._meta_registrations",
                           types.ModuleType("torchvision._meta_registrations"))
    import torch
    import torchvision
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    import maxaffine
    from maxaffine.distributed import DatasetJob, analyze_dataset

    torch.set_num_threads(1)
    torch.manual_seed(0)
    X = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(2))
    loader = DataLoader(TensorDataset(X, y), batch_size=64)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if kind == "lc":
        net = torchvision.models.resnet18(num_classes=10).eval()
        lc = maxaffine.local_complexity(net, loader, radius=0.005, n_vertices=n_vertices, seed=0)
        result = {"lc_mean": float(lc.total.double().mean())}
    else:
        net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(16 * 8 * 8, 10)).eval()
        job = DatasetJob(codes=True, memorization=True, hessian={"sigma": 1e-3})
        stats = analyze_dataset(net, loader, job)
        result = {"regions": stats.codes.n_regions, "hessian": stats.hessian.value}
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"kind": kind, "n": n, "seconds": seconds, "peak_mib": peak / 1024,
            "before_mib": base / 1024, "inputs_mib": X.numel() * 8 / 2**20, **result}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="256,512,1024")
    ap.add_argument("--n-vertices", type=int, default=8,
                    help="vertices of the local complexity (default 8; Humayun et al. use 40)")
    ap.add_argument("--worker", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker[0], int(args.worker[1]), args.n_vertices)))
        return
    counts = [int(c) for c in args.counts.split(",")]
    rows = []
    for kind in ("lc", "job"):
        for n in counts:
            out = subprocess.run([sys.executable, __file__, "--worker", kind, str(n),
                                  "--n-vertices", str(args.n_vertices)],
                                 check=True, capture_output=True, text=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(r)
            print(f"  {kind} n={n}: {r['seconds']:.1f} s, peak RSS {r['peak_mib']:.0f} MiB",
                  flush=True)
    names = {"lc": f"local_complexity ResNet-18 ({args.n_vertices} vertices)",
             "job": "DatasetJob codes+memorization+hessian, CNN"}
    print("| stream | inputs | time (s) | ms / input | peak RSS (MiB) | inputs as one tensor (MiB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {names[r['kind']]} | {r['n']} | {r['seconds']:.1f} | "
              f"{1e3 * r['seconds'] / r['n']:.0f} | {r['peak_mib']:.0f} | {r['inputs_mib']:.0f} |")


if __name__ == "__main__":
    main()
