"""Every torch path runs on the device of the model and input, CPU and (when present) CUDA.

Each test runs once per available device (the ``device`` fixture) and compares with the
same computation on the CPU in float64: integer results (codes, counts, regions) must be
identical, floating-point ones equal to rounding (different kernels sum in different
orders). The random numbers are drawn on the host, so one seed gives the same draws on
every device.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import maxaffine
from maxaffine import regularizers
from maxaffine.distributed import DatasetJob, analyze_dataset
from maxaffine.legendre import approximate, estimate_curvature
from maxaffine.training import train

#: float64 kernels on different devices agree to rounding of sums of ~1e3 terms
TOL = {"rtol": 1e-9, "atol": 1e-11}


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 24), nn.ReLU(), nn.Linear(24, 24), nn.LeakyReLU(0.2),
                         nn.Linear(24, 24), nn.Hardtanh(-0.8, 0.9), nn.Linear(24, 3)).double()


def _cnn():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 4)).double()
    with torch.no_grad():
        bn = net[1]
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture(params=["mlp", "cnn"])
def case(request):
    net = _mlp() if request.param == "mlp" else _cnn()
    g = torch.Generator().manual_seed(2)
    shape = (6,) if request.param == "mlp" else (1, 8, 8)
    x = torch.randn(10, *shape, generator=g, dtype=torch.float64)
    return net, x


def _on(net, x, device):
    return copy.deepcopy(net).to(device), x.to(device)


def test_affine_map_and_matrix_free_products(case, device):
    net, x = case
    ref = maxaffine.affine_map(net, x)
    dnet, dx = _on(net, x, device)
    m = maxaffine.affine_map(dnet, dx)
    assert m.A.device.type == device.type and m.b.device.type == device.type
    torch.testing.assert_close(m.A.cpu(), ref.A, **TOL)
    torch.testing.assert_close(m.b.cpu(), ref.b, **TOL)
    with torch.no_grad():
        torch.testing.assert_close(m(dx), dnet(dx).reshape(len(x), -1), **TOL)
    lazy = maxaffine.affine_map(dnet, dx, materialize=False)
    u = torch.randn(len(x), ref.n_outputs, dtype=torch.float64, device=device)
    torch.testing.assert_close(lazy.vjp(u).reshape(len(x), -1),
                               torch.einsum("nc,ncd->nd", u, m.A), **TOL)
    torch.testing.assert_close(lazy.jvp(dx), torch.einsum("ncd,nd->nc", m.A, dx.flatten(1)),
                               **TOL)


def test_codes_templates_memorization_vq_distance(case, device):
    net, x = case
    y = torch.arange(len(x)) % 3
    dnet, dx = _on(net, x, device)
    q, dq = maxaffine.codes(net, x), maxaffine.codes(dnet, dx)
    assert all(torch.equal(q[k], dq[k].cpu()) for k in q)
    assert dq.region_ids().device.type == device.type
    torch.testing.assert_close(maxaffine.templates(dnet, dx).cpu(), maxaffine.templates(net, x),
                               **TOL)
    mem = maxaffine.memorization(dnet, dx, y.to(device))
    torch.testing.assert_close(mem.cosine.cpu(), maxaffine.memorization(net, x, y).cosine, **TOL)
    d = maxaffine.vq_distance(dnet, dx)
    assert d.device.type == device.type
    torch.testing.assert_close(d.cpu(), maxaffine.vq_distance(net, x), rtol=0, atol=1e-15)


@pytest.mark.parametrize("directions", ["auto", "input"])
def test_local_complexity_counts_are_identical(case, device, directions):
    net, x = case
    kw = {"radius": 0.2, "n_vertices": 8, "per_layer": True, "seed": 3, "directions": directions}
    ref = maxaffine.local_complexity(net, x, **kw)
    dnet, dx = _on(net, x, device)
    got = maxaffine.local_complexity(dnet, dx, **kw)
    assert got.total.device.type == device.type
    assert torch.equal(got.total.cpu(), ref.total)
    # a stream of host batches (a DataLoader) with the model on the device
    stream = maxaffine.local_complexity(dnet, DataLoader(TensorDataset(x), batch_size=4), **kw)
    assert torch.equal(stream.total.cpu(), ref.total)


def test_hessian_complexity_and_dataset_job(case, device):
    net, x = case
    ref = maxaffine.hessian_complexity(net, x, sigma=0.05, seed=1)
    dnet, dx = _on(net, x, device)
    got = maxaffine.hessian_complexity(dnet, dx, sigma=0.05, seed=1)
    torch.testing.assert_close(got.per_sample.cpu(), ref.per_sample, **TOL)
    job = DatasetJob(local_complexity={"radius": 0.2, "n_vertices": 4}, codes=True, seed=5)
    a, b = analyze_dataset(net, x, job, batch_size=4), analyze_dataset(dnet, x, job, batch_size=4)
    assert a.local_complexity == b.local_complexity and a.codes == b.codes


def test_regularizers_and_a_penalized_training_step(device):
    net = _mlp().float()
    x = torch.randn(16, 6)
    y = torch.randint(0, 3, (16,))
    vals = {}
    for dev in ("cpu", device):
        n, xd = _on(net, x, dev)
        g = torch.Generator().manual_seed(0)
        p = regularizers.orthogonality_penalty(n, xd, generator=g)
        h = regularizers.hessian_penalty(n, xd, xd + 0.01, generator=g)
        (p + h).backward()
        grads = [q.grad for q in n.parameters() if q.grad is not None]  # biases of the
        assert len(grads) > 3  # last layer do not change A, so they get no gradient
        assert all(gr.device.type == torch.device(dev).type for gr in grads)
        vals[str(dev)] = (float(p.detach()), float(h.detach()))
    cpu, dev = vals["cpu"], vals[str(device)]
    assert cpu == pytest.approx(dev, rel=1e-4)  # float32 training arithmetic
    dnet, dx = _on(net, x, device)
    hist = train(dnet, dx, y.to(device), epochs=1, batch_size=8, penalty_weight=0.5,
                 penalty=lambda m, xb, yb: regularizers.orthogonality_penalty(m, xb),
                 progress=False)
    assert np.isfinite(hist.rows[-1]["loss"]) and 0 <= hist.rows[-1]["train_acc"] <= 1
    assert all(q.device.type == device.type for q in dnet.parameters())


def test_beta_vq_and_legendre(device):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 16), maxaffine.BetaVQ("relu", beta=0.6),
                        nn.Linear(16, 16), maxaffine.BetaVQ("relu", beta=0.7, learn_beta=True,
                                                          num_channels=16),
                        nn.Linear(16, 2)).double()
    x = torch.randn(12, 3, dtype=torch.float64)
    dnet, dx = _on(net, x, device)
    out = dnet(dx)
    out.sum().backward()
    torch.testing.assert_close(out.detach().cpu(), net(x).detach(), **TOL)
    est = estimate_curvature(net, x, iters=3, seed=0)
    dest = estimate_curvature(dnet, dx, iters=3, seed=0)
    torch.testing.assert_close(dest.lambda_min.cpu(), est.lambda_min, rtol=1e-8, atol=1e-10)
    ap = approximate(net, x, 5, select="greedy", curvature="secant", progress=False)
    dap = approximate(dnet, dx, 5, select="greedy", curvature="secant", progress=False)
    assert dap.slopes_g.device.type == device.type
    torch.testing.assert_close(dap.predict(dx).cpu(), ap.predict(x), rtol=1e-8, atol=1e-10)


def test_partition_slice_through_a_cnn(device):
    net = _cnn()
    g = torch.Generator().manual_seed(3)
    pts = torch.randn(3, 1, 8, 8, generator=g, dtype=torch.float64)
    slc = maxaffine.Slice.through(*pts)
    ref = maxaffine.partition_slice(net, slc, progress=False)
    got = maxaffine.partition_slice(copy.deepcopy(net).to(device), slc, progress=False)
    assert got.n_regions == ref.n_regions
    np.testing.assert_allclose(np.sort(got.areas), np.sort(ref.areas), rtol=1e-9, atol=1e-12)
    assert got.verify(200)["n_checked"] > 0  # codes and maps against the model on the device


def test_float32_option_keeps_the_codes_and_approximates_the_map(device):
    """float32 traces: same codes away from boundaries, slopes to float32 rounding."""
    net = _mlp()
    x = torch.randn(200, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    ref = maxaffine.affine_map(net, x)
    tr32 = maxaffine.trace(copy.deepcopy(net).to(device), x[:2].to(device), dtype=torch.float32)
    m32 = maxaffine.affine_map(tr32, x.to(device))
    assert m32.A.dtype == torch.float32
    same = torch.stack([(m32.codes[k].cpu() == ref.codes[k]).flatten(1).all(1)
                        for k in ref.codes]).all(0)
    assert same.float().mean() > 0.95  # a code flips only within float32 rounding of a boundary
    torch.testing.assert_close(m32.A.cpu().double()[same], ref.A[same], rtol=1e-4, atol=1e-5)
