"""Capturing a model's forward as a torch.fx graph, with fallbacks, and choosing its output.

Routes, tried in order:

1. ``symbolic``: plain :mod:`torch.fx` symbolic tracing. Extra ``forward`` arguments that
   have defaults (``forward(x, attn_mask=None)``) are bound to their defaults.
2. ``concrete shapes``: symbolic tracing where every proxy also carries the values of the
   example batch, so ``x.shape``, ``x.size(d)``, ``x.dim()``, ``x.dtype`` are plain Python
   values and shape-dependent control flow (``if x.shape[-2] < 7``) runs. A size that
   changes with the batch size stays symbolic (a graph node), so the graph still takes any
   batch; control flow on tensor *values* is still refused.

``torch.export`` is not a route: it lowers modules to ATen ops, and maxaffine's rules are
bound to module types and torch functions.
"""

from __future__ import annotations

import inspect
import operator
from typing import Any

import torch
from torch import fx, nn


class LeafTracer(fx.Tracer):
    """A tracer that keeps registered module types (and torch.nn's leaves) as single nodes
    and traces through every other module, containers included (the tracer of
    :func:`maxaffine.trace` and of the convexity prover)."""

    def __init__(self, leaf_types: set[type]):
        super().__init__()
        self.leaf_types = leaf_types

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if type(m) in self.leaf_types:
            return True
        if isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            return False
        return super().is_leaf_module(m, qualname)


#: Tensor methods and functions that split a tensor into a tuple of pieces
SPLIT_METHODS = frozenset({"chunk", "split", "tensor_split", "unbind", "split_with_sizes"})
SPLIT_FUNCTIONS = frozenset({torch.chunk, torch.split, torch.tensor_split, torch.unbind})


class CaptureError(Exception):
    """Every route failed; ``routes`` maps route name to its error message."""

    def __init__(self, routes: dict[str, str]):
        self.routes = routes
        super().__init__("; ".join(f"{k}: {v}" for k, v in routes.items()))


