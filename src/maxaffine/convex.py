"""Input-convex networks: build them, and prove or disprove convexity of a given network.

A network is convex in its input when every layer after the first is a non-negative
combination of convex functions passed through convex, non-decreasing nonlinearities:

.. math::
    z_1 = \\sigma(W_0 x + b_0), \\qquad
    z_{k+1} = \\sigma(U_k z_k + V_k x + b_k), \\qquad
    f(x) = U_L z_L + V_L x + b_L, \\qquad U_k \\ge 0,

with :math:`\\sigma` convex and non-decreasing (ReLU, leaky ReLU with slope in [0, 1],
softplus, CELU, ELU with :math:`0 \\le \\alpha \\le 1`), and arbitrary "skip" weights
:math:`V_k` from the input (affine in x, hence convex). The first nonlinearity only needs to be
convex, since its argument is affine. Max-pooling (a max of convex functions) and average
pooling (a non-negative average) preserve convexity too.

References
----------
.. [1] Amos, Xu, Kolter, "Input convex neural networks", ICML 2017.
.. [2] Balestriero, Baraniuk, "A spline theory of deep networks", ICML 2018 (convex MASO
   compositions).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.nn.utils import parametrize

from ._capture import LeafTracer
from .errors import InputError, Offender
from .layers import REGISTRY, key_name, lookup
from .layers.base import NodeContext
from .trace import Trace

_ACTIVATIONS = ("relu", "leaky_relu", "softplus")


class _Softplus(nn.Module):
    """Parametrization ``W = softplus(V)``: an unconstrained V gives W > 0."""

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return nn.functional.softplus(raw)

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        w = weight.clamp_min(1e-6)
        return w + torch.log(-torch.expm1(-w))  # log(expm1(w)) without overflow


class InputConvexMLP(nn.Module):
    """A fully connected network that is convex in its input by construction.

    .. math::
        z_1 = \\sigma(W_0 x + b_0),\\quad z_{k+1} = \\sigma(U_k z_k + V_k x + b_k),\\quad
        f(x) = U_L z_L + V_L x + b_L,\\quad U_k \\ge 0

    Parameters
    ----------
    in_features : int
        Input dimension D.
    hidden : int or sequence of int
        Widths of the hidden layers.
    out_features : int
        Number of outputs; each is convex in x.
    activation : {"relu", "leaky_relu", "softplus"}
        Convex, non-decreasing nonlinearity (leaky ReLU uses slope ``negative_slope`` in [0, 1]).
    skip : bool
        Add the input skip connections :math:`V_k x` (any sign) to every later layer.
    nonneg : {"softplus", "clamp"}
        How :math:`U_k \\ge 0` is kept: ``softplus`` parametrizes ``U = softplus(raw)`` (any
        optimizer step keeps it valid); ``clamp`` stores U directly and relies on calling
        :func:`project_` after every optimizer step.
    negative_slope : float
        Slope of leaky ReLU on negative inputs.

    Attributes
    ----------
    first : nn.Linear
        :math:`W_0, b_0` (any sign).
    layers : nn.ModuleList of nn.Linear
        :math:`U_k, b_k` for the later hidden layers and the output layer (last entry);
        ``weight`` is non-negative.
    skips : nn.ModuleList of nn.Linear or None
        :math:`V_k` (no bias), one per entry of ``layers``.

    Examples
    --------
    >>> import torch
    >>> from maxaffine.convex import InputConvexMLP, is_convex
    >>> net = InputConvexMLP(2, [16, 16], 1)
    >>> bool(is_convex(net, torch.randn(64, 2)))
    True

    References
    ----------
    .. [1] Amos, Xu, Kolter, "Input convex neural networks", ICML 2017.
    """

    def __init__(self, in_features: int, hidden: int | Sequence[int], out_features: int,
                 activation: str = "relu", skip: bool = True, *, nonneg: str = "softplus",
                 negative_slope: float = 0.01):
        super().__init__()
        widths = [int(hidden)] if isinstance(hidden, int) else [int(h) for h in hidden]
        if not widths or min(widths) < 1 or in_features < 1 or out_features < 1:
            raise InputError(
                f"InputConvexMLP needs positive sizes; got in_features={in_features}, "
                f"hidden={hidden}, out_features={out_features}"
            )
        if activation not in _ACTIVATIONS:
            raise InputError(
                f"activation must be one of {', '.join(_ACTIVATIONS)} (convex, non-decreasing); "
                f"got {activation!r}"
            )
        if nonneg not in ("softplus", "clamp"):
            raise InputError(f"nonneg must be 'softplus' or 'clamp', got {nonneg!r}")
        if activation == "leaky_relu" and not 0.0 <= negative_slope <= 1.0:
            raise InputError(
                f"leaky ReLU is convex and non-decreasing only for 0 <= negative_slope <= 1; "
                f"got {negative_slope}"
            )
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.hidden = tuple(widths)
        self.skip, self.nonneg = bool(skip), nonneg
        self.activation = {
            "relu": nn.ReLU(),
            "leaky_relu": nn.LeakyReLU(negative_slope),
            "softplus": nn.Softplus(),
        }[activation]
        self.first = nn.Linear(in_features, widths[0])
        sizes = widths + [out_features]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.skips = (nn.ModuleList(nn.Linear(in_features, b, bias=False) for b in sizes[1:])
                      if skip else None)
        for layer in self.layers:
            # non-negative init with the variance of a fan-in init: U ~ U(0, 2/sqrt(fan_in))/2
            fan_in = layer.weight.shape[1]
            with torch.no_grad():
                layer.weight.uniform_(0.0, 1.0 / fan_in**0.5)
                layer.bias.uniform_(-1.0 / fan_in**0.5, 0.0)
            if nonneg == "softplus":
                parametrize.register_parametrization(layer, "weight", _Softplus())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``f(x)``, shape (N, out_features), for x of shape (N, in_features)."""
        z = self.activation(self.first(x))
        last = len(self.layers) - 1
        for k, layer in enumerate(self.layers):
            u = layer(z)
            if self.skips is not None:
                u = u + self.skips[k](x)
            z = u if k == last else self.activation(u)
        return z


