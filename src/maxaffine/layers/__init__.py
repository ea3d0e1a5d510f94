"""Rules: one class per torch op family, bound to ops through a registry.

Importing this package registers every built-in rule. Add your own with
:func:`register_rule`, or pass ``rules={op_or_module: Rule}`` to :func:`maxaffine.trace`.
"""

from __future__ import annotations

from .base import AffineRule, NodeContext, PiecewiseRule, Rule, ShapeRule
from .registry import (REGISTRY, key_name, layer_table, lookup, refused_layers, register_rule,
                       supported_layers)
from . import activation, linear, pooling, structural, refused  # noqa: E402,F401  (register rules)

__all__ = [
    "Rule",
    "AffineRule",
    "PiecewiseRule",
    "ShapeRule",
    "NodeContext",
    "REGISTRY",
    "register_rule",
    "supported_layers",
    "refused_layers",
    "layer_table",
    "lookup",
    "key_name",
]
