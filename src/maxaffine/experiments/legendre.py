"""Legendre max-affine approximation of trained networks: accuracy and error vs plane budget.

Trains sigmoid, tanh and ReLU MLPs and a small tanh CNN on digits (8x8), and tanh and ReLU
MLPs on mnist1d, then approximates each with :func:`maxaffine.legendre.approximate` for a range of plane budgets
and three plane-selection rules (random, k-means, greedy), recording the test accuracy of
f̂ next to that of f, the mean |f - f̂| on the test set, and the build and predict times.

References
----------
.. [1] Perrett, Wood, Brown, arXiv:2307.09602.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..datasets import digits, mnist1d
from ..legendre import approximate, estimate_curvature
from ..training import accuracy, train

NAME = "legendre"
DESCRIPTION = ("Legendre max-affine approximation of sigmoid/tanh/ReLU MLPs and a tanh CNN on "
               "digits, tanh/ReLU MLPs on mnist1d: accuracy and |f - f̂| vs number of planes and "
               "plane selection")

_FIELDS = ["dataset", "model", "select", "n_planes", "acc_f", "acc_fhat", "acc_ratio",
           "mean_abs_err", "agreement", "c_mean", "build_s", "predict_s"]


def _mlp(d: int, act: type[nn.Module], width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d, width), act(), nn.Linear(width, width), act(),
                         nn.Linear(width, 10))


def _cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 16, 3, stride=2),
                         nn.Tanh(), nn.Flatten(), nn.Linear(16 * 3 * 3, 10))


def _settings(quick: bool) -> dict[str, Any]:
    if quick:
        return dict(cases=[("digits", "tanh-mlp")], budgets=[10, 30, 100],
                    selects=["random", "kmeans", "greedy"], epochs=8, curvature_samples=128,
                    curvature_iters=8)
    return dict(cases=[("digits", "tanh-mlp"), ("digits", "sigmoid-mlp"), ("digits", "relu-mlp"),
                       ("digits", "tanh-cnn"), ("mnist1d", "tanh-mlp"), ("mnist1d", "relu-mlp")],
                budgets=[10, 30, 100, 300, 1000, None], selects=["random", "kmeans", "greedy"],
                epochs=40, curvature_samples=1024, curvature_iters=20)


def _build(dataset: str, model: str, seed: int):
    if dataset == "digits":
        ds = digits(image=model.endswith("cnn"), seed=seed)
    else:
        ds = mnist1d(n_samples=4000, seed=seed)
    d = int(torch.tensor(ds.in_shape).prod())
    act = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU}[model.split("-")[0]]
    torch.manual_seed(seed)
    net = _cnn() if model.endswith("cnn") else _mlp(d, act, 64 if dataset == "digits" else 128)
    return ds, net


def run(out_dir: Path, *, quick: bool = False, seed: int = 0, progress: bool = True
        ) -> dict[str, Any]:
    """Run the experiment, writing ``legendre.csv``, ``legendre.md`` and figures into out_dir.

    Returns
    -------
    dict
        ``rows`` (list of dicts, one per model x selection x budget), and ``headline``:
        the smallest plane budget at which f̂ of the digits tanh MLP reaches 95% of f's test
        accuracy, per selection rule.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = _settings(quick)
    rows: list[dict[str, Any]] = []
    templates = None
    for dataset, model in cfg["cases"]:
        ds, net = _build(dataset, model, seed)
        lr = 3e-3 if dataset == "digits" else 1e-3
        train(net, ds.X_train, ds.y_train, epochs=cfg["epochs"], lr=lr, seed=seed,
              progress=progress)
        net.eval()
        acc_f = accuracy(net, ds.X_test, ds.y_test)
        with torch.no_grad():
            f_test = net.double()(ds.X_test.double())
        hess = estimate_curvature(net, ds.X_train, iters=cfg["curvature_iters"],
                                  n_samples=cfg["curvature_samples"], seed=seed)
        for select in cfg["selects"]:
            for budget in cfg["budgets"]:
                if budget is not None and budget >= len(ds.X_train):
                    continue
                if budget is None and select != cfg["selects"][0]:
                    continue  # "all training points" does not depend on the selection rule
                t0 = time.perf_counter()
                approx = approximate(net, ds.X_train, budget, select=select,
                                     curvature_samples=cfg["curvature_samples"],
                                     curvature_iters=cfg["curvature_iters"], hessian=hess,
                                     seed=seed, progress=progress)
                build = time.perf_counter() - t0
                t0 = time.perf_counter()
                f_hat = approx.predict(ds.X_test)
                pred_s = time.perf_counter() - t0
                acc_hat = (f_hat.argmax(1) == ds.y_test).double().mean().item()
                rows.append(dict(
                    dataset=dataset, model=model, select="all" if budget is None else select,
                    n_planes=approx.n_planes, acc_f=acc_f, acc_fhat=acc_hat,
                    acc_ratio=acc_hat / acc_f, mean_abs_err=(f_hat - f_test).abs().mean().item(),
                    agreement=(f_hat.argmax(1) == f_test.argmax(1)).double().mean().item(),
                    c_mean=approx.c.mean().item(), build_s=build, predict_s=pred_s))
                if (dataset, model, select, budget) == ("digits", "tanh-mlp", "kmeans", 30):
                    templates = approx
        net.float()
    _write(out_dir, rows)
    figures = _plot(out_dir, rows, templates)
    headline = {}
    for select in cfg["selects"]:
        ok = [r["n_planes"] for r in rows if r["dataset"] == "digits" and r["model"] == "tanh-mlp"
              and r["select"] == select and r["acc_ratio"] >= 0.95]
        headline[select] = min(ok) if ok else None
    return {"rows": rows, "headline": headline, "figures": figures}


