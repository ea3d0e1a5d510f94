"""Tracing: a PyTorch model becomes a validated graph of nodes, each bound to a rule.

The graph is captured with :mod:`torch.fx`, so any ``nn.Module`` whose forward is a graph
of supported ops works: residual additions, concatenations, functional calls, reshapes.
Every problem (unsupported op, training-mode module, batch-mixing op) is collected and
raised at once.
"""

from __future__ import annotations

import copy
import math
import operator
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from ._capture import (
    CaptureError,
    LeafTracer,
    capture,
    describe_output,
    is_split,
    select_output,
    split_dim,
    split_index,
)
from ._device import to_model_device
from .errors import InputError, MaxAffineError, Offender, TrainingModeError, UnsupportedLayerError
from .layers import REGISTRY, Rule, key_name, lookup
from .layers.base import NodeContext

UNKNOWN_FIX = ("no rule is registered for this op; if it is affine or continuous "
               "piecewise-affine, add one with maxaffine.register_rule or trace(..., rules={op: Rule})")


@dataclass(frozen=True)
class GraphNode:
    """One node of a traced model.

    Attributes
    ----------
    name : str
        Module path for module calls (``"features.1"``), the fx node name otherwise.
    kind : {"input", "const", "meta", "var", "output"}
        ``var`` nodes carry input-dependent tensors and have a rule; ``meta`` nodes compute
        sizes from them; ``const`` nodes do not depend on the input.
    rule : Rule or None
    shape : tuple of int or None
        Per-sample output shape of ``var`` nodes.
    """

    name: str
    fx_node: fx.Node = field(repr=False)
    kind: str
    rule: Rule | None = field(repr=False)
    module: nn.Module | None = field(repr=False)
    var: tuple = field(repr=False)
    shape: tuple[int, ...] | None

    @property
    def piecewise(self) -> bool:
        return self.kind == "var" and self.rule is not None and self.rule.kind == "piecewise"

    @property
    def op(self) -> str:
        """The op's display name (``nn.ReLU``, ``torch.relu``, ``Tensor.view``)."""
        return _op_key_name(self.fx_node, self.module)


@dataclass
class ForwardRecord:
    """Everything one forward pass through a :class:`Trace` recorded.

    Attributes
    ----------
    output : Tensor, shape (B, *out_shape)
    codes : dict name -> Tensor
        VQ code of every piecewise node (bool or integer, batch first).
    values : dict fx-name -> value
        Values of every node (kept for later linear passes).
    """

    output: torch.Tensor
    codes: dict[str, torch.Tensor]
    values: dict[str, Any]


def _op_key(node: fx.Node, module: nn.Module | None) -> Any:
    if node.op == "call_module":
        return type(module)
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return node.target


def _op_key_name(node: fx.Node, module: nn.Module | None) -> str:
    return key_name(_op_key(node, module))


