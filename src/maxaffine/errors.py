"""One exception hierarchy for maxaffine.

Every error names the offending thing (module path, shape, value) and the way out.
"""

from __future__ import annotations

from dataclasses import dataclass


class MaxAffineError(Exception):
    """Root of every error raised by maxaffine."""


@dataclass(frozen=True)
class Offender:
    """One node of a traced model that cannot be handled.

    Attributes
    ----------
    path : str
        Module path (``"features.3"``) or graph-node name for functional calls.
    kind : str
        The module type or function name (``"GELU"``, ``"torch.softmax"``).
    reason : str
        Why it is refused.
    fix : str
        What the user can do instead.
    """

    path: str
    kind: str
    reason: str
    fix: str

    def __str__(self) -> str:
        return f"  - {self.path} ({self.kind}): {self.reason}. Fix: {self.fix}"


class _ListingError(MaxAffineError):
    """An error that lists every offender at once."""

    headline = "problems found"

    def __init__(self, offenders: list[Offender] | tuple[Offender, ...]):
        self.offenders = tuple(offenders)
        lines = [f"{len(self.offenders)} {self.headline}:"]
        lines += [str(o) for o in self.offenders]
        super().__init__("\n".join(lines))


class UnsupportedLayerError(_ListingError):
    """The model contains operations that are not (continuous) piecewise-affine, or unknown ops.

    ``offenders`` lists every one of them with its module path, type and fix.
    """

    headline = "unsupported operation(s) in the model"


class TrainingModeError(_ListingError):
    """A BatchNorm or Dropout module is in training mode, so it is not a fixed affine map."""

    headline = "module(s) in training mode (call model.eval() first)"


class NotConvexError(MaxAffineError):
    """A MASO view (pieces, power diagram) was asked of a node that is not a max of affine
    pieces: piecewise-affine but not convex (a clamp, a leaky ReLU with slope > 1), or a
    two-branch maximum whose branches are not stacked. Its A[x], codes and partitions are
    still exact.

    ``NotPiecewiseLinearError`` is the deprecated former name of this class.
    """


class InputError(MaxAffineError, ValueError):
    """Bad input: wrong shape, non-finite values, unknown layer name, bad arguments."""


class DegenerateSliceError(InputError):
    """A 2D slice or path has zero area or length, or collinear anchor points."""


class BudgetExceededError(MaxAffineError):
    """A computation budget was exceeded and no partial result could be returned."""


class BudgetWarning(UserWarning):
    """A budget stopped a computation early; the result is partial and flagged."""


__all__ = [
    "MaxAffineError",
    "Offender",
    "UnsupportedLayerError",
    "TrainingModeError",
    "NotConvexError",
    "InputError",
    "DegenerateSliceError",
    "BudgetExceededError",
    "BudgetWarning",
]


def __getattr__(name: str):
    if name == "NotPiecewiseLinearError":
        import warnings

        warnings.warn("NotPiecewiseLinearError is deprecated (the nodes it names are "
                      "piecewise-linear but not convex); catch NotConvexError", DeprecationWarning,
                      stacklevel=2)
        return NotConvexError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
