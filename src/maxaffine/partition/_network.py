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


def _with_var_args(ctx: NodeContext, values: list) -> NodeContext | None:
    """``ctx`` with its input-dependent positional arguments replaced by ``values`` (None
    when a variable argument is a list, e.g. ``torch.cat``'s)."""
    if any(isinstance(f, tuple) for f in ctx.var):
        return None
    it = iter(values)
    return ctx.replace(tuple(next(it) if f else a for a, f in zip(ctx.args, ctx.var)))


class Switch:
    """How one piecewise node switches: its cutting functions on the vertices.

    ``kind == "sign"``: ``F`` functions whose zero lines cut (ReLU-like ``u``, clamps
    ``u - lo`` and ``u - hi``, maximum ``a - b``); ``unit[f]`` is the label of function f.
    ``kind == "argmax"``: ``table`` (K, R) of pre-activation indices of each max unit
    (-1 padding); regions are cut into argmax cells.

    ``fn(ins)`` maps the unit-input tensors (N, ...) to the function values (N, F).
    ``ins_of(Z)`` inverts it on values ``Z`` (N, F) where the functions determine the unit
    inputs (None otherwise); ``code_of(Z)`` gives the node's VQ codes at points with
    function values ``Z`` (the functions are affine on a region, so the mean of a region's
    vertex values gives its code; argmax switches return None: their codes come from a
    forward pass, see the comment there).
    """

    def __init__(self, kind: str, n_functions: int, ctx: NodeContext, rule, *, fn, ins_of=None,
                 code_of=None, unit: np.ndarray | None = None, table: np.ndarray | None = None):
        self.kind = kind
        self.n_functions = n_functions
        self.unit = unit
        self.table = table
        self.fn = fn
        self.ctx = ctx
        self.rule = rule
        self._ins_of = ins_of
        self._code_of = code_of

    def ins_of(self, Z: np.ndarray) -> list | None:
        if self._ins_of is None:
            return None
        return [torch.from_numpy(np.ascontiguousarray(v)) for v in self._ins_of(Z)]

    def code_of(self, Z: np.ndarray) -> torch.Tensor | None:
        if self.kind == "argmax":
            # a window's elements can tie on a whole region (saturated or dead inputs), where
            # the code is the first maximal index; means of interpolated vertex values blur
            # such exact ties, so argmax codes come from a forward pass instead
            return None
        if self._code_of is not None:
            return self._code_of(Z)
        ins = self.ins_of(Z)
        ctx = None if ins is None else _with_var_args(self.ctx, ins)
        return None if ctx is None else self.rule.code(ctx)

    def value_of(self, Z: np.ndarray) -> torch.Tensor | None:
        """The node's output at points with function values ``Z`` (N, F), if determined."""
        ins = self.ins_of(Z)
        ctx = None if ins is None else _with_var_args(self.ctx, ins)
        return None if ctx is None else self.rule.forward(ctx)


def _flat(ins):
    return ins[0].reshape(len(ins[0]), -1).numpy()


