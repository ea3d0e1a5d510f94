"""Differentiable regularizers on the per-input affine maps: orthogonal templates and rugosity.

Both penalties are functions of the slopes ``A[x]`` (rows = class templates) and are computed
on the live model (its own dtype and parameters) with double backpropagation, so that
``loss = cross_entropy + lam * penalty`` trains through them. Each has an exact form
(``C`` reverse passes per sample) and a random-sign estimator whose cost does not grow with
the number of classes ``C``.

Cost model (one training step, reverse passes per sample, each with a graph for double
backprop): exact orthogonality ``C``; random orthogonality ``2·n_probes``; exact Hessian
``2C``; random Hessian ``2·n_probes``. All rows go through one batched forward and one
batched reverse pass. Measured on a small digits CNN (batch 64, C = 10,
``benchmarks/regularizers.py``), one training step costs, relative to plain cross-entropy:
orthogonality exact 8.6×, random 3.3× / 4.3× / 6.7× (1 / 2 / 4 probes); Hessian exact 18.5×,
random 3.4× (1 probe); with ``max_samples=16`` of 64 the random penalties cost 2.3×. Double
backpropagation itself (a reverse pass with a graph, then its reverse) is the floor: about
three plain steps' worth of work on the tiled rows.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import InputError


def _input_vjp(model: nn.Module, x: torch.Tensor, reps: int,
               make_cot) -> torch.Tensor:
    """Rows ``uᵀ A[x]`` for ``x`` repeated ``reps`` times, with a graph for double backprop.

    ``x`` (B, *in) is tiled to (reps*B, *in) (row ``k*B + n`` is sample ``n``), pushed through
    the model once, and ``make_cot(C)`` gives the cotangents (reps*B, C). Returns
    (reps, B, D).
    """
    B = x.shape[0]
    xr = x.detach().repeat(reps, *([1] * (x.dim() - 1))).requires_grad_(True)
    with torch.enable_grad():
        out = model(xr)
        out = out.reshape(out.shape[0], -1)
        cot = make_cot(out.shape[1]).to(out.dtype)
        (g,) = torch.autograd.grad(out, xr, grad_outputs=cot, create_graph=True)
    return g.reshape(reps, B, -1)


def _check_x(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.dim() < 2 or x.shape[0] == 0:
        raise InputError(f"{name} must be a non-empty batch of shape (B, *in_shape); got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor; got {x.dtype}")
    return x


def _subsample(k: int | None, generator: torch.Generator | None,
               *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The same random subset of ``k`` rows of every tensor (all rows if ``k`` is None/≥ B)."""
    B = xs[0].shape[0]
    if k is None or int(k) >= B:
        return xs
    if int(k) < 1:
        raise InputError(f"max_samples must be ≥ 1; got {k}")
    idx = torch.randperm(B, generator=generator)[: int(k)].to(xs[0].device)
    return tuple(t[idx] for t in xs)


