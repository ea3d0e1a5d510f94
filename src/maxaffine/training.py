"""A small, plain PyTorch training loop with callbacks (no framework lock-in).

Penalties from :mod:`maxaffine.regularizers` plug in as ``penalty=``; measures such as
local complexity or Hessian complexity are tracked per epoch by callbacks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .errors import InputError


class Callback(Protocol):
    """Called after every epoch with the model (in eval mode) and the epoch index.

    Returns a dict of numbers to log for that epoch (or None).
    """

    def __call__(self, model: nn.Module, epoch: int) -> dict[str, float] | None: ...


@dataclass
class History:
    """Per-epoch logs: ``history.rows[i]`` is a dict of everything logged at epoch ``i``."""

    rows: list[dict[str, float]] = field(default_factory=list)

    def column(self, key: str) -> list[float]:
        return [row[key] for row in self.rows if key in row]

    @property
    def columns(self) -> list[str]:
        """Every logged key, in order of first appearance."""
        return list(dict.fromkeys(k for row in self.rows for k in row))

    def to_dict(self) -> dict[str, np.ndarray]:
        """One float column per logged key, aligned on the rows (epochs).

        A key missing from a row (a callback that skipped that epoch, e.g. ``every=5``)
        is NaN there, so every column has ``len(rows)`` entries.

        Examples
        --------
        >>> h = History([{"epoch": 0, "lc": 3.0}, {"epoch": 1}, {"epoch": 2, "lc": 5.0}])
        >>> h.to_dict()["lc"].tolist()
        [3.0, nan, 5.0]
        """
        return {k: np.array([float(row.get(k, np.nan)) for row in self.rows])
                for k in self.columns}

    def to_frame(self):
        """:meth:`to_dict` as a pandas DataFrame indexed by ``epoch`` (needs pandas)."""
        from ._tables import frame

        d = self.to_dict()
        if "epoch" in d:
            d["epoch"] = d["epoch"].astype(np.int64)
            return frame(d, index="epoch")
        return frame(d)

    def __repr__(self) -> str:
        cols = self.columns
        shown = ", ".join(cols[:8]) + (", ..." if len(cols) > 8 else "")
        return f"History(epochs={len(self.rows)}, columns=[{shown}])"


def set_num_threads(n: int) -> None:
    """Use ``n`` CPU threads for torch's intra-op work (``maxaffine.set_num_threads``).

    Small models (the toy nets and digits CNNs of the examples) train and analyse faster on
    one or two threads than on every core, and several processes on one machine otherwise
    oversubscribe the cores. Also sets torch's inter-op pool while torch still allows it
    (before any inter-op parallel work).

    Examples
    --------
    >>> import torch, maxaffine
    >>> before = torch.get_num_threads()
    >>> maxaffine.set_num_threads(1)
    >>> torch.get_num_threads()
    1
    >>> maxaffine.set_num_threads(before)
    """
    if int(n) != n or n < 1:
        raise InputError(f"set_num_threads needs a whole number of threads >= 1; got {n!r}")
    torch.set_num_threads(int(n))
    try:
        torch.set_num_interop_threads(int(n))
    except RuntimeError:  # settable once, before inter-op parallel work has started
        pass


def _resolve_penalty(penalty, weight: float, returns_outputs: bool):
    """The penalty callable, its weight and output mode; refuses silent no-ops."""
    from . import regularizers

    if penalty is None:
        return None, weight, returns_outputs
    if penalty is regularizers.hessian_penalty or penalty is regularizers.orthogonality_penalty:
        name = penalty.__name__
        obj = "HessianPenalty(augment=..., weight=...)" if name == "hessian_penalty" \
            else "OrthogonalityPenalty(weight=...)"
        raise InputError(f"penalty={name} is called as (model, xb, yb), which {name} does not "
                         f"take; pass maxaffine.regularizers.{obj} instead")
    if isinstance(penalty, regularizers._Penalty):
        return penalty, (penalty.weight if weight == 0.0 else weight), penalty.returns_outputs
    if not weight:
        raise InputError("a penalty was given with penalty_weight=0, so it would never be "
                         "evaluated; pass penalty_weight=λ > 0 (or a penalty object such as "
                         "maxaffine.regularizers.OrthogonalityPenalty(weight=λ))")
    return penalty, weight, returns_outputs


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Classification accuracy of ``model`` on ``(X, y)`` (model put in eval mode)."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=y.device)
    with torch.no_grad():
        for i in range(0, len(X), batch_size):
            correct += (model(X[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum()
    model.train(was_training)
    return int(correct) / max(len(X), 1)


def train(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, epochs: int = 20,
          lr: float = 1e-3, batch_size: int = 64, weight_decay: float = 0.0,
          loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
          penalty: Callable[[nn.Module, torch.Tensor, torch.Tensor],
                            torch.Tensor | tuple[torch.Tensor, torch.Tensor]] | None = None,
          penalty_weight: float = 0.0, penalty_every: int = 1,
          penalty_returns_outputs: bool = False,
          augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
          callbacks: Sequence[Callback] = (), X_test: torch.Tensor | None = None,
          y_test: torch.Tensor | None = None, seed: int = 0, progress: bool = True,
          optimizer: str = "adam") -> History:
    """Train ``model`` with minibatch Adam (or SGD) and log per-epoch numbers.

    The loss of step ``t = 0, 1, 2, …`` (counted over the whole run) is

    .. math::
        L_t = \\ell(f(x_b), y_b) + [t \\bmod k = 0]\\; k \\lambda\\, P(f, x_b, y_b)

    with ``ℓ = loss_fn`` (cross-entropy by default), ``λ = penalty_weight``,
    ``P = penalty`` and ``k = penalty_every``. With ``k > 1`` this is lazy regularization
    (Karras et al. 2020): the penalty, usually far costlier than the plain step, is evaluated
    on every ``k``-th step only, with its weight multiplied by ``k`` so that the expected
    penalty gradient per step is unchanged (the average over any ``k`` consecutive steps of
    ``[t mod k = 0]·k`` is 1). ``k = 1`` penalizes every step with weight ``λ``. Gradients
    are accumulated into the trained parameters only (``loss.backward(inputs=params)``): the
    penalty's input gradients, which double backpropagation would otherwise carry back to
    the batch, are not computed (3–5 % of a penalized step on the digits CNN).

    Parameters
    ----------
    model : nn.Module
    X : Tensor, shape (N, *in_shape)
    y : Tensor, shape (N,) or (N, C)
    penalty : callable (model, xb, yb) -> scalar tensor, optional
        A differentiable regularizer: a :class:`~maxaffine.regularizers.HessianPenalty` or
        :class:`~maxaffine.regularizers.OrthogonalityPenalty` (which carry their weight and
        share the loss's forward pass), or any callable, e.g.
        ``lambda m, xb, yb: orthogonality_penalty(m, xb)``.
    penalty_weight : float
        ``λ``. Default: the penalty object's ``weight``; a plain callable needs
        ``penalty_weight > 0`` (a penalty with weight 0 is refused rather than silently
        skipped).
    penalty_every : int
        ``k ≥ 1``: evaluate the penalty on steps ``0, k, 2k, …`` only, with weight ``k·λ``
        (lazy regularization). The logged loss includes the scaled penalty on those steps.
    penalty_returns_outputs : bool
        The penalty returns ``(value, outputs)`` with ``outputs = model(xb)`` from its own
        forward pass, e.g. ``lambda m, xb, yb: orthogonality_penalty(m, xb,
        return_outputs=True)``; on penalized steps the loss then uses these outputs instead
        of a second forward pass (shared forward; on the other steps ``model(xb)`` is run as
        usual).
    augment : callable (xb, generator) -> xb, optional
        Data augmentation applied to every minibatch.
    callbacks : sequence of callables (model, epoch) -> dict
        Called after every epoch (and once before training, with ``epoch = 0``) with the
        model in eval mode; their dicts are merged into the epoch's log row.

    Returns
    -------
    History
        Rows with ``epoch``, ``loss``, ``train_acc`` (and ``test_acc`` if test data is given)
        plus whatever the callbacks return.

    Raises
    ------
    InputError
        If ``penalty_every < 1``.
    ValueError
        For an unknown optimizer.

    References
    ----------
    Karras, Laine, Aittala, Hellsten, Lehtinen & Aila, "Analyzing and Improving the Image
    Quality of StyleGAN", CVPR 2020 (lazy regularization).
    """
    penalty, penalty_weight, penalty_returns_outputs = _resolve_penalty(
        penalty, penalty_weight, penalty_returns_outputs)
    if int(penalty_every) != penalty_every or penalty_every < 1:
        raise InputError(f"penalty_every must be an integer ≥ 1 (1 = penalize every step); "
                         f"got {penalty_every!r}")
    penalty_every = int(penalty_every)
    loss_fn = loss_fn or nn.functional.cross_entropy
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    history = History()
    classification = y.dtype in (torch.int64, torch.int32)

    def log(epoch: int, loss: float) -> None:
        row: dict[str, float] = {"epoch": epoch, "loss": loss}
        if classification:
            row["train_acc"] = accuracy(model, X, y)
            if X_test is not None and y_test is not None:
                row["test_acc"] = accuracy(model, X_test, y_test)
        model.eval()
        for cb in callbacks:
            row.update(cb(model, epoch) or {})
        history.rows.append(row)

    log(0, float("nan"))
    step = 0
    bar = tqdm(range(1, epochs + 1), desc="train", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(X), generator=gen)
        # the epoch's loss stays on the device: one transfer per epoch, not one per step
        total, count = torch.zeros((), dtype=torch.float64, device=X.device), 0
        order = order.to(X.device)
        for i in range(0, len(X), batch_size):
            idx = order[i:i + batch_size]
            xb, yb = X[idx], y[idx]
            if augment is not None:
                xb = augment(xb, gen)
            penalized = (penalty is not None and penalty_weight != 0.0
                         and step % penalty_every == 0)
            step += 1
            if penalized and penalty_returns_outputs:
                value, out = penalty(model, xb, yb)
                loss = loss_fn(out, yb) + (penalty_every * penalty_weight) * value
            else:
                loss = loss_fn(model(xb), yb)
                if penalized:
                    loss = loss + (penalty_every * penalty_weight) * penalty(model, xb, yb)
            opt.zero_grad(set_to_none=True)
            # only the trained parameters' gradients: a penalty differentiates with respect to
            # its inputs, and the input gradient of the first layer is not needed here
            loss.backward(inputs=params)
            opt.step()
            total += loss.detach().double() * len(idx)
            count += len(idx)
        mean_loss = float(total) / count
        log(epoch, mean_loss)
        bar.set_postfix(loss=f"{mean_loss:.4f}")
    model.eval()
    return history


__all__ = ["Callback", "History", "accuracy", "set_num_threads", "train"]