def _bound_defaults(model: nn.Module) -> tuple[dict[str, Any], list[str]]:
    """Defaults of ``forward``'s arguments after the first, and the names lacking one."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return {}, []
    concrete: dict[str, Any] = {}
    missing: list[str] = []
    for p in params[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is inspect.Parameter.empty:
            missing.append(p.name)
        else:
            concrete[p.name] = p.default
    return concrete, missing


def _drop_bound_placeholders(graph: fx.Graph) -> None:
    """Remove the placeholders fx keeps for bound defaults, and their value guards."""
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    for ph in placeholders[1:]:
        doomed = [ph]
        i = 0
        while i < len(doomed):
            doomed.extend(u for u in doomed[i].users if u not in doomed)
            i += 1
        if any(n.op == "output" for n in doomed):
            continue
        for n in reversed(doomed):
            if not n.users:
                graph.erase_node(n)


class _ShapeProxy(fx.Proxy):
    """A proxy that knows the values its node takes on two example batches (B and B + 1 rows).

    Sizes equal on both are plain ints; sizes that differ (the batch) stay graph nodes."""

    _values: tuple[Any, Any] | None = None

    def _known(self) -> tuple[Any, Any] | None:
        return self.__dict__.get("_values")

    @property
    def shape(self):  # type: ignore[override]
        return self.size()

    def size(self, dim: int | None = None):  # type: ignore[override]
        vals = self._known()
        if vals is None or not all(isinstance(v, torch.Tensor) for v in vals):
            args = (self,) if dim is None else (self, dim)
            return self.tracer.create_proxy("call_method", "size", args, {})
        a, b = vals
        if dim is not None:
            if a.shape[dim] == b.shape[dim]:
                return int(a.shape[dim])
            return self.tracer.create_proxy("call_method", "size", (self, dim), {})
        return tuple(int(sa) if sa == sb else
                     self.tracer.create_proxy("call_method", "size", (self, d), {})
                     for d, (sa, sb) in enumerate(zip(a.shape, b.shape)))

    def dim(self):  # type: ignore[override]
        vals = self._known()
        if vals is not None and isinstance(vals[0], torch.Tensor):
            return vals[0].dim()
        return self.tracer.create_proxy("call_method", "dim", (self,), {})

    @property
    def ndim(self):  # type: ignore[override]
        return self.dim()

    @property
    def dtype(self):  # type: ignore[override]
        vals = self._known()
        if vals is not None and isinstance(vals[0], torch.Tensor):
            return vals[0].dtype
        return self.tracer.create_proxy("call_function", getattr, (self, "dtype"), {})

    @property
    def device(self):  # type: ignore[override]
        vals = self._known()
        if vals is not None and isinstance(vals[0], torch.Tensor):
            return vals[0].device
        return self.tracer.create_proxy("call_function", getattr, (self, "device"), {})

    def is_floating_point(self):  # type: ignore[override]
        vals = self._known()
        if vals is not None and isinstance(vals[0], torch.Tensor):
            return vals[0].is_floating_point()
        return self.tracer.create_proxy("call_method", "is_floating_point", (self,), {})


class _ShapeTracer(fx.Tracer):
    """fx tracer whose proxies carry example values (see :class:`_ShapeProxy`)."""

    def __init__(self, base: fx.Tracer, examples: tuple[torch.Tensor, torch.Tensor]):
        super().__init__()
        self.base = base
        self.examples = examples
        self.evaluating = False

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return self.base.is_leaf_module(m, qualname)

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _ShapeProxy(node, self)

    def call_module(self, m, forward, args, kwargs):
        if self.evaluating:
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        if self.evaluating:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None,
                     proxy_factory_fn=None):
        rv = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        if isinstance(rv, _ShapeProxy):
            rv.__dict__["_values"] = self._evaluate(kind, target, args, kwargs)
        return rv

    def _evaluate(self, kind, target, args, kwargs) -> tuple[Any, Any] | None:
        if kind == "placeholder":
            return self.examples if not self._placeholder_seen() else None
        out = []
        self.evaluating = True
        try:
            for i in (0, 1):
                def value(a, i=i):
                    if isinstance(a, fx.Proxy):
                        vals = a.__dict__.get("_values")
                        if vals is None:
                            raise LookupError
                        return vals[i]
                    return a

                a = fx.node.map_aggregate(args, value)
                k = fx.node.map_aggregate(kwargs, value)
                if kind == "call_function":
                    out.append(target(*a, **k))
                elif kind == "call_method":
                    out.append(getattr(a[0], target)(*a[1:], **k))
                elif kind == "call_module":
                    out.append(self.root.get_submodule(target)(*a, **k))
                elif kind == "get_attr":
                    obj: Any = self.root
                    for part in target.split("."):
                        obj = getattr(obj, part)
                    out.append(obj)
                else:
                    return None
        except Exception:  # noqa: BLE001 -- unknown value: the proxy stays fully symbolic
            return None
        finally:
            self.evaluating = False
        return out[0], out[1]

    def _placeholder_seen(self) -> bool:
        seen = self.__dict__.get("_seen_placeholder", False)
        self.__dict__["_seen_placeholder"] = True
        return seen


def _finish(model: nn.Module, root: nn.Module, graph: fx.Graph) -> fx.GraphModule:
    gm = fx.GraphModule(root, graph)
    if getattr(model, "_maxaffine_picks_output", False):
        gm.graph.eliminate_dead_code()  # heads that fed only the other outputs
        gm.recompile()
    return gm


def capture(model: nn.Module, tracer: fx.Tracer, example: torch.Tensor
            ) -> tuple[fx.GraphModule, str]:
    """Trace ``model`` into a GraphModule by the first route that works.

    Returns
    -------
    (GraphModule, route name)

    Raises
    ------
    CaptureError
        With every route's error, or a ``forward`` that needs more than one input.
    """
    concrete, missing = _bound_defaults(model)
    if missing:
        raise CaptureError({"signature": (
            f"forward takes {len(missing) + 1} inputs without defaults "
            f"(x, {', '.join(missing)}); maxaffine analyses models of one input tensor: wrap "
            f"the model so the others are constants")})
    errors: dict[str, str] = {}
    try:
        graph = tracer.trace(model, concrete_args=concrete or None)
        _drop_bound_placeholders(graph)
        return _finish(model, tracer.root, graph), "symbolic"
    except Exception as exc:  # noqa: BLE001 -- torch.fx raises many types for untraceable code
        errors["symbolic"] = f"{type(exc).__name__}: {exc}"
    longer = torch.cat([example, example[:1]], 0)
    shape_tracer = _ShapeTracer(tracer, (example, longer))
    try:
        with torch.no_grad():
            graph = shape_tracer.trace(model, concrete_args=concrete or None)
        _drop_bound_placeholders(graph)
        return _finish(model, shape_tracer.root, graph), "concrete shapes"
    except Exception as exc:  # noqa: BLE001 -- as above
        errors["concrete shapes"] = f"{type(exc).__name__}: {exc}"
    raise CaptureError(errors)


def describe_output(value: Any) -> str:
    """A short description of a forward's return value, for error messages."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, dict):
        return f"a dict with keys {list(value)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}"


