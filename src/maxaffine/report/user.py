"""``maxaffine report``: the demo's analyses on a user's model, weights and data.

Loading is strict and safe: the model comes from a factory function in a file or module,
weights only through ``torch.load(weights_only=True)`` (a state_dict; pickled model objects
are refused), data from a ``.npz``/``.pt`` file of tensors or a bundled dataset. Every
analysis runs before anything is written, so an unsupported model or bad input leaves no
half-written report.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import BudgetWarning, InputError

BUNDLED = ("digits", "mnist1d", "toy")


# -- loading ---------------------------------------------------------------------------------
def load_factory(spec: str) -> Callable[[], nn.Module]:
    """The factory named by ``"path/to/file.py:name"`` or ``"package.module:name"``.

    Raises
    ------
    InputError
        Malformed spec, import failure, or missing/non-callable attribute.
    FileNotFoundError
        A ``.py`` file that does not exist.
    """
    if ":" not in spec:
        raise InputError(f"--model must look like FILE.py:FACTORY or MODULE:FACTORY; got {spec!r}")
    where, name = spec.rsplit(":", 1)
    if not where or not name.isidentifier():
        raise InputError(f"--model must look like FILE.py:FACTORY or MODULE:FACTORY; got {spec!r}")
    path = Path(where)
    if where.endswith(".py") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(2, "model file not found", where)
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
        mod_name = f"_maxaffine_user_{path.stem}_{digest}"
        spec_ = importlib.util.spec_from_file_location(mod_name, path)
        if spec_ is None or spec_.loader is None:
            raise InputError(f"cannot import {where!r} as a Python file")
        module = importlib.util.module_from_spec(spec_)
        sys.modules[mod_name] = module
        try:
            spec_.loader.exec_module(module)
        except SystemExit as exc:  # a script run at import: say so instead of exiting mutely
            sys.modules.pop(mod_name, None)
            raise InputError(
                f"importing {where} called sys.exit({exc.code!r}); the model file is run as "
                "Python code on import, so put script code under "
                "`if __name__ == \"__main__\":`") from None
        except Exception as exc:  # the user's code: report it in one line
            sys.modules.pop(mod_name, None)
            raise InputError(f"importing {where} failed: {type(exc).__name__}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise InputError(f"cannot import module {where!r}: {exc}") from exc
        except SystemExit as exc:
            raise InputError(f"importing module {where!r} called sys.exit({exc.code!r}); put "
                             "script code under `if __name__ == \"__main__\":`") from None
    factory = getattr(module, name, None)
    if factory is None or not callable(factory):
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise InputError(f"{where} has no callable {name!r}; callables there: "
                         f"{', '.join(found) or '(none)'}")
    return factory


def build_model(spec: str) -> nn.Module:
    """Call the factory of ``spec`` (without arguments) and check it returns an nn.Module."""
    factory = load_factory(spec)
    try:
        model = factory()
    except SystemExit as exc:
        raise InputError(f"calling {spec}() called sys.exit({exc.code!r}); the factory must "
                         "return an nn.Module") from None
    except Exception as exc:
        raise InputError(f"calling {spec}() failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise InputError(f"{spec}() returned {type(model).__name__}, not a torch.nn.Module")
    return model


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a state_dict with ``torch.load(weights_only=True)`` into ``model``.

    Raises
    ------
    FileNotFoundError
        Missing file.
    InputError
        A pickled model object or other non-tensor content (save a state_dict instead), or
        keys/shapes that do not match the model.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "weights file not found", str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"{path} is not a plain state_dict: torch.load(weights_only=True) refused it "
            f"({first}). maxaffine never unpickles arbitrary objects; save the weights with "
            f"torch.save(model.state_dict(), {path.name!r}) and pass that file") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path} does not hold a state_dict (a dict of tensors); save the "
                         f"weights with torch.save(model.state_dict(), {path.name!r})")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InputError(f"the weights in {path} do not fit the model: "
                         + " ".join(str(exc).split())) from None
    return model


@dataclass(frozen=True)
class Data:
    """Inputs (and labels, if known) for the report.

    Attributes
    ----------
    X : Tensor, shape (N, *in_shape), float64
    y : Tensor, shape (N,) int64, or None
    name : str
    n_test : int or None
        For a bundled dataset, the first ``n_test`` points are its test split.
    """

    X: torch.Tensor
    y: torch.Tensor | None
    name: str
    n_test: int | None = None


def _bundled(name: str, model: nn.Module, seed: int) -> Data:
    from .. import datasets

    if name == "digits":
        candidates = [datasets.digits(image=True, seed=seed), datasets.digits(image=False, seed=seed)]
    elif name == "mnist1d":
        candidates = [datasets.mnist1d(n_samples=2000, seed=seed),
                      datasets.mnist1d(n_samples=2000, seed=seed, channel=True)]
    elif name == "toy":
        candidates = [datasets.toy2d("quadrants", seed=seed)]
    else:
        raise InputError(f"unknown dataset {name!r}; use a .npz/.pt file or one of "
                         f"{', '.join(BUNDLED)}")
    errors = []
    for ds in candidates:
        X = torch.cat([ds.X_test, ds.X_train]).double()
        y = torch.cat([ds.y_test, ds.y_train])
        try:
            _probe(model, X)
            return Data(X, y, f"{name} (test split first)", n_test=len(ds.X_test))
        except InputError as exc:
            errors.append(str(exc))
    raise InputError(f"the model does not accept {name} inputs: {errors[-1]}")


def _probe(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    probe = model.to(torch.float64)
    try:
        with torch.no_grad():
            out = probe(X[:2])
    except Exception as exc:
        raise InputError(f"the model fails on inputs of per-sample shape {tuple(X.shape[1:])}: "
                         f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}") from None
    if not isinstance(out, torch.Tensor) or out.dim() < 2 or out.shape[0] != 2:
        raise InputError("the model must map a batch (B, *in_shape) to a tensor (B, C); got "
                         f"{type(out).__name__} {tuple(getattr(out, 'shape', ()))}")
    return out


def load_data(spec: str | None, model: nn.Module, *, seed: int = 0) -> Data:
    """Inputs for the report: a ``.npz``/``.pt`` file with ``X`` (and ``y``) or a bundled name.

    With ``spec=None`` the bundled datasets are tried in turn and the first whose input
    shape the model accepts is used.
    """
    if spec is None:
        for name in BUNDLED:
            try:
                return _bundled(name, model, seed)
            except InputError:
                continue
        raise InputError("none of the bundled datasets (digits, mnist1d, toy) fits the model's "
                         "input shape; pass --data FILE.npz with an array X of shape "
                         "(N, *in_shape)")
    if spec in BUNDLED:
        return _bundled(spec, model, seed)
    path = Path(spec)
    if not path.exists():
        if path.suffix in (".npz", ".pt", ".pth"):
            raise FileNotFoundError(2, "data file not found", spec)
        raise InputError(f"--data {spec!r} is neither a file nor one of {', '.join(BUNDLED)}")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                content = {k: z[k] for k in z.files}
        except Exception as exc:
            raise InputError(f"cannot read {path} as .npz: {exc}") from None
    elif path.suffix in (".pt", ".pth"):
        try:
            content = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise InputError(f"{path} could not be loaded with torch.load(weights_only=True) "
                             f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                             "save a dict of tensors {'X': ..., 'y': ...}") from None
        if isinstance(content, torch.Tensor):
            content = {"X": content}
        elif isinstance(content, (tuple, list)) and 1 <= len(content) <= 2:
            content = dict(zip(("X", "y"), content))
    else:
        raise InputError(f"unsupported data file {path.name!r}: use .npz or .pt")
    if not isinstance(content, dict):
        raise InputError(f"{path} must hold a dict with 'X' (and optionally 'y')")
    key_x = next((k for k in ("X", "x", "inputs", "data") if k in content), None)
    if key_x is None:
        raise InputError(f"{path} has no array 'X' (found: {', '.join(map(str, content)) or 'nothing'})")
    raw_x = content[key_x]
    arr_x = raw_x.detach().cpu().numpy() if isinstance(raw_x, torch.Tensor) else np.asarray(raw_x)
    if not (np.issubdtype(arr_x.dtype, np.number) or arr_x.dtype == bool) or \
            np.issubdtype(arr_x.dtype, np.complexfloating):
        raise InputError(f"{key_x} in {path} has dtype {arr_x.dtype}; inputs must be real "
                         "numbers (an array of shape (N, *in_shape))")
    X = torch.as_tensor(arr_x.astype(np.float64))
    if X.dim() < 2 or len(X) < 3:
        raise InputError(f"X in {path} must have shape (N, *in_shape) with N >= 3; got "
                         f"{tuple(X.shape)}")
    if not torch.isfinite(X).all():
        raise InputError(f"X in {path} contains NaN or infinite values")
    key_y = next((k for k in ("y", "Y", "labels", "targets") if k in content), None)
    out = _probe(model, X)
    y = None
    if key_y is not None:
        y = _labels(content[key_y], len(X), out.reshape(len(out), -1).shape[1], f"{key_y} in {path}")
    return Data(X, y, path.name)


def _labels(raw, n: int, n_outputs: int, where: str) -> torch.Tensor:
    """Class labels as int64 (N,): integers (or integral floats) in [0, n_outputs)."""
    arr = raw.detach().cpu().numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw)
    if arr.shape != (n,):
        raise InputError(f"{where} must have shape ({n},); got {tuple(arr.shape)}")
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"{where} has dtype {arr.dtype}, not class indices; labels must be "
                         f"integers 0..C-1 (map class names to integers first)")
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            raise InputError(f"{where} holds non-integer labels (e.g. {arr[bad][0].item()!r}); labels "
                             f"must be class indices 0..C-1; pass y as integers, or leave it "
                             "out for a report without accuracy")
    y = torch.as_tensor(arr.astype(np.int64))
    if n_outputs > 1 and (int(y.min()) < 0 or int(y.max()) >= n_outputs):
        raise InputError(f"{where} holds labels from {int(y.min())} to {int(y.max())}, but the "
                         f"model has {n_outputs} outputs (classes 0..{n_outputs - 1}); fix the "
                         "labels or the model")
    if n_outputs == 1 and int(y.min()) < 0:
        raise InputError(f"{where} holds negative labels ({int(y.min())}); labels must be "
                         "class indices >= 0")
    return y


def parse_points(spec: str | None, data: Data) -> list[int]:
    """Three distinct in-range indices; default: first points of three different classes."""
    n = len(data.X)
    if spec is None:
        if data.y is not None:
            picks: list[int] = []
            for c in torch.unique(data.y).tolist():
                picks.append(int((data.y == c).nonzero()[0, 0]))
                if len(picks) == 3:
                    return picks
        return [0, 1, 2]
    try:
        idx = [int(s) for s in spec.split(",")]
    except ValueError:
        raise InputError(f"--points must be three integers like 0,1,2; got {spec!r}") from None
    if len(idx) != 3 or len(set(idx)) != 3:
        raise InputError(f"--points must be three distinct indices like 0,1,2; got {spec!r}")
    bad = [i for i in idx if not -n <= i < n]
    if bad:
        raise InputError(f"--points {bad} out of range for {n} data points")
    return [i % n for i in idx]


# -- the report ------------------------------------------------------------------------------
def build_model_report(model_spec: str, out: str | Path, *, weights: str | Path | None = None,
                       data: str | None = None, points: str | None = None, seed: int = 0,
                       device: str = "cpu", max_regions: int = 50_000, progress: bool = True,
                       verbose: bool = False, output: Any = None,
                       overwrite: bool = False) -> Path:
    """Analyse a user's model and write ``index.html`` (+ JSON/CSV) into ``out``.

    Parameters
    ----------
    model_spec : str
        ``"file.py:factory"`` or ``"package.module:factory"``; the factory is called without
        arguments and must return an ``nn.Module``.
    out : path
        Output folder: new, empty, or a previous maxaffine report (replaced only with
        ``overwrite=True``); checked before any work.
    weights : path, optional
        A state_dict file (loaded with ``torch.load(weights_only=True)``).
    data : str, optional
        ``.npz``/``.pt`` file with ``X`` (N, *in_shape) and optionally ``y`` (N,), or one of
        ``digits``, ``mnist1d``, ``toy``; default: the first bundled set the model accepts.
    points : str, optional
        ``"i,j,k"``: the data points spanning the 2D slice.
    seed : int
    device : str
        Checked for a uniform command line; the geometry always runs in float64 on the CPU.
    max_regions : int
        Budget of the slice partition (a partial result is flagged in the report).
    progress : bool
    output : int, str or callable, optional
        For a forward returning a tuple/dict: which output to analyse (see
        :func:`maxaffine.trace`).
    verbose : bool
        Unused; kept for a uniform command line.
    overwrite : bool
        Replace a previous maxaffine report in ``out``.

    Returns
    -------
    Path
        The written ``index.html``.

    Warns
    -----
    BudgetWarning
        The slice partition stopped at ``max_regions``: the report shows a partial
        subdivision and no decision boundary.

    Raises
    ------
    UnsupportedLayerError
        The model has layers that are not piecewise-affine (every offender is listed).
    InputError, FileNotFoundError
        Bad model spec, weights, data, points or output folder.
    """
    import matplotlib

    from .output import check_destination

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "cairo"):
        matplotlib.use("Agg")

    if max_regions < 1:
        raise InputError(f"max_regions must be positive; got {max_regions}")
    check_destination(out, overwrite=overwrite)
    t_start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batched passes: one thread avoids contention
    try:
        path = _build(model_spec, out, weights, data, points, seed, max_regions, progress,
                      t_start, output, overwrite)
    finally:
        torch.set_num_threads(threads)
    return path


def _build(model_spec, out, weights, data, points, seed, max_regions, progress, t_start,
           output=None, overwrite=False):
    from .._capture import with_output
    from ..trace import trace

    model = build_model(model_spec)
    if weights is not None:
        load_weights(model, weights)
    if output is not None:
        model = with_output(model, output)
    model = model.to(torch.float64).eval()
    dataset = load_data(data, model, seed=seed)
    idx = parse_points(points, dataset)
    tr = trace(model, dataset.X[:2])  # raises UnsupportedLayerError listing every offender
    rep = _analyse(tr, model, dataset, idx, model_spec, weights, seed, max_regions, progress)
    rep.record("seconds", time.perf_counter() - t_start)
    path = rep.write(out, overwrite=overwrite)
    if not rep.numbers["slice"]["complete"]:
        warnings.warn(BudgetWarning(
            f"the slice partition is partial ({rep.numbers['slice']['stopped_by']}), so the "
            "report shows a partial subdivision and no decision boundary; "
            + _budget_fix(rep.numbers["slice"]["stopped_by"])), stacklevel=2)
    return path


def _budget_fix(reason: str) -> str:
    if "memory" in reason:
        return ("the machine's free memory set the limit: free memory, or choose --points "
                "closer together (a smaller triangle holds fewer regions)")
    return "raise --max-regions for the complete partition"


def _partition_with_reason(tr, slc, max_regions: int, progress: bool):
    """The slice partition, and why it stopped early (empty when complete)."""
    from ..partition import partition_slice

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BudgetWarning)
        part = partition_slice(tr, slc, max_regions=max_regions, progress=progress)
    reason = ""
    for w in caught:
        if issubclass(w.category, BudgetWarning):
            text = str(w.message)
            found = re.search(r"stopped at (\d+) regions \((.*?)\) during", text)
            reason = (f"stopped at {int(found.group(1)):,} regions by {found.group(2)}"
                      if found else text)
        else:  # anything else is shown as it would have been
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if not part.complete and not reason:
        reason = f"stopped at {part.n_regions:,} regions by max_regions={max_regions}"
    return part, reason


def _analyse(tr, model, data: Data, idx, model_spec, weights, seed, max_regions, progress):
    import matplotlib.pyplot as plt

    from .. import plot
    from ..affine import affine_map
    from ..affine import codes as vq_codes
    from ..complexity import local_complexity
    from ..partition import Slice
    from . import _draw
    from .html import Report

    steps = tqdm(total=5, desc="report", disable=not progress, leave=False)
    X = data.X
    D, C = tr.in_features, tr.n_outputs
    n_params = sum(p.numel() for p in model.parameters())
    rep = Report(f"maxaffine report: {model_spec}",
                 "The exact max-affine spline geometry of your model: on each linear region "
                 "the network is affine, f(x) = A[x] x + b[x]; the region is named by the VQ "
                 "code of x (which piece every ReLU / max-pool unit uses).")
    layers = list(tr.piecewise)
    units = [tr.layer_units(n) for n in layers]
    with torch.no_grad():
        out = torch.cat([tr.forward(X[i:i + 1024]) for i in range(0, len(X), 1024)])
    acc = acc_test = None
    if data.y is not None and C > 1:
        hit = (out.argmax(1) == data.y).double()
        acc = float(hit.mean())
        if data.n_test:
            acc_test = float(hit[:data.n_test].mean())
    if acc is None:
        acc_text = ""
    elif acc_test is not None:
        acc_text = (f"; accuracy {acc_test:.4f} on its test split (the first {data.n_test} "
                    f"points), {acc:.4f} on all {len(X)} points")
    else:
        acc_text = f"; accuracy {acc:.4f} on all {len(X)} points"
    rep.section("Model and data",
                f"{type(model).__name__} with {n_params:,} parameters, input shape "
                f"{tuple(tr.in_shape)}, {C} output(s), {len(layers)} piecewise layer(s) "
                f"({sum(units):,} units). Weights: {weights or 'as initialised by the factory'}. "
                f"Data: {data.name}, {len(X)} points{acc_text}.")
    rep.table("layers", ["layer", "rule", "units", "shape"],
              [(n, type(tr.node(n).rule).__name__, u, str(tuple(tr.node(n).shape)))
               for n, u in zip(layers, units)], caption="Piecewise (MASO) layers in graph order")
    rep.record("model", {"spec": model_spec, "weights": str(weights) if weights else None,
                         "parameters": n_params, "in_shape": list(tr.in_shape), "outputs": C,
                         "layers": dict(zip(layers, units)), "accuracy": acc,
                         "test_accuracy": acc_test, "n_test": data.n_test,
                         "data": data.name, "n_points": len(X), "points": idx})
    steps.update()

    # -- slice partition ----------------------------------------------------------------------
    anchors = X[idx]
    if D == 2:
        lo, hi = X.min(0).values, X.max(0).values
        pad = 0.08 * (hi - lo)
        slc = Slice.box((float(lo[0] - pad[0]), float(hi[0] + pad[0]),
                         float(lo[1] - pad[1]), float(hi[1] + pad[1])))
        where = "the input plane around the data"
    else:
        slc = Slice.through(anchors[0], anchors[1], anchors[2], margin=0.25)
        where = f"the plane through data points {idx[0]}, {idx[1]}, {idx[2]}"
    t0 = time.perf_counter()
    part, stopped_by = _partition_with_reason(tr, slc, max_regions, progress)
    t_part = time.perf_counter() - t0
    complete = part.complete
    stats = part.stats()
    rep.section("Linear regions on a 2D slice",
                f"Exact partition of {where} into the model's linear regions: "
                f"{part.n_regions:,} regions in {t_part:.2f} s"
                + ("" if complete else f" (partial: {stopped_by}; {_budget_fix(stopped_by)})")
                + ".")
    n_panels = min(len(layers), 4)
    show = sorted(set(np.linspace(0, len(layers) - 1, n_panels).round().astype(int).tolist()))
    if len(layers) > 1 and len(part.history) >= len(layers):
        axes = plot.plot_subdivision(part, layers=show, boundary=False, legend=True,
                                     linewidth=0.3 if part.n_regions < 2000 else 0.08,
                                     panel_size=3.4)
        rep.figure(axes[0].figure, "subdivision", "Subdivision layer by layer",
                   "Panel ℓ: the cells of the codes of layers 1..ℓ. The first piecewise layer "
                   "cuts the plane along straight lines (convex tiles); later layers' "
                   "boundaries bend where they cross earlier ones.")
    fig, ax = plt.subplots(figsize=(7, 7))
    lw = 0.4 if part.n_regions < 2000 else 0.1
    db = part.decision_boundary() if complete else None
    if complete and C > 1:
        plot.plot_partition(part, color_by="class", ax=ax, boundary=False, linewidth=lw,
                            edge_alpha=0.4, legend="below")
        _draw.draw_boundary(ax, db.segments)
        how = ("coloured by predicted class, with the exact decision boundary (black)"
               if db.pieces else "coloured by predicted class; the model predicts one class "
               "on the whole slice, so no decision boundary crosses it (choose --points of "
               "different classes to see one)")
    elif complete:
        plot.plot_partition(part, color_by="output", ax=ax, linewidth=lw, edge_alpha=0.4,
                            colorbar=True, legend="below")
        how = "coloured by the output (exact piecewise-linear shading) with the level set f = 0"
    else:
        plot.plot_partition(part, color_by="code", ax=ax, linewidth=lw, legend="below")
        how = "coloured by VQ code"
    if D == 2 and data.y is not None:
        ax.scatter(X[:, 0], X[:, 1], c=plot.class_colors(int(data.y.max()) + 1)[data.y],
                   s=6, edgecolors="white", linewidths=0.3, zorder=7)
    elif D != 2:
        try:
            plot.plot_anchor_images(part, ax=ax, labels=[f"#{i}" + (
                f" ({int(data.y[i])})" if data.y is not None else "") for i in idx])
        except InputError:
            pass  # inputs that are not images: the anchors are marked as points only
    has_boundary = complete and C > 1 and bool(db.pieces)
    rep.figure(fig, "partition",
               "Linear regions and decision boundary" if has_boundary else "Linear regions",
               f"Every tile is a linear region on which the model is exactly affine, {how}; "
               "edges are coloured by the layer whose unit created them."
               + ("" if complete else " The budget stopped the subdivision (raise "
                  "--max-regions), so no decision boundary is drawn: it needs the complete "
                  "partition."))
    rows = [("regions", stats.n_regions), ("regions above area threshold", stats.n_above),
            ("slivers", stats.n_slivers), ("mean area", stats.area_mean),
            ("std area", stats.area_std), ("vertices per region (mean)", stats.vertices_mean),
            ("eccentricity (median)", stats.eccentricity_median),
            ("decision boundary length", db.length if db is not None else float("nan")),
            ("decision boundary pieces", db.pieces if db is not None else float("nan")),
            ("seconds", t_part)]
    rep.table("slice_stats", ["statistic", "value"], rows,
              caption="Partition statistics (slice coordinates)")
    rep.record("slice", dict(rows) | {"complete": complete, "stopped_by": stopped_by or None})
    steps.update()

    # -- templates ----------------------------------------------------------------------------
    amap = affine_map(tr, anchors)
    T = amap.templates().numpy()
    pred = amap(anchors).argmax(1).numpy() if C > 1 else None
    rep.section("Templates",
                "Row c of A[x] is the class-c template of x's region: f_c(x) = <A_c[x], x> + "
                "b_c[x], a matched filter. Exact (fixed-code accumulation), equal to the "
                "gradient of f_c off region boundaries.")
    for k, i in enumerate(idx):
        titles = [f"A_{c}" + (" ★" if pred is not None and c == pred[k] else "")
                  for c in range(C)]
        if D == 2:
            fig, ax = plt.subplots(figsize=(3.6, 3.6))
            pal = plot.class_colors(max(C, 1))
            for c in range(C):
                ax.arrow(0, 0, T[k, c, 0], T[k, c, 1], color=pal[c], width=0.004 *
                         max(np.abs(T[k]).max(), 1e-12), length_includes_head=True,
                         label=titles[c])
            lim = 1.1 * max(np.abs(T[k]).max(), 1e-12)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.legend(fontsize=7)
        else:
            axes = plot.plot_templates(T[k], titles=titles, ncols=min(C, 10), panel_size=1.5)
            fig = np.ravel(axes)[0].figure
        label = f" (label {int(data.y[i])})" if data.y is not None else ""
        rep.figure(fig, f"templates-{i}", f"Templates of data point #{i}{label}",
                   "One template per output (★ = predicted class); red/blue: raising that "
                   "input coordinate raises/lowers the score.")
    rep.record("templates_offsets", {str(i): amap.b[k].tolist() for k, i in enumerate(idx)})
    steps.update()

    # -- local complexity and code statistics ---------------------------------------------------
    gen = torch.Generator().manual_seed(seed)
    sample = X[torch.randperm(len(X), generator=gen)[: min(len(X), 512)]]
    scale = float(sample.reshape(len(sample), -1).norm(dim=1).median())
    n_vertices = int(min(2 * D, 50))
    lc_rows, lc_hist = [], {}
    for frac in (0.01, 0.05, 0.2):
        r = frac * scale
        lc = local_complexity(tr, sample, radius=r, n_vertices=n_vertices, per_layer=True,
                              seed=seed)
        tot = lc.total.double()
        lc_hist[frac] = tot.numpy()
        lc_rows.append((f"{frac:g} × median |x| = {r:.4g}", float(tot.mean()),
                        float(tot.median()), float(tot.max()),
                        *[float(lc.layers[k].double().mean()) for k in lc.layers]))
        lc_layers = list(lc.layers)
    rep.section("Local complexity and VQ codes",
                f"Local complexity (Humayun et al.) around {len(sample)} data points: the number "
                f"of neurons (all layers, outputs included) whose pre-activation sign changes "
                f"over a random cross-polytope with {n_vertices} vertices of radius r. High "
                "values mean many region boundaries near the data.")
    rep.table("local_complexity", ["radius", "mean", "median", "max"]
              + [f"mean {k}" for k in lc_layers], lc_rows,
              caption="Local complexity per radius (per-layer means on the right)")
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for frac, vals in lc_hist.items():
        ax.hist(vals, bins=30, alpha=0.55, label=f"r = {frac:g} × median |x|")
    ax.set_xlabel("local complexity")
    ax.set_ylabel("data points")
    ax.legend(fontsize=8)
    fig.tight_layout()
    rep.figure(fig, "local-complexity", "Distribution of local complexity",
               "Histogram over data points for three radii.")
    q = vq_codes(tr, sample)
    code_rows = []
    for name, code in q.items():
        flat = code.reshape(len(code), -1)
        distinct = int(torch.unique(flat.long(), dim=0).shape[0])
        if flat.dtype == torch.bool:
            active = flat.double().mean(0)
            code_rows.append((name, flat.shape[1], float(active.mean()),
                              int((active == 0).sum()), int((active == 1).sum()), distinct))
        else:
            code_rows.append((name, flat.shape[1], float("nan"), 0, 0, distinct))
    ids = q.region_ids()
    n_regions_hit = int(ids.max()) + 1 if len(ids) else 0
    rep.table("codes", ["layer", "units", "fraction active", "never active", "always active",
                        "distinct layer codes"], code_rows,
              caption=f"VQ code statistics over {len(sample)} data points; the points fall in "
                      f"{n_regions_hit} distinct linear regions")
    rep.record("codes", {"layers": [dict(zip(["layer", "units", "fraction_active", "never_active",
                                              "always_active", "distinct_codes"], r))
                                    for r in code_rows],
                         "distinct_regions": n_regions_hit, "n_points": len(sample)})
    rep.record("local_complexity", {"n_vertices": n_vertices, "median_norm": scale,
                                    "rows": [list(r) for r in lc_rows]})
    steps.update()
    steps.close()
    return rep


__all__ = ["Data", "build_model", "build_model_report", "load_data", "load_factory",
           "load_weights", "parse_points"]
