"""Shared pieces of the issue-4 experiments: small models, augmentation, table and figure writers."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..transforms import circular_shift, shift_rotate


def mlp(in_features: int, widths: Sequence[int], n_classes: int = 10) -> nn.Module:
    """``Flatten → [Linear → ReLU] * len(widths) → Linear``."""
    layers: list[nn.Module] = [nn.Flatten()]
    prev = in_features
    for w in widths:
        layers += [nn.Linear(prev, w), nn.ReLU()]
        prev = w
    layers.append(nn.Linear(prev, n_classes))
    return nn.Sequential(*layers)


def cnn_digits(channels: int = 16, n_classes: int = 10) -> nn.Module:
    """Small CNN for 1×8×8 digits: two conv+ReLU blocks with 2×2 max-pooling, dense head."""
    c = channels
    return nn.Sequential(
        nn.Conv2d(1, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(2 * c * 4, 64), nn.ReLU(), nn.Linear(64, n_classes))


def cnn_1d(channels: int = 16, length: int = 40, n_classes: int = 10) -> nn.Module:
    """Small 1D CNN for 1×40 mnist1d signals."""
    c = channels
    return nn.Sequential(
        nn.Conv1d(1, c, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(c, 2 * c, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
        nn.Flatten(), nn.Linear(2 * c * (length // 4), 64), nn.ReLU(), nn.Linear(64, n_classes))


def augment_images(xb: torch.Tensor, gen: torch.Generator, *, max_shift: int = 1,
                   max_degrees: float = 10.0) -> torch.Tensor:
    """Random ±``max_shift``-pixel shifts and rotations up to ±``max_degrees`` (bilinear);
    :func:`maxaffine.transforms.shift_rotate`."""
    return shift_rotate(xb, gen, max_shift=max_shift, max_degrees=max_degrees)


def augment_signals(xb: torch.Tensor, gen: torch.Generator, *, max_shift: int = 1) -> torch.Tensor:
    """Random circular shifts of 1D signals (B, *, L); :func:`maxaffine.transforms.circular_shift`."""
    return circular_shift(xb, gen, max_shift=max_shift)


def write_table(rows: list[dict[str, Any]], out_dir: Path, stem: str,
                title: str | None = None, floatfmt: str = ".4g") -> str:
    """Write ``rows`` as ``stem.csv`` and return a markdown table (also appended nowhere)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(out_dir / f"{stem}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v)

    lines = [f"**{title}**", ""] if title else []
    lines.append("| " + " | ".join(keys) + " |")
    lines.append("|" + "---|" * len(keys))
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(out_dir: Path, name: str, title: str, sections: Sequence[str]) -> Path:
    """Write ``name.md`` with a title and the given markdown sections."""
    path = out_dir / f"{name}.md"
    path.write_text(f"# {title}\n\n" + "\n\n".join(sections) + "\n")
    return path


def figure(ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (4.5, 3.2)):
    """A matplotlib Figure and its axes grid, without pyplot (no backend or global state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save(fig, out_dir: Path, filename: str) -> Path:
    """Save ``fig`` as ``out_dir / filename`` (PNG via the Agg canvas)."""
    path = out_dir / filename
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    return float(t.mean()), float(t.std(unbiased=True)) if len(t) > 1 else 0.0


__all__ = ["augment_images", "augment_signals", "cnn_1d", "cnn_digits", "figure", "mean_std", "mlp",
           "save", "write_markdown", "write_table"]