def switch_of(tr, name: str, ctx: NodeContext) -> Switch:
    node = tr.node(name)
    rule = node.rule
    if isinstance(rule, MaxoutRule) and rule.is_maximum(ctx) or isinstance(rule, MaximumRule):
        U = math.prod(node.shape)
        shape = tuple(node.shape)

        def fn(ins):
            a, b = (ins + [None])[:2]
            if b is None:  # maximum against a constant
                b = torch.as_tensor(ctx.args[1], dtype=a.dtype)
            d = torch.broadcast_to(a - b, (a.shape[0],) + shape)
            return d.reshape(len(a), -1).numpy()

        return Switch("sign", U, ctx, rule, fn=fn, unit=np.arange(U),
                      code_of=lambda Z: torch.from_numpy(Z >= 0).reshape((len(Z),) + shape))
    ushape = tuple(ctx.u.shape[1:]) if isinstance(ctx.u, torch.Tensor) else ()
    if isinstance(rule, TwoSlopeRule):
        U = math.prod(node.shape)
        code_of = None
        if type(rule).code is TwoSlopeRule.code:  # u > 0, without building a node context
            code_of = lambda Z: torch.from_numpy(Z > 0).reshape((len(Z),) + ushape)  # noqa: E731
        return Switch("sign", U, ctx, rule, fn=_flat, unit=np.arange(U), code_of=code_of,
                      ins_of=lambda Z: [Z.reshape((len(Z),) + ushape)])
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
            u = _flat(ins)
            return (np.concatenate([u - c for c in parts], axis=1) if parts
                    else np.zeros((u.shape[0], 0)))

        ins_of = None
        if parts:
            ins_of = lambda Z: [(Z[:, :U] + parts[0]).reshape((len(Z),) + ushape)]  # noqa: E731
        return Switch("sign", U * len(parts), ctx, rule, fn=fn, ins_of=ins_of,
                      unit=np.concatenate(units) if units else np.zeros(0, int))
    if isinstance(rule, MaxPoolRule):
        table = rule.unit_table(ctx).cpu().numpy()
        return Switch("argmax", table.shape[0], ctx, rule, fn=_flat, table=table,
                      ins_of=lambda Z: [Z.reshape((len(Z),) + ushape)])
    if isinstance(rule, MaxoutRule):
        dim, _ = rule.dim_keepdim(ctx)
        table = torch.arange(math.prod(ushape)).reshape(ushape).movedim(dim - 1, -1)
        table = table.reshape(-1, ushape[dim - 1]).numpy()
        return Switch("argmax", table.shape[0], ctx, rule, fn=_flat, table=table,
                      ins_of=lambda Z: [Z.reshape((len(Z),) + ushape)])
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
        prefix, frontier_names = tr.affine_prefix()
        frontier: dict[str, tuple] = {}
        for name in frontier_names:
            val = self.anchor.values[name]
            v0, du, dv = val[0], val[1] - val[0], val[2] - val[0]
            frontier[name] = (v0, du, dv, torch.stack([v0, du, dv]).reshape(3, -1))
        self.prefix = prefix
        self.frontier = frontier
        self.by_fx = by_fx
        widths = [math.prod(n.shape) for n in tr.nodes
                  if n.kind == "var" and n.shape and n.fx_node.name not in prefix]
        widths += [math.prod(v[0].shape) for v in frontier.values()]
        self.chunk = max(256, CHUNK_FLOATS // max(1, sum(widths)))
        self.consts = {n.fx_node.name: self.anchor.values[n.fx_node.name] for n in tr.nodes
                       if n.kind == "const" and n.fx_node.name in self.anchor.values}
        self._plans: dict[tuple, list | None] = {}

    def plan(self, src: str, dst: str | None) -> list | None:
        """Nodes leading from piecewise node ``src``'s output to ``dst``'s unit inputs (the
        network output when ``dst`` is None), or None unless they depend on the input only
        through ``src`` (e.g. a residual connection around ``src``, or another piecewise
        node in between)."""
        key = (src, dst)
        if key not in self._plans:
            tr = self.tr
            src_fx = tr.node(src).fx_node.name
            target = tr.node(dst) if dst is not None else next(n for n in tr.nodes
                                                                if n.kind == "output")
            needed: set[str] = set()
            stack = list(target.fx_node.all_input_nodes)
            ok = True
            while stack and ok:
                a = stack.pop()
                if a.name == src_fx or a.name in needed:
                    continue
                g = self.by_fx[a.name]
                if g.kind == "const":
                    continue
                ok = g.kind in ("var", "meta") and not g.piecewise and a.name not in self.prefix
                needed.add(a.name)
                stack.extend(a.all_input_nodes)
            self._plans[key] = [n for n in tr.nodes if n.fx_node.name in needed] if ok else None
        return self._plans[key]

    @torch.no_grad()
    def segment(self, src: str, value: torch.Tensor, dst: str | None):
        """Continue the network from ``src``'s output ``value`` (N, ...) to ``dst``'s unit
        inputs (list of tensors) or to the outputs (N, C); requires :meth:`plan`."""
        plan = self.plan(src, dst)
        assert plan is not None
        tr = self.tr
        src_fx = tr.node(src).fx_node.name
        target = tr.node(dst) if dst is not None else next(n for n in tr.nodes
                                                            if n.kind == "output")
        parts = []
        for i in range(0, max(len(value), 1), self.chunk):
            env = dict(self.consts)
            env[src_fx] = value[i:i + self.chunk]
            for n in plan:
                ctx = self._ctx(n, env)
                env[n.fx_node.name] = ctx.call() if n.kind == "meta" else n.rule.forward(ctx)
            if dst is None:
                out = env[target.fx_node.args[0].name]
                parts.append(out.reshape(len(out), -1))
            else:
                parts.append(_var_args(self._ctx(target, env).args, target.var, []))
        if dst is None:
            return torch.cat(parts)
        return [torch.cat([p[j] for p in parts]) for j in range(len(parts[0]))]

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
                if n.piecewise and codes is None:
                    # the real op agrees with apply() at the code it picks, and is faster
                    out_codes[n.name] = n.rule.code(ctx)
                    env[name] = n.rule.forward(ctx)
                    continue
                code = None
                if n.piecewise:
                    code = codes[n.name]
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
