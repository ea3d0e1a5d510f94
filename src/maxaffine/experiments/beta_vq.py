"""Hard, soft and learned beta-VQ activations: accuracy, and where a learned beta settles.

Balestriero & Baraniuk (ICLR 2019) read a ReLU unit as hard vector quantization over its
two pieces (0, u); beta-VQ inference with ``eta = beta / (1 - beta)`` gives
``sigma(eta u) u``: ReLU at beta = 1, SiLU at beta = 1/2, swish when beta is learned.
This experiment trains the same small networks with

- ``relu``: hard VQ (beta = 1),
- ``silu``: soft VQ (beta = 1/2, fixed),
- ``swish-0.5``: beta learned per channel, initialized at 1/2,
- ``swish-0.9``: beta learned per channel, initialized at 0.9 (does the end point depend on
  the start?),

on digits (MLP on the flattened 8x8 images, and a small CNN) and mnist1d (MLP), over
several seeds, and records test accuracy and the learned beta of every layer (final
distribution and its trajectory over epochs).

References
----------
.. [1] R. Balestriero and R. G. Baraniuk, "From Hard to Soft: Understanding Deep Network
   Nonlinearities via Vector Quantization and Statistical Inference", ICLR 2019.
.. [2] P. Ramachandran, B. Zoph and Q. V. Le, "Searching for Activation Functions",
   arXiv:1710.05941, 2017.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..activations import BetaVQ
from ..datasets import Dataset, digits, mnist1d
from ..training import accuracy, train

NAME = "beta-vq"
DESCRIPTION = ("ReLU (hard VQ) vs SiLU (soft VQ, beta=1/2) vs swish (learned per-channel "
               "beta-VQ): test accuracy and the learned beta per layer")

ACTIVATIONS = ("relu", "silu", "swish-0.5", "swish-0.9")
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def make_activation(kind: str, channels: int) -> nn.Module:
    """The activation ``kind`` (one of :data:`ACTIVATIONS`) for ``channels`` channels."""
    if kind == "relu":
        return nn.ReLU()
    if kind == "silu":
        return BetaVQ("relu", 0.5)
    if kind.startswith("swish-"):
        return BetaVQ("relu", float(kind.split("-", 1)[1]), learn_beta=True,
                      num_channels=channels)
    raise ValueError(f"unknown activation {kind!r}; use one of {ACTIVATIONS}")


def mlp(in_features: int, width: int, kind: str, n_classes: int = 10) -> nn.Sequential:
    """Two hidden layers of ``width`` units with activation ``kind``."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(in_features, width), make_activation(kind, width),
        nn.Linear(width, width), make_activation(kind, width), nn.Linear(width, n_classes))


def cnn(kind: str, n_classes: int = 10) -> nn.Sequential:
    """Small CNN for 1x8x8 digits: two 3x3 conv blocks with 2x2 max-pooling."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), make_activation(kind, 16), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), make_activation(kind, 32), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 2 * 2, n_classes))


@dataclass(frozen=True)
class Setting:
    """One dataset/model pair of the experiment."""

    name: str
    data: Callable[[], Dataset]
    model: Callable[[str], nn.Module]
    epochs: int


def _settings(quick: bool, seed: int) -> list[Setting]:
    width = 32 if quick else 128
    n1d = 1000 if quick else 5000
    ep = (2, 2, 2) if quick else (40, 60, 40)
    return [
        Setting("digits-mlp", lambda: digits(image=False, seed=seed),
                lambda k: mlp(64, width, k), ep[0]),
        Setting("mnist1d-mlp", lambda: mnist1d(n_samples=n1d, seed=seed),
                lambda k: mlp(40, width, k), ep[1]),
        Setting("digits-cnn", lambda: digits(image=True, seed=seed), cnn, ep[2]),
    ]


def _betas(model: nn.Module) -> list[np.ndarray]:
    """Learned beta of every BetaVQ layer with ``learn_beta``, in forward order."""
    return [m.beta.detach().double().cpu().numpy().ravel()
            for m in model.modules() if isinstance(m, BetaVQ) and m.learn_beta]


def _stats(values: np.ndarray) -> dict[str, float]:
    q = np.quantile(values, QUANTILES)
    out = {"beta_mean": float(values.mean()), "beta_std": float(values.std())}
    out.update({f"beta_q{int(round(100 * p)):02d}": float(v) for p, v in zip(QUANTILES, q)})
    out["frac_above_half"] = float((values > 0.5).mean())
    return out


def plot_beta_hist(final: dict[str, list[np.ndarray]], ax=None, *, title: str = ""):
    """Histogram of final learned betas, one step histogram per layer.

    Parameters
    ----------
    final : dict layer name -> list of beta arrays (one per seed)
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(4.5, 3.2)).subplots()
    bins = np.linspace(0, 1, 41)
    for layer, arrays in final.items():
        ax.hist(np.concatenate(arrays), bins=bins, histtype="step", lw=1.5, label=layer)
    for x, lab in ((0.5, "soft (SiLU)"), (1.0, "hard (ReLU)")):
        ax.axvline(x, color="grey", ls="--", lw=0.8)
        ax.text(x, ax.get_ylim()[1] * 0.95, lab, rotation=90, va="top", ha="right",
                fontsize=7, color="grey")
    ax.set_xlabel("learned β (per channel)")
    ax.set_ylabel("channels")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return ax


