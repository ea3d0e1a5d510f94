"""Training with the Hessian (rugosity) penalty vs without: complexity, accuracy and cost.

A small digits CNN is trained plain, with the exact Hessian penalty and with the random-sign
estimator (one probe), the augmentation ``T`` being ±1-pixel shifts and small rotations. The
training data itself is not augmented, so the penalty is the only difference. Reported: test
accuracy, Hessian complexity on test points (augmentation estimator with fixed augmented
copies, and the σ = 1e-2 perturbation estimator) and the wall time of a training epoch.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..complexity import hessian_complexity
from ..datasets import digits
from ..regularizers import hessian_penalty
from ..training import accuracy, train
from ._common import augment_images, cnn_digits, figure, mean_std, save, write_markdown, write_table

NAME = "hessian-regularizer"
DESCRIPTION = "digits CNN trained with vs without the Hessian penalty (exact and random-sign)"


def run(out_dir: Path, *, quick: bool = False, seed: int = 0, progress: bool = True) -> dict:
    torch.set_num_threads(1)
    ds = digits(image=True)
    epochs = 1 if quick else 15
    seeds = [seed] if quick else [seed, seed + 1, seed + 2]
    Xtr, ytr = (ds.X_train[:200], ds.y_train[:200]) if quick else (ds.X_train, ds.y_train)
    Xte = ds.X_test[:64] if quick else ds.X_test
    Xte_aug = augment_images(Xte, torch.Generator().manual_seed(999))
    # the exact penalty costs ~20 reverse passes per sample: run it at one λ only
    conditions = [("plain", None, 0.0), ("random λ=0.1", "random", 0.1)]
    if not quick:
        conditions = [("plain", None, 0.0), ("random λ=0.01", "random", 0.01),
                      ("random λ=0.1", "random", 0.1), ("random λ=1", "random", 1.0),
                      ("exact λ=0.1", "exact", 0.1)]
    raw = []
    for label, est, lam in conditions:
        for s in seeds:
            gen = torch.Generator().manual_seed(1000 + s)

            def penalty(m, xb, yb, est=est, gen=gen):
                return hessian_penalty(m, xb, augment_images(xb, gen), estimator=est or "random",
                                       n_probes=1, generator=gen)

            torch.manual_seed(s)
            net = cnn_digits(8)
            t0 = time.perf_counter()
            train(net, Xtr, ytr, epochs=epochs, lr=1e-3, batch_size=64, seed=s,
                  penalty=penalty if est else None, penalty_weight=lam, progress=False)
            sec = (time.perf_counter() - t0) / epochs
            net.eval()
            raw.append({"condition": label, "seed": s, "test_acc": accuracy(net, Xte, ds.y_test[:len(Xte)]),
                        "train_acc": accuracy(net, Xtr, ytr),
                        "hessian_aug_test": hessian_complexity(net, Xte, x_aug=Xte_aug).value,
                        "hessian_pert_test": hessian_complexity(net, Xte, sigma=1e-2, seed=0).value,
                        "sec_per_epoch": sec})
            if progress:
                print(f"[{NAME}] {raw[-1]}", flush=True)
    write_table(raw, out_dir, f"{NAME}-runs")
    summary = []
    base = mean_std([r["sec_per_epoch"] for r in raw if r["condition"] == "plain"])[0]
    for label, _, _ in conditions:
        rs = [r for r in raw if r["condition"] == label]
        row = {"condition": label}
        for k in ("test_acc", "train_acc", "hessian_aug_test", "hessian_pert_test"):
            m, sd = mean_std([r[k] for r in rs])
            row[k] = f"{m:.4g} ± {sd:.2g}"
        sec = mean_std([r["sec_per_epoch"] for r in rs])[0]
        row["sec_per_epoch"] = f"{sec:.3g}"
        row["cost_vs_plain"] = f"{sec / base:.2f}×"
        summary.append(row)
    table = write_table(summary, out_dir, NAME, title=f"{epochs} epochs, mean ± std over {len(seeds)} seeds")
    fig, axes = figure(2, 1)
    for ax, key in zip(axes[0], ("hessian_aug_test", "test_acc")):
        labels = [c[0] for c in conditions]
        vals = [mean_std([r[key] for r in raw if r["condition"] == lab]) for lab in labels]
        ax.bar(range(len(labels)), [v[0] for v in vals], yerr=[v[1] for v in vals], capsize=3)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=30, fontsize=7)
        ax.set_ylabel(key)
    save(fig, out_dir, f"{NAME}-bars.png")
    write_markdown(out_dir, NAME, "Hessian regularizer", [
        "Penalty: mean_n sqrt(Σ_c ||A_c[x_n] − A_c[T(x_n)]||² + 1e-4), T = random ±1-pixel shift "
        "+ rotation ≤ 10°; random estimator with one sign probe (two reverse passes per sample).",
        table, f"![bars]({NAME}-bars.png)"])
    return {"summary": summary}
