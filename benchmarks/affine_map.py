"""Time of maxaffine.affine_map vs the obvious alternative, torch.func.vmap(jacrev) + forward.

Both run in this process, in float64, on the same inputs; the alternative returns only A and
f(x), while affine_map also returns b[x] and every VQ code. Ratios < 1 mean maxaffine is
faster. Run: python benchmarks/affine_map.py [--repeat N]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import maxaffine


class ResidualMLP(nn.Module):
    def __init__(self, d=64, width=256, depth=4, n_out=10):
        super().__init__()
        self.stem = nn.Linear(d, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(width, width), nn.ReLU(),
                                                  nn.Linear(width, width)) for _ in range(depth))
        self.head = nn.Linear(width, n_out)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        for block in self.blocks:
            h = torch.relu(h + block(h))
        return self.head(h)


def cases():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                        nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    cnn = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
    small = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    wide_out = nn.Sequential(nn.Linear(8, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                             nn.Linear(128, 100))
    return [
        ("MLP 784-[512]x3-10, B=256", mlp, torch.randn(256, 784)),
        ("CNN 1x28x28 conv/BN/ReLU/maxpool, B=64", cnn, torch.randn(64, 1, 28, 28)),
        ("residual MLP 64-[256]x4-10, B=256", ResidualMLP(), torch.randn(256, 64)),
        ("small MLP 2-64-64-4, B=20000 (whole dataset)", small, torch.randn(20000, 2)),
        ("MLP 8-128-128-100 (D < C: forward mode), B=2000", wide_out, torch.randn(2000, 8)),
    ]


def alternative(model, x):
    jac = torch.func.vmap(torch.func.jacrev(lambda xi: model(xi.unsqueeze(0))[0].reshape(-1)))(x)
    y = model(x)
    return jac, y


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, float64\n")
    print("| case | vmap(jacrev)+forward [s] | maxaffine.affine_map [s] | ratio | max abs diff |")
    print("|---|---|---|---|---|")
    for name, model, x in cases():
        model = model.eval().double()
        x = x.double()
        tr = maxaffine.trace(model, x[:2])
        with torch.no_grad():
            alt = best_of(lambda: alternative(model, x), args.repeat)
            ours = best_of(lambda: maxaffine.affine_map(tr, x), args.repeat)
            J, _ = alternative(model, x)
            m = maxaffine.affine_map(tr, x)
            diff = (m.A - J.reshape(m.A.shape)).abs().max().item()
        print(f"| {name} | {alt:.3f} | {ours:.3f} | {ours / alt:.2f} | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
