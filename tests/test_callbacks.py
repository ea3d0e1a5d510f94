"""Training callbacks: they log the measures they claim to, at the epochs asked for."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from maxaffine.callbacks import (
    HessianComplexityCallback,
    LocalComplexityCallback,
    MeasureCallback,
    MemorizationCallback,
    TemplateCosineCallback,
    log_spaced_epochs,
    template_cosine,
)
from maxaffine.complexity import hessian_complexity, local_complexity
from maxaffine.training import train


def _setup():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    X, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    return net, X, y


def test_callbacks_log_every_epoch_and_match_direct_calls():
    net, X, y = _setup()
    cbs = [LocalComplexityCallback(X[:8], radius=0.5, n_vertices=6, per_layer=True, seed=1),
           HessianComplexityCallback(X[:8], x_aug=X[:8] + 0.2),
           TemplateCosineCallback(X[:8]), MemorizationCallback(X[:8], y[:8])]
    hist = train(net, X, y, epochs=3, callbacks=cbs, progress=False)
    assert len(hist.column("lc")) == 4 and len(hist.column("hessian")) == 4
    assert {"lc/1", "lc/output", "template_cos", "cos_true", "cos_other"} <= set(hist.rows[-1])
    # the last row equals a direct evaluation of the trained model
    lc = local_complexity(net, X[:8], radius=0.5, n_vertices=6, seed=1, directions="input")
    assert hist.rows[-1]["lc"] == pytest.approx(lc.mean())
    h = hessian_complexity(net, X[:8], x_aug=X[:8] + 0.2)
    assert hist.rows[-1]["hessian"] == pytest.approx(h.value)


def test_template_cosine_orthogonal_and_parallel():
    # a linear model with orthogonal rows has zero cosine; parallel rows have cosine 1
    lin = nn.Linear(3, 3, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(torch.eye(3, dtype=torch.float64))
    x = torch.randn(5, 3, dtype=torch.float64)
    assert template_cosine(lin, x) == pytest.approx(0.0, abs=1e-15)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2, 3], [-2.0, -4, -6], [0.5, 1, 1.5]]))
    assert template_cosine(lin, x) == pytest.approx(1.0)


def test_every_and_log_spacing():
    calls = []
    cb = MeasureCallback(lambda m: calls.append(1) or 2.0, "m", every=[0, 2])
    net, X, y = _setup()
    hist = train(net, X, y, epochs=3, callbacks=[cb], progress=False)
    assert hist.column("m") == [2.0, 2.0] and len(calls) == 2
    ep = log_spaced_epochs(1000, 20)
    assert ep[0] == 0 and ep[-1] == 1000 and len(ep) <= 21
    gaps = np.diff(ep)
    assert gaps[-1] > gaps[1]  # denser early, sparser late
    assert all(isinstance(e, int) for e in ep) and not any(math.isnan(e) for e in ep)
