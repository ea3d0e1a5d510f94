"""Offline datasets: scikit-learn's bundled digits, generated mnist1d, and 2D toy sets.

Nothing here downloads anything. ``mnist1d`` is generated with
``mnist1d.data.make_dataset`` (never its downloader).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .errors import InputError


@dataclass(frozen=True)
class Dataset:
    """A train/test split of tensors.

    Attributes
    ----------
    X_train, X_test : Tensor, shape (N, *in_shape)
    y_train, y_test : Tensor, shape (N,), int64 class labels
    n_classes : int
    name : str
    """

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    name: str

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.X_train.shape[1:])


def _split(X: np.ndarray, y: np.ndarray, test_fraction: float, seed: int):
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(X))
    n_test = int(round(test_fraction * len(X)))
    test, train = order[:n_test], order[n_test:]
    return X[train], y[train], X[test], y[test]


def digits(*, image: bool = True, test_fraction: float = 0.25, seed: int = 0,
           dtype: torch.dtype = torch.float32) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes), scaled to [0, 1].

    Parameters
    ----------
    image : bool
        If True inputs have shape (1, 8, 8), else (64,).
    test_fraction : float
        Fraction held out for testing (a seeded random split).
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    X = (bunch.data / 16.0).astype(np.float64)
    y = bunch.target.astype(np.int64)
    Xtr, ytr, Xte, yte = _split(X, y, test_fraction, seed)
    shape = (1, 8, 8) if image else (64,)
    to = lambda a: torch.as_tensor(a, dtype=dtype).reshape(-1, *shape)  # noqa: E731
    return Dataset(to(Xtr), torch.as_tensor(ytr), to(Xte), torch.as_tensor(yte), 10, "digits")


def mnist1d(*, n_samples: int = 5000, seed: int = 0, channel: bool = False,
            dtype: torch.dtype = torch.float32) -> Dataset:
    """The mnist1d dataset (Greydanus 2020), generated locally: inputs of length 40, 10 classes.

    Parameters
    ----------
    n_samples : int
        Total number of generated samples (80% train, 20% test, as mnist1d splits).
    channel : bool
        If True inputs have shape (1, 40) for Conv1d models, else (40,).
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InputError("mnist1d is not installed; pip install 'maxaffine[data]'") from exc
    args = get_dataset_args()
    args.num_samples = int(n_samples)
    args.seed = int(seed)
    data = make_dataset(args)
    shape = (1, 40) if channel else (40,)
    to = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype).reshape(-1, *shape)  # noqa: E731
    return Dataset(to(data["x"]), torch.as_tensor(data["y"]).long(), to(data["x_test"]),
                   torch.as_tensor(data["y_test"]).long(), 10, "mnist1d")


def toy2d(name: str = "quadrants", *, n_samples: int = 400, noise: float = 0.1, seed: int = 0,
          test_fraction: float = 0.25, dtype: torch.dtype = torch.float32) -> Dataset:
    """Small 2D classification sets generated from a seed.

    Parameters
    ----------
    name : {"quadrants", "spirals", "blobs", "moons"}
        ``quadrants``: 4 classes, one Gaussian cloud per quadrant (the seed talk's toy example);
        ``spirals``: 4 interleaved spiral arms; ``blobs``: 4 Gaussian clouds at random centres;
        ``moons``: 2 half-moons.
    """
    rng = np.random.default_rng(seed)
    n = int(n_samples)
    if name == "quadrants":
        y = rng.integers(0, 4, n)
        centres = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
        X = centres[y] + noise * 4 * rng.standard_normal((n, 2))
    elif name == "spirals":
        y = rng.integers(0, 4, n)
        r = rng.uniform(0.15, 1.0, n)
        theta = 3.0 * r + y * (math.pi / 2)
        X = np.stack([r * np.cos(theta), r * np.sin(theta)], 1) * 2
        X += noise * 0.5 * rng.standard_normal((n, 2))
    elif name == "blobs":
        y = rng.integers(0, 4, n)
        centres = rng.uniform(-1.5, 1.5, (4, 2))
        X = centres[y] + noise * 3 * rng.standard_normal((n, 2))
    elif name == "moons":
        y = rng.integers(0, 2, n)
        t = rng.uniform(0, math.pi, n)
        X = np.where(y[:, None] == 0, np.stack([np.cos(t), np.sin(t)], 1),
                     np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1))
        X += noise * rng.standard_normal((n, 2))
    else:
        raise InputError(f"unknown toy dataset {name!r}; use quadrants, spirals, blobs or moons")
    Xtr, ytr, Xte, yte = _split(X, y, test_fraction, seed + 1)
    to = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    return Dataset(to(Xtr), torch.as_tensor(ytr), to(Xte), torch.as_tensor(yte),
                   int(y.max()) + 1, name)


__all__ = ["Dataset", "digits", "mnist1d", "toy2d"]
