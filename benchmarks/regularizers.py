"""Cost of one training step with the orthogonality / Hessian penalties, and estimator noise.

Small CNN on digits (1×8×8, two conv+ReLU+max-pool blocks, dense head), batch 64, C = 10.
Prints the median wall time of one optimisation step (forward, penalty, backward, Adam) and the
ratio to the plain cross-entropy step; then the relative standard deviation of the random
estimators (one batch of 64, many draws) against the exact value.

Run: python benchmarks/regularizers.py
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from maxaffine.datasets import digits
from maxaffine.experiments._common import augment_images, cnn_digits
from maxaffine.regularizers import hessian_penalty, orthogonality_penalty
from maxaffine.training import train


def main(repeats: int = 60) -> None:
    torch.set_num_threads(1)
    ds = digits(image=True)
    torch.manual_seed(0)
    net = cnn_digits(8)
    # a few epochs so the templates are those of a trained-ish network
    train(net, ds.X_train, ds.y_train, epochs=3, progress=False)
    x, y = ds.X_train[:64], ds.y_train[:64]
    gen = torch.Generator().manual_seed(0)
    x_aug = augment_images(x, gen)
    opt = torch.optim.Adam(net.parameters(), lr=1e-5)
    variants = {
        "plain (cross-entropy)": None,
        "+ orthogonality exact (C=10 passes)": lambda: orthogonality_penalty(net, x, estimator="exact"),
        "+ orthogonality random, 1 probe": lambda: orthogonality_penalty(net, x, n_probes=1, generator=gen),
        "+ orthogonality random, 2 probes": lambda: orthogonality_penalty(net, x, n_probes=2, generator=gen),
        "+ orthogonality random, 4 probes": lambda: orthogonality_penalty(net, x, n_probes=4, generator=gen),
        "+ Hessian exact (2C=20 passes)": lambda: hessian_penalty(net, x, x_aug, estimator="exact"),
        "+ Hessian random, 1 probe": lambda: hessian_penalty(net, x, x_aug, n_probes=1, generator=gen),
        "+ Hessian random, 2 probes": lambda: hessian_penalty(net, x, x_aug, n_probes=2, generator=gen),
        # the penalty on a random quarter of the batch is still unbiased for the batch mean
        "+ orthogonality random, 1 probe, 16 of 64 samples":
            lambda: orthogonality_penalty(net, x, n_probes=1, max_samples=16, generator=gen),
        "+ Hessian random, 1 probe, 16 of 64 samples":
            lambda: hessian_penalty(net, x, x_aug, n_probes=1, max_samples=16, generator=gen),
    }

    def step(pen) -> None:
        loss = nn.functional.cross_entropy(net(x), y)
        if pen is not None:
            loss = loss + 0.1 * pen()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    times = {k: [] for k in variants}
    for k, pen in variants.items():  # warm-up
        for _ in range(5):
            step(pen)
    for _ in range(repeats):  # interleaved so that machine-load drift hits every variant alike
        for k, pen in variants.items():
            t = time.perf_counter()
            step(pen)
            times[k].append(time.perf_counter() - t)
    base = statistics.median(times["plain (cross-entropy)"])
    print(f"one training step, small CNN on digits, batch 64, C = 10 (median of {repeats})")
    print(f"| step | ms | × plain |\n|---|---|---|")
    for k, ts in times.items():
        med = statistics.median(ts)
        print(f"| {k} | {1e3 * med:.2f} | {med / base:.2f}× |")

    print("\nestimator noise on one batch of 64 (1000 draws)")
    print("| estimator | exact | mean of draws | rel. std of one draw |\n|---|---|---|---|")
    ex = orthogonality_penalty(net, x, estimator="exact").item()
    for m in (1, 2, 4):
        d = torch.tensor([orthogonality_penalty(net, x, n_probes=m, generator=gen).item()
                          for _ in range(1000)])
        print(f"| orthogonality random, {m} probe(s) | {ex:.4g} | {d.mean():.4g} | {d.std() / ex:.3f} |")
    ex = hessian_penalty(net, x, x_aug, estimator="exact").item()
    for m in (1, 2):
        d = torch.tensor([hessian_penalty(net, x, x_aug, n_probes=m, generator=gen).item()
                          for _ in range(1000)])
        print(f"| Hessian random, {m} probe(s) | {ex:.4g} | {d.mean():.4g} | {d.std() / ex:.3f} |")


if __name__ == "__main__":
    main()
