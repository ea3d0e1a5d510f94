"""Batched evaluation of a traced network on slice points, starting after its affine prefix.

Every node that depends on the input only through affine ops (no piecewise node upstream)
is an affine function of the slice coordinates: ``z(s, t) = z(x0) + s Δ_u + t Δ_v``. Those
values are formed directly from three anchor evaluations, so a 784-input MLP or a CNN's
first convolution costs nothing per vertex; the rest of the graph runs through the rules as
:meth:`maxaffine.Trace.run` does, in row chunks.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import numpy as np
import torch
from torch import fx

from ..errors import Offender, UnsupportedLayerError
from ..layers.base import NodeContext
from ..layers.switching import Switch

#: Rows of one evaluation chunk are chosen so that a chunk holds about this many floats.
CHUNK_FLOATS = 1 << 24


def _var_args(args: Any, flags: Any, out: list) -> list:
    for a, f in zip(args, flags):
        if isinstance(f, tuple):
            _var_args(tuple(a), f, out)
        elif f:
            out.append(a)
    return out


def switch_of(tr, name: str, ctx: NodeContext) -> Switch:
    """The switching functions of piecewise node ``name``, as its rule declares them."""
    rule = tr.node(name).rule
    sw = rule.switching(ctx)
    if sw is None:
        raise UnsupportedLayerError([Offender(
            name, type(rule).__name__, "the rule declares no switching functions, so the "
            "regions it cuts are unknown", "implement Rule.switching (see "
            "maxaffine.layers.switching.Switch; check it with maxaffine.testing.check_rule), "
            "or leave the node out with layers=")])
    return sw


#: Per trace: fx name -> node, total width of the nodes past the prefix, and the plans of
#: :meth:`Evaluator.plan` (all depend on the graph only, not on weights or slice).
_STATIC: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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
        static = _STATIC.get(tr)
        if static is None:  # what depends on the graph alone, kept for later calls
            prefix, frontier_names = tr.affine_prefix()
            widths = sum(math.prod(n.shape) for n in tr.nodes
                         if n.kind == "var" and n.shape and n.fx_node.name not in prefix)
            static = _STATIC[tr] = ({n.fx_node.name: n for n in tr.nodes}, widths, {})
        by_fx, widths, self._plans = static
        prefix, frontier_names = tr.affine_prefix()
        frontier: dict[str, tuple] = {}
        for name in frontier_names:
            val = self.anchor.values[name]
            v0, du, dv = val[0], val[1] - val[0], val[2] - val[0]
            frontier[name] = (v0, du, dv, torch.stack([v0, du, dv]).reshape(3, -1))
        self.prefix = prefix
        self.frontier = frontier
        self.by_fx = by_fx
        widths += sum(math.prod(v[0].shape) for v in frontier.values())
        self.chunk = max(256, CHUNK_FLOATS // max(1, widths))
        self.consts = {n.fx_node.name: self.anchor.values[n.fx_node.name] for n in tr.nodes
                       if n.kind == "const" and n.fx_node.name in self.anchor.values}

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
            env[src_fx] = value[i:i + self.chunk].to(tr.device)
            for n in plan:
                ctx = self._ctx(n, env)
                env[n.fx_node.name] = ctx.call() if n.kind == "meta" else n.rule.forward(ctx)
            if dst is None:
                out = env[target.fx_node.args[0].name]
                parts.append(out.reshape(len(out), -1).cpu())
            else:
                parts.append([v.cpu() for v in _var_args(self._ctx(target, env).args, target.var, [])])
        if dst is None:
            return torch.cat(parts)
        return [torch.cat([p[j] for p in parts]) for j in range(len(parts[0]))]

    def context(self, name: str) -> NodeContext:
        return self.tr.context(self.anchor, name)

    def _ctx(self, n, env) -> NodeContext:
        args = fx.node.map_arg(n.fx_node.args, lambda a: env[a.name])
        kwargs = fx.node.map_arg(n.fx_node.kwargs, lambda a: env[a.name])
        return NodeContext(n.fx_node, n.module, tuple(args), dict(kwargs), n.var)

    def _run_chunk(self, st: np.ndarray, stop: str | None, codes: dict | None,
                   last: str | None = None):
        tr = self.tr
        N = len(st)
        s = torch.from_numpy(st[:, 0]).to(device=tr.device, dtype=tr.dtype)
        t = torch.from_numpy(st[:, 1]).to(device=tr.device, dtype=tr.dtype)
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
                    if n.name == last:
                        return None, out_codes
                    env[name] = n.rule.forward(ctx)
                    continue
                code = None
                if n.piecewise:
                    code = codes[n.name].to(tr.device)
                    out_codes[n.name] = code
                env[name] = n.rule.apply(ctx, code, 1, True)
        raise RuntimeError("graph has no output node")

    def affine_values(self, name: str, fn) -> np.ndarray | None:
        """``[f(0, 0); f(1, 0) - f(0, 0); f(0, 1) - f(0, 0)]`` (3, F) of the switching
        functions ``f = fn(unit inputs of name)`` when the unit inputs lie in the affine
        prefix (so ``f`` is affine in the slice coordinates: every switch's functions are
        affine in its unit inputs); None otherwise."""
        node = self.tr.node(name)
        deps = [a.name for a in node.fx_node.all_input_nodes
                if self.by_fx[a.name].kind in ("var", "input")]
        if not deps or not all(d in self.prefix for d in deps):
            return None
        with torch.no_grad():
            Z3 = np.asarray(fn(_var_args(self.context(name).args, node.var, [])), np.float64)
        return np.stack([Z3[0], Z3[1] - Z3[0], Z3[2] - Z3[0]])

    @torch.no_grad()
    def values(self, st: np.ndarray, name: str, fn, cols: np.ndarray,
               basis: np.ndarray | None = None) -> np.ndarray:
        """Columns ``cols`` of the switching functions ``fn(unit inputs of name)`` at points
        (N, 2), chunked over points so that no (N, all functions) table is built; from the
        affine ``basis`` of :meth:`affine_values` when given."""
        if basis is not None:  # [1, s, t] @ basis: one BLAS pass over the output
            coef = np.empty((len(st), 3))
            coef[:, 0] = 1.0
            coef[:, 1:] = st
            b = basis if len(cols) == basis.shape[1] else basis[:, cols]
            return coef @ b
        out = np.empty((len(st), len(cols)))
        for i in range(0, len(st), self.chunk):
            ins = self._run_chunk(st[i:i + self.chunk], name, None)[0]
            out[i:i + self.chunk] = np.asarray(fn(ins))[:, cols]
        return out

    @torch.no_grad()
    def unit_inputs(self, st: np.ndarray, name: str) -> list[torch.Tensor]:
        """The unit inputs (pre-activations) of piecewise node ``name`` at points (N, 2)."""
        # the mesh lives on the host: one transfer per chunk when the model is on a GPU
        parts = [[v.cpu() for v in self._run_chunk(st[i:i + self.chunk], name, None)[0]]
                 for i in range(0, max(len(st), 1), self.chunk)]
        return [torch.cat([p[j] for p in parts]) for j in range(len(parts[0]))]

    @torch.no_grad()
    def codes(self, st: np.ndarray, last: str) -> dict[str, torch.Tensor]:
        """Codes at points (N, 2) of the piecewise nodes up to ``last``, by a forward pass
        that stops there."""
        cds = [{k: v.cpu() for k, v in self._run_chunk(st[i:i + self.chunk], None, None,
                                                        last)[1].items()}
               for i in range(0, max(len(st), 1), self.chunk)]
        return {k: torch.cat([c[k] for c in cds]) for k in cds[0]}

    @torch.no_grad()
    def outputs(self, st: np.ndarray, codes: dict | None = None):
        """Network outputs (N, C) and codes at points (N, 2); with ``codes`` fixed if given."""
        outs, cds = [], []
        for i in range(0, max(len(st), 1), self.chunk):
            sub = None if codes is None else {k: v[i:i + self.chunk] for k, v in codes.items()}
            o, c = self._run_chunk(st[i:i + self.chunk], None, sub)
            outs.append(o.reshape(len(o), -1).cpu())
            cds.append({k: v.cpu() for k, v in c.items()})
        return torch.cat(outs), {k: torch.cat([c[k] for c in cds]) for k in cds[0]}
