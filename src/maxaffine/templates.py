"""Templates (rows of ``A[x]``), logit decomposition, memorization proxy and the VQ distance.

A piecewise-affine classifier computes, on the region of ``x``,
``f_c(x) = <A_c[x], x> + b_c[x]``: a bank of input-dependent matched filters (templates)
``A_c[x]``, one per class. Everything here is computed for all classes in one batched call,
chunked over samples to bound memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ._stream import batches, is_stream
from .affine import _chunks, _default_chunk, affine_map
from .errors import InputError
from .trace import Trace, as_trace


def templates(model: nn.Module | Trace, x: torch.Tensor, *,
              chunk_size: int | None = None) -> torch.Tensor:
    """Class templates: the rows of the per-input slope ``A[x]``, shaped like the input.

    .. math::
        f_c(x) = \\langle A_c[x], x\\rangle + b_c[x], \\qquad A_c[x] = \\nabla_x f_c(x)
        \\ \\text{(off region boundaries)}

    Parameters
    ----------
    model : nn.Module or Trace
        A piecewise-affine network (see :func:`maxaffine.trace`).
    x : Tensor, shape (B, *in_shape)
    chunk_size : int, optional
        Samples per batched pass (default: chosen to bound memory).

    Returns
    -------
    Tensor, shape (B, C, *in_shape), float64
        ``out[n, c]`` is the class-``c`` template of sample ``n``.

    Raises
    ------
    InputError
        If ``x`` does not match the model's input shape or is not finite.
    UnsupportedLayerError, NotConvexError, TrainingModeError
        From tracing the model.

    Examples
    --------
    >>> import torch, maxaffine
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> maxaffine.templates(net, torch.randn(5, 4)).shape
    torch.Size([5, 3, 4])

    References
    ----------
    Balestriero & Baraniuk, "A Spline Theory of Deep Networks", ICML 2018.
    """
    m = affine_map(model, x, chunk_size=chunk_size)
    return m.templates()


@dataclass(frozen=True)
class LogitDecomposition:
    """Each logit split into the template response and the offset.

    .. math:: f_c(x) = \\underbrace{\\langle A_c[x], x\\rangle}_{\\text{inner}} +
              \\underbrace{b_c[x]}_{\\text{bias}}

    Attributes
    ----------
    inner : Tensor, shape (B, C)
        ``<A_c[x_n], x_n>``.
    bias : Tensor, shape (B, C)
        ``b_c[x_n]``.
    """

    inner: torch.Tensor
    bias: torch.Tensor

    @property
    def logits(self) -> torch.Tensor:
        """``inner + bias`` = the network output, shape (B, C)."""
        return self.inner + self.bias


def logit_decomposition(model: nn.Module | Trace, x: torch.Tensor, *,
                        chunk_size: int | None = None) -> LogitDecomposition:
    """Split every logit into the template inner product and the region offset.

    .. math:: f_c(x) = \\langle A_c[x], x\\rangle + b_c[x]

    Parameters
    ----------
    model : nn.Module or Trace
    x : Tensor, shape (B, *in_shape)
    chunk_size : int, optional
        Samples per batched pass.

    Returns
    -------
    LogitDecomposition
        ``inner`` and ``bias``, both (B, C), float64; ``inner + bias`` equals the model output.

    Raises
    ------
    InputError
        If ``x`` has the wrong shape or non-finite values.

    Examples
    --------
    >>> import torch, maxaffine
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> d = maxaffine.logit_decomposition(net, torch.randn(5, 4))
    >>> d.inner.shape, d.bias.shape
    (torch.Size([5, 3]), torch.Size([5, 3]))

    References
    ----------
    Balestriero & Baraniuk, "A Spline Theory of Deep Networks", ICML 2018.
    """
    m = affine_map(model, x, chunk_size=chunk_size, materialize=False)
    # <A_c, x> = (A x)_c: one forward-mode pass, no need to form A
    inner = m.jvp(m.x)
    return LogitDecomposition(inner, m.b)


@dataclass(frozen=True)
class Memorization:
    """Cosine similarity between each class template and the input.

    Attributes
    ----------
    cosine : Tensor, shape (B, C)
        ``cos(A_c[x_n], x_n)`` (0 where a template or the input is zero).
    labels : Tensor, shape (B,)
    """

    cosine: torch.Tensor
    labels: torch.Tensor

    @property
    def true(self) -> torch.Tensor:
        """Cosine with the true class's template, shape (B,)."""
        return self.cosine.gather(1, self.labels[:, None]).squeeze(1)

    @property
    def other(self) -> torch.Tensor:
        """Mean cosine with the other classes' templates, shape (B,)."""
        C = self.cosine.shape[1]
        if C < 2:
            return torch.zeros_like(self.true)
        return (self.cosine.sum(1) - self.true) / (C - 1)

    def summary(self) -> dict[str, float]:
        """Means of ``true`` and ``other`` and their gap."""
        t, o = self.true.mean().item(), self.other.mean().item()
        return {"cos_true": t, "cos_other": o, "gap": t - o}

    def to_dict(self) -> dict[str, np.ndarray]:
        """One row per input: ``sample``, ``label``, ``cos_true``, ``cos_other``, ``cos_<c>``."""
        from ._tables import column

        d = {"sample": np.arange(len(self.labels)), "label": column(self.labels),
             "cos_true": column(self.true), "cos_other": column(self.other)}
        cos = column(self.cosine)
        d.update({f"cos_{c}": cos[:, c] for c in range(cos.shape[1])})
        return d

    def to_frame(self):
        """:meth:`to_dict` as a pandas DataFrame indexed by ``sample`` (needs pandas)."""
        from ._tables import frame

        return frame(self.to_dict(), index="sample")

    def __repr__(self) -> str:
        s = self.summary() if len(self.labels) else {"cos_true": float("nan"), "gap": float("nan")}
        return (f"Memorization(batch={len(self.labels)}, classes={self.cosine.shape[1]}, "
                f"cos_true={s['cos_true']:.4g}, gap={s['gap']:.4g})")


