"""The embedded demo: the talk's toy example and a small digits CNN, end to end.

The toy example is a 2D, 4-class dataset (one Gaussian cloud per quadrant) and the ReLU
network 2 → 45 → 3 → 4 trained from an initialization with zero biases. With zero biases
every unit's boundary ``<w_k, x> = 0`` passes through the origin, so at initialization the
partition is a fan of cones; training moves the lines off the origin, layer 1 cuts the plane
into convex tiles of a line arrangement, layer 2 bends its boundaries where they cross
layer 1's lines, and the output's argmax gives the decision boundary.

The image part trains a small CNN on scikit-learn's 8×8 digits and looks at a 2D slice
through three digit images and at the class templates (rows of ``A[x]``) of a few inputs.

This module holds the models, data and training; the report that ``maxaffine demo`` writes
is built by :func:`maxaffine.report.demo_report.run_demo` (also ``maxaffine.report.run_demo``).

References
----------
.. [1] Balestriero & Baraniuk, "A Spline Theory of Deep Networks", ICML 2018.
.. [2] Balestriero & Baraniuk, "Mad Max: Affine Spline Insights into Deep Learning",
       Proc. IEEE 2021.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .datasets import Dataset, digits, toy2d
from .training import History, accuracy, train

TOY_WIDTHS = (2, 45, 3, 4)
"""Layer widths of the toy network: 2 inputs, 45 and 3 ReLU units, 4 classes."""


def toy_network(seed: int = 0, *, zero_bias: bool = True) -> nn.Sequential:
    """The talk's toy network 2 → 45 → 3 → 4 with ReLU, biases initialised to zero.

    Parameters
    ----------
    seed : int
        Seed for the (PyTorch default) weight initialisation.
    zero_bias : bool
        Initialise every bias at zero (all unit boundaries pass through the origin).

    Returns
    -------
    nn.Sequential
        ``Linear(2, 45), ReLU, Linear(45, 3), ReLU, Linear(3, 4)`` in float32.
    """
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    d0, d1, d2, d3 = TOY_WIDTHS
    net = nn.Sequential(nn.Linear(d0, d1), nn.ReLU(), nn.Linear(d1, d2), nn.ReLU(),
                        nn.Linear(d2, d3))
    torch.random.set_rng_state(gen_state)
    if zero_bias:
        with torch.no_grad():
            for m in net:
                if isinstance(m, nn.Linear):
                    m.bias.zero_()
    return net


def toy_data(seed: int = 0, *, n_samples: int = 400) -> Dataset:
    """The toy dataset: 4 Gaussian clouds, one per quadrant (``datasets.toy2d("quadrants")``)."""
    return toy2d("quadrants", n_samples=n_samples, noise=0.1, seed=seed)


def digits_cnn(seed: int = 0) -> nn.Sequential:
    """A small CNN for 8×8 digits: two conv/ReLU/max-pool blocks and a linear head.

    ``Conv2d(1, 8, 3, padding=1), ReLU, MaxPool2d(2), Conv2d(8, 16, 3, padding=1), ReLU,
    MaxPool2d(2), Flatten, Linear(64, 10)``: every layer is a MASO, so the whole network is
    piecewise affine.
    """
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(64, 10))
    torch.random.set_rng_state(gen_state)
    return net


@dataclass(frozen=True)
class TrainedModel:
    """A trained model with its data, per-epoch log and parameter snapshots.

    Attributes
    ----------
    model : nn.Module
        Final model, eval mode, on the CPU.
    data : Dataset
    history : History
    snapshots : tuple of (int, dict)
        ``(epoch, state_dict)`` after every epoch (epoch 0 = initialization), if recorded.
    restarts : int
        Number of re-initialisations needed (the 3-unit bottleneck can die).
    """

    model: nn.Module
    data: Dataset
    history: History
    snapshots: tuple
    restarts: int = 0

    @property
    def test_accuracy(self) -> float:
        return accuracy(self.model, self.data.X_test, self.data.y_test)


def train_toy(seed: int = 0, *, epochs: int = 80, device: str = "cpu", progress: bool = True,
              max_restarts: int = 3, min_accuracy: float = 0.9) -> TrainedModel:
    """Train the toy network on the toy data from zero biases, keeping every epoch's weights.

    The 3-unit ReLU bottleneck can lose a unit early (a dead ReLU); if the final training
    accuracy is below ``min_accuracy`` the network is re-initialised with the next seed, at
    most ``max_restarts`` times, and the number of restarts is reported.
    """
    data = toy_data(seed)
    best: TrainedModel | None = None
    for restart in range(max_restarts + 1):
        net = toy_network(seed + 1000 * restart).to(device)
        snaps: list[tuple[int, dict]] = []

        def snapshot(model: nn.Module, epoch: int) -> dict[str, float]:
            snaps.append((epoch, {k: v.detach().cpu().clone()
                                  for k, v in model.state_dict().items()}))
            return {}

        hist = train(net, data.X_train.to(device), data.y_train.to(device), epochs=epochs,
                     lr=1e-2, batch_size=32, callbacks=[snapshot], X_test=data.X_test.to(device),
                     y_test=data.y_test.to(device), seed=seed + restart, progress=progress)
        result = TrainedModel(net.cpu().eval(), data, hist, tuple(snaps), restart)
        if best is None or hist.rows[-1]["train_acc"] > best.history.rows[-1]["train_acc"]:
            best = result
        if hist.rows[-1]["train_acc"] >= min_accuracy:
            break
    assert best is not None
    return best


def train_digits(seed: int = 0, *, epochs: int = 15, device: str = "cpu",
                 progress: bool = True) -> TrainedModel:
    """Train :func:`digits_cnn` on scikit-learn digits (75/25 split) with Adam."""
    data = digits(image=True, seed=seed)
    net = digits_cnn(seed).to(device)
    hist = train(net, data.X_train.to(device), data.y_train.to(device), epochs=epochs, lr=3e-3,
                 batch_size=32, X_test=data.X_test.to(device), y_test=data.y_test.to(device),
                 seed=seed, progress=progress)
    return TrainedModel(net.cpu().eval(), data, hist, ())


def with_state(model: nn.Module, state: dict[str, Any]) -> nn.Module:
    """A copy of ``model`` (eval mode) carrying the parameters ``state``."""
    clone = copy.deepcopy(model)
    clone.load_state_dict(state)
    return clone.eval()


def __getattr__(name: str) -> Any:
    # run_demo writes a report, so it lives in the report package (which builds on this
    # module); the old name still resolves, looked up when first asked for.
    if name == "run_demo":
        import importlib

        return importlib.import_module("maxaffine.report.demo_report").run_demo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TOY_WIDTHS", "TrainedModel", "digits_cnn", "toy_data", "toy_network",
           "train_digits", "train_toy", "with_state"]
