"""Cost of one training step with the orthogonality / Hessian penalties, and estimator noise.

Small CNN on digits (1×8×8, two conv+ReLU+max-pool blocks, dense head), batch 64, C = 10, one
thread. Prints the median wall time of one optimisation step (forward, penalty, backward,
Adam; the backward into the parameters only, as ``train`` runs it) and its ratio to the plain
cross-entropy step, all variants interleaved in one process.

* per call: the penalty on every step, the loss with its own forward pass (as
  ``cross_entropy(net(x), y) + λ·penalty(net, x)``);
* shared forward: the loss uses the outputs of the penalty's forward pass
  (``return_outputs=True``; ``train(..., penalty_returns_outputs=True)``);
* lazy every k: the penalty on one step in k with weight k·λ (``train(..., penalty_every=k)``),
  timed as a whole cycle of k steps (one penalized, k − 1 plain) divided by k: the amortized
  cost per step, not the cost of the penalized step.

The layout column is what the penalty ran: ``tiled R`` (the rows tiled once per sign vector,
R rows in all, one forward and one reverse pass) or ``one pass + m reverse`` (one forward
pass, one reverse pass per sign vector through it).

Then the relative standard deviation of the random estimators (one batch of 64, many draws)
against the exact value.

Run: python benchmarks/regularizers.py
"""

from __future__ import annotations

import copy
import statistics
import time

import torch
from torch import nn

from maxaffine import regularizers
from maxaffine.datasets import digits
from maxaffine.experiments._common import augment_images, cnn_digits
from maxaffine.regularizers import hessian_penalty, orthogonality_penalty
from maxaffine.training import train

TARGETS = {  # issue #4: cost of a step relative to the plain step
    "orthogonality random, 2 probes": 1.5,
    "Hessian random": 2.0,
}


def _recording_layouts(log: list[str]):
    """A stand-in for the library's ``_affine_rows`` that notes the layout of every call."""
    affine_rows = regularizers._affine_rows

    def recording(model, parts, make_cot, *, layout, reps=None):
        g, outs = affine_rows(model, parts, make_cot, layout=layout, reps=reps)
        log.append(f"tiled {reps * sum(p.shape[0] for p in parts)}" if layout == "tiled"
                   else f"one pass + {g.shape[0]} reverse")
        return g, outs

    return recording