def memorization(model: nn.Module | Trace, x: Any, y: torch.Tensor | None = None, *,
                 chunk_size: int | None = None, progress: bool = False) -> Memorization:
    """Template–input cosines, true class versus the others (a memorization proxy).

    .. math:: \\operatorname{cos}(A_c[x_n], x_n) =
              \\frac{\\langle A_c[x_n], x_n\\rangle}{\\|A_c[x_n]\\|\\,\\|x_n\\|}

    At memorized training points the true class's template matches the input (large positive
    cosine) and the other classes' templates anti-match it.

    Parameters
    ----------
    model : nn.Module or Trace
    x : Tensor, shape (B, *in_shape), or an iterable of ``(x, y)`` batches
        The inputs, or a stream of labelled batches (a ``DataLoader``, a generator, a
        list); a stream is processed batch after batch with bounded memory (only the
        ``(B, C)`` cosines are kept).
    y : Tensor, shape (B,), integer labels in [0, C)
        The labels (None with a stream: they come with the batches).
    chunk_size : int, optional
        Samples per batched pass (the templates of one pass are ``chunk_size * C * D``
        numbers; default: chosen to bound memory).
    progress : bool
        Show a progress bar over the samples.

    Returns
    -------
    Memorization
        ``cosine`` (B, C); ``.true``, ``.other``, ``.summary()``.

    Raises
    ------
    InputError
        If ``y`` is not a vector of B labels in [0, C).

    References
    ----------
    Balestriero & Baraniuk, "A Spline Theory of Deep Networks", ICML 2018 (templates as
    matched filters, memorization).
    """
    stream = is_stream(x)
    if stream and y is not None:
        raise InputError("with a stream of batches the labels come with the batches ((x, y) "
                         "pairs); do not pass y separately")
    if not stream and y is None:
        raise InputError("memorization needs the labels y of the inputs")
    parts = batches(x) if stream else iter([(x, y)])
    first = next(parts, None)
    if first is None:
        raise InputError("memorization got an empty stream of batches")
    tr = as_trace(model, first[0])
    C = tr.n_outputs
    size = chunk_size or _default_chunk(tr, tr.in_features, C)
    cos_parts, label_parts = [], []
    item: tuple[Any, Any] | None = first
    with tqdm(total=None if stream else len(first[0]), desc="memorization", unit="sample",
              disable=not progress, leave=False) as bar:
        while item is not None:
            xb = tr.prepare(item[0])
            B = xb.shape[0]
            if item[1] is None:
                raise InputError("every batch of the stream must be an (x, y) pair")
            yb = torch.as_tensor(item[1]).long().reshape(-1).to(xb.device)
            if yb.shape[0] != B or (B and (int(yb.min()) < 0 or int(yb.max()) >= C)):
                raise InputError(f"y must hold {B} labels in [0, {C}); got shape "
                                 f"{tuple(yb.shape)}" + (f" with range [{int(yb.min())}, "
                                                         f"{int(yb.max())}]" if yb.numel() else ""))
            for sl in _chunks(B, size):
                Tf = affine_map(tr, xb[sl], chunk_size=sl.stop - sl.start).A  # (n, C, D)
                xf = xb[sl].reshape(len(Tf), 1, -1)
                num = (Tf * xf).sum(-1)
                den = Tf.norm(dim=-1) * xf.norm(dim=-1)
                cos_parts.append(torch.where(den > 0, num / den.clamp_min(torch.finfo(Tf.dtype).tiny),
                                             torch.zeros_like(num)))
                bar.update(len(Tf))
            label_parts.append(yb)
            item = next(parts, None)
    cos = torch.cat(cos_parts) if cos_parts else torch.zeros((0, C), dtype=tr.dtype, device=tr.device)
    labels = torch.cat(label_parts) if label_parts else torch.zeros(0, dtype=torch.long,
                                                                   device=tr.device)
    return Memorization(cos, labels)


