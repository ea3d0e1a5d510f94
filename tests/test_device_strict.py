"""No torch path creates a tensor on the default device behind the input's back.

Without a GPU, a tensor created without ``device=`` lands on the CPU next to CPU inputs
and nothing fails; on a GPU the same code mixes devices. Here every factory call without
an explicit device (and without a host generator) creates a ``meta`` tensor instead,
which fails as soon as it meets the real (CPU) data, exactly where a CUDA run would fail.
Zero-dimensional results stay on the CPU, as CUDA kernels accept CPU scalars.
"""

from __future__ import annotations

import contextlib
import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors
from torch.utils.data import DataLoader, TensorDataset

import maxaffine
from maxaffine import regularizers
from maxaffine.distributed import DatasetJob, analyze_dataset
from maxaffine.legendre import approximate, estimate_curvature
from maxaffine.training import train


class DefaultDeviceTrap(TorchFunctionMode):
    """Factory calls without ``device=`` (and without a generator) create meta tensors."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        implicit = (func in _device_constructors() and kwargs.get("device") is None
                    and kwargs.get("generator") is None
                    and not (func in (torch.as_tensor, torch.asarray) and args
                             and isinstance(args[0], torch.Tensor)))
        if implicit:
            out = func(*args, **{**kwargs, "device": "meta"})
            if not (isinstance(out, torch.Tensor) and out.dim() == 0):
                return out
        return func(*args, **kwargs)


def test_the_trap_catches_an_implicit_device():
    x = torch.ones(3)
    with DefaultDeviceTrap(), pytest.raises(RuntimeError, match="device"):
        x + torch.zeros(3)
    with DefaultDeviceTrap():
        assert (x + torch.zeros(3, device=x.device)).device.type == "cpu"
        assert (x + torch.tensor(1.0)).device.type == "cpu"


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.LeakyReLU(0.1),
                         nn.Linear(16, 16), nn.ReLU6(), nn.Linear(16, 3)).double()


def _cnn():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 4, 3), nn.Hardtanh(), nn.Flatten(),
                         nn.Linear(16, 3)).double().eval()


def _same(a, b):
    if isinstance(a, torch.Tensor):
        assert b.device.type == "cpu" and torch.equal(a, b)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            _same(u, v)
    else:
        assert a == b


X = torch.randn(8, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
XI = torch.randn(8, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
Y = torch.arange(8) % 3

CALLS = {
    "affine_map": lambda m, x: maxaffine.affine_map(m, x).A,
    "matrix_free": lambda m, x: maxaffine.affine_map(m, x, materialize=False).vjp(
        torch.ones(len(x), 3, dtype=torch.float64, device=x.device)),
    "codes": lambda m, x: maxaffine.codes(m, x).region_ids(),
    "templates": lambda m, x: maxaffine.templates(m, x),
    "memorization": lambda m, x: maxaffine.memorization(m, x, Y).cosine,
    "vq_distance": lambda m, x: maxaffine.vq_distance(m, x),
    "local_complexity": lambda m, x: maxaffine.local_complexity(
        m, x, radius=0.2, n_vertices=6, seed=0).total,
    "local_complexity_input": lambda m, x: maxaffine.local_complexity(
        m, x, radius=0.2, n_vertices=6, seed=0, directions="input").total,
    "local_complexity_stream": lambda m, x: maxaffine.local_complexity(
        m, DataLoader(TensorDataset(x), batch_size=3), radius=0.2, n_vertices=6, seed=0).total,
    "hessian": lambda m, x: maxaffine.hessian_complexity(m, x, sigma=0.1, seed=0).per_sample,
    "dataset_job": lambda m, x: analyze_dataset(m, x, DatasetJob(
        local_complexity={"radius": 0.2, "n_vertices": 4}, codes=True, memorization=True,
        hessian={"sigma": 0.1}), y=Y, batch_size=3).summary(),
    "orthogonality_penalty": lambda m, x: regularizers.orthogonality_penalty(
        m, x, generator=torch.Generator().manual_seed(0)).detach(),
    "hessian_penalty": lambda m, x: regularizers.hessian_penalty(
        m, x, x + 0.01, generator=torch.Generator().manual_seed(0)).detach(),
    "curvature": lambda m, x: estimate_curvature(m, x, iters=3).lambda_min,
}


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_no_implicit_device(name, arch):
    net, x = (_mlp(), X) if arch == "mlp" else (_cnn(), XI)
    ref = CALLS[name](net, x)
    with DefaultDeviceTrap():
        got = CALLS[name](net, x)
    _same(ref, got)


def test_training_beta_vq_legendre_and_partition_without_implicit_device():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), maxaffine.BetaVQ("relu", beta=0.6), nn.Linear(8, 3))
    x, y = torch.randn(16, 3), torch.randint(0, 3, (16,))
    runs = []
    for trap in (False, True):
        n = copy.deepcopy(net)
        torch.manual_seed(5)  # the penalty's signs come from the global generator
        with DefaultDeviceTrap() if trap else contextlib.nullcontext():
            hist = train(n, x, y, epochs=1, batch_size=8, penalty_weight=0.3,
                         penalty=lambda m, xb, yb: regularizers.orthogonality_penalty(m, xb),
                         progress=False)
            ap = approximate(n.double(), x.double(), 4, select="greedy", curvature="secant",
                             progress=False)
            pred = ap.predict(x.double())
        runs.append((hist.rows[-1]["loss"], pred))
    assert runs[0][0] == runs[1][0]
    _same(runs[0][1], runs[1][1])
    cnn = _cnn()
    slc = maxaffine.Slice.through(*XI[:3])
    ref = maxaffine.partition_slice(cnn, slc, progress=False)
    with DefaultDeviceTrap():
        got = maxaffine.partition_slice(cnn, slc, progress=False)
    assert got.n_regions == ref.n_regions
