"""The demo report: the toy example's geometry and the digits CNN's slice and templates."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..affine import affine_map
from ..trace import trace
from . import _draw
from .html import Report


def _settings(quick: bool) -> dict:
    if quick:
        return dict(toy_epochs=25, digits_epochs=4, res=160, frame_res=90, strip=6,
                    digit_res=90, gif_every=2)
    return dict(toy_epochs=80, digits_epochs=15, res=420, frame_res=200, strip=8,
                digit_res=220, gif_every=1)


def _toy_extent(X: torch.Tensor) -> tuple[float, float, float, float]:
    m = float(X.abs().max()) * 1.08
    return (-m, m, -m, m)


def build_demo_report(out: Path, *, quick: bool = False, seed: int = 0, device: str = "cpu",
                      progress: bool = True, verbose: bool = False) -> Path:
    """Train the demo models and write the report (see :func:`maxaffine.demo.run_demo`)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .. import demo

    cfg = _settings(quick)
    t_start = time.perf_counter()
    threads = torch.get_num_threads()
    # small models: one thread is faster than two contending ones on a shared 2-core machine
    torch.set_num_threads(1)
    try:
        return _build(out, cfg, quick, seed, device, progress, t_start)
    finally:
        torch.set_num_threads(threads)


def _build(out: Path, cfg: dict, quick: bool, seed: int, device: str, progress: bool,
           t_start: float) -> Path:
    import matplotlib.pyplot as plt

    from .. import demo

    steps = tqdm(total=6, desc="demo", disable=not progress, leave=False)

    # -- toy: train ----------------------------------------------------------------------
    steps.set_postfix_str("training toy network")
    toy = demo.train_toy(seed, epochs=cfg["toy_epochs"], device=device, progress=progress)
    steps.update()
    data = toy.data
    X = data.X_train.numpy()
    y = data.y_train.numpy()
    extent = _toy_extent(data.X_train)
    tr = trace(toy.model, data.X_train[:2])
    origin = torch.zeros(2, dtype=torch.float64)
    e1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    e2 = torch.tensor([0.0, 1.0], dtype=torch.float64)
    grid = _draw.grid_codes(tr, origin, e1, e2, extent, cfg["res"])

    rep = Report("maxaffine demo: a deep network is a max-affine spline",
                 "Every ReLU network is a composition of max-affine spline operators (MASOs): "
                 "on each region of a partition of its input space it is exactly affine, "
                 "f(x) = A[x] x + b[x], and the region is named by the VQ code of x (which "
                 "piece every unit uses). This report trains two small networks and draws "
                 "that geometry.")
    final = toy.history.rows[-1]
    rep.record("toy", {"architecture": list(demo.TOY_WIDTHS), "epochs": cfg["toy_epochs"],
                       "train_accuracy": final["train_acc"], "test_accuracy": final["test_acc"],
                       "restarts": toy.restarts, "seed": seed})

    # data
    rep.section("1. The toy example",
                f"A 2D, 4-class dataset (one Gaussian cloud per quadrant, {len(X)} training "
                f"points) and the ReLU network 2 → 45 → 3 → 4 trained with Adam for "
                f"{cfg['toy_epochs']} epochs from an initialization with all biases zero. "
                f"Final accuracy: train {final['train_acc']:.3f}, test {final['test_acc']:.3f}"
                + (f" (after {toy.restarts} re-initialisation(s): the 3-unit bottleneck lost a "
                   "unit)" if toy.restarts else "") + ".")
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    _draw.draw_points(ax, X, y, size=14)
    _draw.legend_classes(ax, data.n_classes, loc="upper center", ncol=4, fontsize=7,
                         bbox_to_anchor=(0.5, 1.1), frameon=False)
    ax.set_xlim(extent[:2]); ax.set_ylim(extent[2:]); ax.set_aspect("equal")
    rep.figure(fig, "demo-data", "Training data",
               "Four classes, one per quadrant; colours are used for the same classes "
               "throughout the report.")

    # partitions after each layer
    steps.set_postfix_str("partitions")
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.6))
    n1, n2 = grid.n_regions(1), grid.n_regions(2)
    titles = [f"after layer 1: {n1} regions", f"after layer 2: {n2} regions",
              "final partition + decision boundary"]
    for k, ax in enumerate(axes):
        _draw.draw_regions(ax, grid, min(k + 1, 2), boundary=(k == 2),
                           color_by="class" if k == 2 else "region", seed=seed)
        if k == 2:
            _draw.draw_points(ax, X, y, size=6)
        ax.set_title(titles[k], fontsize=10)
        ax.set_aspect("equal")
    fig.tight_layout()
    rep.figure(fig, "demo-partitions", "The partition, layer by layer",
               "Left: layer 1's 45 units each cut the plane along a line <w_k, x> + b_k = 0; "
               "the regions of a line arrangement are convex tiles (each a cell of layer 1's "
               "power diagram). Middle: layer 2's 3 units subdivide those tiles; inside each "
               "tile a layer-2 boundary is straight, and it bends where it crosses a layer-1 "
               "line, so unions of regions are no longer convex. Right: the final partition "
               "coloured by predicted class, with the decision boundary (black): it is "
               "piecewise linear and its pieces lie along region boundaries or cross regions "
               "where two class scores tie.")
    rep.record("toy_regions_grid", {"layer1": n1, "layer2": n2})
    steps.update()

    # evolution
    steps.set_postfix_str("training evolution")
    snaps = toy.snapshots
    counts = []
    frames = []
    for epoch, state in tqdm(snaps, desc="epochs", disable=not progress, leave=False):
        model_e = demo.with_state(toy.model, state)
        tr_e = trace(model_e, data.X_train[:2])
        g = _draw.grid_codes(tr_e, origin, e1, e2, extent, cfg["frame_res"])
        counts.append((epoch, g.n_regions(1), g.n_regions(2)))
        frames.append((epoch, g))
    strip_idx = np.unique(np.round(np.geomspace(1, len(snaps), cfg["strip"]) - 1).astype(int))
    fig, axes = plt.subplots(1, len(strip_idx), figsize=(2.3 * len(strip_idx), 2.6))
    for ax, i in zip(np.atleast_1d(axes), strip_idx):
        epoch, g = frames[i]
        _draw.draw_regions(ax, g, 2, color_by="class", seed=seed)
        ax.set_title(f"epoch {epoch}", fontsize=9)
        ax.set_xticks([]); ax.set_yticks([]); ax.set_aspect("equal")
    fig.tight_layout()
    rep.section("2. Training: from cones to the final partition",
                "With zero biases every unit boundary passes through the origin and the "
                "network is positively homogeneous, f(a x) = a f(x) for a > 0: every region is "
                "a cone with apex at the origin. Training moves the biases, the lines leave the "
                "origin and the regions become bounded polygons.")
    rep.figure(fig, "demo-evolution", "Partition during training",
               "Frames at geometrically spaced epochs (epoch 0 = initialization: cones through "
               "the origin), regions coloured by predicted class, black decision boundary.")
    rep.figure(_gif(frames[::cfg["gif_every"]], seed), "demo-evolution-anim",
               "Animation of the partition during training",
               "One frame per epoch.", mime="image/gif")
    epochs_arr = np.array([c[0] for c in counts])
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.plot(epochs_arr, [c[1] for c in counts], label="after layer 1")
    ax.plot(epochs_arr, [c[2] for c in counts], label="after layer 2 (final)")
    ax.set_xlabel("epoch"); ax.set_ylabel("regions in view"); ax.legend(fontsize=8)
    fig.tight_layout()
    rep.figure(fig, "demo-region-count", "Number of regions over training",
               "Regions found in the plotted window at every epoch.")
    rep.table("toy_epochs", ["epoch", "loss", "train_acc", "test_acc", "regions_layer1",
                             "regions_final"],
              [(r["epoch"], r["loss"], r["train_acc"], r["test_acc"], c[1], c[2])
               for r, c in zip(toy.history.rows, counts)], show=False)
    steps.update()

    # templates
    steps.set_postfix_str("templates")
    lattice = np.linspace(extent[0] * 0.8, extent[1] * 0.8, 5 if quick else 7)
    P = torch.as_tensor(np.stack(np.meshgrid(lattice, lattice), -1).reshape(-1, 2))
    amap = affine_map(tr, P)
    A = amap.A.numpy()  # (N, 4, 2)
    fig, ax = plt.subplots(figsize=(6, 6))
    _draw.draw_regions(ax, grid, 2, boundary=True, color_by="class", seed=seed)
    scale = 0.35 * (lattice[1] - lattice[0]) / max(np.linalg.norm(A, axis=2).max(), 1e-12)
    for c in range(A.shape[1]):
        ax.quiver(P[:, 0], P[:, 1], A[:, c, 0] * scale, A[:, c, 1] * scale, angles="xy",
                  scale_units="xy", scale=1, color=_draw.class_color(c), width=0.006,
                  zorder=4)
    ax.plot(P[:, 0], P[:, 1], "k.", ms=3, zorder=5)
    ax.set_aspect("equal")
    _draw.legend_classes(ax, 4, labels=[f"template of class {c}" for c in range(4)],
                         loc="upper center", ncol=2, fontsize=7, bbox_to_anchor=(0.5, 1.12))
    rep.figure(fig, "demo-templates", "Class templates per region",
               "At each black dot x the four arrows are the rows A_c[x] of the network's "
               "slope on x's region: f_c(x) = <A_c[x], x> + b_c[x] is a matched filter, and "
               "the predicted class is the template with the largest inner product (plus "
               "offset). Arrows are constant within a region and change across its edges.")
    steps.update()

    # digits
    steps.set_postfix_str("digits CNN")
    cnn = demo.train_digits(seed, epochs=cfg["digits_epochs"], device=device, progress=progress)
    _digits_section(rep, cnn, cfg, seed)
    steps.update()
    steps.set_postfix_str("writing")
    rep.record("seconds", time.perf_counter() - t_start)
    path = rep.write(out)
    steps.update()
    steps.close()
    return path


