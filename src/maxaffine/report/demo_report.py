"""The demo report: the toy example's exact geometry and the digits CNN's slice and templates."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..affine import affine_map
from ..complexity import local_complexity
from ..errors import BudgetWarning
from ..partition import Slice, partition_slice
from ..trace import trace
from . import _draw
from .html import Report

#: Radius of the cross-polytope for local complexity on the toy data (the clouds' std is 0.4).
TOY_LC_RADIUS = 0.25


def _settings(quick: bool) -> dict:
    if quick:
        return {"toy_epochs": 20, "digits_epochs": 3, "strip": 5, "gif_every": 2, "lattice": 5,
                "digits_margin": 0.0, "digits_max_regions": 20000, "dpi": 80, "n_templates": 3}
    return {"toy_epochs": 80, "digits_epochs": 12, "strip": 7, "gif_every": 1, "lattice": 7,
            "digits_margin": 0.3, "digits_max_regions": None, "dpi": 110, "n_templates": 4}


def run_demo(out: str | Path = "maxaffine-demo", *, quick: bool = False, seed: int = 0,
             device: str = "cpu", progress: bool = True, verbose: bool = False,
             overwrite: bool = False) -> Path:
    """Train both demo models and write the HTML report into ``out``.

    Parameters
    ----------
    out : path
        Output folder: new, empty, or a previous maxaffine report (replaced atomically with
        ``overwrite=True``); checked before training starts.
    quick : bool
        Fewer epochs and coarser pictures (for tests: well under 20 s).
    seed : int
    device : str
        Torch device for training; the geometry is computed in float64 on the CPU.
    progress : bool
        Progress bars.
    verbose : bool
        Unused; kept for a uniform command line.
    overwrite : bool
        Replace a previous maxaffine report in ``out``.

    Returns
    -------
    Path
        The written ``index.html``.

    Raises
    ------
    InputError
        ``out`` is refused (see :func:`maxaffine.report.output.check_destination`).
    """
    return build_demo_report(Path(out), quick=quick, seed=seed, device=device,
                             progress=progress, verbose=verbose, overwrite=overwrite)


def build_demo_report(out: Path, *, quick: bool = False, seed: int = 0, device: str = "cpu",
                      progress: bool = True, verbose: bool = False,
                      overwrite: bool = False) -> Path:
    """Train the demo models and write the report (see :func:`run_demo`)."""
    import matplotlib

    from .output import check_destination

    check_destination(out, overwrite=overwrite)

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "cairo"):
        matplotlib.use("Agg")
    threads = torch.get_num_threads()
    # small models: one thread beats two contending ones on a shared 2-core machine
    torch.set_num_threads(1)
    try:
        return _build(Path(out), _settings(quick), quick, seed, device, progress, overwrite)
    finally:
        torch.set_num_threads(threads)


def _class_rgba(n: int) -> np.ndarray:
    from .. import plot

    return plot.class_colors(n)


def _scatter(ax, X: np.ndarray, y: np.ndarray, n_classes: int, size: float = 8) -> None:
    ax.scatter(X[:, 0], X[:, 1], c=_class_rgba(n_classes)[y], s=size, edgecolors="white",
               linewidths=0.4, zorder=7, gid="points")


def _build(out: Path, cfg: dict, quick: bool, seed: int, device: str, progress: bool,
           overwrite: bool) -> Path:
    import matplotlib.pyplot as plt

    from .. import demo, plot

    t_start = time.perf_counter()
    steps = tqdm(total=6, desc="demo", disable=not progress, leave=False)

    # -- toy: train ----------------------------------------------------------------------
    steps.set_postfix_str("training the toy network")
    toy = demo.train_toy(seed, epochs=cfg["toy_epochs"], device=device, progress=progress)
    steps.update()
    data = toy.data
    X, y, K = data.X_train.numpy(), data.y_train.numpy(), data.n_classes
    m = float(data.X_train.abs().max()) * 1.08
    slc = Slice.box((-m, m, -m, m))
    tr = trace(toy.model, data.X_train[:2])
    part = partition_slice(tr, slc, progress=False)
    tr0 = trace(demo.with_state(toy.model, toy.snapshots[0][1]), data.X_train[:2])
    part0 = partition_slice(tr0, slc, progress=False)
    lay1 = part.upto(0)
    final = toy.history.rows[-1]
    seg = _draw.boundary_segments(part)

    rep = Report("maxaffine demo: a deep network is a max-affine spline",
                 "Every ReLU network is a composition of max-affine spline operators (MASOs): "
                 "on each region of a partition of its input space it is exactly affine, "
                 "f(x) = A[x] x + b[x], and the region is named by the VQ code of x (which "
                 "piece every unit uses). This report trains two small networks and draws "
                 "that geometry exactly (float64 polygon partitions, not pixel sampling).")
    rep.record("toy", {"architecture": list(demo.TOY_WIDTHS), "epochs": cfg["toy_epochs"],
                       "train_accuracy": final["train_acc"], "test_accuracy": final["test_acc"],
                       "restarts": toy.restarts, "seed": seed,
                       "regions_init": part0.n_regions, "regions_layer1": lay1.n_regions,
                       "regions_final": part.n_regions,
                       "decision_boundary_length": float(np.linalg.norm(
                           seg[:, 1] - seg[:, 0], axis=1).sum()) if len(seg) else 0.0,
                       "window": [-m, m, -m, m]})
    rep.section("1. The toy example: 2 → 45 → 3 → 4",
                f"A 2D, 4-class dataset (one Gaussian cloud per quadrant, {len(X)} training "
                f"points) and the ReLU network 2 → 45 → 3 → 4 trained with Adam for "
                f"{cfg['toy_epochs']} epochs from an initialization with all biases zero. "
                f"Accuracy: train {final['train_acc']:.3f}, test {final['test_acc']:.3f}"
                + (f" (after {toy.restarts} re-initialisation(s): the 3-unit bottleneck lost "
                   "a unit)" if toy.restarts else "") + ".")

    # -- the headline figure: init, layer 1, layer 2, final --------------------------------
    steps.set_postfix_str("partitions")
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.9))
    plot.plot_partition(part0, color_by="class", ax=axes[0], boundary=False, legend=False)
    _draw.draw_boundary(axes[0], _draw.boundary_segments(part0))
    axes[0].set_title(f"initialization (zero biases): {part0.n_regions} cones", fontsize=10)
    plot.plot_partition(lay1, color_by="tile", ax=axes[1], legend=False, linewidth=0.6)
    axes[1].set_title(f"after layer 1: {lay1.n_regions} convex tiles", fontsize=10)
    plot.plot_partition(part, color_by="layer_code", ax=axes[2], boundary=False, legend=False,
                        linewidth=0.4, edge_alpha=0.5)
    _draw.draw_layer_edges(axes[2], part, 1, width=2.2)
    axes[2].set_title(f"after layer 2: {part.n_regions} regions", fontsize=10)
    plot.plot_partition(part, color_by="class", ax=axes[3], boundary=False, legend=False,
                        linewidth=0.4, edge_alpha=0.6)
    _draw.draw_boundary(axes[3], seg)
    _scatter(axes[3], X, y, K, size=7)
    axes[3].set_title("final partition + decision boundary", fontsize=10)
    for ax in axes:
        ax.set_aspect("equal")
    from matplotlib.lines import Line2D

    pal, lc = _class_rgba(K), plot.layer_colors(2)
    handles = ([Line2D([], [], marker="s", ls="", color=pal[c], label=f"class {c}")
                for c in range(K)]
               + [Line2D([], [], color=lc[0], label="layer-1 edge"),
                  Line2D([], [], color=lc[1], lw=2.2, label="layer-2 edge"),
                  Line2D([], [], color="#111111", lw=2.2, label="decision boundary")])
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8,
               frameon=False, bbox_to_anchor=(0.5, -0.03))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    rep.figure(fig, "demo-final", "The partition, from initialization to the trained network",
               "1) With zero biases every unit's boundary passes through the origin and the "
               "network is positively homogeneous, f(ax) = a f(x) for a > 0, so every region "
               "is a cone with apex 0 (coloured by predicted class; where all layer-2 units "
               "are off every logit is 0 and all classes tie). 2) After training, layer 1's "
               "45 units cut the plane along the lines <w_k, x> + b_k = 0: a line arrangement "
               "whose cells are convex tiles (tile colours). 3) Layer 2's 3 units subdivide "
               "the tiles; their boundaries (thick orange) are straight inside each tile and "
               "bend where they cross a layer-1 line, so layer 2's own regions (colours: "
               "layer-2 code) are non-convex unions of tiles. 4) The final linear regions "
               "coloured by predicted class with the exact decision boundary: inside each "
               "region it is a straight segment where the two top class scores tie.",
               dpi=cfg["dpi"])
    steps.update()

    # -- power diagram and templates -------------------------------------------------------
    steps.set_postfix_str("power diagram and templates")
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 5.6))
    plot.plot_power_diagram(tr, 0, lay1, ax=axes[0], legend=False)
    axes[0].set_title("layer 1 as a power diagram", fontsize=10)
    axes[0].set_aspect("equal")
    lattice = np.linspace(-0.8 * m, 0.8 * m, cfg["lattice"])
    P = torch.as_tensor(np.stack(np.meshgrid(lattice, lattice), -1).reshape(-1, 2))
    A = affine_map(tr, P).A.numpy()  # (N, 4, 2): the class templates at each point
    plot.plot_partition(part, color_by="class", ax=axes[1], boundary=False, legend=False,
                        linewidth=0.3, alpha=0.55, edge_alpha=0.5)
    _draw.draw_boundary(axes[1], seg, lw=1.5)
    scale = 0.42 * (lattice[1] - lattice[0]) / max(float(np.linalg.norm(A, axis=2).max()), 1e-12)
    for c in range(A.shape[1]):
        axes[1].quiver(P[:, 0], P[:, 1], A[:, c, 0] * scale, A[:, c, 1] * scale, angles="xy",
                       scale_units="xy", scale=1, color=pal[c], width=0.006, zorder=8)
    axes[1].plot(P[:, 0], P[:, 1], "k.", ms=3, zorder=9)
    axes[1].set_title("the four class templates A_c[x] (arrows)", fontsize=10)
    axes[1].set_aspect("equal")
    fig.tight_layout()
    rep.figure(fig, "demo-power-templates", "Power diagram of layer 1 and class templates",
               "Left: layer 1 is a MASO whose partition is a power diagram: the cell of x is "
               "argmin_q ||x − μ[q]||² − rad[q] over codes q, with centroid μ[q] = Wᵀq and "
               "rad[q] = ||μ[q]||² + 2bᵀq (dots: centroids of the cells, coloured like their "
               "cells). Right: at each black dot the four arrows are the rows A_c[x] of the "
               "network's slope on that dot's region, one per class: f_c(x) = <A_c[x], x> + "
               "b_c[x] is a matched filter and the prediction is the best-matching template "
               "plus offset. Arrows are constant inside a region and change across its edges.",
               dpi=cfg["dpi"])
    steps.update()

    # -- training dynamics -----------------------------------------------------------------
    steps.set_postfix_str("training dynamics")
    rows, parts = [], []
    Xtr64, Xte64 = data.X_train.double(), data.X_test.double()
    for epoch, state in tqdm(toy.snapshots, desc="epochs", disable=not progress, leave=False):
        tr_e = trace(demo.with_state(toy.model, state), data.X_train[:2])
        p = partition_slice(tr_e, slc, progress=False)
        lc_tr = local_complexity(tr_e, Xtr64, radius=TOY_LC_RADIUS, n_vertices=4, seed=seed)
        lc_te = local_complexity(tr_e, Xte64, radius=TOY_LC_RADIUS, n_vertices=4, seed=seed)
        parts.append((epoch, p))
        rows.append((epoch, p.upto(0).n_regions, p.n_regions,
                     float(lc_tr.total.double().mean()), float(lc_te.total.double().mean())))
    hist = toy.history.rows
    rep.section("2. Training: from cones to the final partition",
                "Partitions recomputed exactly after every epoch. Training moves the biases "
                "off zero, the lines leave the origin, and regions concentrate where the "
                "classes meet.")
    strip = np.unique(np.round(np.geomspace(1, len(parts), cfg["strip"]) - 1).astype(int))
    fig, axes = plt.subplots(1, len(strip), figsize=(2.5 * len(strip), 2.9))

    def frame(ax, i):
        epoch, p = parts[i]
        plot.plot_partition(p, color_by="class", ax=ax, boundary=False, legend=False,
                            linewidth=0.3, edge_alpha=0.6)
        _draw.draw_boundary(ax, _draw.boundary_segments(p), lw=1.6)
        ax.set_title(f"epoch {epoch}: {p.n_regions} regions", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.set_aspect("equal")

    for ax, i in zip(np.atleast_1d(axes), strip):
        frame(ax, i)
    fig.tight_layout()
    rep.figure(fig, "demo-evolution", "Partition during training (frames)",
               "Epoch 0 is the zero-bias initialization: every region is a cone through the "
               "origin. Later frames: linear regions coloured by predicted class, black "
               "decision boundary.", dpi=cfg["dpi"])
    gif_frames = list(range(0, len(parts), cfg["gif_every"]))
    rep.figure(_draw.gif_bytes(lambda ax, k: frame(ax, gif_frames[k]), len(gif_frames)),
               "demo-evolution-anim", "Partition during training (animation)",
               "One frame per epoch, same colouring as the strip above.", mime="image/gif")
    ep = np.array([r[0] for r in rows])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    axes[0].plot(ep, [r[1] for r in rows], label="after layer 1")
    axes[0].plot(ep, [r[2] for r in rows], label="final (layers 1–2)")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("regions in the window")
    axes[0].legend(fontsize=8)
    axes[1].plot(ep, [r[3] for r in rows], label="train points")
    axes[1].plot(ep, [r[4] for r in rows], label="test points", ls="--")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel(f"local complexity (r = {TOY_LC_RADIUS})")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    rep.figure(fig, "demo-complexity", "Region count and local complexity over training",
               "Left: exact number of linear regions in the plotted window. Right: local "
               "complexity (Humayun et al.): the number of neurons whose pre-activation "
               f"changes sign on the cross-polytope of radius {TOY_LC_RADIUS} around a data "
               "point (4 vertices in 2D), averaged over the points: how many region "
               "boundaries pass near the data.", dpi=cfg["dpi"])
    rep.table("toy_epochs", ["epoch", "loss", "train_acc", "test_acc", "regions_layer1",
                             "regions_final", "lc_train", "lc_test"],
              [(r["epoch"], r["loss"], r["train_acc"], r["test_acc"], *row[1:])
               for r, row in zip(hist, rows)], show=False,
              caption="Toy network per epoch")
    shown = sorted({int(i) for i in strip} | {len(rows) - 1})
    rep.table("toy_epochs_summary", ["epoch", "train acc", "test acc", "regions (layer 1)",
                                     "regions (final)", "LC train", "LC test"],
              [(hist[i]["epoch"], hist[i]["train_acc"], hist[i].get("test_acc", float("nan")),
                *rows[i][1:]) for i in shown],
              caption="Selected epochs (every epoch in toy_epochs.csv)")
    rep.record("toy_dynamics", {"epoch": ep, "regions_layer1": [r[1] for r in rows],
                                "regions_final": [r[2] for r in rows],
                                "lc_train": [r[3] for r in rows],
                                "lc_test": [r[4] for r in rows]})
    steps.update()

    # -- digits -------------------------------------------------------------------------------
    steps.set_postfix_str("digits CNN")
    cnn = demo.train_digits(seed, epochs=cfg["digits_epochs"], device=device,
                            progress=progress)
    _digits_section(rep, cnn, cfg, progress)
    steps.update()
    steps.set_postfix_str("writing")
    rep.record("seconds", time.perf_counter() - t_start)
    path = rep.write(out, overwrite=overwrite)
    steps.update()
    steps.close()
    digits_slice = rep.numbers["digits"]
    if not digits_slice["slice_complete"]:
        warnings.warn(BudgetWarning(
            f"the digits slice stopped at the budget of {cfg['digits_max_regions']:,} regions "
            f"({'--quick' if quick else 'budget'}), so its picture in the report is a partial "
            "subdivision without a decision boundary; run without --quick for the complete "
            "slice"), stacklevel=2)
    return path


def _digits_section(rep: Report, cnn, cfg: dict, progress: bool) -> None:
    import matplotlib.pyplot as plt

    from .. import plot

    data = cnn.data
    final = cnn.history.rows[-1]
    rep.section("3. Images: a small CNN on 8×8 digits",
                "Conv(1→8, 3×3) · ReLU · MaxPool 2 · Conv(8→16, 3×3) · ReLU · MaxPool 2 · "
                f"Linear(64→10), trained for {cfg['digits_epochs']} epochs on scikit-learn's "
                f"digits: train accuracy {final['train_acc']:.3f}, test {final['test_acc']:.3f}. "
                "ReLU and max-pooling are both MASOs, so the whole CNN is piecewise affine "
                "and its partition of any plane through input space is exactly computable.")
    tr = trace(cnn.model, data.X_test[:2])
    picks = [int((data.y_test == c).nonzero()[0, 0]) for c in (0, 3, 7)]
    slc = Slice.through(*(data.X_test[i] for i in picks), margin=cfg["digits_margin"])
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # a partial result is flagged in the caption instead
        warnings.simplefilter("ignore", BudgetWarning)
        part = partition_slice(tr, slc, max_regions=cfg["digits_max_regions"],
                               progress=progress)
    seconds = time.perf_counter() - t0
    fig, ax = plt.subplots(figsize=(7.2, 7.2))
    plot.plot_partition(part, color_by="class" if part.complete else "code", ax=ax,
                        boundary=False, linewidth=0.12, edge_alpha=0.35, legend=False,
                        anchors=True)
    if part.complete:
        _draw.draw_boundary(ax, _draw.boundary_segments(part), lw=2.0)
    plot.plot_anchor_images(part, ax=ax, labels=[f"digit {int(data.y_test[i])}" for i in picks])
    from matplotlib.lines import Line2D

    pal = plot.class_colors(10)
    present = sorted(set(np.argmax(part.output(part.interior, np.arange(part.n_regions)), 1)
                         .tolist())) if part.complete else []
    handles = [Line2D([], [], marker="s", ls="", color=pal[c], label=f"{c}") for c in present]
    if handles:
        ax.legend(handles=handles, title="predicted", loc="upper left", fontsize=8,
                  title_fontsize=8, framealpha=0.9)
    rep.figure(fig, "demo-digits-slice", "A 2D slice through three digit images",
               "The plane through three test images (a 0, a 3 and a 7, drawn beside the "
               "corners of the triangle) in the 64-dimensional input space. Each tile is one "
               f"of the CNN's {part.n_regions} linear regions on this triangle"
               + (", coloured by predicted digit; thin lines are region edges (coloured by "
                  "the layer whose unit created them) and the black line is the exact "
                  "decision boundary. The images are recognised at the corners; in between "
                  "the network passes through other classes." if part.complete else
                  " so far: the budget stopped the subdivision, so tiles are coloured by VQ "
                  "code and no decision boundary is drawn (it needs the complete "
                  "partition)."), dpi=cfg["dpi"])
    rep.record("digits", {"epochs": cfg["digits_epochs"], "train_accuracy": final["train_acc"],
                          "test_accuracy": final["test_acc"],
                          "slice_regions": part.n_regions, "slice_complete": part.complete,
                          "slice_seconds": seconds, "anchor_indices": picks})

    # templates of a few inputs: matched filters
    n = cfg["n_templates"]
    idx = [int((data.y_test == c).nonzero()[0, 0]) for c in (1, 2, 4, 6, 8)[:n]]
    x = data.X_test[idx].double()
    T = affine_map(tr, x).templates().numpy()  # (n, 10, 1, 8, 8)
    pred = tr.forward(x).argmax(1).numpy()
    fig, axes = plt.subplots(n, 11, figsize=(11 * 1.05, n * 1.2 + 0.4), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(x[i, 0].numpy(), cmap="gray_r", interpolation="nearest")
        axes[i, 0].set_title(f"input (label {int(data.y_test[idx[i]])})", fontsize=7)
        axes[i, 0].set_axis_off()
        titles = [f"A_{c}" + (" ★" if c == pred[i] else "") for c in range(10)]
        plot.plot_templates(T[i], axes=axes[i, 1:], titles=titles, colorbar=False)
    for a in axes.ravel():
        a.title.set_fontsize(7)
    fig.tight_layout()
    rep.figure(fig, "demo-digits-templates", "Class templates of test digits",
               "Each row: a test input, then the ten rows A_c[x] of the CNN's slope on the "
               "input's region, shaped as 8×8 images (red: raising that pixel raises the class "
               "score, blue: lowers it; ★ = predicted class). f_c(x) = <A_c[x], x> + b_c[x]: "
               "on each region the network is a bank of matched filters, and the winning "
               "template correlates with the input's strokes.", dpi=cfg["dpi"])
