"""Test helpers shipped with the package: the rule conformance check, oracles, random nets.

:func:`check_rule` certifies a rule (built-in or your own) the way the test suite does:
every capability the library uses is run on the rule's example networks and compared with
an independent oracle (autograd, the forward pass, dense sampling).

Examples
--------
>>> import torch
>>> from maxaffine.layers import REGISTRY
>>> from maxaffine.testing import check_rule
>>> report = check_rule(REGISTRY[torch.nn.ReLU])
>>> "switching" in report.checked and "partition_slice" in report.checked
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError


def jacobian_oracle(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per-sample Jacobians (B, C, D) by plain autograd, independent of maxaffine's rules.

    Every sample is pushed through ``model`` on its own (batch of one), so ops that need a
    batch dimension (BatchNorm, views with ``x.size(0)``) work unchanged.
    """
    rows = []
    for xi in x:
        J = torch.autograd.functional.jacobian(lambda v: model(v.unsqueeze(0)).reshape(-1), xi)
        rows.append(J.reshape(J.shape[0], -1))
    return torch.stack(rows)


def randomize_batchnorm(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters (in place)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=generator) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=generator) + 0.5)
                if m.weight is not None:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=generator) + 0.5)
                    m.bias.copy_(torch.rand(m.bias.shape, generator=generator) - 0.5)
    return model




# ------------------------------------------------------------------ random networks

class Abs(nn.Module):
    def forward(self, x):
        return torch.abs(x)


ACTIVATIONS = {
    "relu": lambda c, g: nn.ReLU(),
    "leaky": lambda c, g: nn.LeakyReLU(0.1 + 0.5 * float(torch.rand((), generator=g))),
    "prelu": lambda c, g: _prelu(c, g),
    "abs": lambda c, g: Abs(),
    "hardtanh": lambda c, g: nn.Hardtanh(-0.7, 0.9),
    "relu6": lambda c, g: nn.ReLU6(),
}


def _prelu(c: int, g: torch.Generator) -> nn.PReLU:
    m = nn.PReLU(c)
    with torch.no_grad():
        m.weight.copy_(torch.rand(c, generator=g) * 0.6 - 0.1)
    return m


class Residual(nn.Module):
    def __init__(self, width, act):
        super().__init__()
        self.a, self.b, self.act = nn.Linear(width, width), nn.Linear(width, width), act

    def forward(self, x):
        return x + self.b(self.act(self.a(x)))


class Concat(nn.Module):
    def __init__(self, d, width, act1, act2):
        super().__init__()
        self.p, self.q = nn.Linear(d, width), nn.Linear(d, width)
        self.act1, self.act2 = act1, act2

    def forward(self, x):
        return torch.cat([self.act1(self.p(x)), self.act2(self.q(x))], dim=1)


class Maxout(nn.Module):
    def __init__(self, d, units, pieces):
        super().__init__()
        self.lin, self.units, self.pieces = nn.Linear(d, units * pieces), units, pieces

    def forward(self, x):
        return self.lin(x).view(x.size(0), self.units, self.pieces).max(dim=2)[0]


class ResBlock2d(nn.Module):
    def __init__(self, c, act):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.act = act

    def forward(self, x):
        return F.relu(x + self.conv2(self.act(self.bn1(self.conv1(x)))))


