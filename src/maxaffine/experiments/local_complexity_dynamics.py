"""Local complexity around train, test and random points over a long MLP training run.

Humayun, Balestriero & Baraniuk ("Deep Networks Always Grok", ICML 2024) report that the local
complexity (LC) around training points follows a characteristic non-monotone course over a
long training run — an early change as the partition organises, then a late phase in which
region boundaries migrate away from the training points ("region migration"), while LC near the
decision boundary stays high. Here: MLP 64 → [200]×4 → 10 on 1000 digits images (the
authors' MNIST MLP width and 50 vertices), Adam with weight decay, LC logged at log-spaced
steps around 200 train, 200 test and 200 uniformly random points, at two radii.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..callbacks import LocalComplexityCallback, log_spaced_epochs
from ..datasets import digits
from ..training import train
from ._common import figure, mlp, save, write_markdown, write_table

NAME = "local-complexity-dynamics"
DESCRIPTION = "local complexity around train/test/random points over a long MLP run (grokking dynamics)"


def run(out_dir: Path, *, quick: bool = False, seed: int = 0, progress: bool = True) -> dict:
    torch.set_num_threads(1)
    ds = digits(image=False)
    n_train = 200 if quick else 1000
    X, y = ds.X_train[:n_train], ds.y_train[:n_train]
    n_pts = 20 if quick else 200
    epochs = 3 if quick else 4000  # 5 steps per epoch with batch 200 -> 20k steps
    g = torch.Generator().manual_seed(seed + 7)
    points = {"train": X[:n_pts], "test": ds.X_test[:n_pts],
              "random": torch.rand(n_pts, 64, generator=g)}
    radii = (0.1, 0.5)
    when = log_spaced_epochs(epochs, 8 if quick else 36)
    cbs = [LocalComplexityCallback(P, radius=r, n_vertices=50, name=f"lc_{name}_r{r:g}", seed=seed,
                                   every=when)
           for name, P in points.items() for r in radii]
    torch.manual_seed(seed)
    net = mlp(64, [200] * 4)
    hist = train(net, X, y, epochs=epochs, lr=1e-3, batch_size=200, weight_decay=1e-2 if not quick else 0.0,
                 callbacks=cbs, X_test=ds.X_test, y_test=ds.y_test, seed=seed, progress=progress)
    rows = [{"epoch": r["epoch"], "step": r["epoch"] * ((n_train + 199) // 200),
             "train_acc": r["train_acc"], "test_acc": r["test_acc"],
             **{k: v for k, v in r.items() if k.startswith("lc_")}}
            for r in hist.rows if any(k.startswith("lc_") for k in r)]
    table = write_table(rows, out_dir, NAME, title="mean LC (neurons cut by the 50-vertex "
                        "cross-polytope, all 4 hidden layers + output)")
    fig, axes = figure(len(radii) + 1, 1, size=(4.2, 3.2))
    steps = [max(r["step"], 1) for r in rows]
    for ax, r in zip(axes[0], radii):
        for name in points:
            ax.plot(steps, [row[f"lc_{name}_r{r:g}"] for row in rows], "o-", ms=3, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("optimisation step")
        ax.set_ylabel("local complexity")
        ax.set_title(f"radius {r:g}", fontsize=9)
        ax.legend(fontsize=7)
    ax = axes[0][-1]
    ax.plot(steps, [row["train_acc"] for row in rows], label="train")
    ax.plot(steps, [row["test_acc"] for row in rows], label="test")
    ax.set_xscale("log")
    ax.set_xlabel("optimisation step")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7)
    save(fig, out_dir, f"{NAME}-curves.png")
    write_markdown(out_dir, NAME, "Local complexity dynamics", [
        f"MLP 64 → [200]×4 → 10, {n_train} digits training images, Adam lr 1e-3, batch 200, "
        f"L2 weight decay 1e-2, {epochs} epochs ({rows[-1]['step']} steps).", table,
        f"![curves]({NAME}-curves.png)"])
    return {"rows": rows}
