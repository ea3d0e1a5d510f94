"""Training callbacks that track spline-geometry measures per epoch.

Each callback is called by :func:`maxaffine.training.train` as ``cb(model, epoch)`` with the
model in eval mode (after every epoch, and once before training with ``epoch = 0``) and
returns a dict of numbers merged into that epoch's log row. Measures run on a float64 copy
of the model and never touch its parameters.

Examples
--------
>>> import torch, maxaffine
>>> from maxaffine.callbacks import LocalComplexityCallback
>>> from maxaffine.training import train
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
>>> X, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
>>> cb = LocalComplexityCallback(X[:8], radius=0.5, n_vertices=6, name="lc")
>>> hist = train(net, X, y, epochs=2, callbacks=[cb], progress=False)
>>> len(hist.column("lc"))
3
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from .complexity import hessian_complexity, local_complexity
from .templates import memorization, templates


def _due(epoch: int, every: int | Iterable[int] | None) -> bool:
    if every is None:
        return True
    if isinstance(every, int):
        return epoch % max(every, 1) == 0
    return epoch in set(every)


class MeasureCallback:
    """Log ``fn(model)`` under ``name`` (a number, or a dict merged as is).

    Parameters
    ----------
    fn : callable (model) -> float or dict
    name : str
        Key for a scalar result.
    every : int or iterable of int, optional
        Evaluate only at epochs divisible by ``every`` or listed in it.
    """

    def __init__(self, fn: Callable[[nn.Module], float | dict], name: str = "measure",
                 every: int | Iterable[int] | None = None):
        self.fn, self.name = fn, name
        self.every = every if isinstance(every, (int, type(None))) else sorted(set(every))

    def __call__(self, model: nn.Module, epoch: int) -> dict[str, float] | None:
        if not _due(epoch, self.every):
            return None
        out = self.fn(model)
        if isinstance(out, dict):
            return {k: float(v) for k, v in out.items()}
        return {self.name: float(out)}


class LocalComplexityCallback(MeasureCallback):
    """Mean local complexity (Humayun et al. 2024) around fixed points ``X``.

    Parameters
    ----------
    X : Tensor, shape (N, *in_shape)
    radius : float or str
        As in :func:`~maxaffine.local_complexity`, e.g. ``"0.05*median_norm"`` (relative
        to the norms of ``X``, so the same radius at every epoch).
    n_vertices : int, optional
        Default ``min(50, 2D)``.
    name : str
        Log key; with ``per_layer`` also ``f"{name}/{layer}"``.
    per_layer : bool
    seed : int
        The same input-space directions are used at every epoch (common random numbers,
        ``directions="input"`` of :func:`~maxaffine.local_complexity`), so changes between
        epochs come from the network, not from resampling.
    every : int or iterable of int, optional
    """

    def __init__(self, X: torch.Tensor, *, radius: float | str, n_vertices: int | None = None,
                 name: str = "lc",
                 per_layer: bool = False, seed: int = 0,
                 every: int | Iterable[int] | None = None):
        def fn(model: nn.Module) -> dict[str, float]:
            lc = local_complexity(model, X, radius=radius, n_vertices=n_vertices,
                                  per_layer=per_layer, seed=seed, directions="input")
            row = {name: lc.mean()}
            if per_layer:
                row.update({f"{name}/{k}": float(v.double().mean()) for k, v in lc.layers.items()})
            return row

        super().__init__(fn, name, every)


class HessianComplexityCallback(MeasureCallback):
    """Hessian (rugosity) complexity around fixed points ``X``.

    Parameters
    ----------
    X : Tensor, shape (N, *in_shape)
    x_aug : Tensor, shape (N, *in_shape), optional
        Fixed augmented copies (augmentation estimator); default the perturbation estimator.
    sigma : float
    name : str
    seed : int
        Fixed perturbation across epochs.
    every : int or iterable of int, optional
    """

    def __init__(self, X: torch.Tensor, *, x_aug: torch.Tensor | None = None,
                 sigma: float = 1e-4, name: str = "hessian", seed: int = 0,
                 every: int | Iterable[int] | None = None):
        def fn(model: nn.Module) -> float:
            return hessian_complexity(model, X, x_aug=x_aug, sigma=sigma, seed=seed).value

        super().__init__(fn, name, every)


def template_cosine(model: nn.Module, X: torch.Tensor) -> float:
    """Mean absolute cosine between different classes' templates, averaged over ``X``.

    .. math:: \\operatorname{mean}_{n,\\, c \\ne c'} |\\cos(A_c[x_n], A_{c'}[x_n])|

    Returns
    -------
    float
        0 for perfectly orthogonal templates.
    """
    T = templates(model, X)
    B, C = T.shape[:2]
    A = T.reshape(B, C, -1)
    A = A / A.norm(dim=2, keepdim=True).clamp_min(1e-300)
    cos = (A @ A.transpose(1, 2)).abs()
    if C < 2:
        return 0.0
    off = cos.sum((1, 2)) - torch.diagonal(cos, dim1=1, dim2=2).sum(1)
    return float(off.mean() / (C * (C - 1)))


class TemplateCosineCallback(MeasureCallback):
    """Mean absolute off-diagonal template cosine (see :func:`template_cosine`) on ``X``."""

    def __init__(self, X: torch.Tensor, *, name: str = "template_cos",
                 every: int | Iterable[int] | None = None):
        super().__init__(lambda model: template_cosine(model, X), name, every)


class MemorizationCallback(MeasureCallback):
    """Template–input cosines at ``(X, y)``: logs ``{name}_true``, ``{name}_other``."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor, *, name: str = "cos",
                 every: int | Iterable[int] | None = None):
        def fn(model: nn.Module) -> dict[str, float]:
            s = memorization(model, X, y).summary()
            return {f"{name}_true": s["cos_true"], f"{name}_other": s["cos_other"]}

        super().__init__(fn, name, every)


def log_spaced_epochs(last: int, n: int = 30) -> list[int]:
    """About ``n`` epochs from 0 to ``last``, spaced logarithmically (for ``every=``)."""
    pts = {0, last}
    for i in range(n):
        pts.add(int(round(math.expm1(math.log1p(last) * i / max(n - 1, 1)))))
    return sorted(p for p in pts if 0 <= p <= last)


__all__ = ["HessianComplexityCallback", "LocalComplexityCallback", "MeasureCallback",
           "MemorizationCallback", "TemplateCosineCallback", "log_spaced_epochs",
           "template_cosine"]
