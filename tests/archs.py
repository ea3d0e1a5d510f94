"""Seeded random piecewise-affine architectures for property-based tests (they live in
:mod:`maxaffine.testing`; this module keeps the tests' imports short)."""

from maxaffine.testing import (  # noqa: F401
    ACTIVATIONS,
    FAMILIES,
    Abs,
    Concat,
    Maxout,
    ResBlock2d,
    Residual,
    random_network,
)
