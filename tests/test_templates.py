"""Templates, logit decomposition, memorization and VQ distance against independent oracles."""

import numpy as np
import pytest
import torch
from torch import nn

import maxaffine
from maxaffine.errors import InputError
from maxaffine.templates import logit_decomposition, memorization, templates, vq_distance


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 16), nn.ReLU(),
                         nn.Linear(16, 5)).double().eval()


def test_templates_equal_jacrev_rows():
    net = _cnn()
    x = torch.randn(6, 1, 8, 8, dtype=torch.float64)
    T = templates(net, x)
    assert T.shape == (6, 5, 1, 8, 8)
    jac = torch.func.vmap(torch.func.jacrev(lambda z: net(z[None])[0]))(x)
    # exact up to float64 rounding of different summation orders
    torch.testing.assert_close(T, jac, rtol=1e-10, atol=1e-12)


def test_templates_public_name_and_chunking():
    net = _cnn()
    x = torch.randn(7, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(maxaffine.templates(net, x, chunk_size=2), templates(net, x))


def test_logit_decomposition_sums_to_output_and_inner_is_template_product():
    net = _cnn()
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    d = logit_decomposition(net, x)
    torch.testing.assert_close(d.logits, net(x), rtol=1e-10, atol=1e-12)
    jac = torch.func.vmap(torch.func.jacrev(lambda z: net(z[None])[0]))(x)
    inner = (jac.reshape(5, 5, -1) * x.reshape(5, 1, -1)).sum(-1)
    torch.testing.assert_close(d.inner, inner, rtol=1e-10, atol=1e-12)


def test_memorization_cosines_match_manual_formula():
    net = _cnn()
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 3, 4, 1])
    mem = memorization(net, x, y)
    jac = torch.func.vmap(torch.func.jacrev(lambda z: net(z[None])[0]))(x).reshape(4, 5, -1)
    xf = x.reshape(4, -1)
    cos = torch.nn.functional.cosine_similarity(jac, xf[:, None], dim=-1)
    torch.testing.assert_close(mem.cosine, cos)
    torch.testing.assert_close(mem.true, cos[torch.arange(4), y])
    other = (cos.sum(1) - cos[torch.arange(4), y]) / 4
    torch.testing.assert_close(mem.other, other)
    s = mem.summary()
    assert s["gap"] == pytest.approx(s["cos_true"] - s["cos_other"])


def test_memorization_rejects_bad_labels():
    net = _cnn()
    with pytest.raises(InputError, match="labels"):
        memorization(net, torch.randn(2, 1, 8, 8), torch.tensor([0, 7]))


def test_vq_distance_matches_bruteforce_relu_masks():
    rng = np.random.default_rng(1)
    W1, b1 = rng.standard_normal((6, 3)), rng.standard_normal(6)
    W2, b2 = rng.standard_normal((5, 6)), rng.standard_normal(5)
    net = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(W1))
        net[0].bias.copy_(torch.tensor(b1))
        net[2].weight.copy_(torch.tensor(W2))
        net[2].bias.copy_(torch.tensor(b2))
    X1, X2 = rng.standard_normal((7, 3)), rng.standard_normal((4, 3))

    def masks(X):
        z1 = X @ W1.T + b1
        z2 = np.maximum(z1, 0) @ W2.T + b2
        return z1 > 0, z2 > 0

    a1, a2 = masks(X1)
    c1, c2 = masks(X2)
    expect = np.zeros((7, 4))
    for i in range(7):
        for j in range(4):
            expect[i, j] = 0.5 * np.mean(a1[i] != c1[j]) + 0.5 * np.mean(a2[i] != c2[j])
    d = vq_distance(net, torch.tensor(X1), torch.tensor(X2))
    np.testing.assert_allclose(d.numpy(), expect, atol=1e-15)
    # one layer, custom weight
    tr = maxaffine.trace(net, torch.tensor(X1))
    first = tr.piecewise[0]
    d1 = vq_distance(net, torch.tensor(X1), torch.tensor(X2), layers=[first], weights=[2.0])
    np.testing.assert_allclose(d1.numpy(), 2 * np.mean(a1[:, None] != c1[None], -1), atol=1e-15)


def test_vq_distance_maxpool_codes_and_symmetry():
    net = _cnn()
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    tr = maxaffine.trace(net, x)
    pool = [n for n in tr.piecewise if tr.node(n).op.endswith("MaxPool2d")][0]
    d = vq_distance(net, x, layers=[pool])
    # oracle: argmax indices from max_pool2d(return_indices=True) on the ReLU output
    h = torch.relu(net[0](x))
    _, idx = torch.nn.functional.max_pool2d(h, 2, return_indices=True)
    idx = idx.reshape(5, -1)
    expect = (idx[:, None] != idx[None]).double().mean(-1)
    # ties (both zero after ReLU) may pick different but equal elements: compare only where
    # every window has a unique max
    torch.testing.assert_close(d, d.T)
    assert torch.all(d.diagonal() == 0)
    hw = h.unfold(2, 2, 2).unfold(3, 2, 2).reshape(5, -1, 4)
    unique = ((hw == hw.max(-1, keepdim=True).values).sum(-1) == 1).all(1)
    sel = unique.nonzero().flatten()
    if len(sel) >= 2:
        torch.testing.assert_close(d[sel][:, sel], expect[sel][:, sel])


def test_vq_distance_errors():
    net = _cnn()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    with pytest.raises(InputError, match="not a piecewise"):
        vq_distance(net, x, layers=["nope"])
    with pytest.raises(InputError, match="weights"):
        vq_distance(net, x, weights=[1.0])
