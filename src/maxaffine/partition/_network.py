"""Batched evaluation of a traced network on slice points, starting after its affine prefix.

Every node that depends on the input only through affine ops (no piecewise node upstream)
is an affine function of the slice coordinates: ``z(s, t) = z(x0) + s Δ_u + t Δ_v``. Those
values are formed directly from three anchor evaluations, so a 784-input MLP or a CNN's
first convolution costs nothing per vertex; the rest of the graph runs through the rules as
:meth:`maxaffine.Trace.run` does, in row chunks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import fx

from ..errors import UnsupportedLayerError, Offender
from ..layers.activation import ClampRule, MaximumRule, TwoSlopeRule
from ..layers.base import NodeContext
from ..layers.pooling import MaxoutRule, MaxPoolRule

#: Rows of one evaluation chunk are chosen so that a chunk holds about this many floats.
CHUNK_FLOATS = 1 << 24


def _var_args(args: Any, flags: Any, out: list) -> list:
    for a, f in zip(args, flags):
        if isinstance(f, tuple):
            _var_args(tuple(a), f, out)
        elif f:
            out.append(a)
    return out


class Switch:
    """How one piecewise node switches: its cutting functions on the vertices.

    ``kind == "sign"``: ``F`` functions whose zero lines cut (ReLU-like ``u``, clamps
    ``u - lo`` and ``u - hi``, maximum ``a - b``); ``unit[f]`` is the label of function f.
    ``kind == "argmax"``: ``table`` (K, R) of pre-activation indices of each max unit
    (-1 padding); regions are cut into argmax cells.
    """

    def __init__(self, kind: str, n_functions: int, unit: np.ndarray | None = None,
                 table: np.ndarray | None = None, fn=None):
        self.kind = kind
        self.n_functions = n_functions
        self.unit = unit
        self.table = table
        self.fn = fn  # list of unit-input tensors (N, ...) -> ndarray (F, N)


def switch_of(tr, name: str, ctx: NodeContext) -> Switch:
    node = tr.node(name)
    rule = node.rule
    if isinstance(rule, MaxoutRule) and rule._is_maximum(ctx) or isinstance(rule, MaximumRule):
        U = math.prod(node.shape)

        def fn(ins):
            a, b = (ins + [None])[:2]
            if b is None:  # maximum against a constant
                b = torch.as_tensor(ctx.args[1], dtype=a.dtype)
            d = torch.broadcast_to(a - b, (a.shape[0],) + tuple(node.shape))
            return d.reshape(len(a), -1).T.numpy()

        return Switch("sign", U, np.arange(U), fn=fn)
    if isinstance(rule, TwoSlopeRule):
        U = math.prod(node.shape)
        return Switch("sign", U, np.arange(U),
                      fn=lambda ins: ins[0].reshape(len(ins[0]), -1).T.numpy())
    if isinstance(rule, ClampRule):
        lo, hi = rule.bounds(ctx)
        U = math.prod(node.shape)
        parts, units = [], []
        if math.isfinite(lo):
            parts.append(lo)
            units.append(np.arange(U))
        if math.isfinite(hi):
            parts.append(hi)
            units.append(np.arange(U) + U)

        def fn(ins):
            u = ins[0].reshape(len(ins[0]), -1).T.numpy()
            return np.concatenate([u - c for c in parts]) if parts else np.zeros((0, u.shape[1]))

        return Switch("sign", U * len(parts), np.concatenate(units) if units else np.zeros(0, int),
                      fn=fn)
    if isinstance(rule, MaxPoolRule):
        table = rule.unit_table(ctx).cpu().numpy()
        return Switch("argmax", table.shape[0], table=table,
                      fn=lambda ins: ins[0].reshape(len(ins[0]), -1).T.numpy())
    if isinstance(rule, MaxoutRule):
        dim, _ = rule._dim_keep(ctx)
        shape = tuple(ctx.u.shape[1:])
        table = torch.arange(math.prod(shape)).reshape(shape).movedim(dim - 1, -1)
        table = table.reshape(-1, shape[dim - 1]).numpy()
        return Switch("argmax", table.shape[0], table=table,
                      fn=lambda ins: ins[0].reshape(len(ins[0]), -1).T.numpy())
    raise UnsupportedLayerError([Offender(
        name, type(rule).__name__, "partition_slice does not know the switching lines of this "
        "piecewise rule", "derive the rule from TwoSlopeRule, ClampRule, MaxPoolRule or "
        "MaximumRule, or leave the node out with layers=")])


class Evaluator:
    """Forward passes of a trace at slice points, skipping the affine prefix.

    Parameters
    ----------
    tr : Trace
    slc : Slice
    """

    def __init__(self, tr, slc):
        self.tr = tr
        self.slc = slc
        anchors = slc.points(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), dtype=tr.dtype)
        with torch.no_grad():
            self.anchor = tr.run(anchors)
        by_fx = {n.fx_node.name: n for n in tr.nodes}
        prefix: set[str] = set()
        for n in tr.nodes:
            name = n.fx_node.name
            if n.kind == "input":
                prefix.add(name)
            elif n.kind == "var" and not n.piecewise:
                deps = [a.name for a in n.fx_node.all_input_nodes
                        if by_fx[a.name].kind in ("var", "input")]
                if all(d in prefix for d in deps):
                    prefix.add(name)
        frontier: dict[str, tuple] = {}
        for n in tr.nodes:
            if n.fx_node.name in prefix or n.kind not in ("var", "output"):
                continue
            for a in n.fx_node.all_input_nodes:
                if a.name in prefix and a.name not in frontier:
                    val = self.anchor.values[a.name]
                    v0, du, dv = val[0], val[1] - val[0], val[2] - val[0]
                    basis = torch.stack([v0, du, dv]).reshape(3, -1)
                    frontier[a.name] = (v0, du, dv, basis)
        self.prefix = prefix
        self.frontier = frontier
        self.by_fx = by_fx
        widths = [math.prod(n.shape) for n in tr.nodes
                  if n.kind == "var" and n.shape and n.fx_node.name not in prefix]
        widths += [math.prod(v[0].shape) for v in frontier.values()]
        self.chunk = max(256, CHUNK_FLOATS // max(1, sum(widths)))

    def context(self, name: str) -> NodeContext:
        return self.tr.context(self.anchor, name)

    def _ctx(self, n, env) -> NodeContext:
        args = fx.node.map_arg(n.fx_node.args, lambda a: env[a.name])
        kwargs = fx.node.map_arg(n.fx_node.kwargs, lambda a: env[a.name])
        return NodeContext(n.fx_node, n.module, tuple(args), dict(kwargs), n.var)

    def _run_chunk(self, st: np.ndarray, stop: str | None, codes: dict | None):
        tr = self.tr
        N = len(st)
        s = torch.from_numpy(st[:, 0]).to(tr.dtype)
        t = torch.from_numpy(st[:, 1]).to(tr.dtype)
        env: dict[str, Any] = {}
        out_codes: dict[str, torch.Tensor] = {}
        for n in tr.nodes:
            name = n.fx_node.name
            if n.kind == "const":
                env[name] = self.anchor.values[name]
            elif name in self.frontier:
                v0, _, _, basis = self.frontier[name]
                # [1, s, t] @ [z(x0); Δ_u; Δ_v]: one matrix product per chunk
                coef = torch.stack([torch.ones_like(s), s, t], 1)
                env[name] = (coef @ basis).reshape((N,) + tuple(v0.shape))
            elif name in self.prefix:
                val = self.anchor.values[name]
                env[name] = torch.empty((N,) + tuple(val.shape[1:]), dtype=val.dtype, device="meta")
            elif n.kind == "meta":
                env[name] = self._ctx(n, env).call()
            elif n.kind == "output":
                return env[n.fx_node.args[0].name], out_codes
            elif n.kind == "var":
                ctx = self._ctx(n, env)
                if stop is not None and n.name == stop:
                    return _var_args(ctx.args, n.var, []), out_codes
                code = None
                if n.piecewise:
                    code = codes[n.name] if codes is not None else n.rule.code(ctx)
                    out_codes[n.name] = code
                env[name] = n.rule.apply(ctx, code, 1, True)
        raise RuntimeError("graph has no output node")

    @torch.no_grad()
    def unit_inputs(self, st: np.ndarray, name: str) -> list[torch.Tensor]:
        """The unit inputs (pre-activations) of piecewise node ``name`` at points (N, 2)."""
        parts = [self._run_chunk(st[i:i + self.chunk], name, None)[0]
                 for i in range(0, max(len(st), 1), self.chunk)]
        return [torch.cat([p[j] for p in parts]) for j in range(len(parts[0]))]

    @torch.no_grad()
    def outputs(self, st: np.ndarray, codes: dict | None = None):
        """Network outputs (N, C) and codes at points (N, 2); with ``codes`` fixed if given."""
        outs, cds = [], []
        for i in range(0, max(len(st), 1), self.chunk):
            sub = None if codes is None else {k: v[i:i + self.chunk] for k, v in codes.items()}
            o, c = self._run_chunk(st[i:i + self.chunk], None, sub)
            outs.append(o.reshape(len(o), -1))
            cds.append(c)
        return torch.cat(outs), {k: torch.cat([c[k] for c in cds]) for k in cds[0]}
