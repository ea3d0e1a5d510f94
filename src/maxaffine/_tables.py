"""Tables and compact representations shared by the result types.

Every result offers ``to_dict()`` (plain numpy columns, no extra dependency) and
``to_frame()`` (the same columns as a :class:`pandas.DataFrame`; pandas is imported only
then). ``compact_repr`` summarizes arrays and tensors by shape and dtype so that printing a
result never dumps its contents.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch


def pandas():
    """Import pandas, or fail with the command that installs it."""
    try:
        import pandas as pd
    except ImportError as e:  # pragma: no cover - pandas is installed in the test env
        raise ImportError("to_frame() needs pandas, which is not installed; install it with "
                          "`pip install pandas` (or use to_dict(), which needs nothing extra)") from e
    return pd


def column(x: Any) -> np.ndarray:
    """A table column as a numpy array (tensors are detached and moved to the CPU)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16 or x.dtype == torch.float16:
            x = x.double()
        return x.numpy()
    return np.asarray(x)


def frame(columns: dict[str, Any], index: str | None = None):
    """A DataFrame from equal-length columns, indexed by column ``index`` if given."""
    pd = pandas()
    df = pd.DataFrame({k: column(v) for k, v in columns.items()})
    return df.set_index(index) if index is not None else df


def summarize(value: Any) -> str:
    """One short token for a field value: shapes for arrays, counts for containers."""
    if isinstance(value, torch.Tensor):
        return f"Tensor{tuple(value.shape)}:{str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, np.ndarray):
        return f"array{value.shape}:{value.dtype}"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return f"{{{len(value)} entries}}"
    if isinstance(value, (list, tuple)) and len(value) > 4:
        return f"[{len(value)} items]"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def compact_repr(obj: Any, **extra: Any) -> str:
    """``Name(field=summary, ...)`` over the dataclass fields shown in its repr, then ``extra``."""
    parts = [f"{f.name}={summarize(getattr(obj, f.name))}" for f in dataclasses.fields(obj)
             if f.repr and not f.name.startswith("_")]
    parts += [f"{k}={summarize(v)}" for k, v in extra.items()]
    return f"{type(obj).__name__}({', '.join(parts)})"


__all__ = ["column", "compact_repr", "frame", "pandas", "summarize"]