def main(repeats: int = 60) -> None:
    torch.set_num_threads(1)
    ds = digits(image=True)
    torch.manual_seed(0)
    net = cnn_digits(8)
    # a few epochs so the templates are those of a trained-ish network
    train(net, ds.X_train, ds.y_train, epochs=3, progress=False)
    trained = copy.deepcopy(net.state_dict())  # the timing steps move the weights
    x, y = ds.X_train[:64], ds.y_train[:64]
    gen = torch.Generator().manual_seed(0)
    x_aug = augment_images(x, gen)
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=1e-5)
    ce = nn.functional.cross_entropy

    def orth(**kw):
        return lambda shared: orthogonality_penalty(net, x, generator=gen, return_outputs=shared,
                                                    **kw)

    def hess(**kw):
        return lambda shared: hessian_penalty(net, x, x_aug, generator=gen, return_outputs=shared,
                                              **kw)

    o1, o2 = "+ orthogonality random, 1 probe", "+ orthogonality random, 2 probes"
    h1, h2 = "+ Hessian random, 1 probe", "+ Hessian random, 2 probes"
    sh, q = ", shared forward", ", 16 of 64 samples"
    # name -> (penalty or None, shared forward, lazy interval k)
    variants = {
        "plain (cross-entropy)": (None, False, 1),
        "+ orthogonality exact (C=10 passes)": (orth(estimator="exact"), False, 1),
        o1: (orth(n_probes=1), False, 1),
        o2: (orth(n_probes=2), False, 1),
        "+ orthogonality random, 4 probes": (orth(n_probes=4), False, 1),
        "+ Hessian exact (2C=20 passes)": (hess(estimator="exact"), False, 1),
        h1: (hess(n_probes=1), False, 1),
        h2: (hess(n_probes=2), False, 1),
        # the penalty on a random quarter of the batch is still unbiased for the batch mean
        f"{o1}{q}": (orth(n_probes=1, max_samples=16), False, 1),
        f"{h1}{q}": (hess(n_probes=1, max_samples=16), False, 1),
        # the loss on the penalty's forward pass (the tiled rows' first copy), every step
        f"{o1}{sh}": (orth(n_probes=1), True, 1),
        f"{o2}{sh}": (orth(n_probes=2), True, 1),
        f"{o2}{sh}{q}": (orth(n_probes=2, max_samples=16), True, 1),
        f"{h1}{sh}": (hess(n_probes=1), True, 1),
        f"{h2}{sh}": (hess(n_probes=2), True, 1),
        f"{h1}{sh}{q}": (hess(n_probes=1, max_samples=16), True, 1),
        # lazy: amortized per step
        f"{o2}{sh}, lazy every 2": (orth(n_probes=2), True, 2),
        f"{o2}{sh}, lazy every 4": (orth(n_probes=2), True, 4),
        f"{o2}{sh}, lazy every 8": (orth(n_probes=2), True, 8),
        f"{o2}{sh}{q}, lazy every 2": (orth(n_probes=2, max_samples=16), True, 2),
        f"{o2}{sh}{q}, lazy every 4": (orth(n_probes=2, max_samples=16), True, 4),
        f"{h1}{sh}, lazy every 2": (hess(n_probes=1), True, 2),
        f"{h1}{sh}, lazy every 4": (hess(n_probes=1), True, 4),
        f"{h2}{sh}, lazy every 4": (hess(n_probes=2), True, 4),
    }

    def step(pen, shared: bool, weight: float) -> None:
        if pen is None:
            loss = ce(net(x), y)
        elif shared:
            value, out = pen(True)
            loss = ce(out, y) + weight * value
        else:
            loss = ce(net(x), y) + weight * pen(False)
        opt.zero_grad(set_to_none=True)
        loss.backward(inputs=params)  # as in train()
        opt.step()

    def cycle(pen, shared: bool, k: int) -> None:
        """k steps as in train(penalty_every=k): one penalized (weight k·λ), k−1 plain."""
        step(pen, shared, 0.1 * k)
        for _ in range(k - 1):
            step(None, False, 0.0)

    layouts: dict[str, str] = {}
    affine_rows = regularizers._affine_rows
    for name, (pen, shared, k) in variants.items():  # warm-up, noting the layout of each row
        log: list[str] = []
        regularizers._affine_rows = _recording_layouts(log)
        try:
            for _ in range(3):
                cycle(pen, shared, k)
        finally:
            regularizers._affine_rows = affine_rows
        layouts[name] = log[-1] if log else "–"
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):  # interleaved so that machine-load drift hits every variant alike
        for name, (pen, shared, k) in variants.items():
            t = time.perf_counter()
            cycle(pen, shared, k)
            times[name].append((time.perf_counter() - t) / k)
    base = statistics.median(times["plain (cross-entropy)"])
    ratio = {name: statistics.median(ts) / base for name, ts in times.items()}
    print(f"one training step, small CNN on digits, batch 64, C = 10, one thread "
          f"(median of {repeats}, interquartile range; lazy rows: a cycle of k steps / k)")
    print("| step | layout | ms per step | IQR ms | × plain |\n|---|---|---|---|---|")
    for name, ts in times.items():
        q1, _, q3 = statistics.quantiles(ts, n=4)
        print(f"| {name} | {layouts[name]} | {1e3 * statistics.median(ts):.2f} "
              f"| {1e3 * q1:.2f}–{1e3 * q3:.2f} | {ratio[name]:.2f}× |")

    def verdict(what: str, target: float, rows: dict[str, float]) -> str:
        rows = {name[len(f"+ {what}"):].lstrip(", ") or "per call": r for name, r in rows.items()
                if name.startswith(f"+ {what}")}
        if not rows:
            return f"- {what} ≤ {target}×: no such configuration measured"
        met = [f"{name} ({r:.2f}×)" for name, r in rows.items() if r <= target]
        best = min(rows, key=rows.get)
        return (f"- {what} ≤ {target}×: "
                + (f"met by {'; '.join(met)}" if met
                   else f"not met (best: {best}, {rows[best]:.2f}×)"))

    def lazy(name: str) -> bool:
        return variants[name][2] > 1

    per_step = {n: r for n, r in ratio.items() if not lazy(n) and q not in n}
    per_step_sub = {n: r for n, r in ratio.items() if not lazy(n) and q in n}
    amortized = {n: r for n, r in ratio.items() if lazy(n)}
    print("\ntargets (issue #4), relative to the plain step")
    print("per step, the penalty on every step and on the whole batch:")
    for what, target in TARGETS.items():
        print(verdict(what, target, per_step))
    print("per step, the penalty on every step on 16 of the 64 samples (unbiased, noisier):")
    for what, target in TARGETS.items():
        print(verdict(what, target, per_step_sub))
    print("amortized only (lazy: the penalized step itself costs as a per-step row above):")
    for what, target in TARGETS.items():
        print(verdict(what, target, amortized))

    net.load_state_dict(trained)
    print("\nestimator noise on one batch of 64 (1000 draws), network as trained")
    print("| estimator | exact | mean of draws | rel. std of one draw |\n|---|---|---|---|")
    ex = orthogonality_penalty(net, x, estimator="exact").item()
    for m in (1, 2, 4):
        d = torch.tensor([orthogonality_penalty(net, x, n_probes=m, generator=gen).item()
                          for _ in range(1000)])
        print(f"| orthogonality random, {m} probe(s) | {ex:.4g} | {d.mean():.4g} "
              f"| {d.std() / ex:.3f} |")
    ex = hessian_penalty(net, x, x_aug, estimator="exact").item()
    for m in (1, 2):
        d = torch.tensor([hessian_penalty(net, x, x_aug, n_probes=m, generator=gen).item()
                          for _ in range(1000)])
        print(f"| Hessian random, {m} probe(s) | {ex:.4g} | {d.mean():.4g} | {d.std() / ex:.3f} |")


if __name__ == "__main__":
    main()
