"""Rules: one class per torch op family, bound to ops through a registry.

Importing this package registers every built-in rule: each module of the package other
than the contract (``base``, ``registry``, ``switching``) holds rules and is imported, so a
new rule is one class in one new file. Add your own elsewhere with :func:`register_rule`,
or pass ``rules={op_or_module: Rule}`` to :func:`maxaffine.trace`.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import AffineRule, NodeContext, PiecewiseRule, Rule, ShapeRule
from .registry import (
    REGISTRY,
    key_name,
    layer_table,
    lookup,
    refused_layers,
    register_rule,
    supported_layers,
    unregister_rule,
)
from .switching import Switch

_CONTRACT = {"base", "registry", "switching"}
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name not in _CONTRACT and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = [
    "REGISTRY",
    "AffineRule",
    "NodeContext",
    "PiecewiseRule",
    "Rule",
    "ShapeRule",
    "Switch",
    "key_name",
    "layer_table",
    "lookup",
    "refused_layers",
    "register_rule",
    "supported_layers",
    "unregister_rule",
]