def _write(out_dir: Path, rows: list[dict[str, Any]]) -> None:
    with open(out_dir / "legendre.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| dataset | model | select | planes | acc f | acc f̂ | ratio | mean abs err | "
             "argmax agree | mean c | build s | predict s |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['select']} | {r['n_planes']} | "
            f"{r['acc_f']:.3f} | {r['acc_fhat']:.3f} | {r['acc_ratio']:.3f} | "
            f"{r['mean_abs_err']:.3f} | {r['agreement']:.3f} | {r['c_mean']:.2f} | "
            f"{r['build_s']:.2f} | {r['predict_s']:.3f} |")
    (out_dir / "legendre.md").write_text("\n".join(lines) + "\n")


def _plot(out_dir: Path, rows: list[dict[str, Any]], templates) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(dict.fromkeys((r["dataset"], r["model"]) for r in rows))
    files = []
    for key, ylabel, fname, logy in (("mean_abs_err", "mean |f - f̂| (test)", "legendre-error.png",
                                      True),
                                     ("acc_ratio", "acc(f̂) / acc(f) (test)",
                                      "legendre-accuracy.png", False)):
        fig, axes = plt.subplots(1, len(cases), figsize=(3.2 * len(cases), 3.0), squeeze=False)
        for ax, (dataset, model) in zip(axes[0], cases):
            sub = [r for r in rows if (r["dataset"], r["model"]) == (dataset, model)]
            full = [r for r in sub if r["select"] == "all"]
            for select in sorted({r["select"] for r in sub} - {"all"}):
                pts = sorted((r["n_planes"], r[key]) for r in sub if r["select"] == select)
                pts += [(r["n_planes"], r[key]) for r in full]
                ax.plot(*zip(*pts), marker="o", ms=3, label=select)
            if full:
                ax.axvline(full[0]["n_planes"], color="gray", lw=0.5, ls=":")
            if key == "acc_ratio":
                ax.axhline(0.95, color="k", lw=0.6, ls="--")
            ax.set_xscale("log")
            if logy:
                ax.set_yscale("log")
            ax.set_title(f"{dataset} {model}", fontsize=9)
            ax.set_xlabel("planes per output")
        axes[0][0].set_ylabel(ylabel)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / fname, dpi=110)
        plt.close(fig)
        files.append(fname)
    if templates is not None and templates.in_shape == (64,):
        n = 8
        fig, axes = plt.subplots(3, n, figsize=(1.3 * n, 4.2))
        # plane p of output o: slope of g (= ∇f_o(z_p) + c_o z_p) at the centre z_p, o = the
        # class f predicts at z_p
        Z = templates.points[:n]
        pred = (0.5 * (templates.predict_parts(Z)[0] + templates.predict_parts(Z)[1])).argmax(1)
        for p in range(n):
            o = int(pred[p])
            grad = templates.slopes_g[o, p] - templates.c[o] * Z[p]
            for row, (img, title) in enumerate(((Z[p], f"z{p}"), (grad, f"∇f{o}"),
                                                (templates.slopes_g[o, p], f"slope g{o}"))):
                ax = axes[row, p]
                lim = float(img.abs().max()) or 1.0
                ax.imshow(img.reshape(8, 8).detach().cpu().numpy(), cmap="gray" if row == 0 else "RdBu_r",
                          vmin=0 if row == 0 else -lim, vmax=lim)
                ax.set_title(title, fontsize=7)
                ax.axis("off")
        fig.tight_layout()
        fig.savefig(out_dir / "legendre-templates.png", dpi=110)
        plt.close(fig)
        files.append("legendre-templates.png")
    return files
