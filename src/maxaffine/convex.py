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
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from .errors import InputError, Offender

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

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NEUTRAL = (nn.Identity, nn.Flatten, nn.Dropout, nn.Unflatten)
_POOL_AVG = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
             nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
_POOL_MAX = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d,
             nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _flatten(seq: nn.Sequential, prefix: str = "") -> list[tuple[str, nn.Module]]:
    out: list[tuple[str, nn.Module]] = []
    for name, m in seq.named_children():
        path = f"{prefix}{name}"
        if type(m) is nn.Sequential:
            out += _flatten(m, path + ".")
        else:
            out.append((path, m))
    return out


def _activation_shape(m: nn.Module) -> tuple[bool, bool, str]:
    """(convex, non-decreasing, reason) for a known elementwise nonlinearity, else raise KeyError."""
    t = type(m)
    if t in (nn.ReLU, nn.CELU):
        return True, True, ""
    if t is nn.Softplus:  # torch switches to x above `threshold`: a jump of < exp(-threshold)
        return True, True, ""
    if t is nn.LeakyReLU:
        nu = m.negative_slope
        if 0.0 <= nu <= 1.0:
            return True, True, ""
        if nu > 1.0:
            return False, True, f"leaky ReLU with slope {nu} > 1 is concave"
        return True, False, f"leaky ReLU with slope {nu} < 0 is decreasing for negative inputs"
    if t is nn.PReLU:
        a = m.weight.detach()
        if ((a >= 0) & (a <= 1)).all():
            return True, True, ""
        if (a > 1).any():
            return False, True, "PReLU with a slope > 1 is concave"
        return True, False, "PReLU with a negative slope is decreasing for negative inputs"
    if t is nn.ELU:
        if 0.0 <= m.alpha <= 1.0:
            return True, True, ""
        return False, m.alpha >= 0, f"ELU with alpha={m.alpha} outside [0, 1] is not convex"
    if t is nn.SELU:
        return False, True, "SELU's slope drops from 1.76 to 1.05 at 0, so it is not convex"
    if t in (nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.ReLU6, nn.Hardsigmoid, nn.Softsign,
             nn.LogSigmoid, nn.Tanhshrink):
        return False, True, f"{t.__name__} is bounded or concave somewhere, so not convex"
    if t in (nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish):
        return False, False, f"{t.__name__} is neither convex nor monotone"
    raise KeyError(t)


def _structural_sequential(model: nn.Sequential) -> list[Offender]:
    offenders: list[Offender] = []
    seen_nonlinear = False
    seen_weighted = False
    for path, m in _flatten(model):
        kind = type(m).__name__
        if isinstance(m, _WEIGHTED):  # parametrized layers are subclasses
            if seen_nonlinear and (m.weight.detach() < 0).any():
                n_neg = int((m.weight.detach() < 0).sum())
                offenders.append(Offender(
                    path, kind, f"{n_neg} negative weight(s) after a nonlinearity",
                    "make them non-negative (maxaffine.convex.project_) or use InputConvexMLP"))
            seen_weighted = True
        elif type(m) in _BATCHNORM:
            if m.training:
                offenders.append(Offender(path, kind, "BatchNorm in training mode is not a fixed "
                                          "affine map", "call model.eval()"))
            elif seen_nonlinear:
                scale = (m.weight.detach() if m.affine else torch.ones(1))
                if (scale < 0).any():
                    offenders.append(Offender(path, kind, "negative scale after a nonlinearity",
                                              "keep BatchNorm weights non-negative"))
        elif type(m) in _NEUTRAL or type(m) in _POOL_AVG:
            if type(m) is nn.Dropout and m.training:
                offenders.append(Offender(path, kind, "Dropout in training mode is random",
                                          "call model.eval()"))
        elif type(m) in _POOL_MAX:
            seen_nonlinear = True  # a max of convex functions: convex and non-decreasing
        else:
            try:
                convex, increasing, why = _activation_shape(m)
            except KeyError:
                offenders.append(Offender(path, kind, "unknown module; its convexity cannot be "
                                          "verified", "use known layers or rely on the "
                                          "numerical check"))
                continue
            if not convex or (seen_nonlinear and not increasing):
                offenders.append(Offender(path, kind, why, "use ReLU, LeakyReLU(0 <= slope <= 1), "
                                          "Softplus or CELU"))
            seen_nonlinear = True
    if not seen_weighted:
        offenders.append(Offender("", type(model).__name__, "no Linear or Conv layer found",
                                  "check the model"))
    return offenders


def _structural_icnn(model: InputConvexMLP) -> list[Offender]:
    offenders: list[Offender] = []
    try:
        convex, increasing, why = _activation_shape(model.activation)
    except KeyError:
        convex, increasing, why = False, False, "unknown activation module"
    if not (convex and increasing):
        offenders.append(Offender("activation", type(model.activation).__name__, why,
                                  "use relu, leaky_relu or softplus"))
    for k, layer in enumerate(model.layers):
        w = layer.weight.detach()
        if (w < 0).any():
            offenders.append(Offender(
                f"layers.{k}", "Linear", f"{int((w < 0).sum())} negative weight(s)",
                "call maxaffine.convex.project_(model) after each optimizer step"))
    return offenders


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


def is_convex(model: nn.Module, example_input: torch.Tensor | None = None, *,
              n_pairs: int = 512, seed: int = 0, atol: float = 1e-9,
              rtol: float = 1e-9) -> ConvexityReport:
    """Prove (structurally) and test (numerically) that ``model`` is convex in its input.

    Structural proof: for an ``nn.Sequential`` (nested Sequentials are flattened) the first
    affine layer may have any weights; after the first nonlinearity every Linear/Conv weight
    and BatchNorm scale must be non-negative and every nonlinearity convex and non-decreasing
    (ReLU, LeakyReLU/PReLU with slope in [0, 1], Softplus, CELU, ELU with alpha in [0, 1];
    max- and average-pooling are fine). The first nonlinearity only needs to be convex.
    For :class:`InputConvexMLP` the activation and the sign of every ``layers`` weight are
    checked (skip weights from the input may have any sign). Other models cannot be proved.

    Numerical test: midpoint convexity on random pairs (:func:`midpoint_check`); any violation
    disproves convexity whatever the structure says.

    Parameters
    ----------
    model : nn.Module
    example_input : Tensor, shape (N, *in_shape), optional
        Inputs around which pairs are drawn. If None, standard normal inputs are used when the
        input size can be read from the model (InputConvexMLP, or a Sequential starting with
        Linear); otherwise the numerical check is skipped.
    n_pairs : int
    seed : int
    atol, rtol : float
        Tolerances of the midpoint inequality (float64 round-off).

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
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, InputConvexMLP):
        reasons = _structural_icnn(model)
    elif isinstance(model, nn.Sequential):
        reasons = _structural_sequential(model)
    else:
        reasons = [Offender("", type(model).__name__, "only nn.Sequential and InputConvexMLP can "
                            "be proved convex structurally", "rely on the numerical check")]
    structural = not reasons
    gen = torch.Generator().manual_seed(int(seed))
    X = example_input if example_input is not None else _default_inputs(model, 64, gen)
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


__all__ = [
    "ConvexityReport",
    "InputConvexMLP",
    "MidpointCheck",
    "is_convex",
    "midpoint_check",
    "project_",
]
