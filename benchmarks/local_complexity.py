"""Throughput of maxaffine.local_complexity vs a straightforward per-sample implementation.

MLP 784 → [200]*4 → 10 (the width of Humayun et al.'s MNIST MLP), 50 vertices (P = 25
orthonormal directions), radius 0.1, float64, one thread. The per-sample baseline follows the
definition literally: for each sample, draw a (D, P) Gaussian matrix, orthonormalize it
(Householder QR), form its 50 vertices, run them through the layers one at a time and count
the neurons whose pre-activation sign is not constant.

Both variants of the library are timed: ``directions="auto"`` (the default: directions drawn
in the row space of the first layer, exactly the same law of the counts) and
``directions="input"`` (the full Gaussian matrix in input space, common random numbers across
networks). Before timing, each variant's counts are checked to equal the literal loop's on
identical vertices (the directions the library used, from ``cross_polytope_directions``).
Times are medians of interleaved repeats.

Run: python benchmarks/local_complexity.py
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from maxaffine.complexity import cross_polytope_directions, local_complexity


def literal_count(net: nn.Sequential, verts: torch.Tensor) -> int:
    """Neurons whose pre-activation sign is not constant over ``verts`` (V, D)."""
    h, count = verts, 0
    for layer in net:
        h = layer(h)
        if isinstance(layer, nn.Linear):
            s = h > 0
            count += int((s != s[:1]).any(0).sum())
    return count


def per_sample_lc(net: nn.Sequential, x: torch.Tensor, radius: float, n_vertices: int,
                  gen: torch.Generator) -> torch.Tensor:
    out = []
    for n in range(len(x)):
        g = torch.randn(x.shape[1], n_vertices // 2, generator=gen, dtype=torch.float64)
        q, r = torch.linalg.qr(g)
        v = radius * (q * torch.sign(torch.diagonal(r))).T  # (P, D), orthonormal rows
        out.append(literal_count(net, torch.cat([x[n] + v, x[n] - v])))
    return torch.tensor(out)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    widths = [784] + [200] * 4
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    net = nn.Sequential(*layers, nn.Linear(200, 10)).double().eval()
    x = torch.rand(1000, 784, dtype=torch.float64)
    variants = ("auto", "input")
    # agreement on identical vertices
    for mode in variants:
        kw = dict(radius=0.1, n_vertices=50, seed=1, directions=mode)
        got = local_complexity(net, x[:100], **kw).total
        dirs = cross_polytope_directions(net, x[:100], **kw)
        expect = torch.tensor([literal_count(net, torch.cat([x[n] + dirs[n], x[n] - dirs[n]]))
                               for n in range(100)])
        assert torch.equal(got, expect), (mode, got, expect)
    rows = []
    for B in (20, 100, 500, 1000):
        times: dict[str, list[float]] = {m: [] for m in variants + ("loop",)}
        for rep in range(5 if B <= 500 else 3):
            for m in variants:
                t = time.perf_counter()
                local_complexity(net, x[:B], radius=0.1, n_vertices=50, seed=rep, directions=m)
                times[m].append(time.perf_counter() - t)
            t = time.perf_counter()
            per_sample_lc(net, x[:B], 0.1, 50, torch.Generator().manual_seed(rep))
            times["loop"].append(time.perf_counter() - t)
        med = {m: statistics.median(v) for m, v in times.items()}
        rows.append((B, *(B / med[m] for m in ("loop",) + variants),
                     *(med["loop"] / med[m] for m in variants)))
    print("local complexity, MLP 784→[200]*4→10, 50 vertices, r = 0.1, float64, 1 thread "
          "(samples/s, median of interleaved repeats)")
    print("| samples | per-sample loop | maxaffine `auto` | maxaffine `input` | speed-up `auto` "
          "| speed-up `input` |\n|---|---|---|---|---|---|")
    for B, loop, auto, inp, ra, ri in rows:
        print(f"| {B} | {loop:.0f} | {auto:.0f} | {inp:.0f} | {ra:.1f}× | {ri:.1f}× |")


if __name__ == "__main__":
    main()
