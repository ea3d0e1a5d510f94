"""Data augmentation lowers Hessian (rugosity) complexity? (LeJeune et al. 2019, in miniature).

The same small CNN is trained on digits with and without augmentation (±1-pixel shifts and
rotations up to ±10°). After every epoch the Hessian complexity is measured on fixed train and
test batches with both estimators of DESIGN §8: the perturbation estimator (σ = 1e-4, the
authors' value, and σ = 1e-2) and the augmentation estimator (fixed augmented copies).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..callbacks import HessianComplexityCallback
from ..datasets import digits
from ..training import train
from ._common import augment_images, cnn_digits, figure, mean_std, save, write_markdown, write_table

NAME = "augmentation-rugosity"
DESCRIPTION = "Hessian complexity per epoch of a digits CNN trained with vs without augmentation"


def run(out_dir: Path, *, quick: bool = False, seed: int = 0, progress: bool = True) -> dict:
    torch.set_num_threads(1)
    ds = digits(image=True)
    n_eval = 32 if quick else 400
    epochs = 1 if quick else 30
    seeds = [seed] if quick else [seed, seed + 1, seed + 2]
    Xtr, ytr = (ds.X_train[:200], ds.y_train[:200]) if quick else (ds.X_train, ds.y_train)
    g = torch.Generator().manual_seed(12345)
    sets = {"train": Xtr[:n_eval], "test": ds.X_test[:n_eval]}
    aug_fixed = {k: augment_images(v, g) for k, v in sets.items()}
    every = 1 if quick else 2
    rows, curves = [], {}
    for augmented in (False, True):
        for s in seeds:
            cbs = []
            for split, X in sets.items():
                cbs += [HessianComplexityCallback(X, sigma=1e-4, name=f"pert1e-4_{split}", seed=s, every=every),
                        HessianComplexityCallback(X, sigma=1e-2, name=f"pert1e-2_{split}", seed=s, every=every),
                        HessianComplexityCallback(X, x_aug=aug_fixed[split], name=f"aug_{split}", every=every)]
            torch.manual_seed(s)
            net = cnn_digits(8)
            hist = train(net, Xtr, ytr, epochs=epochs, lr=1e-3, batch_size=64, seed=s,
                         augment=augment_images if augmented else None, callbacks=cbs,
                         X_test=ds.X_test, y_test=ds.y_test, progress=progress)
            tag = "augmented" if augmented else "plain"
            for r in hist.rows:
                if "aug_train" in r:
                    rows.append({"training": tag, "seed": s, **r})
            curves[(tag, s)] = [r for r in hist.rows if "aug_train" in r]
    write_table(rows, out_dir, f"{NAME}-epochs")
    keys = [f"{e}_{split}" for e in ("pert1e-4", "pert1e-2", "aug") for split in ("train", "test")]
    final = []
    for tag in ("plain", "augmented"):
        last = [curves[(tag, s)][-1] for s in seeds]
        row = {"training": tag, "test_acc": "{:.4f} ± {:.4f}".format(*mean_std([r["test_acc"] for r in last])),
               "train_acc": "{:.4f}".format(mean_std([r["train_acc"] for r in last])[0])}
        for k in keys:
            m, sd = mean_std([r[k] for r in last])
            row[k] = f"{m:.4g} ± {sd:.2g}"
        final.append(row)
    table = write_table(final, out_dir, NAME, title=f"final epoch ({epochs}), mean ± std over "
                        f"{len(seeds)} seeds")
    fig, axes = figure(3, 1)
    for ax, est in zip(axes[0], ("pert1e-4", "pert1e-2", "aug")):
        for tag, color in (("plain", "C0"), ("augmented", "C1")):
            for split, ls in (("train", "-"), ("test", "--")):
                for i, s in enumerate(seeds):
                    c = curves[(tag, s)]
                    ax.plot([r["epoch"] for r in c], [r[f"{est}_{split}"] for r in c], ls, color=color,
                            alpha=0.8, label=f"{tag} {split}" if i == 0 else None)
        ax.set_title({"pert1e-4": "perturbation σ=1e-4", "pert1e-2": "perturbation σ=1e-2",
                      "aug": "augmentation estimator"}[est], fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("Hessian complexity")
    axes[0][0].legend(fontsize=7)
    save(fig, out_dir, f"{NAME}-curves.png")
    write_markdown(out_dir, NAME, "Augmentation and rugosity", [
        f"CNN (2 conv+ReLU+max-pool blocks, 8/16 channels, dense head) on digits, {epochs} epochs "
        f"of Adam; complexity on {n_eval} fixed train and test points every {every} epoch(s).",
        table, f"![curves]({NAME}-curves.png)"])
    out = {r["training"]: r for r in final}
    return out