def select_output(gm: fx.GraphModule, output: Any) -> None:
    """Make the graph return ``output`` of the forward's result (in place).

    ``output`` is an index or key into a tuple/list/dict result, or a callable applied to the
    result (traced: it may index, take attributes, or combine outputs affinely). Parts of the
    graph that only fed the other outputs are dropped.
    """
    graph = gm.graph
    out_node = next(n for n in graph.nodes if n.op == "output")
    result = out_node.args[0]
    with graph.inserting_before(out_node):
        if callable(output) and not isinstance(output, (str, int)):
            helper = fx.proxy.GraphAppendingTracer(graph)
            proxies = fx.node.map_arg(result, lambda n: fx.Proxy(n, helper))
            picked = output(proxies)
            picked = fx.node.map_aggregate(
                picked, lambda p: p.node if isinstance(p, fx.Proxy) else p)
        elif isinstance(result, (tuple, list, dict)):
            try:
                picked = result[output]
            except (KeyError, IndexError, TypeError) as exc:
                keys = list(result) if isinstance(result, dict) else list(range(len(result)))
                raise LookupError(f"output={output!r} is not one of the forward's outputs "
                                  f"{keys}") from exc
        elif isinstance(result, fx.Node):
            picked = graph.call_function(operator.getitem, (result, output))
        else:
            raise TypeError(f"output={output!r} cannot select from {result!r}")
    out_node.args = (picked,)
    graph.eliminate_dead_code()
    graph.lint()
    gm.recompile()


def pick_output(result: Any, output: Any) -> Any:
    """``output`` of a forward's result: an index, a key, or a function of the result."""
    if callable(output) and not isinstance(output, (str, int)):
        return output(result)
    return result[output]


def with_output(model: nn.Module, output: Any) -> nn.Module:
    """A shallow copy of ``model`` (sharing its parameters) whose forward returns ``output``.

    The copy is an instance of a subclass of the model's class, so module paths and layer
    names stay those of the model; the copy traces like the original with ``output=``."""
    import copy

    base = type(model)

    def forward(self, x):  # one input (fx cannot trace *args); defaults of others apply
        return pick_output(base.forward(self, x), output)

    cls = type(base.__name__, (base,), {"forward": forward, "__module__": base.__module__,
                                        "__qualname__": base.__qualname__,
                                        "_maxaffine_picks_output": True})
    new = copy.copy(model)
    new.__class__ = cls
    return new


def parse_output(spec: str | None) -> Any:
    """A command-line ``--output``: an integer index, else a key."""
    if spec is None:
        return None
    try:
        return int(spec)
    except ValueError:
        return spec


def split_index(piece: torch.Tensor, start: int, dim: int, unbind: bool) -> tuple:
    """The getitem index reading piece ``start:start+len`` of a split along ``dim``."""
    lead: tuple = (slice(None),) * dim
    if unbind:
        return lead + (start,)
    return lead + (slice(start, start + int(piece.shape[dim])),)


def is_split(node: fx.Node) -> bool:
    """Whether ``node`` splits a tensor into a tuple (chunk, split, tensor_split, unbind)."""
    return (node.op == "call_method" and node.target in SPLIT_METHODS) or (
        node.op == "call_function" and node.target in SPLIT_FUNCTIONS)


def split_dim(node: fx.Node, args: tuple, kwargs: dict) -> int:
    """The dimension a split node cuts along (its ``dim`` argument, default 0)."""
    name = node.target if isinstance(node.target, str) else node.target.__name__
    if name == "unbind":
        return int(args[1]) if len(args) > 1 else int(kwargs.get("dim", 0))
    return int(args[2]) if len(args) > 2 else int(kwargs.get("dim", 0))