def project_(model: nn.Module) -> nn.Module:
    """Clamp the weights that must be non-negative to ``>= 0``, in place; returns ``model``.

    For :class:`InputConvexMLP` (``nonneg="clamp"``) these are the weights of ``model.layers``;
    parametrized (softplus) weights are already positive and left alone. For an
    ``nn.Sequential`` every Linear/Conv weight after the first one is clamped, which makes it
    convex if its nonlinearities are convex and non-decreasing. Call after every optimizer step.

    Raises
    ------
    InputError
        If the model is neither an InputConvexMLP nor an nn.Sequential.
    """
    if isinstance(model, InputConvexMLP):
        targets = [layer for layer in model.layers if not parametrize.is_parametrized(layer)]
    elif isinstance(model, nn.Sequential):
        affine = [m for m in _flatten(model) if isinstance(m[1], _WEIGHTED)]
        targets = [m for _, m in affine[1:] if not parametrize.is_parametrized(m)]
    else:
        raise InputError(
            f"project_ handles InputConvexMLP and nn.Sequential, got {type(model).__name__}"
        )
    with torch.no_grad():
        for layer in targets:
            layer.weight.clamp_(min=0.0)
    return model


# ----------------------------------------------------------------------------- checking

#: the weighted layers that project_ clamps in an nn.Sequential
_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _flatten(seq: nn.Sequential, prefix: str = "") -> list[tuple[str, nn.Module]]:
    out: list[tuple[str, nn.Module]] = []
    for name, m in seq.named_children():
        path = f"{prefix}{name}"
        if type(m) is nn.Sequential:
            out += _flatten(m, path + ".")
        else:
            out.append((path, m))
    return out


_META_METHODS = frozenset({"size", "dim", "numel", "ndimension"})


def _graph_of(model: nn.Module, rules) -> fx.GraphModule:
    leaf_types = {k for k in REGISTRY if isinstance(k, type)}
    if rules:
        leaf_types |= {k for k in rules if isinstance(k, type)}
        leaf_types |= {type(k) for k in rules if isinstance(k, nn.Module)}
    tracer = LeafTracer(leaf_types)
    graph = tracer.trace(model)
    return fx.GraphModule(tracer.root, graph)


