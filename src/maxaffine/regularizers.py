"""Differentiable regularizers on the per-input affine maps: orthogonal templates and rugosity.

Both penalties are functions of the slopes ``A[x]`` (rows = class templates) and are computed
on the live model (its own dtype and parameters) with double backpropagation, so that
``loss = cross_entropy + lam * penalty`` trains through them. Each has an exact form
(``C`` reverse passes per sample) and a random-sign estimator whose cost does not grow with
the number of classes ``C``.

Cost model (one training step, reverse passes per sample, each with a graph for double
backprop): exact orthogonality ``C``; random orthogonality ``2·n_probes``; exact Hessian
``2C``; random Hessian ``2·n_probes``. For the random estimators the rows are tiled once per
sign vector, one forward and one reverse pass over the tiled batch (fewer, larger kernels),
while it has at most 256 rows; otherwise (and for the exact forms) the rows go through one
forward pass and one reverse pass per sign vector through that graph; a model with batch
statistics is never tiled. The loss can share the penalty's forward pass
(``return_outputs=True``): tiled, the outputs of the first copy, which is the batch itself.
Measured on a small digits CNN (batch 64, C = 10, one thread, ``benchmarks/regularizers.py``,
three runs), one training step with the penalty costs, relative to the plain cross-entropy
step: orthogonality exact 8.2–9.1×, random 3.2–3.5× / 4.2–4.8× / 7.0–7.4× (1 / 2 / 4
probes), and with the shared forward 2.4–2.8× / 3.6–4.1× (1 / 2 probes); Hessian exact
11.4–13.0×, random 3.3–3.7× / 4.6–4.9× (1 / 2 probes), with the shared forward 2.6–2.8× /
3.6–4.2×. Double backpropagation is the floor: the forward pass over the tiled rows, a
reverse pass with a graph, and the backward of both, whose second-order part also runs
back through the whole forward graph (ReLU and max-pool send zeros there). A cheaper
step on average comes from evaluating the penalty less often: lazy regularization
(``train(..., penalty_every=k)``, weight ×k; the penalized step itself costs as above)
averages 1.36–1.43× per step (random orthogonality, 2 probes, shared forward, k = 8) and
1.74–1.96× / 1.38–1.6× (random Hessian, 1 probe, shared forward, k = 2 / 4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .errors import InputError


def _batch_dependent(model: nn.Module) -> bool:
    """Whether some layer normalises with the statistics of the batch it sees.

    BatchNorm in training mode, or without running statistics, couples the rows of a batch:
    splitting or concatenating batches then changes the outputs.
    """
    return any(isinstance(mod, _BatchNorm) and (mod.training or mod.running_mean is None)
               for mod in model.modules())


# Tiling the rows once per sign vector (one forward, one reverse pass over m·N rows) issues
# fewer, larger kernels than one reverse pass per sign vector through one forward pass; it is
# faster while the tiled batch is small, with or without a shared forward (the two agree to a
# few per cent). Digits CNN, one thread, a training step tiled / untiled, 2 to 16 sign vectors
# on batches of 16 to 128: 0.5–1.0 up to 128 tiled rows, 0.7–1.03 at 256, 0.88–1.15 at 512,
# 1.08–1.43 at 1024. The first copy of the tiled rows is the batch itself, so its outputs
# serve as model(x) when the loss shares the forward pass.
_TILE_MAX_ROWS = 256


def _affine_rows(model: nn.Module, parts: list[torch.Tensor], make_cot, *,
                 layout: str, reps: int | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Rows ``s_kᵀ A[x]`` for every row of every part and ``m`` cotangent sets, with a graph.

    ``make_cot(C)`` gives the cotangents (m, N, C), ``N = Σ_j N_j``, rows in the order of the
    parts. ``layout``:

    * ``"joint"``: one forward pass over the parts concatenated, then one reverse pass with
      ``create_graph=True`` per cotangent set through that graph;
    * ``"per_part"``: the same with one forward pass per part (models with batch statistics);
    * ``"tiled"``: the parts concatenated and tiled ``reps = m`` times, one forward and one
      reverse pass over the ``m·N`` rows (rows must be independent: no batch statistics).

    Returns ``g`` (m, N, D), ``g[k, r] = cot[k, r]ᵀ A[x_r]``, and the model's outputs for each
    part (N_j, *out_shape), differentiable in the parameters; tiled, these are the outputs of
    the first copy, which is the parts themselves.

    A loop over the cotangent sets rather than one vmapped reverse pass
    (``is_grads_batched=True``): on the digits CNN of ``benchmarks/regularizers.py`` the loop
    was as fast or up to 10 % faster per training step, for 16 to 64 rows and 2 to 4 sign
    vectors (the vmapped double backward materialises the zero second derivatives of ReLU
    and max-pool at ``m`` times the batch size).
    """
    sizes = [p.shape[0] for p in parts]
    with torch.enable_grad():
        if layout == "tiled":
            z = torch.cat([p.detach() for p in parts])
            z = z.repeat(reps, *([1] * (z.dim() - 1))).requires_grad_(True)  # row k·N + r
            out = model(z)
            flat = out.reshape(out.shape[0], -1)
            cot = make_cot(flat.shape[1]).to(device=flat.device, dtype=flat.dtype)
            (g,) = torch.autograd.grad(flat, z, grad_outputs=cot.reshape(flat.shape),
                                       create_graph=True)
            return g.reshape(reps, sum(sizes), -1), list(out[: sum(sizes)].split(sizes))
        leaves = [p.detach().requires_grad_(True) for p in parts]
        if layout == "joint" and len(parts) > 1:
            outs = list(model(torch.cat(leaves)).split(sizes))
        else:
            outs = [model(leaf) for leaf in leaves]
        flat_parts = [o.reshape(o.shape[0], -1) for o in outs]
        cot = make_cot(flat_parts[0].shape[1]).to(device=flat_parts[0].device,
                                                  dtype=flat_parts[0].dtype)
        rows = []
        for cot_k in cot:
            grads = torch.autograd.grad(flat_parts, leaves, grad_outputs=list(cot_k.split(sizes)),
                                        create_graph=True, retain_graph=True)
            rows.append(torch.cat([g.reshape(g.shape[0], -1) for g in grads]))
    return torch.stack(rows), outs


