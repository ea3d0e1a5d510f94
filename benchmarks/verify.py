"""Partition.verify and Partition.locate: point location by geometry vs by code matching.

The code-matching approach (what verify and locate did before) runs the model at the
samples and finds each sample's region by comparing its full code with every region's
(``np.unique`` over R + n rows of all units: time and memory ~ regions × units). The
geometric one locates samples in a uniform-grid index of the polygons (built once per
partition, cached) and compares codes only for the located regions. Both measured in this
process, one thread, best of ``--repeat``; the index build (once per partition) is reported
separately. Peak memory is what tracemalloc sees (numpy; torch's code tensors are not
counted). Run: python benchmarks/verify.py
"""

from __future__ import annotations

import argparse
import itertools
import time
import tracemalloc

import numpy as np
import torch
from torch import nn

import maxaffine
from maxaffine.affine import Codes
from maxaffine.partition._locate import GridLocator
from maxaffine.partition.partition import next_entry


def match_codes(regions, queries) -> np.ndarray:
    """Index of the region whose full code equals each query's code (-1 if none)."""
    a = regions.flat().cpu().numpy()
    b = queries.flat().cpu().numpy()
    both = np.ascontiguousarray(np.concatenate([a, b]))
    _, inv = np.unique(both, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    lookup = np.full(int(inv.max()) + 1, -1, np.int64)
    lookup[inv[: len(a)][::-1]] = np.arange(len(a))[::-1]
    return lookup[inv[len(a):]]


def locate_by_codes(part, st):
    q = Codes({k: v for k, v in part.trace.run(part.slice.points(st)).codes.items()
               if k in part.layers})
    return match_codes(Codes({k: part.codes[k] for k in part.layers}), q)


def verify_by_codes(part, n, seed=0):
    """The code-matching verify: locate by codes, then each sample's distance to its
    region's edges (near-boundary samples skipped) and the output map check."""
    st = part.slice.sample(n, seed=seed)
    rec = part.trace.run(part.slice.points(st))
    reg = match_codes(Codes({k: part.codes[k] for k in part.layers}),
                      Codes({k: rec.codes[k] for k in part.layers}))
    missing = reg < 0
    ok_reg = np.where(missing, 0, reg)
    counts = part.vertex_counts[ok_reg]
    starts = part.offsets[ok_reg]
    rows = np.repeat(np.arange(len(st)), counts)
    ent = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + \
        np.repeat(starts, counts)
    nx = next_entry(part.offsets)
    p = part.vertices[part.polygon_vertices[ent]]
    e = part.vertices[part.polygon_vertices[nx[ent]]] - p
    rel = st[rows] - p
    dist = (e[:, 0] * rel[:, 1] - e[:, 1] * rel[:, 0]) / np.linalg.norm(e, axis=1)
    mind = np.minimum.reduceat(dist, np.r_[0, np.cumsum(counts)[:-1]])
    near = np.abs(mind) <= 1e-9 * part.slice.scale
    checked = ~missing & ~near
    y = rec.output.reshape(len(st), -1).detach().numpy()
    err = np.abs(part.output(st[checked], reg[checked]) - y[checked]).max()
    assert not (missing & ~near).any() and err < 1e-7
    return int(checked.sum())


def measure(fn, repeat):
    best, peak, out = float("inf"), 0, None
    for _ in range(repeat):
        tracemalloc.start()
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return best, peak, out


def mlp(widths, seed):
    torch.manual_seed(seed)
    layers = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double().eval()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--large", action="store_true", help="also a ~100k-region partition")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cases = [("2-64-64-64-1 (reference)", [2, 64, 64, 64, 1], 0, 2.0),
             ("2-32-32-32-32-32-1", [2, 32, 32, 32, 32, 32, 1], 0, 2.0)]
    if args.large:
        cases.append(("2-128-128-128-1", [2, 128, 128, 128, 1], 0, 2.0))
    n = args.samples
    print(f"{'partition':<28} {'regions':>8} {'units':>6} {'task':<14} {'by codes':>10} "
          f"{'geometry':>10} {'ratio':>7} {'peak MB codes/geom':>20}")
    for label, widths, seed, half in cases:
        net = mlp(widths, seed)
        slc = maxaffine.Slice.box((-half, half, -half, half))
        part = maxaffine.partition_slice(net, slc, progress=False)
        units = sum(int(np.prod(part.codes[k].shape[1:])) for k in part.layers)
        st = slc.sample(n, seed=1)
        t_build, _, _ = measure(lambda: GridLocator(part.vertices, part.offsets,
                                                    part.polygon_vertices), 1)
        part.locate(st[:1])  # build and cache the index (timed separately above)
        t_old, m_old, r_old = measure(lambda: locate_by_codes(part, st), args.repeat)
        t_new, m_new, r_new = measure(lambda: part.locate(st), args.repeat)
        agree = float(np.mean(r_old == r_new))
        print(f"{label:<28} {part.n_regions:>8} {units:>6} {f'locate({n})':<14} "
              f"{t_old:>9.4f}s {t_new:>9.4f}s {t_old / t_new:>6.1f}x "
              f"{m_old / 2**20:>9.1f}/{m_new / 2**20:.1f}   (agree {agree:.4f})")
        t_vo, m_vo, _ = measure(lambda: verify_by_codes(part, n), args.repeat)
        t_ver, m_ver, _ = measure(lambda: part.verify(n), args.repeat)
        print(f"{'':<28} {'':>8} {'':>6} {f'verify({n})':<14} {t_vo:>9.4f}s "
              f"{t_ver:>9.4f}s {t_vo / t_ver:>6.1f}x {m_vo / 2**20:>9.1f}/{m_ver / 2**20:.1f}"
              f"   (index build once: {t_build:.3f}s)")


if __name__ == "__main__":
    main()