def _op_key(fxn: fx.Node, module: nn.Module | None):
    if fxn.op == "call_module":
        return type(module)
    if fxn.op == "call_method":
        return f"Tensor.{fxn.target}"
    return fxn.target


def _op_name(fxn: fx.Node, module: nn.Module | None) -> str:
    if module is not None:
        return type(module).__name__
    return key_name(_op_key(fxn, module))


def _node_path(fxn: fx.Node) -> str:
    if fxn.op == "call_module":
        return str(fxn.target)
    stack = [k for k in (fxn.meta.get("nn_module_stack") or {}) if k]
    return f"{stack[-1]}:{fxn.name}" if stack else fxn.name


def _is_meta(fxn: fx.Node, value, states: dict) -> bool:
    """Whether an input-dependent node computes sizes rather than tensors."""
    if value is not None:
        floats = value[0] if isinstance(value, tuple) and value else value
        return not (isinstance(floats, torch.Tensor) and floats.is_floating_point())
    if fxn.op == "call_method" and fxn.target in _META_METHODS:
        return True
    if fxn.op == "call_function" and fxn.target is getattr and fxn.args[1] == "shape":
        return True
    ins = [states[a.name] for a in fxn.all_input_nodes if states[a.name] != "const"]
    return bool(ins) and all(s == "meta" for s in ins)


def _structural_graph(model: nn.Module, X: torch.Tensor | None, rules=None,
                      graph: fx.GraphModule | None = None,
                      bound: dict | None = None) -> list[Offender]:
    r"""Prove convexity by the composition rules, asking each node's rule.

    Every value is tracked as constant, affine or convex in the input (entrywise). A node
    whose inputs are all affine gives an affine output if its rule is affine and a convex
    one if its rule declares the node convex; a node with a convex (non-affine) input needs
    its rule to be convex *and* non-decreasing in that input (for an affine rule:
    non-negative weights). A node that breaks this is reported and then treated as if it
    were fixed, so every obstacle is listed, not only the first.
    """
    gm = graph if graph is not None else _graph_of(model, rules)
    modules = dict(gm.named_modules())
    names: dict[str, str] = {}
    seen: dict[str, int] = {}
    for fxn in gm.graph.nodes:
        if fxn.op == "call_module":
            count = seen.get(str(fxn.target), 0)
            seen[str(fxn.target)] = count + 1
            names[fxn.name] = str(fxn.target) if count == 0 else f"{fxn.target}#{count}"
    env: dict[str, object] = {}
    states: dict[str, str] = {}
    offenders: list[Offender] = []
    output_state = "const"
    for fxn in gm.graph.nodes:
        module = modules.get(fxn.target) if fxn.op == "call_module" else None
        if fxn.op == "placeholder":
            if states:
                offenders.append(Offender(fxn.name, "input", "the model takes several inputs",
                                          "analyse a model of one input tensor"))
            env[fxn.name] = X
            states[fxn.name] = "affine"
            continue
        if fxn.op == "output":
            outs = [states[a.name] for a in fxn.all_input_nodes]
            output_state = "convex" if "convex" in outs else "affine"
            continue
        if fxn.op == "get_attr":
            value = gm
            for part in str(fxn.target).split("."):
                value = getattr(value, part)
            env[fxn.name], states[fxn.name] = value, "const"
            continue
        ins = [states[a.name] for a in fxn.all_input_nodes]
        flags = _flags(fxn.args, states)
        args = fx.node.map_arg(fxn.args, lambda a: env[a.name])
        kwargs = fx.node.map_arg(fxn.kwargs, lambda a: env[a.name])
        ctx = NodeContext(fxn, module, tuple(args), dict(kwargs), flags)
        depends = any(s != "const" for s in ins)
        value = None
        if not depends or X is not None:
            with torch.no_grad():
                value = ctx.call()
        env[fxn.name] = value
        if not depends:
            states[fxn.name] = "const"
            continue
        if _is_meta(fxn, value, states):
            states[fxn.name] = "meta"
            continue
        path = names.get(fxn.name) or _node_path(fxn)
        kind = _op_name(fxn, module)
        rule = (bound.get(fxn.name) if bound is not None
                else lookup(_op_key(fxn, module), rules, module))
        tensor_ins = [states[a.name] for a in _var_nodes(fxn.args, flags)]
        convex_in = [s == "convex" for s in tensor_ins]
        states[fxn.name] = "convex"
        if rule is None:
            offenders.append(Offender(path, kind, "no rule for this op, so its convexity is "
                                      "unknown", "register a rule that declares is_convex and "
                                      "is_monotone, or rely on the numerical check"))
            continue
        if not rule.refused:
            try:
                problem = rule.check(ctx, path)
            except Exception:
                if X is not None:
                    raise
                problem = None
            if problem is not None:  # e.g. a product of two inputs under the product rule
                offenders.append(problem)
                continue
        if rule.training_mode(ctx):
            offenders.append(Offender(path, kind, "in training mode (random or batch-dependent)",
                                      "call model.eval()"))
        if rule.kind != "piecewise" and not rule.refused and not any(convex_in):
            states[fxn.name] = "affine"
            continue
        convex = rule.is_convex(ctx)
        if convex is not True:
            why = ("its convexity is unknown (the rule declares none)" if convex is None
                   else "not convex")
            offenders.append(Offender(path, kind, why, "use ReLU, LeakyReLU(0 <= slope <= 1), "
                                      "max-pooling, Softplus or CELU"))
            continue
        mono = tuple(rule.is_monotone(ctx))
        bad = [m for m, c in zip(mono, convex_in) if c and m is not True]
        if bad:
            if rule.kind == "affine":
                why = "negative weight(s) applied to a convex, non-affine input"
                fix = "make them non-negative (maxaffine.convex.project_) or use InputConvexMLP"
            else:
                why, fix = ("not non-decreasing, applied to a convex, non-affine input",
                            "use a non-decreasing convex nonlinearity after the first layer")
            if any(m is None for m in bad):
                why = "monotonicity unknown (the rule declares none), " + why.split(",", 1)[1]
            offenders.append(Offender(path, kind, why, fix))
    if output_state not in ("convex", "affine"):
        offenders.append(Offender("output", type(model).__name__, "the output is not a tensor",
                                  "return one tensor"))
    return offenders


