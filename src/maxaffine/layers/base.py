"""The rule contract: how one op family behaves as an affine map or a MASO.

A traced model is a graph of nodes. Every node that carries input-dependent tensors is
bound to a :class:`Rule`. With the VQ codes of all piecewise nodes fixed, every rule is an
affine map of its variable inputs; rules expose that map in three ways:

- :meth:`Rule.forward` -- the real op (what the torch model computes);
- :meth:`Rule.apply` -- the op with codes fixed, on inputs whose batch holds ``K`` copies per
  sample (sample ``b``, copy ``k`` at row ``b*K + k``); with ``bias=False`` only the linear
  part, which pushes tangents forward (forward-mode accumulation of ``A[x]``);
- :meth:`Rule.vjp` -- the transpose of the linear part, which pulls cotangents back
  (reverse-mode accumulation). The default uses autograd on :meth:`apply`; rules override it
  where a direct transpose is cheaper.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import fx, nn

from ..errors import Offender

if TYPE_CHECKING:
    from .switching import Switch


@dataclass
class NodeContext:
    """Everything a rule needs to evaluate one graph node.

    Attributes
    ----------
    node : torch.fx.Node
    module : nn.Module or None
        The module for ``call_module`` nodes.
    args, kwargs : resolved arguments (tensors, constants); in :meth:`Rule.apply` the
        variable tensors are the batched tangents.
    var : tuple of bool
        ``var[i]`` is True when positional argument ``i`` depends on the network input (for a
        list argument such as ``torch.cat``'s, a tuple of flags).
    """

    node: fx.Node
    module: nn.Module | None
    args: tuple
    kwargs: dict
    var: tuple

    def replace(self, args: tuple) -> NodeContext:
        return NodeContext(self.node, self.module, tuple(args), self.kwargs, self.var)

    def call(self, *args: Any, **kwargs: Any) -> Any:
        """Evaluate the node's own op on ``args`` (defaults to the context's)."""
        if not args:
            args = self.args
        kw = {**self.kwargs, **kwargs}
        node = self.node
        if node.op == "call_module":
            assert self.module is not None
            return self.module(*args, **kw)
        if node.op == "call_function":
            return node.target(*args, **kw)
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kw)
        raise RuntimeError(f"cannot call node {node.name} of kind {node.op}")

    @property
    def u(self) -> torch.Tensor:
        """The first positional argument (the pre-activation of a nonlinearity)."""
        return self.args[0]


def expand_code(code: torch.Tensor, K: int) -> torch.Tensor:
    """View a per-sample tensor (B, ...) as (B, 1, ...) so it broadcasts over K copies."""
    return code.unsqueeze(1)


def per_copy(t: torch.Tensor, K: int) -> torch.Tensor:
    """Reshape a batched tensor (B*K, ...) to (B, K, ...)."""
    return t.reshape(-1, K, *t.shape[1:])


def merge_copies(t: torch.Tensor) -> torch.Tensor:
    """Reshape (B, K, ...) back to (B*K, ...)."""
    return t.reshape(-1, *t.shape[2:])


class Rule:
    """Base class of all rules: everything the library needs to know about one op family.

    A rule is stateless (one instance serves every node bound to it); each method receives
    the node as a :class:`NodeContext`. Engines only call the methods below, so a subclass
    that implements them works in every analysis; :func:`maxaffine.testing.check_rule`
    checks each against an independent oracle.

    ============================  =====================================================
    method                        needed for
    ============================  =====================================================
    :meth:`forward`               every analysis (the real op; default ``ctx.call()``)
    :meth:`apply`, :meth:`vjp`    affine maps (forward and reverse mode)
    :meth:`code`                  piecewise rules: the VQ code
    :meth:`switching`             piecewise rules: partitions of slices and paths
    :meth:`pieces`                convex piecewise rules: MASO pieces, power diagrams
    :meth:`is_convex`,            the convexity prover, :func:`maxaffine.is_convex`
    :meth:`is_monotone`
    :meth:`check`                 refusing a node with a reason and a fix
    :meth:`examples`              conformance tests
    ============================  =====================================================

    Attributes
    ----------
    kind : {"affine", "piecewise", "shape"}
        ``affine``: an affine map of its variable inputs (R = 1 pieces).
        ``piecewise``: a continuous piecewise-affine nonlinearity with a VQ code.
        ``shape``: a rearrangement (reshape, permute, getitem) -- linear, no bias.
    convex : bool or None
        Default of :meth:`is_convex`: whether every output entry is convex in the node's
        inputs (for piecewise rules: a max of affine pieces, a MASO); None when unknown.
    monotone : bool or None
        Default of :meth:`is_monotone`: whether the op is non-decreasing in every input
        entry (for an affine op: its matrix is entrywise non-negative); None when unknown.
    refused : bool
        True for known ops that maxaffine refuses (they are not piecewise-affine, or not
        continuous); :meth:`check` then returns the offender with ``reason`` and
        ``description`` (the way out). Refused rules may still declare ``convex`` and
        ``monotone``: the convexity prover reads them.
    reason : str
        Why a refused op is refused.
    description : str
        One line for the table of supported ops (for a refused rule: the fix).
    """

    kind: ClassVar[str] = "affine"
    convex: ClassVar[bool | None] = True
    monotone: ClassVar[bool | None] = None
    refused: ClassVar[bool] = False
    reason: ClassVar[str] = ""
    description: ClassVar[str] = ""

    # -- validation -------------------------------------------------------------------
    def check(self, ctx: NodeContext, path: str) -> Offender | None:
        """Return an :class:`Offender` if this node cannot be handled (e.g. training mode)."""
        return None

    def training_mode(self, ctx: NodeContext) -> bool:
        """True if the node behaves stochastically / batch-dependently in its current mode."""
        return False

    # -- evaluation -------------------------------------------------------------------
    def forward(self, ctx: NodeContext) -> Any:
        """The real op on the real inputs."""
        return ctx.call()

    def code(self, ctx: NodeContext) -> torch.Tensor:
        """VQ code of a piecewise node from its real inputs: bool or integer, batch first."""
        raise NotImplementedError

    def apply(self, ctx: NodeContext, code: torch.Tensor | None, K: int, bias: bool) -> Any:
        """The op with ``code`` fixed, on inputs batched as ``B*K`` rows.

        With ``bias=False`` only the linear part (constants dropped)."""
        raise NotImplementedError

    def vjp(self, ctx: NodeContext, code: torch.Tensor | None, K: int,
            grad: torch.Tensor) -> list[torch.Tensor | None]:
        """Cotangents of the variable inputs, in order of appearance in ``ctx.var``.

        ``ctx.args`` hold zero tensors of the right (batched) shapes for the variable
        inputs. The default differentiates :meth:`apply` with ``bias=False`` by autograd,
        which is exact because the map is linear."""
        leaves: list[torch.Tensor] = []

        def make_leaf(value: Any, is_var: Any) -> Any:
            if isinstance(is_var, tuple):
                return type(value)(make_leaf(v, f) for v, f in zip(value, is_var))
            if is_var:
                leaf = torch.zeros(value.shape, dtype=grad.dtype, device=grad.device)
                leaf.requires_grad_(True)
                leaves.append(leaf)
                return leaf
            return value

        with torch.enable_grad():
            args = tuple(make_leaf(a, f) for a, f in zip(ctx.args, ctx.var))
            out = self.apply(ctx.replace(args), code, K, bias=False)
            grads = torch.autograd.grad(out, leaves, grad, allow_unused=True)
        return [g if g is not None else torch.zeros_like(leaf) for g, leaf in zip(grads, leaves)]

    # -- declared properties ------------------------------------------------------------
    def is_convex(self, ctx: NodeContext) -> bool | None:
        """Whether every output entry of this node (with its parameters) is convex in its
        inputs; for a piecewise rule, whether it is a max of affine pieces (a MASO).

        ``ctx``'s variable arguments may be None (the convexity prover runs without
        example inputs): read parameters and constant arguments only. None: unknown.
        """
        return self.convex

    def is_monotone(self, ctx: NodeContext) -> tuple[bool | None, ...]:
        """Whether this node is non-decreasing in each variable input, entrywise.

        For an affine op this says that the matrix of its linear part with respect to that
        input is entrywise non-negative (non-negative weights); for a nonlinearity that it
        is non-decreasing. ``ctx``'s variable arguments may be None, as in
        :meth:`is_convex`.

        Returns
        -------
        tuple of bool or None
            One entry per variable input, in the order of :meth:`vjp`'s cotangents (True:
            non-decreasing, False: not, None: unknown).
        """
        return (self.monotone,) * n_variables(ctx)

    def sign_code(self, ctx: NodeContext) -> bool:
        """True when the code is exactly ``u > 0`` of the first input, entrywise.

        Analyses then read code changes from the signs of ``u`` without forming codes
        (e.g. local complexity counts units whose ``u`` changes sign)."""
        return False

    # -- MASO view --------------------------------------------------------------------
    def pieces(self, ctx: NodeContext, A_pre: torch.Tensor, b_pre: torch.Tensor):
        """MASO pieces of a piecewise node from its pre-activation's affine map.

        Parameters
        ----------
        A_pre : Tensor, shape (B, U, D)
            Slopes of the U pre-activation units (the node's input, flattened).
        b_pre : Tensor, shape (B, U)

        Returns
        -------
        A : Tensor, shape (B, K, R, D); B : Tensor, shape (B, K, R); and a function mapping
        this rule's code (B, *out_shape) to piece indices (B, K).
        """
        from ..errors import NotConvexError

        raise NotConvexError(
            f"{type(self).__name__} is not a max-affine spline operator (not convex), so it has "
            f"no MASO pieces or power diagram; its A[x], codes and partitions are still exact"
        )

    # -- switching ----------------------------------------------------------------------
    def switching(self, ctx: NodeContext) -> Switch | None:
        """The functions whose zero sets cut the input space at this piecewise node.

        Parameters
        ----------
        ctx : NodeContext
            The node at a few reference inputs (batch N >= 1); constants, parameters and
            the per-sample shapes of the variable inputs are read from it.

        Returns
        -------
        Switch or None
            Built with :meth:`Switch.sign <maxaffine.layers.switching.Switch.sign>`,
            :meth:`Switch.breakpoints <maxaffine.layers.switching.Switch.breakpoints>`
            (elementwise units with constant breakpoints) or :meth:`Switch.argmax
            <maxaffine.layers.switching.Switch.argmax>` (max units). The code must be
            constant wherever no sign function changes sign (resp. no max unit's argmax
            changes). None (the default) when the rule declares none; the partitions
            refuse such a node.
        """
        return None

    # -- conformance ------------------------------------------------------------------
    @classmethod
    def examples(cls) -> Iterator[tuple[nn.Module, torch.Tensor]]:
        """Small modules exercising this rule, with example inputs (for conformance tests)."""
        return iter(())


class AffineRule(Rule):
    """An op whose variable inputs enter linearly, plus an optional constant.

    Subclasses declare :meth:`~Rule.is_monotone` (the sign of their linear map) so that the
    convexity prover can use them after a nonlinearity."""

    kind = "affine"


class ShapeRule(Rule):
    """A rearrangement of entries (reshape, permute, slicing, concatenation): linear, no bias."""

    kind = "shape"
    monotone = True  # each output entry is one input entry (or a constant)

    def apply(self, ctx: NodeContext, code, K: int, bias: bool) -> Any:
        return ctx.call()


class PiecewiseRule(Rule):
    """A continuous piecewise-affine elementwise nonlinearity with a per-unit VQ code."""

    kind = "piecewise"


def n_variables(ctx: NodeContext) -> int:
    """Number of variable (input-dependent) tensors among ``ctx``'s positional arguments."""

    def count(flags: Any) -> int:
        return sum(count(f) for f in flags) if isinstance(flags, tuple) else int(bool(flags))

    return count(ctx.var)


def numel(shape: Sequence[int]) -> int:
    return int(math.prod(shape))


# functions that are plain Python operators on tensors
ADD_OPS: tuple[Callable, ...] = (operator.add, operator.iadd, torch.add)
SUB_OPS: tuple[Callable, ...] = (operator.sub, operator.isub, torch.sub)
