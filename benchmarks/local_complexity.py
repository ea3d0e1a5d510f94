"""Throughput of maxaffine.local_complexity vs a straightforward per-sample implementation.

MLP 784 → [200]*4 → 10 (the width of Humayun et al.'s MNIST MLP), 50 vertices (P = 25
orthonormal directions), radius 0.1. The per-sample baseline follows the definition literally:
for each sample, draw the directions (Householder QR), form its 50 vertices, run them through the layers
one at a time and count the neurons whose pre-activation sign is not constant. Both run in
float64 and are checked to agree on identical vertices.

Run: python benchmarks/local_complexity.py
"""

from __future__ import annotations

import time

import torch
from torch import nn

from maxaffine.complexity import local_complexity


def per_sample_lc(net: nn.Sequential, x: torch.Tensor, radius: float, n_vertices: int,
                  gen: torch.Generator) -> torch.Tensor:
    out = []
    for n in range(len(x)):
        g = torch.randn(1, x.shape[1], n_vertices // 2, generator=gen, dtype=torch.float64)[0]
        q, r = torch.linalg.qr(g)
        v = radius * (q * torch.sign(torch.diagonal(r))).T  # (P, D), orthonormal rows
        verts = torch.cat([x[n] + v, x[n] - v])
        h, count = verts, 0
        for layer in net:
            h = layer(h)
            if isinstance(layer, nn.Linear):
                s = h > 0
                count += int((s != s[:1]).any(0).sum())
        out.append(count)
    return torch.tensor(out)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    widths = [784] + [200] * 4
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    net = nn.Sequential(*layers, nn.Linear(200, 10)).double().eval()
    x = torch.rand(500, 784, dtype=torch.float64)
    # agreement on identical vertices (same generator stream, one chunk per sample)
    a = local_complexity(net, x[:20], radius=0.1, n_vertices=50, seed=1, chunk_size=1).total
    b = per_sample_lc(net, x[:20], 0.1, 50, torch.Generator().manual_seed(1))
    assert torch.equal(a, b), (a, b)
    rows = []
    for B in (100, 500):
        t = time.perf_counter()
        local_complexity(net, x[:B], radius=0.1, n_vertices=50, seed=0)
        t_ours = time.perf_counter() - t
        t = time.perf_counter()
        per_sample_lc(net, x[:B], 0.1, 50, torch.Generator().manual_seed(0))
        t_base = time.perf_counter() - t
        rows.append((B, B / t_ours, B / t_base, t_base / t_ours))
    print("local complexity, MLP 784→[200]*4→10, 50 vertices, float64, 1 thread")
    print("| samples | maxaffine (samples/s) | per-sample loop (samples/s) | speed-up |\n|---|---|---|---|")
    for B, a_, b_, r in rows:
        print(f"| {B} | {a_:.0f} | {b_:.0f} | {r:.1f}× |")


if __name__ == "__main__":
    main()