def _flags(args, states):
    if isinstance(args, (tuple, list)):
        return tuple(_flags(a, states) for a in args)
    if isinstance(args, fx.Node):
        return states[args.name] not in ("const", "meta")
    return False


def _var_nodes(args, flags) -> list[fx.Node]:
    out: list[fx.Node] = []
    for a, f in zip(args, flags):
        if isinstance(f, tuple):
            out += _var_nodes(tuple(a), f)
        elif f:
            out.append(a)
    return out


@dataclass(frozen=True)
class MidpointCheck:
    """Numerical midpoint-convexity test on random pairs.

    Attributes
    ----------
    n_pairs : int
    n_violations : int
        Pairs with :math:`f_o((a+b)/2) > (f_o(a) + f_o(b))/2 + \\text{tol}` for some output o.
    max_gap : float
        Largest :math:`f_o((a+b)/2) - (f_o(a)+f_o(b))/2` seen (<= 0 for convex f up to round-off).
    tol : float
        Tolerance used (absolute, plus a relative part scaled by |f|).
    worst : tuple of Tensor or None
        The pair (a, b) with the largest gap, if a violation was found.
    """

    n_pairs: int
    n_violations: int
    max_gap: float
    tol: float
    worst: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def passed(self) -> bool:
        return self.n_violations == 0


@dataclass(frozen=True)
class ConvexityReport:
    """Outcome of :func:`is_convex`.

    Attributes
    ----------
    convex : bool
        True only when the structure proves convexity and no numerical violation was found.
    structural : bool
        True when the architecture proves convexity.
    status : {"proved", "disproved", "unverified"}
        ``disproved`` when the numerical check found a violation (whatever the structure says);
        ``proved`` when the structure proves it (and no violation was found); ``unverified``
        when neither.
    reasons : tuple of Offender
        Modules that prevent a structural proof (path, type, why, fix).
    numerical : MidpointCheck or None
        The numerical check (None if no inputs were available to run it).
    """

    convex: bool
    structural: bool
    status: str
    reasons: tuple[Offender, ...] = field(default_factory=tuple)
    numerical: MidpointCheck | None = None

    def __bool__(self) -> bool:
        return self.convex

    def __str__(self) -> str:
        lines = [f"convexity: {self.status}"]
        lines += [str(r) for r in self.reasons]
        if self.numerical is not None:
            n = self.numerical
            lines.append(f"  midpoint check: {n.n_violations}/{n.n_pairs} violations, "
                         f"max gap {n.max_gap:.3g} (tol {n.tol:.1g})")
        return "\n".join(lines)