def random_network(family: str, seed: int, d: int = 3, n_out: int = 3):
    """A seeded random network of a family and an example input batch, both float64.

    The nonlinearities are drawn from ReLU, leaky ReLU, PReLU, abs, Hardtanh and ReLU6;
    BatchNorm layers get random running statistics. The network is in eval mode.

    Parameters
    ----------
    family : {"mlp", "residual", "concat", "maxout", "cnn", "resnet"}
    seed : int
    d : int
        Input features of the fully connected families.
    n_out : int
        Outputs.

    Returns
    -------
    (nn.Module, Tensor)
        The network and an input batch (B, *in_shape).

    Examples
    --------
    >>> net, x = random_network("residual", seed=0)
    >>> net(x).shape
    torch.Size([6, 3])
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    names = list(ACTIVATIONS)

    def act(c):
        return ACTIVATIONS[names[int(torch.randint(len(names), (), generator=g))]](c, g)

    def width():
        return int(torch.randint(2, 9, (), generator=g))

    if family == "mlp":
        layers, prev = [], d
        for _ in range(int(torch.randint(1, 4, (), generator=g))):
            w = width()
            layers += [nn.Linear(prev, w), act(w)]
            if torch.rand((), generator=g) < 0.3:
                layers.append(nn.BatchNorm1d(w))
            prev = w
        net = nn.Sequential(*layers, nn.Linear(prev, n_out))
        x = torch.randn(6, d, generator=g)
    elif family == "residual":
        w = width()
        net = nn.Sequential(nn.Linear(d, w), act(w), Residual(w, act(w)), Residual(w, act(w)),
                            nn.Linear(w, n_out))
        x = torch.randn(6, d, generator=g)
    elif family == "concat":
        w = width()
        net = nn.Sequential(Concat(d, w, act(w), act(w)), nn.Linear(2 * w, w), act(w),
                            nn.Linear(w, n_out))
        x = torch.randn(6, d, generator=g)
    elif family == "maxout":
        net = nn.Sequential(Maxout(d, width(), int(torch.randint(2, 5, (), generator=g))))
        units = net[0].units
        net.append(nn.Linear(units, n_out))
        x = torch.randn(6, d, generator=g)
    elif family == "cnn":
        c = int(torch.randint(1, 4, (), generator=g))
        pool = [nn.MaxPool2d(2), nn.AvgPool2d(2), nn.MaxPool2d(3, stride=1, padding=1),
                nn.AdaptiveMaxPool2d(3)][int(torch.randint(4, (), generator=g))]
        net = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), act(c), pool,
                            nn.Conv2d(c, 2, 2, stride=1), act(2), nn.Flatten())
        with torch.no_grad():
            flat = net(torch.zeros(2, 1, 6, 6)).shape[1]
        net.append(nn.Linear(flat, n_out))
        x = torch.randn(4, 1, 6, 6, generator=g)
    elif family == "resnet":
        net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), ResBlock2d(2, act(2)),
                            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(8, n_out))
        x = torch.randn(4, 1, 5, 5, generator=g)
    else:
        raise InputError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    randomize_batchnorm(net, g)
    return net.eval().double(), x.double()


FAMILIES = ("mlp", "residual", "concat", "maxout", "cnn", "resnet")


# ------------------------------------------------------------------- rule conformance


class RuleCheckError(AssertionError):
    """A rule failed :func:`check_rule`; the message names the rule, the capability, the
    example and what differed."""


@dataclass(frozen=True)
class RuleCheck:
    """What :func:`check_rule` verified.

    Attributes
    ----------
    rule : str
        The rule's class name (or the module's, for a module check).
    n_examples : int
    checked : tuple of str
        Every capability that was run and passed on at least one example, in the order
        of :data:`CAPABILITIES`.
    """

    rule: str
    n_examples: int
    checked: tuple[str, ...]


#: The capabilities :func:`check_rule` runs, in order.
CAPABILITIES = ("trace", "affine_map", "transpose", "code", "pieces", "switching",
                "partition_slice", "partition_path", "local_complexity", "is_convex")


def check_rule(rule_or_module: Any, x: torch.Tensor | None = None, *,
               rules: Mapping[Any, Any] | None = None, seed: int = 0,
               partitions: bool = True) -> RuleCheck:
    """Run every capability of a rule against an independent oracle.

    Like scikit-learn's ``check_estimator``: the checks the test suite runs over every
    registered rule, available for your own. On each example network (the rule's
    :meth:`~maxaffine.layers.Rule.examples`, or the module given with ``x``), in float64:

    - ``trace``: the traced graph reproduces the module;
    - ``affine_map``: ``A[x]`` equals the autograd Jacobian (``torch.func.jacrev``, one
      sample at a time) and ``A[x] x + b[x]`` the output;
    - ``transpose``: the matrix-free products (:meth:`~maxaffine.layers.Rule.vjp`, and
      the push-forward of ``apply(bias=False)``) equal ``torch.func.vjp`` / ``jvp``;
    - ``code``: at every node of the rule, ``apply`` with the node's own code gives
      ``forward``;
    - ``pieces`` (convex nodes): the MASO of the node's layer reproduces its output;
    - ``switching``: on random points around the examples, two points have the same code
      exactly when every switching function has the same sign (sign kind) or every max
      unit the same argmax (argmax kind); the declared read-backs (codes, unit inputs,
      node values from function values) agree with the forward pass;
    - ``partition_slice``: an exact partition of a small triangle through the examples
      passes :meth:`~maxaffine.Partition.verify` (codes and outputs at random points);
    - ``partition_path``: along a path through the examples, the code is constant and the
      output affine between knots (dense sampling);
    - ``local_complexity``: the counts equal the units whose code changes over the
      cross-polytope vertices (a forward pass at the vertices);
    - ``is_convex``: a structural proof is never contradicted by the midpoint test.

    Parameters
    ----------
    rule_or_module : Rule, Rule subclass, or nn.Module
        A rule is checked on its ``examples()`` (at least one must use it); a module on
        ``x``, all of its nodes.
    x : Tensor, shape (B, *in_shape), optional
        The input batch, for a module (ignored for a rule).
    rules : mapping, optional
        Extra rules for tracing, as in :func:`maxaffine.trace` (an unregistered rule must
        be bound to its op here).
    seed : int
        Seed of the random points and directions.
    partitions : bool
        Run the partition checks (the slowest).

    Returns
    -------
    RuleCheck

    Raises
    ------
    RuleCheckError
        An ``AssertionError`` naming the rule, the failed capability and the example.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2), nn.Linear(4, 2))
    >>> check_rule(net, torch.randn(5, 3)).checked[:3]
    ('trace', 'affine_map', 'transpose')
    """
    from .layers.base import Rule

    if isinstance(rule_or_module, nn.Module):
        if x is None:
            raise InputError("check_rule(module, x) needs an input batch x for a module")
        name, target = type(rule_or_module).__name__, None
        examples: Iterable = [(rule_or_module, x)]
    else:
        target = rule_or_module() if isinstance(rule_or_module, type) else rule_or_module
        if not issubclass(type(target), Rule):
            raise InputError(f"check_rule takes a Rule or an nn.Module, got "
                             f"{type(rule_or_module).__name__}")
        name = type(target).__name__
        examples = target.examples()
    done: set[str] = set()
    n = 0
    used = target is None
    # examples draw their weights from torch's global generator: seed it for repeatable
    # checks, and restore the caller's state afterwards
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for k, (net, xk) in enumerate(examples):
            n += 1
            checker = _Checker(name, k, net, xk, target, rules, seed + k)
            used |= checker.run(partitions, done)
    if n == 0:
        raise RuleCheckError(f"{name}: examples: the rule ships no example networks "
                             f"(implement Rule.examples)")
    if not used:
        raise RuleCheckError(f"{name}: examples: no example network uses the rule (are its "
                             f"ops registered, or passed with rules=?)")
    return RuleCheck(name, n, tuple(c for c in CAPABILITIES if c in done))


def _close(a: torch.Tensor, b: torch.Tensor, tol: float) -> float | None:
    """Relative max error of a against b if above tol, else None."""
    a = torch.as_tensor(a).detach().to(torch.float64)
    b = torch.as_tensor(b).detach().to(torch.float64)
    if a.shape != b.shape:
        return math.inf
    err = float((a - b).abs().max()) if a.numel() else 0.0
    scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
    return err / scale if err > tol * scale else None


class _Checker:
    """The checks of one example network."""

    def __init__(self, name, k, net, x, target, rules, seed):
        self.name, self.k, self.target, self.rules = name, k, target, rules
        self.net = net.eval().double()
        self.x = torch.as_tensor(x).detach().double()
        self.gen = torch.Generator().manual_seed(seed)
        self.seed = seed

    def fail(self, capability: str, detail: str):
        raise RuleCheckError(f"{self.name}: {capability} failed on example {self.k} "
                             f"({type(self.net).__name__}, input {tuple(self.x.shape)}): "
                             f"{detail}")

    def mine(self, node) -> bool:
        rule = node.rule
        if rule is None:
            return False
        return self.target is None or rule is self.target or type(rule) is type(self.target)

    def run(self, partitions: bool, done: set) -> bool:
        from . import trace as trace_fn
        from .errors import MaxAffineError

        net, x = self.net, self.x
        try:
            tr = trace_fn(net, x, self.rules)
        except MaxAffineError as exc:
            self.fail("trace", str(exc))
        nodes = [n for n in tr.nodes if n.kind == "var" and self.mine(n)]
        with torch.no_grad():
            y = net(x)
        err = _close(tr.forward(x), y, 1e-12)
        if err is not None:
            self.fail("trace", f"the traced graph differs from the module by {err:.3g}")
        done.add("trace")
        self.tr = tr
        self.check_affine_map(done)
        mine = [n for n in nodes if n.piecewise]
        self.check_codes(mine, done)
        self.check_pieces(mine, done)
        self.check_switching(done)
        if partitions:
            self.check_partitions(done)
        self.check_local_complexity(done)
        self.check_convexity(done)
        return bool(nodes)

    # -- capabilities -------------------------------------------------------------------
    def check_affine_map(self, done):
        from .affine import affine_map

        net, x, tr = self.net, self.x, self.tr
        m = affine_map(tr, x)
        y = net(x).reshape(len(x), -1).detach()
        err = _close(m(x), y, 1e-10)
        if err is not None:
            self.fail("affine_map", f"A[x] x + b[x] differs from the output by {err:.3g}")
        J = torch.stack([torch.func.jacrev(lambda v: net(v[None]).reshape(-1))(xi)
                         .reshape(-1, xi.numel()) for xi in x]).detach()
        err = _close(m.A, J, 1e-10)
        if err is not None:
            self.fail("affine_map", f"A[x] differs from the autograd Jacobian by {err:.3g}")
        done.add("affine_map")
        lazy = affine_map(tr, x, materialize=False)
        v = torch.randn(x.shape, generator=self.gen, dtype=torch.float64)
        u = torch.randn(len(x), tr.n_outputs, generator=self.gen, dtype=torch.float64)
        _, jv = torch.func.jvp(lambda t: net(t).reshape(len(x), -1), (x,), (v,))
        _, pull = torch.func.vjp(lambda t: net(t).reshape(len(x), -1), x)
        (uj,) = pull(u)
        err = _close(lazy.jvp(v), jv.detach(), 1e-10)
        if err is not None:
            self.fail("transpose", f"the push-forward A[x] v differs from torch.func.jvp by "
                                   f"{err:.3g}")
        err = _close(lazy.vjp(u).reshape(x.shape), uj.detach(), 1e-10)
        if err is not None:
            self.fail("transpose", f"the pull-back u A[x] (Rule.vjp) differs from "
                                   f"torch.func.vjp by {err:.3g}")
        done.add("transpose")

    def check_codes(self, nodes, done):
        tr = self.tr
        with torch.no_grad():
            rec = tr.run(self.x)
            for node in nodes:
                ctx = tr.context(rec, node.name)
                code = node.rule.code(ctx)
                if not torch.equal(torch.as_tensor(code), torch.as_tensor(rec.codes[node.name])):
                    self.fail("code", f"node {node.name}: the code is not deterministic")
                out = node.rule.apply(ctx, code, 1, True)
                err = _close(out, node.rule.forward(ctx), 1e-12)
                if err is not None:
                    self.fail("code", f"node {node.name}: apply() at the node's own code "
                                      f"differs from forward() by {err:.3g}")
                done.add("code")

    def check_pieces(self, nodes, done):
        from .power import maso

        tr, x = self.tr, self.x
        with torch.no_grad():
            rec = tr.run(x[:1])
        for node in nodes:
            ctx = tr.context(rec, node.name)
            if node.rule.is_convex(ctx) is not True or len(tr.unit_inputs(rec, node.name)) != 1:
                continue
            S = maso(tr, node.name, x[:1])
            out = tr.value(rec, node.name).reshape(1, -1)
            err = _close(S.evaluate(x[:1]), out, 1e-10)
            if err is not None:
                self.fail("pieces", f"node {node.name}: the max over the MASO pieces differs "
                                    f"from the node's output by {err:.3g}")
            done.add("pieces")

    def _points(self, n: int) -> torch.Tensor:
        """Random points around the examples: far ones, and close pairs (same regions)."""
        x = self.x
        s = x.std(0) if len(x) > 1 else torch.ones_like(x[0])
        s = torch.where(s > 0, s, torch.ones_like(s))
        i = torch.randint(len(x), (n,), generator=self.gen)
        far = x[i] + s * torch.randn((n, *x.shape[1:]), generator=self.gen, dtype=torch.float64)
        near = far + 1e-7 * s * torch.randn(far.shape, generator=self.gen, dtype=torch.float64)
        return torch.cat([far, near])

    def check_switching(self, done):
        tr = self.tr
        P = self._points(48)
        N = len(P) // 2
        with torch.no_grad():
            anchor = tr.run(self.x[:3])
            rec = tr.run(P)
        for node in (n for n in tr.nodes if n.piecewise and self.mine(n)):
            name = node.name
            sw = node.rule.switching(tr.context(anchor, name))
            if sw is None:
                self.fail("switching", f"node {name}: Rule.switching declares no switching "
                                       f"functions (partition_slice needs them)")
            ins = tr.unit_inputs(rec, name)
            Z = np.asarray(sw.fn(ins), dtype=np.float64)
            code = torch.as_tensor(rec.codes[name]).reshape(len(P), -1)
            if sw.kind == "sign":
                if Z.shape != (len(P), sw.n_functions) or len(sw.unit) != sw.n_functions:
                    self.fail("switching", f"node {name}: fn gave shape {Z.shape}, expected "
                                           f"{(len(P), sw.n_functions)}")
                pattern = torch.from_numpy(np.sign(Z))
            else:
                table = sw.table
                vals = np.where(table[None] >= 0, Z[:, np.maximum(table, 0)], -np.inf)
                pattern = torch.from_numpy(vals.argmax(-1))
            same_code = (code[:, None] == code[None]).all(-1)
            same_sign = (pattern[:, None] == pattern[None]).all(-1)
            if sw.kind == "sign":
                # a function that is exactly zero (a tie holding on a whole region, e.g. the
                # same entry on both sides of a maximum) may go either way
                crossed = (pattern[:, None] * pattern[None] < 0).any(-1)
            else:
                crossed = ~same_sign
            wrong = (same_sign & ~same_code) | (crossed & same_code)
            if wrong.any():
                i, j = (int(v) for v in torch.nonzero(wrong)[0])
                what = ("the codes differ though every switching function has the same sign"
                        if same_sign[i, j] else "a switching function changes sign (or a max "
                        "unit its argmax) but the code does not")
                self.fail("switching", f"node {name}: {what} (points {i} and {j})")
            if not (same_code[:N, N:].diagonal()).float().mean() > 0.5:
                self.fail("switching", f"node {name}: codes change under 1e-7 perturbations "
                                       f"of most points; the code is not piecewise constant")
            got = sw.code_of(Z)
            if got is not None and not torch.equal(torch.as_tensor(got).reshape(len(P), -1),
                                                   code.to(torch.as_tensor(got).dtype)):
                self.fail("switching", f"node {name}: codes read from the function values "
                                       f"(Switch.code_of) differ from the forward pass")
            back = sw.ins_of(Z)
            if back is not None:
                for a, b in zip(back, ins):
                    err = _close(a.reshape(b.shape), b, 1e-10)
                    if err is not None:
                        self.fail("switching", f"node {name}: unit inputs read from the "
                                               f"function values differ by {err:.3g}")
                value = sw.value_of(Z)
                if value is not None:
                    err = _close(value, tr.value(rec, name), 1e-10)
                    if err is not None:
                        self.fail("switching", f"node {name}: outputs read from the "
                                               f"function values differ by {err:.3g}")
            done.add("switching")

    def check_partitions(self, done):
        import warnings

        from .errors import BudgetWarning
        from .partition import Slice, partition_path, partition_slice

        tr, x = self.tr, self.x
        if tr.in_features < 2 or not tr.piecewise:
            return
        x0 = x[0]
        s = float(x.std()) if len(x) > 1 else 1.0
        d1 = torch.randn(x0.shape, generator=self.gen, dtype=torch.float64)
        d2 = torch.randn(x0.shape, generator=self.gen, dtype=torch.float64)
        r = 0.5 * s / math.sqrt(x0.numel())
        slc = Slice.through(x0, x0 + r * d1 * math.sqrt(x0.numel()) / d1.norm(),
                            x0 + r * d2 * math.sqrt(x0.numel()) / d2.norm())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BudgetWarning)
            part = partition_slice(tr, slc, max_regions=20_000, progress=False)
        if part.complete:
            try:
                part.verify(n_samples=200, seed=self.seed)
            except Exception as exc:  # noqa: BLE001  verify raises the library's errors
                self.fail("partition_slice", f"verify() on a triangle through the example "
                                             f"found: {exc}")
            done.add("partition_slice")
        pts = x[:4] if len(x) >= 2 else torch.cat([x, x + s])
        path = partition_path(tr, pts)
        # dense oracle: at points strictly inside each piece, the code is the piece's and the
        # output is the linear interpolation of the outputs at the piece's knots
        knots = path.knots
        lo, hi = knots[:-1], knots[1:]
        tau = (lo[:, None] + (hi - lo)[:, None] * np.array([0.25, 0.5, 0.75])[None]).reshape(-1)
        P = pts.reshape(len(pts), -1).numpy()
        seg = np.clip(np.floor(tau).astype(int), 0, len(P) - 2)
        xs = P[seg] + (tau - seg)[:, None] * (P[seg + 1] - P[seg])
        with torch.no_grad():
            rec = tr.run(torch.from_numpy(xs).reshape(-1, *tr.in_shape))
        w = np.repeat(np.array([[0.75, 0.25], [0.5, 0.5], [0.25, 0.75]])[None], len(lo), 0)
        w = w.reshape(-1, 2)
        j = np.repeat(np.arange(len(lo)), 3)
        want = w[:, :1] * path.outputs[j] + w[:, 1:] * path.outputs[j + 1]
        err = _close(torch.from_numpy(want), rec.output.reshape(len(xs), -1), 1e-8)
        if err is not None:
            self.fail("partition_path", f"the output is not affine between knots (error "
                                        f"{err:.3g}): a breakpoint is missing")
        piece = np.searchsorted(np.r_[path.breakpoints, np.inf], tau, side="left")
        for name, c in path.codes.items():
            got = torch.as_tensor(rec.codes[name]).reshape(len(xs), -1)
            exp = torch.as_tensor(c)[torch.from_numpy(piece)].reshape(len(xs), -1)
            if not torch.equal(got, exp.to(got.dtype)):
                self.fail("partition_path", f"node {name}: the code inside a piece differs "
                                            f"from the piece's code: a breakpoint is missing")
        done.add("partition_path")

    def check_local_complexity(self, done):
        from .complexity import cross_polytope_directions, local_complexity

        tr, x = self.tr, self.x
        P = min(2, tr.in_features)
        r = 0.1 * (float(x.std()) if len(x) > 1 else 1.0)
        kw = {"radius": r, "n_vertices": 2 * P, "seed": self.seed, "directions": "input"}
        lc = local_complexity(tr, x, per_layer=True, **kw)
        dirs = cross_polytope_directions(tr, x, **kw)
        V = torch.cat([x[:, None] + dirs, x[:, None] - dirs], 1)  # (B, 2P, *in)
        with torch.no_grad():
            rec = tr.run(V.reshape(-1, *tr.in_shape))
        for name in tr.piecewise:
            c = torch.as_tensor(rec.codes[name]).reshape(len(x), 2 * P, -1)
            want = (c != c[:, :1]).any(1).sum(1)
            if not torch.equal(lc.layers[name].long(), want.long()):
                self.fail("local_complexity", f"node {name}: {lc.layers[name].tolist()} units "
                                              f"cut, but the codes at the vertices change for "
                                              f"{want.tolist()}")
        done.add("local_complexity")

    def check_convexity(self, done):
        from .convex import is_convex

        report = is_convex(self.tr, self.x, n_pairs=128, seed=self.seed)
        if report.structural and report.numerical is not None and not report.numerical.passed:
            self.fail("is_convex", f"proved convex structurally, but the midpoint test found "
                                   f"{report.numerical.n_violations} violations")
        done.add("is_convex")


__all__ = [
    "RuleCheck",
    "RuleCheckError",
    "check_rule",
    "jacobian_oracle",
    "random_network",
    "randomize_batchnorm",
]
