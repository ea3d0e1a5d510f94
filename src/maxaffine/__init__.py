"""maxaffine: exact max-affine spline (MASO) geometry of deep networks.

Every network built from affine ops and convex piecewise-affine nonlinearities is a
composition of max-affine spline operators; on the region containing ``x`` it is exactly
affine, ``f(x) = A[x] x + b[x]``. maxaffine traces a PyTorch model, computes ``A[x]``,
``b[x]``, the VQ codes (which piece every unit uses), power diagrams, partitions of 2D
slices and 1D paths, templates, complexity measures and regularizers.

Public names are loaded on first use, so ``import maxaffine`` stays light and never
imports matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Functions that share their module's name are bound eagerly: importing the submodule
# later must not replace the function on the package.
from .templates import templates as templates
from .trace import Trace as Trace
from .trace import trace as trace

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    # errors
    "MaxAffineError": "errors",
    "UnsupportedLayerError": "errors",
    "TrainingModeError": "errors",
    "NotConvexError": "errors",
    "NotPiecewiseLinearError": "errors",  # deprecated alias of NotConvexError
    "InputError": "errors",
    "DegenerateSliceError": "errors",
    "BudgetExceededError": "errors",
    "BudgetWarning": "errors",
    # tracing and rules
    "trace": "trace",
    "Trace": "trace",
    "as_trace": "trace",
    "register_rule": "layers",
    "unregister_rule": "layers",
    "supported_layers": "layers",
    # affine maps, codes, MASO and power diagrams
    "affine_map": "affine",
    "AffineMap": "affine",
    "codes": "affine",
    "Codes": "affine",
    "maso": "power",
    "MASO": "power",
    "power_diagram": "power",
    "PowerDiagram": "power",
    # partitions
    "Slice": "partition",
    "partition_slice": "partition",
    "Partition": "partition",
    "partition_path": "partition",
    "PathPartition": "partition",
    # templates, complexity
    "templates": "templates",
    "logit_decomposition": "templates",
    "memorization": "templates",
    "vq_distance": "templates",
    "local_complexity": "complexity",
    "hessian_complexity": "complexity",
    # beyond piecewise-affine
    "BetaVQ": "activations",
    "MaxAffineRegressor": "fit",
    "MaxAffineSpline": "fit",
    "beta_vq": "activations",
    "soft_vq_pieces": "activations",
    "approximate": "legendre",
    "MaxAffineApproximation": "legendre",
    "InputConvexMLP": "convex",
    # threads
    "set_num_threads": "training",
    "is_convex": "convex",
}

_SUBMODULES = {
    "activations", "convex", "legendre", "regularizers", "experiments", "plot", "layers",
    "errors", "training", "datasets", "fit", "partition", "templates", "complexity",
    "callbacks", "report", "demo", "testing", "power", "affine", "view", "transforms",
    "distributed",
}

__all__ = sorted(set(_EXPORTS) | _SUBMODULES)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'maxaffine' has no attribute {name!r}")


def __dir__() -> list[str]:
    # only the public API (plus the version), not the helpers this module imports
    return sorted(set(__all__) | {"__version__"})
