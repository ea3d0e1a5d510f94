"""The registry binding torch ops (module types, functions, tensor methods) to rules."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from torch import nn

from .base import Rule

#: key -> rule instance. Keys are nn.Module subclasses, functions, or "Tensor.<method>" strings.
REGISTRY: dict[Any, Rule] = {}


def key_name(key: Any) -> str:
    """Human-readable name of a registry key (``nn.ReLU``, ``torch.relu``, ``Tensor.view``)."""
    if isinstance(key, str):
        return key
    if isinstance(key, type):
        mod = key.__module__
        if mod.startswith("torch.nn.modules"):
            return f"nn.{key.__name__}"
        return f"{mod}.{key.__qualname__}"
    mod = getattr(key, "__module__", None) or ""
    name = getattr(key, "__name__", repr(key))
    if mod == "_operator":
        return f"operator.{name}"
    if mod.startswith("torch.nn.functional") or mod == "torch._C._nn":
        return f"F.{name}"
    if mod in ("torch", "torch._C._VariableFunctions", "") or mod.startswith("torch._C"):
        return f"torch.{name}"
    return f"{mod}.{name}"


def register_rule(*keys: Any) -> Callable[[type[Rule]], type[Rule]]:
    """Class decorator binding a :class:`~maxaffine.layers.base.Rule` subclass to op keys.

    Parameters
    ----------
    *keys : nn.Module subclass, function, or ``"Tensor.<method>"``
        Module types are matched by exact type (a subclass with its own forward is not its
        parent); functions by identity; methods by name.

    Examples
    --------
    >>> import torch
    >>> from maxaffine.layers import register_rule, PiecewiseRule
    >>> class Square2(torch.nn.Module):
    ...     def forward(self, x):
    ...         return x
    >>> @register_rule(Square2)
    ... class Square2Rule(PiecewiseRule):
    ...     pass
    """

    def decorate(cls: type[Rule]) -> type[Rule]:
        instance = cls()
        for key in keys:
            REGISTRY[key] = instance
        cls.keys = tuple(keys)  # type: ignore[attr-defined]
        return cls

    return decorate


def lookup(key: Any, overrides: Mapping[Any, Rule | type[Rule]] | None = None,
           module: nn.Module | None = None) -> Rule | None:
    """Find the rule for ``key``: per-module override, then caller's mapping, then registry."""
    if overrides:
        for candidate in (module, key):
            if candidate is not None and candidate in overrides:
                rule = overrides[candidate]
                return rule() if isinstance(rule, type) else rule
    return REGISTRY.get(key)


def supported_layers() -> dict[str, str]:
    """Every registered op with a one-line description of how it is handled.

    Returns
    -------
    dict
        ``{"nn.ReLU": "piecewise (convex, MASO): ...", ...}`` sorted by name.
    """
    rows = {}
    for key, rule in REGISTRY.items():
        if getattr(rule, "refuse", False):
            continue
        label = rule.kind
        if rule.kind == "piecewise":
            label += " (convex, MASO)" if rule.convex else " (continuous, not convex)"
        rows[key_name(key)] = f"{label}: {rule.description}" if rule.description else label
    return dict(sorted(rows.items()))


def layer_table() -> str:
    """Markdown table of the supported ops, one row per rule (used by the README and CLI)."""
    groups: dict[type, list[str]] = {}
    for key, rule in REGISTRY.items():
        if not getattr(rule, "refuse", False):
            groups.setdefault(type(rule), []).append(key_name(key))
    rows = ["| ops | kind | how maxaffine reads them |", "|---|---|---|"]
    for cls, keys in sorted(groups.items(), key=lambda kv: kv[1][0]):
        rule = next(r for r in REGISTRY.values() if type(r) is cls)
        kind = rule.kind
        if kind == "piecewise":
            kind += " (MASO)" if rule.convex else " (continuous, not convex)"
        rows.append(f"| {', '.join(f'`{k}`' for k in keys)} | {kind} | {rule.description} |")
    return "\n".join(rows)


def refused_layers() -> dict[str, str]:
    """Known ops that maxaffine refuses, with the suggested way out."""
    rows = {}
    for key, rule in REGISTRY.items():
        if getattr(rule, "refuse", False):
            rows[key_name(key)] = rule.description
    return dict(sorted(rows.items()))
