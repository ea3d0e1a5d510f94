"""Exact per-input affine maps ``f(x) = A[x] x + b[x]`` and VQ codes.

On the region containing ``x`` a piecewise-affine network is exactly affine. With every
unit's VQ code fixed, the network becomes a chain of linear maps; ``A[x]`` is accumulated
from the cheaper side (forward from the input when ``D ≤ C``, backward from the output
otherwise), batched over samples and over the ``min(C, D)`` basis vectors, and ``b[x]`` is
the fixed-code network evaluated at zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .errors import InputError
from .trace import ForwardRecord, Trace, as_trace


class Codes(dict):
    """VQ codes of every piecewise node: ``{layer name: Tensor (B, *units)}``.

    Boolean codes for two-piece units (ReLU-like: ``1[u > 0]``), integer argmax indices for
    max-pooling and maxout, int8 (0 below, 1 inside, 2 above) for clamps. Equal full codes
    ⇔ same linear region.
    """

    def flat(self) -> torch.Tensor:
        """All codes of a sample concatenated, shape (B, n_units), int64."""
        parts = [c.reshape(c.shape[0], -1).long() for c in self.values()]
        if not parts:
            return torch.zeros((0, 0), dtype=torch.long)
        return torch.cat(parts, 1)

    def region_keys(self) -> list[bytes]:
        """A compact hashable key per input: equal keys ⇔ same region (same full code)."""
        import numpy as np

        chunks = []
        for c in self.values():
            flat = c.reshape(c.shape[0], -1)
            if flat.dtype == torch.bool:
                chunks.append(np.packbits(flat.cpu().numpy(), axis=1))
            else:
                chunks.append(flat.cpu().numpy().astype(np.int32).view(np.uint8))
        if not chunks:
            return []
        packed = np.ascontiguousarray(np.concatenate(chunks, axis=1))
        return [row.tobytes() for row in packed]

    def region_ids(self) -> torch.Tensor:
        """Integer region label per input, shape (B,): equal labels ⇔ same region."""
        flat = self.flat()
        if flat.numel() == 0:
            return torch.zeros(flat.shape[0], dtype=torch.long, device=flat.device)
        return torch.unique(flat, dim=0, return_inverse=True)[1]

    @property
    def batch_size(self) -> int:
        return next(iter(self.values())).shape[0] if self else 0


@dataclass(frozen=True)
class AffineMap:
    """The exact affine map of a network (or a range of its layers) on the regions of ``x``.

    .. math::
        f(x') = A[x]\\, x' + b[x] \\quad \\text{for every } x' \\text{ in the region of } x.

    Attributes
    ----------
    A : Tensor, shape (B, C, D)
        Slopes; row ``c`` of sample ``n`` is ``∇f_c`` at ``x_n`` (the class-c template).
        Materialised on first access if the map was built with ``materialize=False``.
    b : Tensor, shape (B, C)
        Offsets.
    x : Tensor, shape (B, *in_shape)
        The points (the input of ``start``) whose regions the map belongs to.
    codes : Codes
        VQ codes of the points.
    in_shape, out_shape : tuple of int
        Per-sample shapes at ``start`` and ``end``; ``D = prod(in_shape)``, ``C = prod(out_shape)``.
    """

    b: torch.Tensor
    x: torch.Tensor
    codes: Codes
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    trace: Trace = field(repr=False)
    start: str | None = None
    end: str | None = None
    _record: ForwardRecord | None = field(default=None, repr=False)
    _A: list = field(default_factory=list, repr=False)
    _grad: bool = field(default=False, repr=False)  # built with differentiable=True

    @property
    def A(self) -> torch.Tensor:
        if not self._A:
            # formed later: keep a graph only if the map was asked to be differentiable
            with torch.set_grad_enabled(self._grad and torch.is_grad_enabled()):
                self._A.append(_accumulate(self.trace, self._record, self.start, self.end,
                                           len(self.x), self.in_shape, self.out_shape))
        return self._A[0]

    @property
    def batch_size(self) -> int:
        return self.b.shape[0]

    def __repr__(self) -> str:
        A = "materialized" if self._A else "lazy"
        span = "" if self.start is None and self.end is None else f", start={self.start!r}, end={self.end!r}"
        return (f"AffineMap(batch={self.batch_size}, in_shape={self.in_shape}, "
                f"out_shape={self.out_shape}, A={A}, dtype={str(self.b.dtype).removeprefix('torch.')}, "
                f"layers={len(self.codes)}{span})")

    @property
    def n_outputs(self) -> int:
        return self.b.shape[1]

    @property
    def in_features(self) -> int:
        return math.prod(self.in_shape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``A[x_n] x'_n + b[x_n]`` for points ``x'`` (B, *in_shape) paired with the batch."""
        return self.jvp(x) + self.b

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        """``A[x] v`` for directions ``v`` of shape (B, *in_shape), matrix-free; returns (B, C)."""
        v = self._check(v, self.in_shape, "v")
        if self._A:
            return torch.einsum("ncd,nd->nc", self._A[0], v.reshape(len(v), -1))
        out = self.trace.push(self._record, v, start=self.start, end=self.end, K=1, bias=False)
        return out.reshape(len(v), -1)

    def vjp(self, u: torch.Tensor) -> torch.Tensor:
        """``uᵀ A[x]`` for covectors ``u`` of shape (B, C), matrix-free; returns (B, *in_shape)."""
        u = self._check(u, (self.n_outputs,), "u")
        if self._A:
            return torch.einsum("nc,ncd->nd", u, self._A[0]).reshape(len(u), *self.in_shape)
        out = self.trace.pull(self._record, u.reshape(len(u), *self.out_shape), start=self.start,
                              end=self.end, K=1)
        return out.reshape(len(u), *self.in_shape)

    def templates(self) -> torch.Tensor:
        """Rows of ``A`` shaped like the input: (B, C, *in_shape)."""
        return self.A.reshape(self.batch_size, self.n_outputs, *self.in_shape)

    def _check(self, t: torch.Tensor, shape: tuple[int, ...], name: str) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=self.b.dtype, device=self.b.device)
        if t.shape[0] != self.batch_size or tuple(t.shape[1:]) not in (shape, (math.prod(shape),)):
            raise InputError(f"{name} must have shape ({self.batch_size}, {', '.join(map(str, shape))}); "
                             f"got {tuple(t.shape)}")
        return t.reshape(len(t), *shape)