def _signs(shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    return torch.randint(0, 2, shape, generator=generator).mul_(2).sub_(1).float()


def orthogonality_penalty(model: nn.Module, x: torch.Tensor, *, estimator: str = "random",
                          n_probes: int = 2, max_samples: int | None = None,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """Orthogonal-template penalty: squared inner products between different classes' templates.

    .. math::
        P = \\frac{1}{N C^2} \\sum_{n=1}^{N} \\sum_{c \\ne c'}
            \\langle A_c[x_n], A_{c'}[x_n]\\rangle^2
          = \\frac{1}{N C^2} \\sum_n \\sum_{c\\ne c'} G_{cc'}(x_n)^2,\\quad G = A A^\\top

    (the mean over all ``(c, c', n)`` of ``(1 - δ_{cc'}) <A_c, A_{c'}>²``).

    The ``"random"`` estimator draws ``2·n_probes`` independent sign vectors
    ``s ∈ {±1}^C`` per sample and uses ``q = sᵀ G s = ||Aᵀ s||²`` (one reverse pass each).
    Since :math:`E[q^2] - E[q]^2 = 2\\sum_{c\\ne c'} G_{cc'}^2`, the unbiased sample
    variance of the ``q``'s (divisor ``2·n_probes − 1``) divided by 2 is an unbiased estimate
    of :math:`\\sum_{c \\ne c'} G_{cc'}^2` for every sample. Its variance falls like
    ``1 / n_probes``; the cost does not depend on ``C``.

    Parameters
    ----------
    model : nn.Module
        The live model (any differentiable model; for a piecewise-affine one the rows of
        ``A[x]`` are its input gradients). Batch-dependent layers (BatchNorm in training mode)
        see the batch tiled, which leaves batch statistics unchanged.
    x : Tensor, shape (N, *in_shape)
    estimator : {"random", "exact"}
        ``"exact"``: ``C`` reverse passes per sample; ``"random"``: ``2·n_probes``.
    n_probes : int
        Number of independent pairs of sign vectors per sample (random estimator, ≥ 1).
    max_samples : int, optional
        Evaluate the penalty on a random subset of this many samples of the batch (drawn
        with ``generator``): still unbiased for the batch mean, cost scales with the subset.
    generator : torch.Generator, optional
        Source of the random signs.

    Returns
    -------
    Tensor, scalar
        Differentiable with respect to the model parameters (double backprop).

    Raises
    ------
    InputError
        For an unknown estimator, ``n_probes < 1`` or a malformed ``x``.

    Examples
    --------
    >>> import torch
    >>> from maxaffine.regularizers import orthogonality_penalty
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    >>> x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    >>> loss = torch.nn.functional.cross_entropy(net(x), y) + 0.5 * orthogonality_penalty(net, x)
    >>> loss.backward()

    References
    ----------
    Balestriero & Baraniuk, "A Spline Theory of Deep Networks", ICML 2018 (orthogonal
    templates regularization).
    """
    x = _check_x(x)
    (x,) = _subsample(max_samples, generator, x)
    B = x.shape[0]
    if estimator == "exact":
        C = _n_outputs(model, x)
        # row k*B + n of the tiled batch is sample n with cotangent e_k
        eye = lambda C_: torch.eye(C_).repeat_interleave(B, 0)  # noqa: E731
        A = _input_vjp(model, x, C, eye)  # (C, B, D)
        G = torch.einsum("cnd,knd->nck", A, A)
        off = G.pow(2).sum((1, 2)) - torch.diagonal(G, dim1=1, dim2=2).pow(2).sum(1)
        return off.mean() / C**2
    if estimator != "random":
        raise InputError(f"estimator must be 'exact' or 'random'; got {estimator!r}")
    if int(n_probes) < 1:
        raise InputError(f"n_probes must be ≥ 1 (each probe is a pair of sign vectors); got {n_probes}")
    m = 2 * int(n_probes)
    state: dict[str, torch.Tensor] = {}

    def signs(C: int) -> torch.Tensor:
        state["C"] = torch.tensor(C)
        return _signs((m * B, C), generator).to(x.device)

    g = _input_vjp(model, x, m, signs)  # (m, B, D)
    q = g.pow(2).sum(2)  # (m, B): s_iᵀ G s_i
    off = q.var(0, unbiased=True) / 2  # unbiased for Σ_{c≠c'} G²
    C = int(state["C"])
    return off.mean() / C**2


def _n_outputs(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad():
        out = model(x[:1])
    return int(out[0].numel())


def hessian_penalty(model: nn.Module, x: torch.Tensor, x_aug: torch.Tensor, *,
                    estimator: str = "random", n_probes: int = 1, eps: float = 1e-4,
                    squared: bool = False, max_samples: int | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Hessian (rugosity) penalty: change of the affine map between a point and its augmentation.

    .. math::
        H = \\frac1N \\sum_{n=1}^{N} \\sqrt{\\textstyle\\sum_c
            \\|A_c[x_n] - A_c[T(x_n)]\\|_2^2 + \\epsilon}
          = \\frac1N \\sum_n \\sqrt{\\|\\Delta_n\\|_F^2 + \\epsilon},
        \\quad \\Delta_n = A[x_n] - A[T(x_n)]

    The ``"random"`` estimator replaces :math:`\\|\\Delta_n\\|_F^2` by the Hutchinson estimate
    :math:`\\frac1m\\sum_{i=1}^m \\|\\Delta_n^\\top s_i\\|^2` with ``m = n_probes`` random sign
    vectors over classes (two reverse passes per probe: at ``x_n`` and at ``T(x_n)``, with the
    same ``s``). That estimate is unbiased; its variance is
    :math:`\\frac2m(\\|\\Delta\\Delta^\\top\\|_F^2 - \\sum_c (\\Delta\\Delta^\\top)_{cc}^2)`.
    The square root makes the penalty itself biased low (Jensen), by at most a relative
    ``Var/(8 E²)`` to second order; use ``squared=True`` for the unbiased squared form.

    Parameters
    ----------
    model : nn.Module
        The live model.
    x, x_aug : Tensor, shape (N, *in_shape)
        Points and their augmentations ``T(x_n)``, paired row by row.
    estimator : {"random", "exact"}
        ``"exact"``: ``2C`` reverse passes per sample; ``"random"``: ``2·n_probes``.
    n_probes : int
        Sign vectors per sample (random estimator, ≥ 1).
    eps : float
        The ``ε`` under the square root (keeps the gradient finite at ``Δ = 0``).
    squared : bool
        Return :math:`\\frac1N\\sum_n \\|\\Delta_n\\|_F^2` (no square root, no ``ε``).
    max_samples : int, optional
        Evaluate the penalty on a random subset of this many samples of the batch (drawn
        with ``generator``): still unbiased for the batch mean, cost scales with the subset.
    generator : torch.Generator, optional

    Returns
    -------
    Tensor, scalar
        Differentiable with respect to the model parameters.

    Raises
    ------
    InputError
        If ``x_aug`` does not match ``x``, for an unknown estimator, or ``n_probes < 1``.

    Examples
    --------
    >>> import torch
    >>> from maxaffine.regularizers import hessian_penalty
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    >>> x = torch.randn(8, 4)
    >>> hessian_penalty(net, x, x + 0.1 * torch.randn(8, 4)).backward()

    References
    ----------
    LeJeune, Balestriero, Javadi & Baraniuk, "Implicit Rugosity Regularization via Data
    Augmentation", arXiv:1905.11639, 2019.
    """
    x = _check_x(x)
    x_aug = _check_x(x_aug, "x_aug")
    if x_aug.shape != x.shape:
        raise InputError(f"x_aug must have the shape of x {tuple(x.shape)}; got {tuple(x_aug.shape)}")
    x, x_aug = _subsample(max_samples, generator, x, x_aug)
    B = x.shape[0]
    both = torch.cat([x, x_aug.to(x.dtype)])
    if estimator == "exact":
        C = _n_outputs(model, x)
        A = _input_vjp(model, both, C, lambda C_: torch.eye(C_).repeat_interleave(2 * B, 0))
        d = A[:, :B] - A[:, B:]  # (C, B, D)
        sq = d.pow(2).sum((0, 2))
    elif estimator == "random":
        if int(n_probes) < 1:
            raise InputError(f"n_probes must be ≥ 1; got {n_probes}")
        m = int(n_probes)

        def signs(C: int) -> torch.Tensor:
            s = _signs((m, 1, B, C), generator).expand(m, 2, B, C)  # same s at x and T(x)
            return s.reshape(m * 2 * B, C).to(x.device)

        g = _input_vjp(model, both, m, signs).reshape(m, 2, B, -1)
        sq = (g[:, 0] - g[:, 1]).pow(2).sum(2).mean(0)
    else:
        raise InputError(f"estimator must be 'exact' or 'random'; got {estimator!r}")
    if squared:
        return sq.mean()
    return torch.sqrt(sq + eps).mean()


__all__ = ["hessian_penalty", "orthogonality_penalty"]