def plot_beta_epochs(traj: dict[str, np.ndarray], ax=None, *, title: str = ""):
    """Mean learned beta over epochs, one line per (init, layer).

    Parameters
    ----------
    traj : dict label -> array of shape (n_seeds, n_epochs + 1) of per-layer mean beta
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(4.5, 3.2)).subplots()
    for label, arr in traj.items():
        mean = arr.mean(0)
        epochs = np.arange(len(mean))
        line, = ax.plot(epochs, mean, lw=1.5, label=label)
        if arr.shape[0] > 1:
            ax.fill_between(epochs, arr.min(0), arr.max(0), color=line.get_color(), alpha=0.2)
    ax.axhline(0.5, color="grey", ls="--", lw=0.8)
    ax.axhline(1.0, color="grey", ls="--", lw=0.8)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean learned β")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)
    return ax


def run(out_dir: Path, *, quick: bool = False, seed: int = 0,
        progress: bool = True) -> dict[str, Any]:
    """Train every setting x activation x seed; write CSVs, a markdown table and figures.

    Parameters
    ----------
    out_dir : Path
        Receives ``beta-vq-results.csv`` (one row per run), ``beta-vq-beta.csv`` (final
        learned-beta statistics per run and layer), ``beta-vq-trajectory.csv`` (mean beta
        per epoch), ``beta-vq.md`` (tables) and ``beta-vq-hist.png``,
        ``beta-vq-epochs.png``.
    quick : bool
        One seed, 2 epochs, narrow nets and a small mnist1d (a smoke run, < 30 s).
    seed : int
        First seed; runs use ``seed, seed + 1, ...``.
    progress : bool
        Show progress bars.

    Returns
    -------
    dict
        ``test_acc[setting][activation] = (mean, std)``, ``beta[setting][activation][layer]``
        = final beta statistics, ``seconds``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = [seed] if quick else [seed + i for i in range(3)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small nets: one thread is fastest and leaves the other core free
    t_start = time.perf_counter()
    results: list[dict[str, Any]] = []
    beta_rows: list[dict[str, Any]] = []
    traj_rows: list[dict[str, Any]] = []
    final: dict[str, dict[str, dict[str, list[np.ndarray]]]] = {}
    traj: dict[str, dict[str, dict[str, list[list[float]]]]] = {}
    try:
        for setting in _settings(quick, seed):
            data = setting.data()
            for kind in ACTIVATIONS:
                for s in seeds:
                    torch.manual_seed(s)
                    model = setting.model(kind)
                    per_epoch: list[list[np.ndarray]] = []

                    def log_beta(m: nn.Module, epoch: int, _store=per_epoch) -> None:
                        _store.append(_betas(m))

                    t0 = time.perf_counter()
                    train(model, data.X_train, data.y_train, epochs=setting.epochs, lr=1e-3,
                          batch_size=64, callbacks=[log_beta], seed=s, progress=progress)
                    row = {"setting": setting.name, "activation": kind, "seed": s,
                           "epochs": setting.epochs,
                           "train_acc": accuracy(model, data.X_train, data.y_train),
                           "test_acc": accuracy(model, data.X_test, data.y_test),
                           "seconds": time.perf_counter() - t0}
                    results.append(row)
                    if not kind.startswith("swish"):
                        continue
                    for li, values in enumerate(per_epoch[-1]):
                        layer = f"layer{li + 1}"
                        beta_rows.append({"setting": setting.name, "activation": kind,
                                          "seed": s, "layer": layer, "channels": values.size,
                                          **_stats(values)})
                        final.setdefault(setting.name, {}).setdefault(kind, {}) \
                            .setdefault(layer, []).append(values)
                        means = [float(ep[li].mean()) for ep in per_epoch]
                        traj.setdefault(setting.name, {}).setdefault(kind, {}) \
                            .setdefault(layer, []).append(means)
                        for e, v in enumerate(means):
                            traj_rows.append({"setting": setting.name, "activation": kind,
                                              "seed": s, "layer": layer, "epoch": e,
                                              "beta_mean": v})
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - t_start

    _write_csv(out_dir / "beta-vq-results.csv", results)
    _write_csv(out_dir / "beta-vq-beta.csv", beta_rows)
    _write_csv(out_dir / "beta-vq-trajectory.csv", traj_rows)
    summary = _summarize(results, final)
    (out_dir / "beta-vq.md").write_text(_markdown(summary, seeds, seconds, quick))
    _figures(out_dir, final, traj)
    summary["seconds"] = seconds
    return summary


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as fh:
        if not rows:
            fh.write("")
            return
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                             for k, v in row.items()})


