"""Switching functions: how a piecewise node cuts the input space into regions.

With the codes of every earlier node fixed, the unit inputs of a piecewise node are affine
on a region; the node's own code changes only where one of its *switching functions*
changes sign. A rule declares them through :meth:`~maxaffine.layers.base.Rule.switching`,
which returns a :class:`Switch` of one of two kinds:

``sign``
    ``F`` scalar functions ``g_f`` of the unit inputs whose zero sets cut (``u`` for a
    ReLU-like unit, ``u - lo`` and ``u - hi`` for a clamp, ``a - b`` for an elementwise
    maximum). The code is constant wherever no ``g_f`` changes sign.
``argmax``
    ``K`` max units, each the maximum of up to ``R`` pre-activation entries listed in a
    table ``(K, R)`` (``-1`` pads shorter windows); regions are cut into argmax cells by
    the pairwise differences of each unit's entries (max-pooling, maxout).

The partition engine (:func:`maxaffine.partition_slice`) and the path partition
(:func:`maxaffine.partition_path`) only ever read a :class:`Switch`; a rule that returns
one works in both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .base import NodeContext


def with_var_args(ctx: NodeContext, values: list) -> NodeContext | None:
    """``ctx`` with its input-dependent positional arguments replaced by ``values`` (None
    when a variable argument is a list, e.g. ``torch.cat``'s)."""
    if any(isinstance(f, tuple) for f in ctx.var):
        return None
    it = iter(values)
    return ctx.replace(tuple(next(it) if f else a for a, f in zip(ctx.args, ctx.var)))


def flat_inputs(ins: list) -> np.ndarray:
    """The first unit input (N, ...) flattened to (N, U) as a numpy array."""
    return ins[0].reshape(len(ins[0]), -1).numpy()


class Switch:
    """The switching functions of one piecewise node (see the module docstring).

    Build one with :meth:`sign`, :meth:`argmax` or :meth:`breakpoints` rather than
    directly.

    Attributes
    ----------
    kind : {"sign", "argmax"}
    n_functions : int
        ``F`` (sign) or ``K``, the number of max units (argmax).
    unit : ndarray of int, shape (F,) or None
        Sign kind: a label for each function (the unit it belongs to; functions of one unit
        that can cut on different lines get different labels, e.g. a clamp's ``u - lo``
        and ``u - hi``).
    table : ndarray of int, shape (K, R) or None
        Argmax kind: flattened indices into the first unit input of the entries each max
        unit compares (-1: padding).
    fn : callable
        ``fn(ins) -> ndarray (N, F)``: the function values from the unit inputs ``ins``
        (the node's variable positional arguments, each (N, ...)). For the argmax kind the
        values are the flattened first unit input (N, U), indexed by ``table``.
    ctx : NodeContext
        The node at some reference inputs (its constants and shapes are read from it).
    rule : Rule
    """

    def __init__(self, kind: str, n_functions: int, ctx: NodeContext, rule: Any, *,
                 fn: Callable[[list], np.ndarray],
                 ins_of: Callable[[np.ndarray], list] | None = None,
                 code_of: Callable[[np.ndarray], torch.Tensor] | None = None,
                 unit: np.ndarray | None = None, table: np.ndarray | None = None):
        if kind not in ("sign", "argmax"):
            raise ValueError(f"a switch is of kind 'sign' or 'argmax', not {kind!r}")
        self.kind = kind
        self.n_functions = n_functions
        self.unit = unit
        self.table = table
        self.fn = fn
        self.ctx = ctx
        self.rule = rule
        self._ins_of = ins_of
        self._code_of = code_of

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def sign(cls, ctx: NodeContext, rule: Any, fn: Callable[[list], np.ndarray],
             unit: np.ndarray, *, ins_of: Callable[[np.ndarray], list] | None = None,
             code_of: Callable[[np.ndarray], torch.Tensor] | None = None) -> Switch:
        """Sign switching functions.

        Parameters
        ----------
        ctx : NodeContext
        rule : Rule
        fn : callable
            ``fn(ins) -> ndarray (N, F)``: function values from the unit inputs.
        unit : ndarray of int, shape (F,)
            Label of each function.
        ins_of : callable, optional
            ``ins_of(Z) -> list of ndarray``: the unit inputs (N, ...) at points with
            function values ``Z`` (N, F), where the functions determine them (a ReLU's
            ``u`` is its function). Lets the engine continue the network from a node's
            function values without another forward pass.
        code_of : callable, optional
            ``code_of(Z) -> Tensor (N, ...)``: the node's codes at points with function
            values ``Z``. The default applies :meth:`Rule.code` to ``ins_of(Z)``.
        """
        return cls("sign", len(unit), ctx, rule, fn=fn, ins_of=ins_of, code_of=code_of,
                   unit=np.asarray(unit, dtype=np.int64))

    @classmethod
    def argmax(cls, ctx: NodeContext, rule: Any, table: torch.Tensor | np.ndarray) -> Switch:
        """Argmax cells of max units.

        Parameters
        ----------
        ctx : NodeContext
        rule : Rule
        table : Tensor or ndarray of int, shape (K, R)
            Flattened indices into the first unit input (per sample) of the entries each
            of the K max units compares; -1 pads units with fewer than R entries.
        """
        table = table.cpu().numpy() if isinstance(table, torch.Tensor) else np.asarray(table)
        ushape = tuple(ctx.u.shape[1:])
        return cls("argmax", int(table.shape[0]), ctx, rule, fn=flat_inputs, table=table,
                   ins_of=lambda Z: [Z.reshape((len(Z),) + ushape)])

    @classmethod
    def breakpoints(cls, ctx: NodeContext, rule: Any, points: Sequence[float], *,
                    code_of: Callable[[np.ndarray], torch.Tensor] | None = None) -> Switch:
        """Elementwise units of one input ``u`` with constant breakpoints ``c_j``.

        The functions are ``u - c_j`` for every finite ``c_j``, unit by unit within each
        breakpoint (unit ``i``'s function of breakpoint ``j`` is labelled ``j U + i``).
        Covers ReLU-like units (``points=[0]``), clamps (``[lo, hi]``), shrinkage
        (``[-λ, λ]``).

        Parameters
        ----------
        ctx : NodeContext
        rule : Rule
        points : sequence of float
            The breakpoints (infinite ones are dropped: no cut).
        code_of : callable, optional
            As in :meth:`sign`; by default the rule's code of the recovered ``u``.
        """
        index = [j for j, c in enumerate(points) if math.isfinite(c)]
        parts = [float(points[j]) for j in index]
        ushape = tuple(ctx.u.shape[1:])
        U = math.prod(ushape)
        unit = (np.arange(U, dtype=np.int64)[None] + U * np.asarray(index, np.int64)[:, None])
        unit = unit.reshape(-1)
        ins_of: Callable[[np.ndarray], list] | None = None
        if parts == [0.0]:  # the function is u itself: no copies
            fn = flat_inputs
            ins_of = lambda Z: [Z.reshape((len(Z),) + ushape)]
        else:
            def fn(ins):
                u = flat_inputs(ins)
                return (np.concatenate([u - c for c in parts], axis=1) if parts
                        else np.zeros((u.shape[0], 0)))

            if parts:
                c0 = parts[0]
                ins_of = lambda Z: [(Z[:, :U] + c0).reshape((len(Z),) + ushape)]
        return cls.sign(ctx, rule, fn, unit, ins_of=ins_of, code_of=code_of)

    # -- reading values back --------------------------------------------------------------
    def ins_of(self, Z: np.ndarray) -> list | None:
        """The unit inputs at points with function values ``Z`` (N, F), or None."""
        if self._ins_of is None:
            return None
        return [torch.from_numpy(np.ascontiguousarray(v)) for v in self._ins_of(Z)]

    def code_of(self, Z: np.ndarray) -> torch.Tensor | None:
        """The node's codes (N, ...) at points with function values ``Z`` (N, F), or None.

        The functions are affine on a region, so the mean of a region's vertex values
        gives its code."""
        if self.kind == "argmax":
            # a window's elements can tie on a whole region (saturated or dead inputs), where
            # the code is the first maximal index; means of interpolated vertex values blur
            # such exact ties, so argmax codes come from a forward pass instead
            return None
        if self._code_of is not None:
            return self._code_of(Z)
        ins = self.ins_of(Z)
        ctx = None if ins is None else with_var_args(self.ctx, ins)
        return None if ctx is None else self.rule.code(ctx)

    def value_of(self, Z: np.ndarray) -> torch.Tensor | None:
        """The node's output at points with function values ``Z`` (N, F), if determined."""
        ins = self.ins_of(Z)
        ctx = None if ins is None else with_var_args(self.ctx, ins)
        return None if ctx is None else self.rule.forward(ctx)


__all__ = ["Switch", "flat_inputs", "with_var_args"]
