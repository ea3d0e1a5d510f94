"""Data given as one tensor or as a stream of batches (a DataLoader, a generator, a list)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from .errors import InputError


def is_stream(data: Any) -> bool:
    """True for an iterable of batches, False for one array-like batch.

    A tensor, an ndarray, or a (nested) list of numbers is one batch; anything else that
    can be iterated (a ``DataLoader``, a generator, a list of tensors or of ``(x, y)``
    pairs) is a stream of batches.
    """
    if isinstance(data, (torch.Tensor, np.ndarray)):
        return False
    if isinstance(data, (list, tuple)):
        return bool(data) and isinstance(data[0], (torch.Tensor, np.ndarray, list, tuple)) \
            and not _numeric(data)
    return isinstance(data, Iterable)


def _numeric(data: Any) -> bool:
    """A (nested) list of plain numbers, i.e. one batch written as Python lists."""
    while isinstance(data, (list, tuple)) and data:
        data = data[0]
    return isinstance(data, (int, float, bool, np.number))


def split(item: Any) -> tuple[Any, Any]:
    """``(x, y)`` of one batch: a tensor alone, or the first two entries of a tuple/list/dict."""
    if isinstance(item, (torch.Tensor, np.ndarray)):
        return item, None
    if isinstance(item, dict):
        if "x" not in item:
            raise InputError(f"a batch given as a dict needs an 'x' entry; got keys {list(item)}")
        return item["x"], item.get("y")
    if isinstance(item, (list, tuple)) and item:
        return item[0], (item[1] if len(item) > 1 else None)
    raise InputError(f"a batch must be a tensor or an (x, y) pair; got {type(item).__name__}")


def batches(data: Any, batch_size: int | None = None,
            y: Any = None) -> Iterator[tuple[Any, Any]]:
    """``(x, y)`` per batch: a stream's batches as they come, or one tensor ``data`` (with
    optional labels ``y``) cut into ``batch_size`` rows (all of it when None)."""
    if is_stream(data):
        if y is not None:
            raise InputError("labels come with the batches of a stream ((x, y) pairs); "
                             "do not pass y separately")
        for item in data:
            yield split(item)
        return
    x = torch.as_tensor(data)
    n = len(x) if x.dim() else 1
    size = n if batch_size is None else int(batch_size)
    if size < 1:
        raise InputError(f"batch_size must be ≥ 1; got {batch_size}")
    for i in range(0, max(n, 1), max(size, 1)):
        yield x[i:i + size], (None if y is None else y[i:i + size])


def length(data: Any) -> int | None:
    """Number of batches of a stream, if it knows (for progress bars)."""
    try:
        return len(data)
    except TypeError:
        return None