def _layout(batch_dependent: bool, tiled_rows: int | None) -> str:
    """``"tiled"`` when the rows are independent and the tiled batch is small, else one pass.

    ``tiled_rows`` is None when the rows are not tiled (exact estimators: ``C`` or ``2C``
    copies of the batch would be far too many rows).
    """
    if batch_dependent:
        return "per_part"
    if tiled_rows is not None and tiled_rows <= _TILE_MAX_ROWS:
        return "tiled"
    return "joint"


def _check_x(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.dim() < 2 or x.shape[0] == 0:
        raise InputError(f"{name} must be a non-empty batch of shape (B, *in_shape); got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor; got {x.dtype}")
    return x


def _subsample(k: int | None, B: int, generator: torch.Generator | None) -> torch.Tensor | None:
    """Indices of a random subset of ``k`` of the ``B`` rows (None: all rows, ``k`` None or ≥ B)."""
    if k is None or int(k) >= B:
        return None
    if int(k) < 1:
        raise InputError(f"max_samples must be ≥ 1 (or None for the whole batch); got {k}")
    where = generator.device if generator is not None else "cpu"
    return torch.randperm(B, generator=generator, device=where)[: int(k)]


def _batch_outputs(model: nn.Module, x: torch.Tensor, idx: torch.Tensor | None,
                   out_sub: torch.Tensor, batch_dependent: bool) -> torch.Tensor:
    """``model(x)`` for the whole batch, reusing the outputs ``out_sub`` of the rows ``idx``.

    Without subsampling these are all rows. With it, the other rows get their own forward
    pass and the two are put back in batch order; a model with batch statistics is run once
    more on the whole batch instead, so that the outputs are exactly ``model(x)``.
    """
    if idx is None:
        return out_sub
    if batch_dependent:
        return model(x)
    keep = torch.ones(x.shape[0], dtype=torch.bool)
    keep[idx] = False
    rest = keep.nonzero().squeeze(1)
    inverse = torch.argsort(torch.cat([idx, rest])).to(out_sub.device)
    return torch.cat([out_sub, model(x[rest.to(x.device)])])[inverse]


def _signs(shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    # drawn where the generator lives (the host by default), moved by the caller
    where = generator.device if generator is not None else "cpu"
    return torch.randint(0, 2, shape, generator=generator, device=where).mul_(2).sub_(1).float()


def orthogonality_penalty(model: nn.Module, x: torch.Tensor, *, estimator: str = "random",
                          n_probes: int = 2, max_samples: int | None = None,
                          generator: torch.Generator | None = None, return_outputs: bool = False
                          ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
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
        ``A[x]`` are its input gradients). The (sub)batch tiled once per sign vector, one
        forward and one reverse pass over the tiled rows (at most 256 of them; beyond that, and
        for the exact estimator, one forward pass and one reverse pass per sign vector through
        it; same values). Layers with batch statistics (BatchNorm in training mode) see the
        batch as ``model(x)`` does (no tiling then).
    x : Tensor, shape (N, *in_shape)
    estimator : {"random", "exact"}
        ``"exact"``: ``C`` reverse passes per sample; ``"random"``: ``2·n_probes``.
    n_probes : int
        Number of independent pairs of sign vectors per sample (random estimator, ≥ 1).
    max_samples : int, optional
        Evaluate the penalty on a random subset of this many samples of the batch (drawn
        with ``generator``): still unbiased for the batch mean, cost scales with the subset.
    generator : torch.Generator, optional
        Source of the random signs (and of the subset for ``max_samples``).
    return_outputs : bool
        Also return ``model(x)`` (N, *out_shape) from the penalty's own forward pass, so that
        the loss can use it instead of a second forward pass (shared forward, see Examples).
        With ``max_samples`` the unpenalized rows get their own forward pass; a model that
        normalises with batch statistics (BatchNorm in training mode) is run once more on the
        whole batch, so the outputs are ``model(x)`` in every case.

    Returns
    -------
    Tensor, scalar
        Differentiable with respect to the model parameters (double backprop).
    Tensor, shape (N, *out_shape)
        With ``return_outputs`` only: ``model(x)``, differentiable with respect to the
        parameters.

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

    Shared forward: the cross-entropy uses the outputs of the penalty's forward pass.

    >>> pen, out = orthogonality_penalty(net, x, return_outputs=True)
    >>> (torch.nn.functional.cross_entropy(out, y) + 0.5 * pen).backward()

    References
    ----------
    Balestriero & Baraniuk, "A Spline Theory of Deep Networks", ICML 2018 (orthogonal
    templates regularization).
    """
    x = _check_x(x)
    if estimator not in ("exact", "random"):
        raise InputError(f"estimator must be 'exact' or 'random'; got {estimator!r}")
    if estimator == "random" and int(n_probes) < 1:
        raise InputError("n_probes must be ≥ 1 (each probe is a pair of sign vectors); "
                         f"got {n_probes}")
    idx = _subsample(max_samples, x.shape[0], generator)
    xs = x if idx is None else x[idx.to(x.device)]
    B = xs.shape[0]
    if estimator == "exact":
        # reverse pass k has cotangent e_k on every row: row k of A[x_n]
        def cot(C: int) -> torch.Tensor:
            return torch.eye(C).unsqueeze(1).expand(C, B, C)
    else:
        m = 2 * int(n_probes)

        def cot(C: int) -> torch.Tensor:
            return _signs((m, B, C), generator)

    batch_dependent = _batch_dependent(model)
    reps = None if estimator == "exact" else 2 * int(n_probes)
    layout = _layout(batch_dependent, None if reps is None else reps * B)
    g, (out,) = _affine_rows(model, [xs], cot, layout=layout, reps=reps)  # (m, B, D): s_kᵀ A[x_n]
    C = out[0].numel()
    if estimator == "exact":
        G = torch.einsum("cnd,knd->nck", g, g)
        off = G.pow(2).sum((1, 2)) - torch.diagonal(G, dim1=1, dim2=2).pow(2).sum(1)
    else:
        q = g.pow(2).sum(2)  # (m, B): s_kᵀ G s_k
        off = q.var(0, unbiased=True) / 2  # unbiased for Σ_{c≠c'} G²
    value = off.mean() / C**2
    if return_outputs:
        return value, _batch_outputs(model, x, idx, out, batch_dependent)
    return value


def hessian_penalty(model: nn.Module, x: torch.Tensor, x_aug: torch.Tensor, *,
                    estimator: str = "random", n_probes: int = 1, eps: float = 1e-4,
                    squared: bool = False, max_samples: int | None = None,
                    generator: torch.Generator | None = None, return_outputs: bool = False
                    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
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
        The live model. ``x`` and ``x_aug`` go through one forward pass together (tiled once
        per sign vector, at most 256 rows in all, one reverse pass), or, if the model has
        layers with batch statistics (BatchNorm in training mode), one each.
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
        Source of the random signs (and of the subset for ``max_samples``).
    return_outputs : bool
        Also return ``model(x)`` (N, *out_shape) from the penalty's own forward pass, so that
        the loss can use it instead of a second forward pass (shared forward, see Examples).
        With ``max_samples`` the unpenalized rows get their own forward pass; a model that
        normalises with batch statistics (BatchNorm in training mode) is run once more on the
        whole batch, so the outputs are ``model(x)`` in every case.

    Returns
    -------
    Tensor, scalar
        Differentiable with respect to the model parameters.
    Tensor, shape (N, *out_shape)
        With ``return_outputs`` only: ``model(x)`` (not ``model(x_aug)``).

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
    if estimator not in ("exact", "random"):
        raise InputError(f"estimator must be 'exact' or 'random'; got {estimator!r}")
    if estimator == "random" and int(n_probes) < 1:
        raise InputError(f"n_probes must be ≥ 1; got {n_probes}")
    idx = _subsample(max_samples, x.shape[0], generator)
    xs, xa = (x, x_aug) if idx is None else (x[idx.to(x.device)], x_aug[idx.to(x_aug.device)])
    B = xs.shape[0]
    if estimator == "exact":
        def cot(C: int) -> torch.Tensor:
            return torch.eye(C).unsqueeze(1).expand(C, 2 * B, C)
    else:
        m = int(n_probes)

        def cot(C: int) -> torch.Tensor:
            s = _signs((m, 1, B, C), generator).expand(m, 2, B, C)  # same s at x and T(x)
            return s.reshape(m, 2 * B, C)

    batch_dependent = _batch_dependent(model)
    # one forward pass over [x; T(x)] unless the model normalises with batch statistics: then
    # x and T(x) are separate batches, each as model(x) and model(x_aug) would see it
    reps = None if estimator == "exact" else int(n_probes)
    layout = _layout(batch_dependent, None if reps is None else reps * 2 * B)
    g, (out, _) = _affine_rows(model, [xs, xa.to(xs.dtype)], cot, layout=layout, reps=reps)
    sq = (g[:, :B] - g[:, B:]).pow(2).sum(2)  # (m, B): ||Δ_nᵀ s||²
    sq = sq.sum(0) if estimator == "exact" else sq.mean(0)
    value = sq.mean() if squared else torch.sqrt(sq + eps).mean()
    if return_outputs:
        return value, _batch_outputs(model, x, idx, out, batch_dependent)
    return value


class _Penalty:
    """Shared plumbing of the penalty objects that :func:`maxaffine.training.train` accepts."""

    weight: float
    shared_forward: bool
    seed: int

    def __post_init__(self) -> None:
        if not (isinstance(self.weight, (int, float)) and self.weight > 0):
            raise InputError(f"{type(self).__name__} weight must be a positive number (the "
                             f"λ of loss + λ·penalty); got {self.weight!r}")
        object.__setattr__(self, "_generator", torch.Generator().manual_seed(int(self.seed)))

    @property
    def returns_outputs(self) -> bool:
        """Whether calls return ``(value, model(xb))`` (the loss then reuses the forward)."""
        return bool(self.shared_forward)


@dataclass(frozen=True)
class OrthogonalityPenalty(_Penalty):
    """:func:`orthogonality_penalty` as an object for ``train(penalty=...)``.

    ``train(model, X, y, penalty=OrthogonalityPenalty(weight=0.1))`` adds
    ``weight · orthogonality_penalty(model, xb)`` to every step's loss (the weight is the
    object's unless ``penalty_weight=`` is given). With ``shared_forward`` the loss uses the
    penalty's own forward pass. Random signs come from a generator seeded by ``seed``.

    Examples
    --------
    >>> import torch
    >>> from maxaffine.regularizers import OrthogonalityPenalty
    >>> from maxaffine.training import train
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> X, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    >>> h = train(net, X, y, epochs=1, penalty=OrthogonalityPenalty(weight=0.1), progress=False)
    >>> len(h.rows)
    2
    """

    weight: float = 1.0
    estimator: str = "random"
    n_probes: int = 1
    max_samples: int | None = None
    shared_forward: bool = True
    seed: int = 0

    def __call__(self, model: nn.Module, xb: torch.Tensor, yb: torch.Tensor | None = None):
        return orthogonality_penalty(model, xb, estimator=self.estimator, n_probes=self.n_probes,
                                     max_samples=self.max_samples,
                                     generator=self._generator,  # type: ignore[attr-defined]
                                     return_outputs=self.shared_forward)


@dataclass(frozen=True)
class HessianPenalty(_Penalty):
    """:func:`hessian_penalty` as an object for ``train(penalty=...)``.

    Each step draws the augmentation ``T(xb) = augment(xb, generator)`` (for example
    :func:`maxaffine.transforms.shift_rotate`) and adds
    ``weight · hessian_penalty(model, xb, T(xb))`` to the loss.

    Examples
    --------
    >>> import torch
    >>> from maxaffine.regularizers import HessianPenalty
    >>> from maxaffine.training import train
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> X, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    >>> jitter = lambda xb, g: xb + 0.05 * torch.randn(xb.shape, generator=g)
    >>> h = train(net, X, y, epochs=1, penalty=HessianPenalty(jitter, weight=0.1), progress=False)
    >>> len(h.rows)
    2
    """

    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor]
    weight: float = 1.0
    estimator: str = "random"
    n_probes: int = 1
    eps: float = 1e-4
    squared: bool = False
    max_samples: int | None = None
    shared_forward: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not callable(self.augment):
            raise InputError("HessianPenalty needs augment=, a callable (xb, generator) -> "
                             "augmented xb, e.g. maxaffine.transforms.shift_rotate")
        super().__post_init__()

    def __call__(self, model: nn.Module, xb: torch.Tensor, yb: torch.Tensor | None = None):
        g = self._generator  # type: ignore[attr-defined]
        with torch.no_grad():
            x_aug = self.augment(xb, g)
        return hessian_penalty(model, xb, x_aug, estimator=self.estimator,
                               n_probes=self.n_probes, eps=self.eps, squared=self.squared,
                               max_samples=self.max_samples, generator=g,
                               return_outputs=self.shared_forward)


__all__ = ["HessianPenalty", "OrthogonalityPenalty", "hessian_penalty", "orthogonality_penalty"]