def _is_tensorish(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.is_floating_point()
    if isinstance(value, tuple) and value and isinstance(value[0], torch.Tensor):
        return value[0].is_floating_point()
    return False


def _map(value: Any, fn) -> Any:
    return fx.node.map_arg(value, fn)


class Trace:
    """A model captured as a graph of rule-bound nodes (see :func:`trace`).

    Attributes
    ----------
    model : nn.Module
        The traced copy (in ``dtype``); parameters are shared with the user's model when no
        dtype conversion was needed.
    dtype : torch.dtype
    in_shape, out_shape : tuple of int
        Per-sample input and output shapes; ``n_outputs = prod(out_shape)``.
    nodes : tuple of GraphNode
        In topological order.
    piecewise : tuple of str
        Names of the piecewise (VQ-coded) nodes in order: the network's "layers" of units.
    """

    def __init__(self, graph_module: fx.GraphModule, model: nn.Module, dtype: torch.dtype,
                 nodes: list[GraphNode], consts: dict[str, Any], in_shape: tuple[int, ...],
                 out_shape: tuple[int, ...]):
        self.graph_module = graph_module
        self.model = model
        self.dtype = dtype
        self.nodes = tuple(nodes)
        self._consts = consts
        self.in_shape = in_shape
        self.out_shape = out_shape
        self._by_name = {n.name: n for n in nodes}
        self._by_fx = {n.fx_node.name: n for n in nodes}
        self.piecewise = tuple(n.name for n in nodes if n.piecewise)
        self.input_node = next(n for n in nodes if n.kind == "input")
        self.output_node = next(n for n in nodes if n.kind == "output")
        self._plans: dict[tuple[str, str], tuple[list[GraphNode], GraphNode, GraphNode]] = {}
        self._prefix: tuple[frozenset[str], tuple[str, ...]] | None = None
        self.input_device = torch.device("cpu")
        #: how the forward was captured ("symbolic" or "concrete shapes") and which output
        self.route = "symbolic"
        self.output: Any = None

    # ----------------------------------------------------------------------------------
    @property
    def in_features(self) -> int:
        return math.prod(self.in_shape)

    @property
    def n_outputs(self) -> int:
        return math.prod(self.out_shape)

    @property
    def device(self) -> torch.device:
        return self.input_device

    def node(self, name: str) -> GraphNode:
        """The node called ``name`` (a module path or fx name), with a helpful error."""
        if name in self._by_name:
            return self._by_name[name]
        if name in self._by_fx:
            return self._by_fx[name]
        names = [n.name for n in self.nodes if n.kind == "var"]
        raise InputError(f"no layer named {name!r}; layers are: {', '.join(names)}")

    def affine_prefix(self) -> tuple[frozenset[str], tuple[str, ...]]:
        """The affine prefix of the graph and its frontier (fx node names).

        The prefix holds the input and every non-piecewise node whose tensor inputs are all in
        the prefix: an affine function of the input (the first Linear/Conv/BatchNorm block,
        possibly with branches). The frontier is the prefix nodes read by nodes outside it,
        in graph order: everything after the prefix sees the input only through them.
        """
        if self._prefix is None:
            prefix: set[str] = set()
            for n in self.nodes:
                name = n.fx_node.name
                if n.kind == "input":
                    prefix.add(name)
                elif n.kind == "var" and not n.piecewise:
                    deps = [a.name for a in n.fx_node.all_input_nodes
                            if self._by_fx[a.name].kind in ("var", "input")]
                    if all(d in prefix for d in deps):
                        prefix.add(name)
            read: set[str] = set()
            for n in self.nodes:
                if n.fx_node.name not in prefix and n.kind in ("var", "output"):
                    read.update(a.name for a in n.fx_node.all_input_nodes if a.name in prefix)
            frontier = tuple(n.fx_node.name for n in self.nodes if n.fx_node.name in read)
            self._prefix = (frozenset(prefix), frontier)
        return self._prefix

    def layer_units(self, name: str) -> int:
        """Number of units (entries per sample) of a var node's output."""
        return math.prod(self.node(name).shape or ())

    def __repr__(self) -> str:
        lines = [f"Trace(in_shape={self.in_shape}, out_shape={self.out_shape}, dtype={self.dtype})"]
        for n in self.nodes:
            if n.kind == "var":
                tag = "*" if n.piecewise else " "
                lines.append(f" {tag} {n.name:<24} {n.op:<28} {n.shape}")
        return "\n".join(lines)

    # ----------------------------------------------------------------------------------
    def prepare(self, x: Any) -> torch.Tensor:
        """Validate and convert an input batch: shape (B, *in_shape), finite, in ``dtype``."""
        x = torch.as_tensor(x)
        _check_values(x, "input")
        if tuple(x.shape) == self.in_shape:
            x = x.unsqueeze(0)
        if tuple(x.shape[1:]) != self.in_shape:
            raise InputError(
                f"input has shape {tuple(x.shape)} but the model was traced with per-sample shape "
                f"{self.in_shape}; pass a batch of shape (B, {', '.join(map(str, self.in_shape))})"
            )
        # batches arrive on the host (a DataLoader) while the model may be on a GPU
        x = x.to(device=self.device, dtype=self.dtype)
        if not bool(torch.isfinite(x).all()):
            bad = (~torch.isfinite(x.reshape(len(x), -1))).any(1).nonzero().flatten().tolist()
            raise InputError(f"input contains NaN or inf values (samples {bad[:10]}); "
                             f"clean or drop them first")
        return x

    def _ctx(self, node: GraphNode, env: Mapping[str, Any]) -> NodeContext:
        fxn = node.fx_node
        args = _map(fxn.args, lambda a: env[a.name])
        kwargs = _map(fxn.kwargs, lambda a: env[a.name])
        return NodeContext(fxn, node.module, tuple(args), dict(kwargs), node.var)

    def run(self, x: torch.Tensor, *, prepared: bool = False) -> ForwardRecord:
        """Forward pass recording every node's value and every piecewise node's VQ code."""
        if not prepared:
            x = self.prepare(x)
        env: dict[str, Any] = dict(self._consts)
        codes: dict[str, torch.Tensor] = {}
        output = None
        for node in self.nodes:
            fxn = node.fx_node
            if node.kind == "input":
                env[fxn.name] = x
            elif node.kind == "const":
                continue
            elif node.kind == "output":
                output = env[fxn.args[0].name]
            elif node.kind == "meta":
                env[fxn.name] = self._ctx(node, env).call()
            else:
                ctx = self._ctx(node, env)
                code = None
                if node.piecewise:
                    code = node.rule.code(ctx)
                    codes[node.name] = code
                env[fxn.name] = node.rule.apply(ctx, code, 1, True)
        assert output is not None
        return ForwardRecord(output, codes, env)

    def context(self, record: ForwardRecord, name: str) -> NodeContext:
        """The resolved call of node ``name`` in a recorded forward pass (for rule methods)."""
        return self._ctx(self.node(name), record.values)

    def unit_inputs(self, record: ForwardRecord, name: str) -> list[torch.Tensor]:
        """The input-dependent tensor arguments of node ``name`` in a recorded pass.

        For a nonlinearity this is its pre-activation ``u`` (one tensor; two for
        ``torch.maximum``), shape (B, *units)."""
        node = self.node(name)
        return [record.values[a.name] for a in _flatten_vars(node.fx_node.args, node.var)]

    def value(self, record: ForwardRecord, name: str) -> Any:
        """Output of node ``name`` in a recorded pass."""
        return record.values[self.node(name).fx_node.name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's output computed through the rules (equals ``model(x)``)."""
        return self.run(x).output

    __call__ = forward

    # ---- linear passes with fixed codes ------------------------------------------------
    def plan(self, start: str | None, end: str | None):
        """Nodes on every path from ``start`` (default: the input) to ``end`` (default: output).

        Raises
        ------
        InputError
            If a node on the way depends on the input through a path avoiding ``start``.
        """
        s = self.input_node if start is None else self.node(start)
        e = self.output_node if end is None else self.node(end)
        key = (s.name, e.name)
        if key in self._plans:
            return self._plans[key]
        if e.kind == "output":
            e = self._by_fx[e.fx_node.args[0].name]
        if s.kind not in ("input", "var") or e.kind not in ("input", "var"):
            raise InputError(f"start/end must be layers carrying tensors; got {s.name}, {e.name}")
        index = {n.fx_node.name: i for i, n in enumerate(self.nodes)}
        if index[s.fx_node.name] > index[e.fx_node.name]:
            raise InputError(f"start {s.name!r} comes after end {e.name!r} in the graph")
        desc = {s.fx_node.name}
        for n in self.nodes:
            if any(a.name in desc for a in n.fx_node.all_input_nodes) and n.kind == "var":
                desc.add(n.fx_node.name)
        anc = {e.fx_node.name}
        for n in reversed(self.nodes):
            if n.fx_node.name in anc:
                anc.update(a.name for a in n.fx_node.all_input_nodes)
        active = [n for n in self.nodes if n.fx_node.name in desc and n.fx_node.name in anc]
        if e.fx_node.name not in desc:
            raise InputError(f"layer {e.name!r} does not depend on {s.name!r}")
        for n in active:
            if n is s:
                continue
            for a in n.fx_node.all_input_nodes:
                other = self._by_fx[a.name]
                if other.kind in ("var", "input") and a.name not in desc:
                    raise InputError(
                        f"layer {n.name!r} between {s.name!r} and {e.name!r} also depends on "
                        f"{other.name!r}, which bypasses {s.name!r} (a skip connection); choose a "
                        f"start before the branch"
                    )
        plan = (active, s, e)
        self._plans[key] = plan
        return plan

    def _meta_env(self, record: ForwardRecord, rows: int, active_names: set[str]) -> dict:
        """Stand-ins (shape only) for var values outside the active set, batch ``rows``."""
        env: dict[str, Any] = {}
        for n in self.nodes:
            if n.kind in ("var", "input") and n.fx_node.name not in active_names:
                value = record.values[n.fx_node.name]
                if isinstance(value, torch.Tensor):
                    env[n.fx_node.name] = torch.empty((rows,) + tuple(value.shape[1:]),
                                                      dtype=value.dtype, device="meta")
        return env

    def push(self, record: ForwardRecord, tangent: torch.Tensor, *, start: str | None = None,
             end: str | None = None, K: int = 1, bias: bool = False) -> torch.Tensor:
        """Push ``tangent`` (B*K, *start_shape) through the fixed-code maps from start to end.

        With ``bias=False`` this is ``A[x] v`` (forward-mode accumulation); with
        ``bias=True`` and a zero tangent it gives the offset ``b[x]``.
        """
        active, s, e = self.plan(start, end)
        names = {n.fx_node.name for n in active}
        env: dict[str, Any] = dict(self._consts)
        rows = tangent.shape[0]
        env.update(self._meta_env(record, rows, names))
        env[s.fx_node.name] = tangent
        for n in self.nodes:
            fxn = n.fx_node
            if n.kind == "meta":
                env[fxn.name] = self._ctx(n, env).call()
            elif n.kind == "var" and fxn.name in names and n is not s:
                ctx = self._ctx(n, env)
                code = record.codes.get(n.name)
                env[fxn.name] = n.rule.apply(ctx, code, K, bias)
                if n is e:
                    break
        return env[e.fx_node.name]

    def pull(self, record: ForwardRecord, cotangent: torch.Tensor, *, start: str | None = None,
             end: str | None = None, K: int = 1) -> torch.Tensor:
        """Pull ``cotangent`` (B*K, *end_shape) back to start: ``uᵀ A[x]`` (reverse mode)."""
        active, s, e = self.plan(start, end)
        names = {n.fx_node.name for n in active}
        rows = cotangent.shape[0]
        # shapes (and meta values) of everything at batch `rows`
        env: dict[str, Any] = dict(self._consts)
        env.update(self._meta_env(record, rows, set()))
        for n in self.nodes:
            if n.kind == "meta":
                env[n.fx_node.name] = self._ctx(n, env).call()
        grads: dict[str, torch.Tensor] = {e.fx_node.name: cotangent}
        for n in reversed(active):
            fxn = n.fx_node
            if n is s:
                break
            g = grads.pop(fxn.name, None)
            if g is None:
                continue
            ctx = self._ctx(n, env)
            parts = n.rule.vjp(ctx, record.codes.get(n.name), K, g)
            var_inputs = _flatten_vars(fxn.args, n.var)
            for a, ga in zip(var_inputs, parts):
                if a.name in names:
                    prev = grads.get(a.name)
                    grads[a.name] = ga if prev is None else prev + ga
        out = grads.get(s.fx_node.name)
        if out is None:
            shape = env[s.fx_node.name].shape
            out = torch.zeros(shape, dtype=cotangent.dtype, device=cotangent.device)
        return out


def _flatten_vars(args: tuple, flags: tuple) -> list[fx.Node]:
    """The fx nodes of the variable arguments, in the order rules return cotangents."""
    out: list[fx.Node] = []
    for a, f in zip(args, flags):
        if isinstance(f, tuple):
            out.extend(_flatten_vars(tuple(a), f))
        elif f:
            out.append(a)
    return out


# --------------------------------------------------------------------------------------
def _var_flags(args: Any, var_names: set[str]) -> Any:
    if isinstance(args, (tuple, list)):
        return tuple(_var_flags(a, var_names) for a in args)
    if isinstance(args, fx.Node):
        return args.name in var_names
    return False


def _rewrite_tuple_max(graph: fx.Graph) -> None:
    """``x.max(dim)[0]`` / ``.values``: let the max node output its values directly."""
    for node in list(graph.nodes):
        is_max = (node.op == "call_method" and node.target == "max") or (
            node.op == "call_function" and node.target is torch.max)
        if not is_max or len(node.args) < 2 and "dim" not in node.kwargs:
            continue
        if len(node.args) >= 2 and isinstance(node.args[1], fx.Node):
            continue  # torch.max(a, b): elementwise maximum, a single tensor
        for user in list(node.users):
            picks_values = (user.op == "call_function" and user.target is operator.getitem
                            and user.args[1] == 0) or (
                user.op == "call_function" and user.target is getattr and user.args[1] == "values")
            if picks_values:
                user.replace_all_uses_with(node)
                graph.erase_node(user)
        tuple_users = [u for u in node.users if u.op == "call_function"
                       and u.target in (operator.getitem, getattr)]
        if not tuple_users:
            node.target = "amax" if node.op == "call_method" else torch.amax
    graph.lint()


def _display_names(gm: fx.GraphModule) -> dict[str, str]:
    names: dict[str, str] = {}
    seen: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            base = str(node.target)
            count = seen.get(base, 0)
            seen[base] = count + 1
            names[node.name] = base if count == 0 else f"{base}#{count}"
        else:
            names[node.name] = node.name
    return names


def _owner_path(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    keys = [k for k in stack.keys() if k]
    return keys[-1] if keys else ""


def _cast_model(model: nn.Module, dtype: torch.dtype | None) -> nn.Module:
    if dtype is None:
        return model
    floats = [t for t in list(model.parameters()) + list(model.buffers()) if t.is_floating_point()]
    if all(t.dtype == dtype for t in floats):
        return model
    return copy.deepcopy(model).to(dtype)


def trace(model: nn.Module | Trace, example_input: torch.Tensor, rules: Mapping[Any, Any] | None = None,
          *, dtype: torch.dtype | None = torch.float64, check: bool = True,
          output: Any = None) -> Trace:
    """Capture ``model`` as a graph of rule-bound nodes.

    Parameters
    ----------
    model : nn.Module
        Any module whose forward is a graph of supported ops (see
        :func:`maxaffine.supported_layers`); BatchNorm and Dropout must be in eval mode.
        Extra ``forward`` arguments with defaults (``forward(x, mask=None)``) are bound to
        their defaults. If symbolic tracing fails on shape-dependent control flow
        (``if x.shape[-1] < 7``), the forward is traced again with the example's concrete
        per-sample sizes (the batch size stays free).
    example_input : Tensor, shape (B, *in_shape)
        A batch used to record shapes and to check the traced graph against ``model``.
    rules : mapping, optional
        Extra or overriding rules: ``{nn.Module subclass | function | "Tensor.method" |
        module instance: Rule}``.
    dtype : torch.dtype or None
        Geometry runs in this dtype (default float64); the model is copied and cast if its
        parameters differ. ``None`` keeps the model as it is (sharing parameters).
    check : bool
        Check that the rules reproduce the traced forward, and that each sample's output
        does not depend on the rest of the batch.
    output : int, str or callable, optional
        For a forward returning a tuple, list or dict (logits and features, say): the index
        or key of the output to analyse, or a function applied to the forward's result
        (``lambda out: out["logits"]``, ``lambda out: out.logits``). Parts of the model that
        only feed the other outputs are dropped.

    Returns
    -------
    Trace

    Raises
    ------
    UnsupportedLayerError
        Listing every op that is not piecewise-affine or has no rule, with module paths, or
        a forward that no tracing route could capture (each route's error is listed).
    TrainingModeError
        Listing every BatchNorm/Dropout module in training mode.
    InputError
        For a bad example input, a forward with several required inputs, or a tuple/dict
        output without ``output=``.

    See Also
    --------
    as_trace : the cached form every analysis uses.

    Examples
    --------
    >>> import torch, maxaffine
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> tr = maxaffine.trace(net, torch.randn(4, 2))
    >>> tr.piecewise
    ('1',)
    """
    if isinstance(model, Trace):
        return model
    if not isinstance(model, nn.Module):
        raise InputError(f"expected an nn.Module, got {type(model).__name__}")
    if not isinstance(example_input, torch.Tensor):
        example_input = torch.as_tensor(example_input)
    if example_input.dim() == 0:
        raise InputError("example_input must be a batch of shape (B, *in_shape)")
    _check_values(example_input, "input")
    _check_model_values(model)
    work = _cast_model(model, dtype)
    run_dtype = dtype or next((p.dtype for p in work.parameters() if p.is_floating_point()),
                              torch.get_default_dtype())
    x = to_model_device(work, example_input).to(run_dtype)
    if not bool(torch.isfinite(x).all()):
        raise InputError("example_input contains NaN or inf values")
    leaf_types = {k for k in REGISTRY if isinstance(k, type)}
    if rules:
        leaf_types |= {k for k in rules if isinstance(k, type)}
        leaf_types |= {type(k) for k in rules if isinstance(k, nn.Module)}
    try:
        gm, route = capture(work, LeafTracer(leaf_types), x)
    except CaptureError as exc:
        if "signature" in exc.routes:
            raise InputError(exc.routes["signature"]) from None
        tried = "; ".join(f"{k} tracing: {v}" for k, v in exc.routes.items())
        raise UnsupportedLayerError([Offender(
            "<forward>", type(model).__name__, f"torch.fx could not trace the forward ({tried})",
            "avoid Python control flow that depends on tensor values in forward, or analyse a "
            "traceable sub-module")]) from exc
    if output is not None:
        try:
            select_output(gm, output)
        except Exception as exc:
            raise InputError(f"output={output!r} could not be selected: {exc}") from exc
    _rewrite_tuple_max(gm.graph)
    gm.recompile()
    _check_in_place(gm, _display_names(gm), model)

    names = _display_names(gm)
    modules = dict(gm.named_modules())
    env: dict[str, Any] = {}
    consts: dict[str, Any] = {}
    var_names: set[str] = set()  # everything that depends on the input (tensors and sizes)
    tensor_names: set[str] = set()  # input-dependent tensors only: the rules' variables
    nodes: list[GraphNode] = []
    offenders: list[Offender] = []
    training: list[Offender] = []
    dead: list[fx.Node] = []
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise InputError(f"the model's forward takes {len(placeholders)} inputs; maxaffine "
                         f"analyses models of one input tensor (wrap the others as constants)")
    for fxn in gm.graph.nodes:
        module = modules.get(fxn.target) if fxn.op == "call_module" else None
        if fxn.op == "placeholder":
            env[fxn.name] = x
            var_names.add(fxn.name)
            tensor_names.add(fxn.name)
            nodes.append(GraphNode(names[fxn.name], fxn, "input", None, None, (), tuple(x.shape[1:])))
            continue
        if fxn.op == "output":
            nodes.append(GraphNode("output", fxn, "output", None, None, (), None))
            continue
        args = _map(fxn.args, lambda a: env[a.name])
        kwargs = _map(fxn.kwargs, lambda a: env[a.name])
        depends = any(a.name in var_names for a in fxn.all_input_nodes)
        flags = _var_flags(fxn.args, tensor_names)
        ctx = NodeContext(fxn, module, tuple(args), dict(kwargs), flags)
        path = names[fxn.name] if fxn.op == "call_module" else (
            f"{_owner_path(fxn)}:{fxn.name}" if _owner_path(fxn) else fxn.name)
        try:
            if fxn.op == "get_attr":
                value = _fetch_attr(gm, fxn.target)
            else:
                # a rule may compute its op faster than torch does (float64 depthwise conv)
                known = lookup(_op_key(fxn, module), rules, module) if depends else None
                value = ctx.call() if known is None or known.refused \
                    else known.forward(ctx)
        except Exception as exc:
            raise InputError(
                f"the model failed on an example input of shape {tuple(x.shape)} at {path} "
                f"({_op_key_name(fxn, module)}): {exc}. Check the input shape the model expects: "
                f"maxaffine passes batches (B, *in_shape), so add a batch dimension to a single "
                f"input (x[None]); a Slice's anchors are single inputs (x[0], not x[0:1])"
            ) from exc
        env[fxn.name] = value
        if depends and is_split(fxn) and flags and flags[0] is True:
            problem = _index_split(fxn, args, kwargs, value)
            if problem is None:
                dead.append(fxn)
                continue
            offenders.append(Offender(path, _op_key_name(fxn, module), problem[0], problem[1]))
            var_names.add(fxn.name)
            continue
        if not depends:
            consts[fxn.name] = value
            nodes.append(GraphNode(names[fxn.name], fxn, "const", None, module, flags, None))
            continue
        if not _is_tensorish(value):
            if isinstance(value, torch.Tensor):
                offenders.append(Offender(path, _op_key_name(fxn, module),
                                          f"produces a {value.dtype} tensor from the input",
                                          "keep integer/boolean computations out of forward"))
            var_names.add(fxn.name)
            nodes.append(GraphNode(names[fxn.name], fxn, "meta", None, module, flags, None))
            continue
        var_names.add(fxn.name)
        tensor_names.add(fxn.name)
        if any(_kwarg_is_var(v, tensor_names) for v in fxn.kwargs.values()):
            offenders.append(Offender(path, _op_key_name(fxn, module),
                                      "input-dependent keyword arguments are not supported",
                                      "pass input-dependent tensors positionally"))
        key = _op_key(fxn, module)
        rule = lookup(key, rules, module)
        if rule is None:
            offenders.append(Offender(path, key_name(key), "no rule for this op", UNKNOWN_FIX))
        elif rule.refused:
            offenders.append(rule.check(ctx, path))
        else:
            problem = rule.check(ctx, path)
            if problem is not None:
                offenders.append(problem)
            if rule.training_mode(ctx):
                training.append(Offender(path, key_name(key), "in training mode (batch statistics "
                                         "or random masks are not a fixed affine map)",
                                         "call model.eval() before analysing it"))
        shape = tuple(value.shape[1:]) if isinstance(value, torch.Tensor) else None
        nodes.append(GraphNode(names[fxn.name], fxn, "var", rule, module, flags, shape))
    result = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    out = env[result.name] if isinstance(result, fx.Node) else result
    if not isinstance(out, torch.Tensor):
        raise InputError(f"the model returns {describe_output(out)}; maxaffine analyses one "
                         f"tensor of shape (B, ...): pass output= (an index, a key, or a "
                         f"function of the result, e.g. output=0 or output='logits')")
    if offenders:
        err = UnsupportedLayerError(offenders)
        if training:
            err.args = (err.args[0] + "\nAlso in training mode:\n" + "\n".join(map(str, training)),)
        raise err
    if training:
        raise TrainingModeError(training)
    for fxn in dead:
        gm.graph.erase_node(fxn)
    if dead:
        gm.recompile()
    tr = Trace(gm, work, run_dtype, nodes, consts, tuple(x.shape[1:]), tuple(out.shape[1:]))
    tr.input_device = x.device
    tr.route = route
    tr.output = output
    if check:
        _check_trace(tr, type(model).__name__, x, out)
    return tr


class _TraceCache:
    """Traces of recently analysed models, so repeated analyses trace once.

    Keyed by the model object and by everything a trace depends on: the per-sample input
    shape, the input's dtype and device, the geometry dtype, ``output``, ``rules`` and
    ``check``. An entry is used only while the model's state matches: the same parameter
    and buffer tensors at the same version counters (an optimizer step or
    ``load_state_dict`` bumps them), the same train/eval flags, the same rule registry.
    At most ``maxsize`` entries are kept (least recently used first out); an entry keeps
    its model alive, so the bound also bounds the memory held.
    """

    def __init__(self, maxsize: int = 16):
        self.maxsize = maxsize
        self._entries: OrderedDict[tuple, tuple[Any, tuple, dict, Trace]] = OrderedDict()

    @staticmethod
    def state(model: nn.Module) -> tuple:
        tensors = [t for _, t in model.named_parameters(remove_duplicate=False)]
        tensors += [t for _, t in model.named_buffers(remove_duplicate=False)]
        return (tuple((id(t), t._version) for t in tensors),
                tuple(m.training for m in model.modules()))

    def get(self, model: nn.Module, key: tuple) -> Trace | None:
        entry = self._entries.get((id(model),) + key)
        if entry is None:
            return None
        ref, state, registry, tr = entry
        if ref() is not model or state != self.state(model) or registry != REGISTRY:
            del self._entries[(id(model),) + key]
            return None
        self._entries.move_to_end((id(model),) + key)
        return tr

    def put(self, model: nn.Module, key: tuple, tr: Trace) -> None:
        self._entries[(id(model),) + key] = (weakref.ref(model), self.state(model),
                                             dict(REGISTRY), tr)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


_CACHE = _TraceCache()


def as_trace(model: nn.Module | Trace, x: torch.Tensor, *, rules: Mapping[Any, Any] | None = None,
             output: Any = None, dtype: torch.dtype | None = torch.float64,
             check: bool = True) -> Trace:
    """The :class:`Trace` of ``model`` for inputs like ``x``: traced once, then reused.

    Every analysis that accepts a model calls this, so calling ``affine_map(model, x)``
    repeatedly traces (and checks) the model once. A cached trace is reused while the model
    is unchanged; a training step, ``load_state_dict``, ``model.train()``/``eval()`` or a
    newly registered rule makes the next call trace again.

    Parameters
    ----------
    model : nn.Module or Trace
        A Trace is returned as it is (after checking ``output`` agrees).
    x : Tensor, shape (B, *in_shape)
        Inputs of the analysis; at most two rows are used as the example batch. A 1-D
        tensor is one sample.
    rules, output, dtype, check
        As in :func:`trace`.

    Returns
    -------
    Trace

    Notes
    -----
    Changes made behind autograd's back (``p.data.copy_(...)``) do not bump version
    counters; call ``as_trace.cache_clear()`` after them.

    Examples
    --------
    >>> import torch, maxaffine
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> x = torch.randn(5, 2)
    >>> tr = maxaffine.as_trace(net, x)
    >>> tr is maxaffine.as_trace(net, x)
    True
    >>> with torch.no_grad():
    ...     _ = net[0].weight.mul_(2.0)  # the model changed: traced again
    >>> tr is maxaffine.as_trace(net, x)
    False
    """
    if isinstance(model, Trace):
        if output is not None and output != model.output:
            raise InputError(f"output={output!r} differs from the Trace's output="
                             f"{model.output!r}; trace the model again with this output")
        return model
    if not isinstance(model, nn.Module):
        raise InputError(f"expected an nn.Module or a maxaffine Trace, got {type(model).__name__}")
    x = torch.as_tensor(x)
    example = x[:2] if x.dim() > 1 else x.unsqueeze(0)
    try:
        rules_key = tuple(rules.items()) if rules else ()
        key = (tuple(example.shape[1:]), example.dtype, example.device, dtype, output,
               rules_key, check)
        hash(key)
    except TypeError:  # unhashable output or rules: trace without caching
        return trace(model, example, rules, dtype=dtype, check=check, output=output)
    tr = _CACHE.get(model, key)
    if tr is None:
        tr = trace(model, example, rules, dtype=dtype, check=check, output=output)
        _CACHE.put(model, key, tr)
    return tr


as_trace.cache_clear = _CACHE.clear  # type: ignore[attr-defined]


def _index_split(node: fx.Node, args: tuple, kwargs: dict, pieces: Any) -> tuple[str, str] | None:
    """Turn every ``getitem`` of a split (chunk, split, unbind) into a slice of its input.

    The graph then holds no tuple-valued nodes: each piece is an ordinary slicing node.
    Returns ``(reason, fix)`` when the split cannot be read that way."""
    u = args[0]
    dim = split_dim(node, args, kwargs)
    name = node.target if isinstance(node.target, str) else node.target.__name__
    if dim % u.dim() == 0:
        return (f"{name} along the batch dimension separates samples",
                f"{name} along a non-batch dimension, e.g. dim=1")
    users = list(node.users)
    if not all(us.op == "call_function" and us.target is operator.getitem
               and isinstance(us.args[1], int) for us in users):
        return (f"the pieces of {name} are used as a sequence",
                "index the pieces (a, b = x.chunk(2, dim=1)) and use them one by one")
    unbind = name == "unbind"
    starts = [0]
    for p in pieces:
        starts.append(starts[-1] + (1 if unbind else int(p.shape[dim % u.dim()])))
    for us in users:
        i = us.args[1] % len(pieces)
        us.args = (node.args[0], split_index(pieces[i], starts[i], dim % u.dim(), unbind))
    return None


def _check_values(x: torch.Tensor, name: str) -> None:
    """Refuse complex and empty batches at the public boundary, before any torch error."""
    if x.is_complex():
        raise InputError(f"{name} is complex ({x.dtype}); maxaffine analyses real inputs: pass "
                         f"x.real, or the real and imaginary parts as separate features")
    if x.dim() >= 1 and x.shape[0] == 0:
        raise InputError(f"{name} is an empty batch (shape {tuple(x.shape)}); pass at least "
                         f"one sample, shape (B >= 1, *in_shape)")


def _check_model_values(model: nn.Module) -> None:
    """Parameters and buffers must hold real, finite values (checked before tracing, so the
    message names them instead of a failed comparison later)."""
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    meta = [n for n, t in tensors if t.is_meta]
    if meta:
        raise InputError(
            f"the model's tensors {meta[:5]} are on the meta device (shapes only, no values: "
            f"e.g. built under torch.device('meta') or with empty weights); materialize them "
            f"first, e.g. model.to_empty(device='cpu') and then load_state_dict(...)")
    bad = [n for n, t in tensors if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise InputError(f"the model's parameters/buffers {bad[:10]} contain NaN or inf values; "
                         f"the network is not a finite piecewise-affine map: load or retrain "
                         f"weights that are finite")


def _check_in_place(gm: fx.GraphModule, names: dict[str, str], model: nn.Module) -> None:
    """In-place ops whose effect the graph does not carry: the traced graph keeps the value
    before the op wherever the op's result is not used, so it would compute another
    function than the model."""
    modules = dict(gm.named_modules())
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    offenders = []
    for n in gm.graph.nodes:
        if n.op == "call_method":
            inplace = isinstance(n.target, str) and n.target.endswith("_") \
                and not n.target.startswith("__")
        elif n.op == "call_module":
            inplace = getattr(modules.get(n.target), "inplace", False) is True
        elif n.op == "call_function":
            inplace = n.kwargs.get("inplace") is True or \
                getattr(n.target, "__name__", "").endswith("_")
        else:
            inplace = False
        src = n.args[0] if n.args and isinstance(n.args[0], fx.Node) else None
        if not inplace or src is None:
            continue
        later = [u for u in src.users if u is not n and order[u] > order[n]]
        if n.users and not later:
            continue  # h = h.relu_(): the graph follows the result
        path = names.get(n.name, n.name) if n.op == "call_module" else (
            f"{_owner_path(n)}:{n.name}" if _owner_path(n) else n.name)
        kind = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", "?")
        offenders.append(Offender(
            path, str(kind), "in-place op whose result is not what the rest of forward uses "
            "(it modifies its input, which the traced graph cannot follow)",
            "assign the result (h = h.relu() or h = self.act(h)) or use the out-of-place "
            "op (nn.ReLU() without inplace=True, torch.relu)"))
    if offenders:
        raise UnsupportedLayerError(offenders)


def _kwarg_is_var(value: Any, var_names: set[str]) -> bool:
    found = []
    _map(value, lambda a: found.append(a.name in var_names) or a)
    return any(found)


def _fetch_attr(gm: nn.Module, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _check_trace(tr: Trace, name: str, x: torch.Tensor, expected: torch.Tensor) -> None:
    """The rules reproduce the traced forward, and no op mixes samples across the batch.

    ``expected`` is the traced forward's own output on ``x`` (the graph run op by op), so
    the check costs two runs of the rules: on ``x`` and on a batch of another size."""
    with torch.no_grad():
        got = tr.run(x, prepared=True).output
        # rounding differs between fused torch kernels and the rules' formulas (BatchNorm):
        # allow 10^4 ulps of the output scale
        tol = 1e4 * torch.finfo(got.dtype).eps * max(1.0, float(expected.abs().max()))
        if expected.shape != got.shape or not torch.allclose(got, expected.to(got.dtype),
                                                              rtol=0.0, atol=tol):
            err = (got - expected).abs().max().item() if expected.shape == got.shape else "shape"
            raise MaxAffineError(f"the traced graph does not reproduce the model (max error {err}); "
                                 f"a custom rule is probably wrong")
        # a batch of another size must give the same per-sample results
        other = x[:1] if len(x) > 1 else torch.cat([x, x], 0)
        problem = ("outputs depend on the batch composition (an op mixes samples or hard-codes "
                   "the batch size)")
        try:
            both = tr.run(other, prepared=True).output
        except Exception as exc:
            raise UnsupportedLayerError([Offender(
                "<forward>", name, f"{problem}: on a batch of {len(other)} it fails ({exc})",
                "keep every op per-sample: reshape with x.size(0) or -1")]) from exc
        n = min(len(both), len(x))
        if not torch.allclose(both[:n], got[:n], rtol=0.0, atol=tol):
            raise UnsupportedLayerError([Offender(
                "<forward>", name, problem,
                "keep every op per-sample: reshape with x.size(0) or -1")])