def _default_inputs(model: nn.Module, n: int, gen: torch.Generator) -> torch.Tensor | None:
    if isinstance(model, InputConvexMLP):
        return torch.randn(n, model.in_features, generator=gen, dtype=torch.float64)
    if isinstance(model, nn.Sequential):
        for _, m in _flatten(model):
            if isinstance(m, nn.Linear):
                return torch.randn(n, m.in_features, generator=gen, dtype=torch.float64)
            if isinstance(m, _WEIGHTED):
                return None  # a conv layer first: the spatial shape is unknown
    return None


def midpoint_check(model: nn.Module, example_input: torch.Tensor, *, n_pairs: int = 512,
                   seed: int = 0, atol: float = 1e-9, rtol: float = 1e-9) -> MidpointCheck:
    """Test :math:`f((a+b)/2) \\le (f(a)+f(b))/2` on random pairs around the example inputs.

    Pairs are ``a = x_i + s ε``, ``b = x_j + s ε'`` with rows ``x_i, x_j`` of ``example_input``,
    Gaussian ε, and ``s`` the per-coordinate standard deviation of the examples (1 if there is
    a single example); half of the pairs are close (``b = a + 0.1 s ε'``) to probe local kinks.
    The model is evaluated as a float64 eval-mode copy.

    Parameters
    ----------
    model : nn.Module
    example_input : Tensor, shape (N, *in_shape)
    n_pairs : int
    seed : int
    atol, rtol : float
        A violation needs a gap above ``atol + rtol * (|f(a)| + |f(b)|) / 2``.

    Returns
    -------
    MidpointCheck
    """
    X = torch.as_tensor(example_input)
    if X.dim() < 2 or len(X) == 0:
        raise InputError(f"example_input must have shape (N, *in_shape), got {tuple(X.shape)}")
    X = X.to(torch.float64)
    if not torch.isfinite(X).all():
        raise InputError("example_input has NaN or inf entries; pass finite inputs")
    net = copy.deepcopy(model).double().eval()
    gen = torch.Generator().manual_seed(int(seed))
    s = X.std(0) if len(X) > 1 else torch.ones_like(X[0])
    s = torch.where(s > 0, s, s.mean().clamp_min(1e-3) * torch.ones_like(s))
    i = torch.randint(len(X), (n_pairs,), generator=gen)
    j = torch.randint(len(X), (n_pairs,), generator=gen)
    a = X[i] + s * torch.randn(X[i].shape, generator=gen, dtype=torch.float64)
    b = X[j] + s * torch.randn(X[j].shape, generator=gen, dtype=torch.float64)
    near = torch.arange(n_pairs) % 2 == 1
    b_near = a + 0.1 * s * torch.randn(a.shape, generator=gen, dtype=torch.float64)
    b = torch.where(near.reshape(-1, *([1] * (X.dim() - 1))), b_near, b)
    with torch.no_grad():
        fa, fb, fm = (net(t).reshape(n_pairs, -1) for t in (a, b, 0.5 * (a + b)))
    gap = fm - 0.5 * (fa + fb)
    tol = atol + rtol * 0.5 * (fa.abs() + fb.abs())
    viol = (gap > tol).any(1)
    worst = None
    if viol.any():
        k = int(gap.amax(1).argmax())
        worst = (a[k], b[k])
    return MidpointCheck(n_pairs, int(viol.sum()), float(gap.max()), atol, worst)


