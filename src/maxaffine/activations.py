"""Soft and beta-VQ activations: nonlinearities derived from a MASO's pieces.

A MASO unit with pieces :math:`p_r(x) = \\langle A_r, x\\rangle + B_r` outputs the piece
selected by hard vector quantization (VQ), :math:`\\max_r p_r`. Replacing the hard choice by
the inference of a probabilistic code, with inverse temperature
:math:`\\eta = \\beta / (1 - \\beta)`,

.. math::
    t_r = \\operatorname{softmax}_r(\\eta\\, p_r), \\qquad
    z = \\sum_r t_r\\, p_r \\quad\\text{(value)}, \\qquad
    \\mathbb{E}[\\text{code}] = t \\quad\\text{(probability)},

interpolates between the hard MASO (:math:`\\beta \\to 1`), soft VQ (:math:`\\beta = 1/2`,
:math:`\\eta = 1`) and the uniform average of the pieces (:math:`\\beta \\to 0`).
For the usual pieces this gives closed forms (hard limit; value; probability):

- ``relu``, pieces (0, u): ReLU; :math:`\\sigma(\\eta u)\\,u` (swish, SiLU at β = ½);
  :math:`\\sigma(\\eta u)`.
- ``leaky_relu``, pieces (νu, u): LeakyReLU(ν);
  :math:`\\nu u + \\sigma(\\eta(1-\\nu)u)\\,(1-\\nu)u`; :math:`\\sigma(\\eta(1-\\nu)u)`.
- ``abs``, pieces (−u, u): :math:`|u|`; :math:`u\\tanh(\\eta u)`; :math:`\\tanh(\\eta u)`.
- ``maxpool``, one piece per window element: max pooling;
  :math:`\\sum_i \\operatorname{softmax}_i(\\eta u)\\,u_i`; the softmax weights.

The probability output is the expected VQ code: the probability of the "on" piece for ReLU
and leaky ReLU (code in {0, 1}), the expected sign for abs (code in {-1, +1}), and the
soft-argmax weights over the window for max-pooling.

References
----------
.. [1] R. Balestriero and R. G. Baraniuk, "From Hard to Soft: Understanding Deep Network
   Nonlinearities via Vector Quantization and Statistical Inference", ICLR 2019.
.. [2] R. Balestriero and R. G. Baraniuk, "A Spline Theory of Deep Networks", ICML 2018.
.. [3] P. Ramachandran, B. Zoph and Q. V. Le, "Searching for Activation Functions"
   (swish), arXiv:1710.05941, 2017.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from .errors import InputError
from .power import MASO

Pieces = Literal["relu", "leaky_relu", "abs", "maxpool"]
Output = Literal["value", "probability"]

_PIECES = ("relu", "leaky_relu", "abs", "maxpool")
_OUTPUTS = ("value", "probability")

BetaLike = float | torch.Tensor


def beta_to_eta(beta: BetaLike) -> torch.Tensor:
    """Inverse temperature ``eta = beta / (1 - beta)`` of a beta-VQ.

    .. math::
        \\eta = \\frac{\\beta}{1 - \\beta} \\in [0, \\infty], \\qquad \\beta \\in [0, 1].

    Parameters
    ----------
    beta : float or Tensor, any shape
        Values in [0, 1]; ``beta = 1`` maps to ``eta = inf`` (the hard MASO).

    Returns
    -------
    Tensor, same shape as ``beta``
        float64 when ``beta`` is a Python number, else ``beta``'s dtype.

    Raises
    ------
    InputError
        If any value of ``beta`` is outside [0, 1] or not finite.
    """
    b = torch.as_tensor(beta, dtype=torch.float64) if not torch.is_tensor(beta) else beta
    if not torch.is_floating_point(b):
        b = b.to(torch.float64)
    with torch.no_grad():
        bad = ~torch.isfinite(b) | (b < 0) | (b > 1)
        if bool(bad.any()):
            raise InputError(
                f"beta must lie in [0, 1] (1 = hard VQ, 1/2 = soft VQ, 0 = uniform average); got "
                f"{b[bad].flatten()[:5].tolist()}. Pass a value in [0, 1]."
            )
    # beta == 1 gives eta = +inf through the division (1 / 0 -> inf in IEEE arithmetic).
    return b / (1 - b)


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def soft_vq_pieces(pieces: torch.Tensor, beta: BetaLike = 0.5, *,
                   output: Output = "value") -> torch.Tensor:
    """Beta-VQ inference over an arbitrary tensor of pieces (the last dimension).

    .. math::
        t = \\operatorname{softmax}(\\eta\\, p), \\quad \\eta = \\frac{\\beta}{1-\\beta},
        \\qquad z = \\sum_r t_r\\, p_r .

    Computed as ``softmax(eta * (p - max p))`` so it never overflows; ``beta = 1``
    (``eta = inf``) returns the hard MASO exactly (``max`` and the one-hot argmax, ties
    going to the first piece). Pieces equal to ``-inf`` are padding (as in
    :class:`maxaffine.power.MASO`) and get weight 0 for every ``beta``.

    Parameters
    ----------
    pieces : Tensor, shape (..., R)
        Value of each of the R pieces of every unit.
    beta : float or Tensor broadcastable to ``pieces.shape[:-1]``
        In [0, 1]: 1 hard VQ, 1/2 soft VQ, 0 uniform average over the (finite) pieces.
        May require grad.
    output : {"value", "probability"}
        ``"value"``: ``z``, shape (...); ``"probability"``: the code probabilities ``t``,
        shape (..., R).

    Returns
    -------
    Tensor
        Shape (...) for ``"value"``, (..., R) for ``"probability"``.

    Raises
    ------
    InputError
        If ``pieces`` has no piece dimension, ``beta`` is outside [0, 1], or ``output`` is
        unknown.

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)
    >>> p = torch.stack([torch.zeros_like(u), u], -1)  # ReLU pieces (0, u)
    >>> torch.allclose(soft_vq_pieces(p, 0.5), torch.nn.functional.silu(u))
    True
    >>> soft_vq_pieces(p, 1.0).tolist()
    [0.0, 0.0, 2.0]

    References
    ----------
    .. [1] R. Balestriero and R. G. Baraniuk, "From Hard to Soft", ICLR 2019.
    """
    _check_choice("output", output, _OUTPUTS)
    if pieces.dim() < 1 or pieces.shape[-1] < 1:
        raise InputError(
            f"pieces must have shape (..., R) with R >= 1 pieces in the last dimension; got "
            f"{tuple(pieces.shape)}"
        )
    return _soft_vq_eta(pieces, beta_to_eta(beta).to(pieces.dtype), output)


def _soft_vq_eta(pieces: torch.Tensor, eta: torch.Tensor, output: str) -> torch.Tensor:
    """:func:`soft_vq_pieces` given ``eta`` in [0, inf] broadcastable to ``pieces.shape[:-1]``."""
    eta = eta.unsqueeze(-1) if eta.dim() > 0 else eta
    hard = torch.isinf(eta)
    finite = torch.isfinite(pieces)
    # the shift is constant for the softmax, so it is detached: gradients stay exact
    top = pieces.detach().masked_fill(~finite, -torch.inf).amax(-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    diff = torch.where(finite, pieces - top, torch.zeros_like(pieces))
    # eta = inf is handled by the hard branch; making it finite here avoids inf * 0 = nan
    eta_soft = torch.where(hard, torch.zeros_like(eta), eta)
    logits = torch.where(finite, eta_soft * diff, torch.full_like(diff, -torch.inf))
    t = torch.softmax(logits, dim=-1)
    if bool(hard.any()):
        onehot = F.one_hot(pieces.argmax(-1), pieces.shape[-1]).to(pieces.dtype)
        t = torch.where(hard, onehot, t)
    if output == "probability":
        return t
    safe = torch.where(finite, pieces, torch.zeros_like(pieces))
    return (t * safe).sum(-1)


def soft_maso(maso: MASO, x: torch.Tensor, beta: BetaLike = 0.5, *,
              output: Output = "value") -> torch.Tensor:
    """Beta-VQ evaluation of a whole MASO: every unit's pieces combined softly.

    .. math::
        z_k(x) = \\sum_r \\operatorname{softmax}_r\\big(\\eta\\,(\\langle A_{k,r}, x\\rangle
        + B_{k,r})\\big)\\,(\\langle A_{k,r}, x\\rangle + B_{k,r}).

    Parameters
    ----------
    maso : MASO
        Slopes ``A`` (K, R, D) and offsets ``B`` (K, R).
    x : Tensor, shape (N, D)
    beta : float or Tensor broadcastable to (N, K)
    output : {"value", "probability"}

    Returns
    -------
    Tensor, shape (N, K) for values or (N, K, R) for probabilities

    Raises
    ------
    InputError
        As :func:`soft_vq_pieces`.

    References
    ----------
    .. [1] R. Balestriero and R. G. Baraniuk, "From Hard to Soft", ICLR 2019.
    """
    return soft_vq_pieces(maso.pieces(x), beta, output=output)


def _pair(v: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    if isinstance(v, int):
        out = (v,) * n
    else:
        out = tuple(int(a) for a in v)
    if len(out) != n or any(a < 1 for a in out):
        raise InputError(f"{name} must be a positive int or {n} positive ints; got {v!r}")
    return out


def _windows(u: torch.Tensor, kernel_size: int | Sequence[int] | None,
             stride: int | Sequence[int] | None) -> torch.Tensor:
    """Pooling windows of (N, C, L) or (N, C, H, W) as pieces, shape (N, C, *out, k)."""
    if kernel_size is None:
        raise InputError("pieces='maxpool' needs kernel_size (and optionally stride)")
    if u.dim() not in (3, 4):
        raise InputError(
            f"pieces='maxpool' needs an input of shape (N, C, L) or (N, C, H, W); got "
            f"{tuple(u.shape)}"
        )
    n = u.dim() - 2
    k = _pair(kernel_size, n, "kernel_size")
    s = _pair(stride if stride is not None else k, n, "stride")
    if any(kk > size for kk, size in zip(k, u.shape[2:])):
        raise InputError(f"kernel_size {k} is larger than the input's spatial shape "
                         f"{tuple(u.shape[2:])}")
    w = u
    for axis, (kk, ss) in enumerate(zip(k, s)):
        w = w.unfold(2 + axis, kk, ss)
    return w.reshape(*w.shape[: 2 + n], -1)


def beta_vq(u: torch.Tensor, pieces: Pieces = "relu", beta: BetaLike = 0.5, *,
            output: Output = "value", negative_slope: float = 0.01,
            kernel_size: int | Sequence[int] | None = None,
            stride: int | Sequence[int] | None = None) -> torch.Tensor:
    """Beta-VQ nonlinearity of pre-activations ``u`` for a standard family of pieces.

    .. math::
        z = \\sum_r \\operatorname{softmax}_r(\\eta\\, p_r(u))\\, p_r(u), \\qquad
        \\eta = \\frac{\\beta}{1-\\beta},

    with pieces ``(0, u)`` for ``"relu"``, ``(νu, u)`` for ``"leaky_relu"``, ``(-u, u)``
    for ``"abs"`` and the window elements for ``"maxpool"``. Closed forms (see the module
    docstring) are used; they agree with :func:`soft_vq_pieces` on the stacked pieces.

    Parameters
    ----------
    u : Tensor, shape (N, *) ; (N, C, L) or (N, C, H, W) for ``"maxpool"``
        Pre-activations.
    pieces : {"relu", "leaky_relu", "abs", "maxpool"}
    beta : float or Tensor broadcastable to ``u`` (to the pooled output for ``"maxpool"``)
        In [0, 1]; 1 hard (the MASO itself), 1/2 soft, 0 uniform.
    output : {"value", "probability"}
        The value ``z`` or the expected code (sigmoid, tanh or softmax shaped).
    negative_slope : float
        ν for ``"leaky_relu"``; must be < 1 so that ``max(νu, u)`` is the leaky ReLU.
    kernel_size, stride : int or tuple of ints
        Window for ``"maxpool"`` (stride defaults to ``kernel_size``; no padding).

    Returns
    -------
    Tensor
        Same shape as ``u``; for ``"maxpool"`` the pooled shape (N, C, *out), and for its
        probabilities (N, C, *out, window_size).

    Raises
    ------
    InputError
        On an unknown ``pieces`` or ``output``, ``beta`` outside [0, 1],
        ``negative_slope >= 1``, or a bad pooling shape.

    Examples
    --------
    >>> import torch
    >>> u = torch.linspace(-3, 3, 7, dtype=torch.float64)
    >>> torch.allclose(beta_vq(u, "relu", 0.5), torch.nn.functional.silu(u))
    True
    >>> torch.equal(beta_vq(u, "abs", 1.0), u.abs())
    True

    References
    ----------
    .. [1] R. Balestriero and R. G. Baraniuk, "From Hard to Soft", ICLR 2019.
    """
    _check_choice("pieces", pieces, _PIECES)
    _check_choice("output", output, _OUTPUTS)
    return _beta_vq_eta(u, pieces, beta_to_eta(beta).to(u.dtype), output, negative_slope,
                        kernel_size, stride)


def _beta_vq_eta(u: torch.Tensor, pieces: str, eta: torch.Tensor, output: str,
                 negative_slope: float, kernel_size, stride) -> torch.Tensor:
    """:func:`beta_vq` given ``eta`` in [0, inf] (broadcastable to the output)."""
    if pieces == "maxpool":
        return _soft_vq_eta(_windows(u, kernel_size, stride), eta, output)
    hard = torch.isinf(eta)
    if pieces == "leaky_relu":
        nu = float(negative_slope)
        if not nu < 1 or not math.isfinite(nu):
            raise InputError(
                f"negative_slope must be finite and < 1 (max(nu*u, u) is the leaky ReLU only "
                f"then); got {negative_slope!r}"
            )
        gain = 1.0 - nu
    else:
        nu, gain = 0.0, 1.0
    # eta = inf (beta = 1): use the hard code; elsewhere the closed form, with eta made
    # finite where it is inf so that no inf * 0 = nan can arise (even in gradients).
    eta_f = torch.where(hard, torch.zeros_like(eta), eta)
    if pieces == "abs":
        code = torch.tanh(eta_f * u)
        value = u * code
        hard_code, hard_value = torch.where(u > 0, 1.0, -1.0).to(u.dtype), u.abs()
    else:
        code = torch.sigmoid(eta_f * gain * u)
        value = nu * u + code * gain * u
        hard_code, hard_value = (u > 0).to(u.dtype), torch.where(u > 0, u, nu * u)
    out, hard_out = (code, hard_code) if output == "probability" else (value, hard_value)
    return torch.where(hard, hard_out, out) if bool(hard.any()) else out


class BetaVQ(nn.Module):
    """Beta-VQ activation: a MASO nonlinearity with soft, learnable code inference.

    .. math::
        z = \\sum_r t_r\\, p_r(u), \\qquad t = \\operatorname{softmax}(\\eta\\, p(u)),
        \\qquad \\eta = \\frac{\\beta}{1-\\beta}.

    With ``pieces="relu"``: ``beta=1`` is ReLU, ``beta=0.5`` is SiLU, a learned ``beta``
    is swish ``u * sigmoid(eta u)``. A learned ``beta`` is parametrized by its logit
    ``theta`` (``beta = sigmoid(theta)``, so ``eta = exp(theta)``), which keeps it in (0, 1).

    Parameters
    ----------
    pieces : {"relu", "leaky_relu", "abs", "maxpool"}
        Which MASO's pieces the activation is derived from.
    beta : float or sequence of floats (length ``num_channels``)
        Initial (or fixed) beta in [0, 1]; a learned beta must start in (0, 1).
    learn_beta : bool
        Learn beta (one per channel if ``num_channels`` is given, else one scalar).
    output : {"value", "probability"}
        The activation value, or the expected VQ code (sigmoid, tanh or softmax shaped).
    num_channels : int, optional
        Number of channels C along ``channel_dim`` for a per-channel beta.
    negative_slope : float
        ν for ``"leaky_relu"`` (< 1).
    kernel_size, stride : int or tuple of ints
        Window for ``"maxpool"`` on (N, C, L) or (N, C, H, W) inputs.
    channel_dim : int
        Dimension of the input holding the channels (1 for (N, C, ...)).
    dtype : torch.dtype, optional
        dtype of the beta parameter or buffer (default: torch's default dtype).

    Attributes
    ----------
    beta : Tensor, shape () or (C,)
        Current beta (a function of ``beta_logit`` when learned).
    eta : Tensor, shape () or (C,)
        Current inverse temperature.

    Raises
    ------
    InputError
        On unknown ``pieces``/``output``, beta outside [0, 1] (or not in (0, 1) when learned),
        a beta of the wrong length, or (at call time) an input whose channel count does
        not match ``num_channels``.

    Examples
    --------
    >>> import torch
    >>> act = BetaVQ("relu", beta=0.5, learn_beta=True, num_channels=4)
    >>> act(torch.randn(2, 4, 5)).shape
    torch.Size([2, 4, 5])
    >>> act.beta.detach()
    tensor([0.5000, 0.5000, 0.5000, 0.5000])

    References
    ----------
    .. [1] R. Balestriero and R. G. Baraniuk, "From Hard to Soft", ICLR 2019.
    .. [2] P. Ramachandran, B. Zoph and Q. V. Le, "Searching for Activation Functions",
       arXiv:1710.05941, 2017.
    """

    def __init__(self, pieces: Pieces = "relu", beta: float | Sequence[float] | torch.Tensor = 0.5,
                 *, learn_beta: bool = False, output: Output = "value",
                 num_channels: int | None = None, negative_slope: float = 0.01,
                 kernel_size: int | Sequence[int] | None = None,
                 stride: int | Sequence[int] | None = None, channel_dim: int = 1,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        _check_choice("pieces", pieces, _PIECES)
        _check_choice("output", output, _OUTPUTS)
        if pieces == "leaky_relu" and not float(negative_slope) < 1:
            raise InputError(f"negative_slope must be < 1; got {negative_slope!r}")
        if pieces == "maxpool":
            if kernel_size is None:
                raise InputError("BetaVQ(pieces='maxpool') needs kernel_size")
            if channel_dim != 1:
                raise InputError("BetaVQ(pieces='maxpool') pools (N, C, ...) inputs: "
                                 "channel_dim must be 1")
        if num_channels is not None and (int(num_channels) != num_channels or num_channels < 1):
            raise InputError(f"num_channels must be a positive int or None; got {num_channels!r}")
        self.pieces = pieces
        self.output = output
        self.num_channels = None if num_channels is None else int(num_channels)
        self.negative_slope = float(negative_slope)
        self.kernel_size = kernel_size
        self.stride = stride
        self.channel_dim = int(channel_dim)
        self.learn_beta = bool(learn_beta)

        b = torch.as_tensor(beta, dtype=dtype or torch.get_default_dtype()).detach().clone()
        beta_to_eta(b)  # validates the range
        if b.dim() > 1 or (b.dim() == 1 and self.num_channels is None):
            raise InputError(
                f"beta must be a scalar, or a vector of length num_channels; got shape "
                f"{tuple(b.shape)} with num_channels={num_channels}"
            )
        if self.num_channels is not None:
            if b.dim() == 1 and b.numel() != self.num_channels:
                raise InputError(f"beta has {b.numel()} values but num_channels={num_channels}")
            b = b.expand(self.num_channels).clone()
        if self.learn_beta:
            if bool(((b <= 0) | (b >= 1)).any()):
                raise InputError(
                    "a learned beta is parametrized by its logit and must start in the open "
                    f"interval (0, 1); got {b.flatten()[:5].tolist()}"
                )
            self.beta_logit = nn.Parameter(torch.logit(b))
        else:
            self.register_buffer("fixed_beta", b)

    @property
    def beta(self) -> torch.Tensor:
        """Current beta, shape () or (C,)."""
        if self.learn_beta:
            return torch.sigmoid(self.beta_logit)
        return self.fixed_beta

    @property
    def eta(self) -> torch.Tensor:
        """Current inverse temperature ``beta / (1 - beta)``, shape () or (C,)."""
        if self.learn_beta:
            return torch.exp(self.beta_logit)
        # validated once in __init__; re-checking here would sync a GPU on every forward
        return self.fixed_beta / (1 - self.fixed_beta)

    def _eta_for(self, u: torch.Tensor) -> torch.Tensor:
        """eta in ``u``'s dtype, shaped to broadcast along ``channel_dim``."""
        eta = self.eta.to(u.dtype)
        if self.num_channels is None:
            return eta
        dim = self.channel_dim if self.channel_dim >= 0 else u.dim() + self.channel_dim
        if not 0 <= dim < u.dim() or u.shape[dim] != self.num_channels:
            raise InputError(
                f"BetaVQ has num_channels={self.num_channels} along dim {self.channel_dim} "
                f"but got an input of shape {tuple(u.shape)}; pass channel_dim= or reshape"
            )
        shape = [1] * u.dim()
        shape[dim] = self.num_channels
        return eta.reshape(shape)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Apply the activation to pre-activations ``u``.

        Parameters
        ----------
        u : Tensor, shape (N, C, *) (or any shape when ``num_channels`` is None)

        Returns
        -------
        Tensor
            Same shape as ``u``; pooled shape for ``"maxpool"`` (with a trailing window
            dimension for its probabilities).
        """
        return _beta_vq_eta(u, self.pieces, self._eta_for(u), self.output,
                            self.negative_slope, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        parts = [f"pieces={self.pieces!r}", f"output={self.output!r}"]
        if self.num_channels is not None:
            parts.append(f"num_channels={self.num_channels}")
        parts.append("learn_beta=True" if self.learn_beta else
                     f"beta={self.fixed_beta.flatten()[:4].tolist()}")
        if self.pieces == "leaky_relu":
            parts.append(f"negative_slope={self.negative_slope}")
        if self.pieces == "maxpool":
            parts.append(f"kernel_size={self.kernel_size}, stride={self.stride}")
        return ", ".join(parts)


__all__ = ["BetaVQ", "beta_to_eta", "beta_vq", "soft_maso", "soft_vq_pieces"]