def vq_distance(model: nn.Module | Trace, x1: torch.Tensor, x2: torch.Tensor | None = None, *,
                layers: Sequence[str] | None = None,
                weights: Sequence[float] | Mapping[str, float] | None = None,
                chunk_size: int = 1024) -> torch.Tensor:
    """Pairwise VQ distance: the weighted fraction of units whose code differs.

    .. math::
        d(x, x') = \\sum_{\\ell} w_\\ell\\, \\frac{1}{K_\\ell}\\sum_{k=1}^{K_\\ell}
        1\\big[q_k^{(\\ell)}(x) \\ne q_k^{(\\ell)}(x')\\big]

    Parameters
    ----------
    model : nn.Module or Trace
    x1 : Tensor, shape (N1, *in_shape)
    x2 : Tensor, shape (N2, *in_shape), optional
        Defaults to ``x1`` (a symmetric matrix with zero diagonal).
    layers : sequence of str, optional
        Piecewise layer names (``trace(model, x).piecewise``); default all of them.
    weights : sequence of float or mapping layer -> float, optional
        Layer weights ``w_ℓ``; default uniform ``1 / L`` so that ``d ∈ [0, 1]``.
    chunk_size : int
        Rows of ``x1`` per block of the pairwise computation.

    Returns
    -------
    Tensor, shape (N1, N2), float64

    Raises
    ------
    InputError
        If a layer name is unknown or not piecewise, or the weights do not match the layers.

    Notes
    -----
    Codes are compared exactly (booleans for ReLU-like units, argmax indices for max-pooling,
    regimes for clamps). The distance is 0 exactly when two inputs share every selected
    layer's code, i.e. (for all layers) lie in the same linear region. Computed as one-hot
    code matrices multiplied blockwise (no per-pair loop).

    Examples
    --------
    >>> import torch, maxaffine
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> d = maxaffine.vq_distance(net, torch.randn(4, 2))
    >>> d.shape, bool((d.diagonal() == 0).all())
    (torch.Size([4, 4]), True)

    References
    ----------
    Balestriero & Baraniuk, "Mad Max: Affine Spline Insights into Deep Learning",
    Proc. IEEE 2021 (VQ codes as a signal representation).
    """
    tr = as_trace(model, x1)
    names = list(tr.piecewise if layers is None else layers)
    for name in names:
        if name not in tr.piecewise:
            raise InputError(f"layer {name!r} is not a piecewise (VQ-coded) layer; choose from "
                             f"{', '.join(tr.piecewise) or '(none: the model is affine)'}")
    if not names:
        raise InputError("the model has no piecewise layers, so every VQ distance is 0; "
                         "pass a network with ReLU/max-pool/... units")
    if weights is None:
        w = [1.0 / len(names)] * len(names)
    elif isinstance(weights, Mapping):
        missing = [n for n in names if n not in weights]
        if missing:
            raise InputError(f"weights has no entry for layers {missing}")
        w = [float(weights[n]) for n in names]
    else:
        w = [float(v) for v in weights]
        if len(w) != len(names):
            raise InputError(f"got {len(w)} weights for {len(names)} layers {names}")
    with torch.no_grad():
        q1 = tr.run(x1).codes
        q2 = q1 if x2 is None else tr.run(x2).codes
        N1 = next(iter(q1.values())).shape[0]
        N2 = next(iter(q2.values())).shape[0]
        dev = next(iter(q1.values())).device
        out = torch.zeros(N1, N2, dtype=torch.float64, device=dev)
        for name, wl in zip(names, w):
            a = q1[name].reshape(N1, -1).long()
            b = q2[name].reshape(N2, -1).long()
            K = a.shape[1]
            if K == 0 or wl == 0.0:
                continue
            R = int(max(a.max().item(), b.max().item(), 1)) + 1
            offs = torch.arange(K, device=dev) * R
            # one-hot codes: (N, K*R), matches = number of units with equal code
            hb = torch.zeros(N2, K * R, dtype=torch.float64, device=dev)
            hb.scatter_(1, b + offs, 1.0)
            for sl in range(0, N1, chunk_size):
                blk = a[sl:sl + chunk_size]
                ha = torch.zeros(len(blk), K * R, dtype=torch.float64, device=dev)
                ha.scatter_(1, blk + offs, 1.0)
                out[sl:sl + chunk_size] += wl * (1.0 - (ha @ hb.T) / K)
    return out


__all__ = ["LogitDecomposition", "Memorization", "logit_decomposition", "memorization",
           "templates", "vq_distance"]