def is_convex(model: nn.Module | Trace, example_input: torch.Tensor | None = None, *,
              n_pairs: int = 512, seed: int = 0, atol: float = 1e-9, rtol: float = 1e-9,
              rules: Mapping[Any, Any] | None = None) -> ConvexityReport:
    """Prove (structurally) and test (numerically) that ``model`` is convex in its input.

    Structural proof, on the model's graph (any forward that torch.fx can trace: residual
    sums, concatenations, functional calls), by the composition rules of convex analysis.
    Every value is tracked as affine or convex in the input; each op's rule declares
    whether the op is convex (:meth:`Rule.is_convex <maxaffine.layers.Rule.is_convex>`)
    and non-decreasing in each input (:meth:`Rule.is_monotone
    <maxaffine.layers.Rule.is_monotone>`; for an affine op: non-negative weights):

    - an affine op of affine values is affine; any op declared convex of affine values is
      convex (the first nonlinearity only needs to be convex: ``|u|`` is fine there);
    - an op of convex, non-affine values must be convex and non-decreasing in them:
      non-negative Linear/Conv weights and BatchNorm scales, and nonlinearities such as
      ReLU, LeakyReLU/PReLU with slope in [0, 1], max-pooling, maxout, Softplus, CELU,
      ELU with alpha in [0, 1]; sums, averages and reshapes always qualify.

    Skip connections from the input (affine) may have any sign. Every op that breaks a
    rule is listed (each is then assumed fixed, so later obstacles are found too).

    Numerical test: midpoint convexity on random pairs (:func:`midpoint_check`); any violation
    disproves convexity whatever the structure says.

    Parameters
    ----------
    model : nn.Module or Trace
    example_input : Tensor, shape (N, *in_shape), optional
        Inputs around which pairs are drawn (and at which the rules see real inputs). If
        None, standard normal inputs are used when the input size can be read from the
        model (InputConvexMLP, or a Sequential starting with Linear); otherwise the
        numerical check is skipped.
    n_pairs : int
    seed : int
    atol, rtol : float
        Tolerances of the midpoint inequality (float64 round-off).
    rules : mapping, optional
        Extra or overriding rules, as in :func:`maxaffine.trace`.

    Returns
    -------
    ConvexityReport
        ``bool(report)`` is ``report.convex``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from maxaffine.convex import is_convex
    >>> net = nn.Sequential(nn.Linear(3, 8), nn.Sigmoid(), nn.Linear(8, 1))
    >>> report = is_convex(net)
    >>> report.structural, report.reasons[0].path
    (False, '1')

    References
    ----------
    .. [1] Amos, Xu, Kolter, "Input convex neural networks", ICML 2017.
    .. [2] Boyd, Vandenberghe, "Convex Optimization", 2004, section 3.2 (operations that
       preserve convexity).
    """
    graph = bound = None
    if isinstance(model, Trace):
        graph = model.graph_module
        bound = {n.fx_node.name: n.rule for n in model.nodes if n.kind == "var"}
        model = model.model
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    gen = torch.Generator().manual_seed(int(seed))
    X = example_input if example_input is not None else _default_inputs(model, 64, gen)
    reasons = _prove(model, X, rules, graph, bound)
    structural = not reasons
    numerical = None
    if X is not None:
        numerical = midpoint_check(model, X, n_pairs=n_pairs, seed=seed, atol=atol, rtol=rtol)
    if numerical is not None and not numerical.passed:
        status = "disproved"
    elif structural:
        status = "proved"
    else:
        status = "unverified"
    return ConvexityReport(status == "proved", structural, status, tuple(reasons), numerical)


def _prove(model: nn.Module, X: torch.Tensor | None, rules, graph, bound) -> list[Offender]:
    try:
        gm = graph if graph is not None else _graph_of(model, rules)
    except Exception as exc:  # noqa: BLE001  torch.fx raises many types for untraceable code
        return [Offender("<forward>", type(model).__name__, f"torch.fx could not trace the "
                         f"forward ({exc})", "avoid Python control flow that depends on tensor "
                         "values in forward, or rely on the numerical check")]
    if X is not None:
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()),
                     torch.get_default_dtype())
        try:
            return _structural_graph(model, torch.as_tensor(X).to(dtype), rules, gm, bound)
        except Exception:  # noqa: BLE001  inputs the graph cannot run on
            X = None  # prove from the parameters and constants alone
    return _structural_graph(model, None, rules, gm, bound)


__all__ = [
    "ConvexityReport",
    "InputConvexMLP",
    "MidpointCheck",
    "is_convex",
    "midpoint_check",
    "project_",
]