def _accumulate(tr: Trace, record: ForwardRecord, start: str | None, end: str | None,
                B: int, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> torch.Tensor:
    """``A`` (B, C, D) from the cheaper side: D forward tangents or C reverse cotangents."""
    D, C = math.prod(in_shape), math.prod(out_shape)
    dtype = record.output.dtype
    if D <= C:
        eye = torch.eye(D, dtype=dtype, device=record.output.device)
        tangents = eye.repeat(B, 1).reshape(B * D, *in_shape)
        out = tr.push(record, tangents, start=start, end=end, K=D, bias=False)
        return out.reshape(B, D, C).transpose(1, 2)
    eye = torch.eye(C, dtype=dtype, device=record.output.device)
    cotangents = eye.repeat(B, 1).reshape(B * C, *out_shape)
    out = tr.pull(record, cotangents, start=start, end=end, K=C)
    return out.reshape(B, C, D)


def _chunks(n: int, size: int) -> Iterator[slice]:
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def _default_chunk(tr: Trace, in_features: int, n_out: int) -> int:
    """Samples per chunk so that the widest batched pass stays near 2^26 numbers (~0.5 GB)."""
    widest = max([math.prod(n.shape or (1,)) for n in tr.nodes if n.kind == "var"] + [1])
    copies = min(in_features, n_out)
    return max(1, int(2**26 // max(1, widest * copies)))


def affine_map(model: nn.Module | Trace, x: torch.Tensor, *, start: str | None = None,
               end: str | None = None, materialize: bool = True, chunk_size: int | None = None,
               progress: bool = False, differentiable: bool = False,
               output: Any = None) -> AffineMap:
    """Exact slope and offset of the network on the region of every input.

    .. math::
        f(x) = A[x]\\, x + b[x], \\qquad
        A[x] = W_L \\prod_{\\ell=L-1}^{1} P_\\ell[x]\\, D_\\ell[x]\\, C_\\ell

    Parameters
    ----------
    model : nn.Module or Trace
    x : Tensor, shape (B, *in_shape)
    start, end : str, optional
        Layer names (see ``trace(model, x)``): the map from the output of ``start`` (default:
        the network input) to the output of ``end`` (default: the network output), with the
        codes of ``x`` fixed. ``A`` then has shape (B, prod(end shape), prod(start shape)).
    materialize : bool
        Form ``A`` now. With False only ``b`` and the codes are computed; ``A`` is formed on
        first access, and :meth:`AffineMap.jvp` / :meth:`AffineMap.vjp` work matrix-free.
    chunk_size : int, optional
        Samples per batched pass (default: chosen to bound memory).
    progress : bool
        Show a progress bar over chunks.
    differentiable : bool
        Keep the autograd graph so ``A`` and ``b`` can be differentiated with respect to
        the parameters (pass a Trace built with ``dtype=None`` to share the parameters).
    output : int, str or callable, optional
        Which output of a forward that returns a tuple/dict (see :func:`maxaffine.trace`).

    Returns
    -------
    AffineMap
        With ``A`` (B, C, D), ``b`` (B, C) and ``codes``.

    Notes
    -----
    On a region boundary ``A[x]`` is not unique; maxaffine uses the code ``1[u > 0]`` (ties to
    the first maximal element for max-pooling and maxout), i.e. the one-sided map of the
    region the code names.

    Examples
    --------
    >>> import torch, maxaffine
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    >>> x = torch.randn(5, 3, dtype=torch.float64)
    >>> m = maxaffine.affine_map(net, x)
    >>> m.A.shape, m.b.shape
    (torch.Size([5, 2, 3]), torch.Size([5, 2]))
    >>> torch.allclose(m(x), net.double()(x))
    True
    """
    with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
        return _affine_map(model, x, start, end, materialize, chunk_size, progress, output)


def _affine_map(model, x, start, end, materialize, chunk_size, progress, output) -> AffineMap:
    tr = as_trace(model, x, output=output)
    x = tr.prepare(x)
    active, s, e = tr.plan(start, end)
    # shapes at start and end
    in_shape = tr.in_shape if s.kind == "input" else s.shape
    out_shape = e.shape
    n_in, n_out = math.prod(in_shape), math.prod(out_shape)
    size = chunk_size or _default_chunk(tr, n_in, n_out)
    pieces_A, pieces_b, pieces_x, pieces_codes = [], [], [], []
    record = None
    slices = list(_chunks(len(x), size))
    for sl in tqdm(slices, desc="affine_map", disable=not progress or len(slices) < 2, leave=False):
        record = tr.run(x[sl], prepared=True)
        xs = x[sl] if s.kind == "input" else record.values[s.fx_node.name]
        if materialize:
            # b[x] = f(x) - A[x] x (DESIGN §3): one matrix-vector product per sample
            A = _accumulate(tr, record, start, end, len(xs), in_shape, out_shape)
            y = tr.value(record, e.name).reshape(len(xs), -1)
            b = y - torch.einsum("ncd,nd->nc", A, xs.reshape(len(xs), -1))
            pieces_A.append(A)
        else:
            # the fixed-code network evaluated at zero
            zero = torch.zeros_like(xs)
            b = tr.push(record, zero, start=start, end=end, K=1, bias=True).reshape(len(xs), -1)
        pieces_b.append(b)
        pieces_x.append(xs)
        pieces_codes.append(record.codes)
    def join(parts: list[torch.Tensor]) -> torch.Tensor:
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    codes = Codes({k: join([c[k] for c in pieces_codes]) for k in pieces_codes[0]})
    A_list = [join(pieces_A)] if materialize else []
    if not materialize and len(slices) > 1:
        record = tr.run(x, prepared=True)
    return AffineMap(join(pieces_b), join(pieces_x), codes, tuple(in_shape),
                     tuple(out_shape), tr, start, end, record, A_list, torch.is_grad_enabled())


def codes(model: nn.Module | Trace, x: torch.Tensor, *, output: Any = None) -> Codes:
    """VQ codes of every piecewise node for a batch of inputs.

    Parameters
    ----------
    model : nn.Module or Trace
    x : Tensor, shape (B, *in_shape)
    output : int, str or callable, optional
        Which output of a forward that returns a tuple/dict (see :func:`maxaffine.trace`).

    Returns
    -------
    Codes
        ``{layer name: Tensor (B, *units)}`` in graph order; ``codes.region_keys()`` gives one
        hashable key per input and ``codes.region_ids()`` integer region labels.

    Examples
    --------
    >>> import torch, maxaffine
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    >>> q = maxaffine.codes(net, torch.randn(3, 2))
    >>> list(q), q["1"].dtype
    (['1'], torch.bool)
    """
    tr = as_trace(model, x, output=output)
    with torch.no_grad():
        return Codes(tr.run(x).codes)


__all__ = ["AffineMap", "Codes", "affine_map", "codes"]