def _summarize(results, final) -> dict[str, Any]:
    acc: dict[str, dict[str, tuple[float, float]]] = {}
    for setting in dict.fromkeys(r["setting"] for r in results):
        acc[setting] = {}
        for kind in ACTIVATIONS:
            vals = np.array([r["test_acc"] for r in results
                             if r["setting"] == setting and r["activation"] == kind])
            acc[setting][kind] = (float(vals.mean()), float(vals.std()))
    beta = {setting: {kind: {layer: _stats(np.concatenate(arrs))
                             for layer, arrs in layers.items()}
                      for kind, layers in kinds.items()}
            for setting, kinds in final.items()}
    return {"test_acc": acc, "beta": beta}


def _markdown(summary: dict[str, Any], seeds: list[int], seconds: float, quick: bool) -> str:
    lines = [f"# beta-VQ activations ({'quick' if quick else 'full'} run)", "",
             f"Seeds: {seeds}; total time {seconds:.0f} s.", "",
             "## Test accuracy (mean ± std over seeds)", "",
             "| setting | " + " | ".join(ACTIVATIONS) + " |",
             "|---|" + "---|" * len(ACTIVATIONS)]
    for setting, row in summary["test_acc"].items():
        cells = [f"{100 * m:.2f} ± {100 * s:.2f}" for m, s in (row[k] for k in ACTIVATIONS)]
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    lines += ["", "## Final learned β per layer (all channels of all seeds pooled)", "",
              "| setting | activation | layer | mean | std | q05 | q25 | median | q75 | q95 "
              "| frac > 1/2 |", "|---|---|---|" + "---|" * 8]
    for setting, kinds in summary["beta"].items():
        for kind, layers in kinds.items():
            for layer, st in layers.items():
                lines.append(
                    f"| {setting} | {kind} | {layer} | {st['beta_mean']:.3f} | "
                    f"{st['beta_std']:.3f} | {st['beta_q05']:.3f} | {st['beta_q25']:.3f} | "
                    f"{st['beta_q50']:.3f} | {st['beta_q75']:.3f} | {st['beta_q95']:.3f} | "
                    f"{st['frac_above_half']:.2f} |")
    lines += ["", "Figures: `beta-vq-hist.png` (final learned β), `beta-vq-epochs.png` "
              "(mean β per layer over epochs, band = range over seeds).", ""]
    return "\n".join(lines)


def _figures(out_dir: Path, final, traj) -> None:
    from matplotlib.figure import Figure

    settings = list(final)
    if not settings:
        return
    fig = Figure(figsize=(4.2 * len(settings), 6.4))
    axes = fig.subplots(2, len(settings), squeeze=False)
    for j, setting in enumerate(settings):
        for i, kind in enumerate(("swish-0.5", "swish-0.9")):
            if kind in final[setting]:
                plot_beta_hist(final[setting][kind], ax=axes[i, j],
                               title=f"{setting}, {kind}")
    fig.tight_layout()
    fig.savefig(out_dir / "beta-vq-hist.png", dpi=110)

    fig = Figure(figsize=(4.2 * len(settings), 3.4))
    axes = fig.subplots(1, len(settings), squeeze=False)
    for j, setting in enumerate(settings):
        lines = {f"{kind} {layer}": np.asarray(v)
                 for kind, layers in traj[setting].items() for layer, v in layers.items()}
        plot_beta_epochs(lines, ax=axes[0, j], title=setting)
    fig.tight_layout()
    fig.savefig(out_dir / "beta-vq-epochs.png", dpi=110)


__all__ = ["NAME", "DESCRIPTION", "ACTIVATIONS", "run", "mlp", "cnn", "make_activation",
           "plot_beta_hist", "plot_beta_epochs"]
