"""Template–input cosines as a memorization proxy, as capacity grows and the training set shrinks.

Claim checked (Balestriero & Baraniuk 2018): at memorized training points the true class's
template matches the input (large positive cosine) and the other classes' templates do not
(negative cosine). An MLP on digits with hidden width ∈ {16, 64, 256, 1024} is trained on
subsets of 100, 400 or all 1347 training images for a fixed number of steps; cosines are
reported on the training points and on test points.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..datasets import digits
from ..templates import memorization
from ..training import accuracy, train
from ._common import figure, mlp, save, write_markdown, write_table

NAME = "memorization"
DESCRIPTION = "template-input cosines (true vs other classes) vs width and training-set size"


def run(out_dir: Path, *, quick: bool = False, seed: int = 0, progress: bool = True) -> dict:
    torch.set_num_threads(1)
    ds = digits(image=False)
    widths = (16, 256) if quick else (16, 64, 256, 1024)
    sizes = (100,) if quick else (100, 400, len(ds.X_train))
    steps = 30 if quick else 1500
    rows = []
    for n in sizes:
        X, y = ds.X_train[:n], ds.y_train[:n]
        for w in widths:
            torch.manual_seed(seed)
            net = mlp(64, [w, w])
            epochs = max(1, math.ceil(steps / math.ceil(n / 64)))
            train(net, X, y, epochs=epochs, lr=1e-3, batch_size=64, seed=seed, progress=False)
            net.eval()
            tr = memorization(net, X, y).summary()
            te = memorization(net, ds.X_test, ds.y_test).summary()
            rows.append({"n_train": n, "width": w, "train_acc": accuracy(net, X, y),
                         "test_acc": accuracy(net, ds.X_test, ds.y_test),
                         "cos_true_train": tr["cos_true"], "cos_other_train": tr["cos_other"],
                         "cos_true_test": te["cos_true"], "cos_other_test": te["cos_other"]})
            if progress:
                print(f"[{NAME}] {rows[-1]}", flush=True)
    table = write_table(rows, out_dir, NAME, title="mean cosine between each class template "
                        "and the input (true class vs mean over the other 9)")
    fig, axes = figure(len(sizes), 1, size=(3.6, 3.0))
    for ax, n in zip(axes[0], sizes):
        rs = [r for r in rows if r["n_train"] == n]
        ws = [r["width"] for r in rs]
        for key, style in (("cos_true_train", "o-"), ("cos_other_train", "s-"),
                           ("cos_true_test", "o--"), ("cos_other_test", "s--")):
            ax.plot(ws, [r[key] for r in rs], style, label=key)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xscale("log")
        ax.set_xlabel("hidden width")
        ax.set_title(f"{n} training images", fontsize=9)
    axes[0][0].set_ylabel("cosine(template, input)")
    axes[0][0].legend(fontsize=6)
    save(fig, out_dir, f"{NAME}-cosines.png")
    write_markdown(out_dir, NAME, "Memorization: template–input cosines", [
        f"MLP 64 → [w, w] → 10 on digits, Adam lr 1e-3, {steps} steps of batch 64.", table,
        f"![cosines]({NAME}-cosines.png)"])
    return {"rows": rows}
