"""Ray engine throughput: a single-process loop vs 1 and 2 Ray workers, and Ray's overheads.

Workload: a :class:`maxaffine.distributed.DatasetJob` (local complexity with 20 vertices
and VQ code statistics) of an MLP 784 → 200 → 200 → 200 → 10 over 2,048 inputs in batches
of 128, float64, one thread per worker. Rows:

- ``single process``: :func:`maxaffine.distributed.analyze_dataset`;
- ``Ray map_batches, k workers``: :func:`maxaffine.distributed.map_batches` with an actor
  pool of k actors, the pool's start-up included (best of two runs); every result is
  checked equal to the single process's;
- overheads: an empty Ray task's round trip (per task), and the time per batch of
  ``map_batches`` on a job that does almost nothing (a 2 → 4 → 2 network, 8 inputs per
  batch): the difference between 128 and 64 batches, so the pool's start-up cancels.

Scaling efficiency is ``T(1 worker) / (2 · T(2 workers))``; on a machine whose cores are
shared, it is bounded by the cores actually free.

Run: PYTHONPATH=src python benchmarks/distributed.py [--n 2048]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

import torch
from torch import nn


def mlp() -> nn.Module:
    torch.manual_seed(0)
    widths = [784, 200, 200, 200]
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(200, 10)).double().eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from maxaffine.distributed import DatasetJob, analyze_dataset, map_batches

    torch.set_num_threads(1)
    net = mlp()
    X = torch.rand(args.n, 784, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    job = DatasetJob(local_complexity={"radius": 0.1, "n_vertices": 20}, codes=True, seed=0)
    t0 = time.perf_counter()
    local = analyze_dataset(net, X, job, batch_size=args.batch)
    t_single = time.perf_counter() - t0
    n_batches = -(-args.n // args.batch)

    tmp = tempfile.mkdtemp(prefix="mbench")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=tmp, log_to_driver=False,
             configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        times = {}
        for k in (1, 2):
            runs = []
            for _ in range(2):
                t0 = time.perf_counter()
                got = map_batches(net, X, job, batch_size=args.batch, num_workers=k)
                runs.append(time.perf_counter() - t0)
                assert got == local, "the Ray result differs from the single process"
            times[k] = min(runs)

        @ray.remote(num_cpus=1)
        def empty() -> int:
            return 0

        ray.get([empty.remote() for _ in range(20)])  # workers started
        rt = []
        for _ in range(200):
            t0 = time.perf_counter()
            ray.get(empty.remote())
            rt.append(time.perf_counter() - t0)
        per_task = statistics.median(rt)

        tiny = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2)).double()
        small = DatasetJob(codes=True)
        t_tiny = {}
        for nb in (64, 128):
            Xs = torch.rand(8 * nb, 2, dtype=torch.float64)
            t0 = time.perf_counter()
            map_batches(tiny, Xs, small, batch_size=8, num_workers=1)
            t_tiny[nb] = time.perf_counter() - t0
        per_batch = (t_tiny[128] - t_tiny[64]) / 64
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"{args.n} inputs, {n_batches} batches of {args.batch}; results identical on every row")
    print("| run | time (s) | inputs / s | vs single process |")
    print("|---|---|---|---|")
    print(f"| single process | {t_single:.2f} | {args.n / t_single:.0f} | 1.00x |")
    for k, t in times.items():
        print(f"| Ray map_batches, {k} worker{'s' if k > 1 else ''} | {t:.2f} | {args.n / t:.0f} | "
              f"{t_single / t:.2f}x |")
    print(f"\nscaling efficiency 1 -> 2 workers: {times[1] / (2 * times[2]):.2f}")
    print(f"overhead per Ray task (empty task round trip, median): {1e3 * per_task:.2f} ms")
    print(f"time per batch of map_batches on a trivial job: {1e3 * per_batch:.1f} ms")


if __name__ == "__main__":
    main()
