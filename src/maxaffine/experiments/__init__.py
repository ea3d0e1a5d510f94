"""Reproducible experiments, one module each, run by ``maxaffine experiment NAME``.

Every experiment module in this package defines

- ``NAME``: the command-line name (``"beta-vq"``),
- ``DESCRIPTION``: one line,
- ``run(out_dir, *, quick=False, seed=0, progress=True) -> dict``: writes its tables
  (CSV and markdown) and figures into ``out_dir`` and returns the headline numbers.

Modules are discovered automatically, so adding an experiment touches no shared file.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import InputError


def _discover() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        name = getattr(module, "NAME", None)
        if name is not None and callable(getattr(module, "run", None)):
            found[name] = module
    return dict(sorted(found.items()))


def available() -> dict[str, str]:
    """Map every experiment name to its one-line description."""
    return {name: getattr(m, "DESCRIPTION", "") for name, m in _discover().items()}


def run(name: str, out_dir: str | Path, *, quick: bool = False, seed: int = 0,
        progress: bool = True) -> dict[str, Any]:
    """Run experiment ``name``, writing its outputs into ``out_dir``.

    Raises
    ------
    InputError
        If no experiment has that name (the message lists the available ones).
    """
    modules = _discover()
    if name not in modules:
        raise InputError(
            f"unknown experiment {name!r}; available: {', '.join(modules) or '(none)'}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return modules[name].run(out, quick=quick, seed=seed, progress=progress)


__all__ = ["available", "run"]