def _gif(frames, seed: int) -> bytes:
    import tempfile

    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    fig, ax = plt.subplots(figsize=(3.6, 3.6))

    def draw(i):
        ax.clear()
        epoch, g = frames[i]
        _draw.draw_regions(ax, g, 2, color_by="class", seed=seed)
        ax.set_title(f"epoch {epoch}", fontsize=9)
        ax.set_xticks([]); ax.set_yticks([]); ax.set_aspect("equal")
        return ()

    anim = FuncAnimation(fig, draw, frames=len(frames), blit=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "anim.gif"
        anim.save(path, writer=PillowWriter(fps=6), dpi=80)
        data = path.read_bytes()
    plt.close(fig)
    return data


def _digits_section(rep: Report, cnn, cfg: dict, seed: int) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    data = cnn.data
    final = cnn.history.rows[-1]
    rep.record("digits", {"epochs": cfg["digits_epochs"], "train_accuracy": final["train_acc"],
                          "test_accuracy": final["test_acc"]})
    rep.section("3. Images: a small CNN on 8×8 digits",
                "Conv(1→8, 3×3) · ReLU · MaxPool 2 · Conv(8→16, 3×3) · ReLU · MaxPool 2 · "
                f"Linear(64→10), trained for {cfg['digits_epochs']} epochs on scikit-learn's "
                f"digits: train accuracy {final['train_acc']:.3f}, test {final['test_acc']:.3f}. "
                "ReLU and max-pooling are both MASOs, so the whole CNN is piecewise affine.")
    tr = trace(cnn.model, data.X_test[:2])
    # three test images of different classes
    picks = []
    for c in (0, 3, 7):
        picks.append(int((data.y_test == c).nonzero()[0, 0]))
    x1, x2, x3 = (data.X_test[i].double() for i in picks)
    m = 0.25
    extent = (-m, 1 + m, -m, 1 + m)
    g = _draw.grid_codes(tr, x1, x2 - x1, x3 - x1, extent, cfg["digit_res"])
    fig, ax = plt.subplots(figsize=(6.4, 6.4))
    _draw.draw_regions(ax, g, None, color_by="class", seed=seed)
    ax.plot([0, 1, 0, 0], [0, 0, 1, 0], color="white", lw=1.2, ls="--")
    for (s, t), x, lab in zip([(0, 0), (1, 0), (0, 1)], (x1, x2, x3), picks):
        box = OffsetImage(x[0].numpy(), zoom=5, cmap="gray_r")
        ax.add_artist(AnnotationBbox(box, (s, t), frameon=True, pad=0.1))
    ax.set_xlabel("s"); ax.set_ylabel("t"); ax.set_aspect("equal")
    _draw.legend_classes(ax, 10, labels=[str(c) for c in range(10)], loc="upper center",
                         ncol=10, fontsize=7, bbox_to_anchor=(0.5, 1.08), frameon=False,
                         handletextpad=0.1, columnspacing=0.8)
    rep.figure(fig, "demo-digits-slice", "A 2D slice through three digit images",
               "The plane x(s,t) = x1 + s (x2 − x1) + t (x3 − x1) through a 0, a 3 and a 7 "
               "(drawn at the corners of the dashed triangle). Tiles are the CNN's linear "
               "regions restricted to the plane, coloured by predicted digit; the black lines "
               "are the decision boundary between the classes.")
    rep.record("digits_slice_regions_grid", g.n_regions())

    # templates of a few inputs
    idx = torch.arange(4)
    x = data.X_test[idx].double()
    T = affine_map(tr, x).templates().numpy()[:, :, 0]  # (4, 10, 8, 8)
    images = np.concatenate([x.numpy()[:, None, 0], T], 1).reshape(-1, 8, 8)
    pred = cnn.model(data.X_test[idx]).argmax(1).numpy()
    titles = []
    for n in range(len(idx)):
        titles.append(f"input ({int(data.y_test[idx[n]])})")
        titles += [f"A_{c}" + (" ★" if c == pred[n] else "") for c in range(10)]
    fig = _draw.image_grid(images, titles=titles, ncols=11, symmetric=True)
    rep.figure(fig, "demo-digits-templates", "Class templates of four test digits",
               "Each row: a test input, then the ten rows A_c[x] of the CNN's slope on the "
               "input's region, reshaped to 8×8 (red positive, blue negative; ★ = predicted "
               "class). f_c(x) = <A_c[x], x> + b_c[x]: the network acts as a bank of matched "
               "filters adapted to the input's region, and the winning template resembles the "
               "digit.")
