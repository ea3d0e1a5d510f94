"""The registry binding torch ops (module types, functions, tensor methods) to rules."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn
from torch.nn.utils import parametrize

from .base import Rule

REGISTRY: dict[Any, Rule] = {}
"""Key -> rule instance. Keys are nn.Module subclasses, functions, or "Tensor.<method>" strings."""


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
    >>> from maxaffine.layers import register_rule, unregister_rule, PiecewiseRule
    >>> class Square2(torch.nn.Module):
    ...     def forward(self, x):
    ...         return x
    >>> @register_rule(Square2)
    ... class Square2Rule(PiecewiseRule):
    ...     pass
    >>> _ = unregister_rule(Square2Rule)  # undo it (this one has no switching, no examples)
    """

    def decorate(cls: type[Rule]) -> type[Rule]:
        instance = cls()
        for key in keys:
            REGISTRY[key] = instance
        cls.keys = tuple(keys)  # type: ignore[attr-defined]
        return cls

    return decorate


def unregister_rule(*keys: Any) -> dict[Any, Rule]:
    """Remove op keys from the registry (the inverse of :func:`register_rule`).

    Parameters
    ----------
    *keys : op key or Rule subclass
        Op keys as in :func:`register_rule`; a rule class stands for every key it was
        registered with.

    Returns
    -------
    dict
        ``{key: rule}`` of what was removed (``REGISTRY.update(removed)`` restores it).

    Raises
    ------
    InputError
        For a key that is not registered (nothing is removed then).

    Examples
    --------
    >>> import torch
    >>> from maxaffine.layers import REGISTRY, register_rule, unregister_rule, PiecewiseRule
    >>> class Mine(torch.nn.Module):
    ...     def forward(self, x):
    ...         return x
    >>> @register_rule(Mine)
    ... class MineRule(PiecewiseRule):
    ...     pass
    >>> removed = unregister_rule(MineRule)
    >>> list(removed) == [Mine], Mine in REGISTRY
    (True, False)
    """
    from ..errors import InputError

    wanted: list[Any] = []
    for key in keys:
        if isinstance(key, type) and issubclass(key, Rule):
            wanted += [k for k in getattr(key, "keys", ()) if type(REGISTRY.get(k)) is key]
        else:
            wanted.append(key)
    missing = [key_name(k) for k in wanted if k not in REGISTRY]
    if missing:
        raise InputError(f"no rule is registered for {', '.join(missing)}; see "
                         f"maxaffine.supported_layers() for the registered ops")
    return {k: REGISTRY.pop(k) for k in wanted}


def lookup(key: Any, overrides: Mapping[Any, Rule | type[Rule]] | None = None,
           module: nn.Module | None = None) -> Rule | None:
    """Find the rule for ``key``: per-module override, then caller's mapping, then registry.

    A module with parametrized weights (``torch.nn.utils.parametrize``) has a generated
    subclass as its type; it is looked up as the type it had before (its forward is the
    parent's, on the parametrized weights)."""
    if overrides:
        for candidate in (module, key):
            if candidate is not None and candidate in overrides:
                rule = overrides[candidate]
                return rule() if isinstance(rule, type) else rule
    rule = REGISTRY.get(key)
    if rule is None and module is not None and parametrize.is_parametrized(module):
        rule = lookup(parametrize.type_before_parametrizations(module), overrides)
    return rule


def supported_layers() -> dict[str, str]:
    """Every registered op with a one-line description of how it is handled.

    Returns
    -------
    dict
        ``{"nn.ReLU": "piecewise (convex, MASO): ...", ...}`` sorted by name.
    """
    rows = {}
    for key, rule in REGISTRY.items():
        if rule.refused:
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
        if not rule.refused:
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
        if rule.refused:
            rows[key_name(key)] = rule.description
    return dict(sorted(rows.items()))
