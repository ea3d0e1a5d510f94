"""Tests for maxaffine.activations: closed forms, limits, gradients, shapes, errors.

The oracle for every soft/beta-VQ value is the general formula t = softmax(eta * pieces),
z = sum_r t_r p_r evaluated with scipy in float64, independently of the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import softmax as sp_softmax
from torch.nn import functional as F

from maxaffine.activations import BetaVQ, beta_to_eta, beta_vq, soft_maso, soft_vq_pieces
from maxaffine.errors import InputError
from maxaffine.power import MASO

# float64 throughout; closed forms agree with the softmax formula up to rounding (~1e-15
# relative), so 1e-10 absolute on O(10) values leaves wide room and still catches any error.
TOL = 1e-10


def _u(shape=(64,), seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64) * scale


def _stack(u: torch.Tensor, pieces: str, nu: float = 0.01) -> np.ndarray:
    u = u.numpy()
    if pieces == "relu":
        return np.stack([np.zeros_like(u), u], -1)
    if pieces == "leaky_relu":
        return np.stack([nu * u, u], -1)
    if pieces == "abs":
        return np.stack([-u, u], -1)
    raise AssertionError(pieces)


def _oracle(p: np.ndarray, beta: float):
    eta = beta / (1 - beta)
    t = sp_softmax(eta * p, axis=-1)
    return t, (t * p).sum(-1)


# ---------------------------------------------------------------- closed forms vs oracle

@pytest.mark.parametrize("pieces", ["relu", "leaky_relu", "abs"])
@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.8, 0.97])
def test_closed_form_matches_general_formula(pieces, beta):
    u = _u()
    nu = 0.2
    t, z = _oracle(_stack(u, pieces, nu), beta)
    got = beta_vq(u, pieces, beta, negative_slope=nu)
    np.testing.assert_allclose(got.numpy(), z, atol=TOL)
    prob = beta_vq(u, pieces, beta, negative_slope=nu, output="probability").numpy()
    # expected code: P(on piece) for ReLU-like, E[sign] for abs
    expected = t[..., 1] if pieces != "abs" else t[..., 1] - t[..., 0]
    np.testing.assert_allclose(prob, expected, atol=TOL)
    # the general-pieces function agrees with the same oracle
    p = torch.from_numpy(_stack(u, pieces, nu))
    np.testing.assert_allclose(soft_vq_pieces(p, beta).numpy(), z, atol=TOL)
    np.testing.assert_allclose(soft_vq_pieces(p, beta, output="probability").numpy(), t,
                               atol=TOL)


@settings(max_examples=40, deadline=None)
@given(beta=st.floats(0.0, 0.995), nu=st.floats(-2.0, 0.95), seed=st.integers(0, 10_000))
def test_leaky_closed_form_property(beta, nu, seed):
    u = _u((16,), seed)
    _, z = _oracle(_stack(u, "leaky_relu", nu), beta)
    got = beta_vq(u, "leaky_relu", beta, negative_slope=nu).numpy()
    np.testing.assert_allclose(got, z, atol=1e-9, rtol=1e-9)


def test_soft_relu_is_silu_and_swish():
    u = _u((200,), 1)
    np.testing.assert_allclose(beta_vq(u, "relu", 0.5).numpy(), F.silu(u).numpy(), atol=1e-12)
    np.testing.assert_allclose(BetaVQ("relu", 0.5)(u).numpy(), F.silu(u).numpy(), atol=1e-12)
    for b in (0.1, 1.0, 3.7):  # swish_b(u) = u sigmoid(b u) is beta-VQ with eta = b
        beta = b / (1 + b)
        swish = u * torch.sigmoid(b * u)
        np.testing.assert_allclose(beta_vq(u, "relu", beta).numpy(), swish.numpy(), atol=1e-12)
        act = BetaVQ("relu", beta, learn_beta=True, dtype=torch.float64)
        np.testing.assert_allclose(act.eta.item(), b, rtol=1e-12)
        np.testing.assert_allclose(act(u).detach().numpy(), swish.numpy(), atol=1e-12)


def test_probability_outputs_are_sigmoid_tanh_softmax():
    u = _u((50,), 2)
    eta = 0.7 / 0.3
    np.testing.assert_allclose(beta_vq(u, "relu", 0.7, output="probability").numpy(),
                               torch.sigmoid(eta * u).numpy(), atol=1e-12)
    np.testing.assert_allclose(beta_vq(u, "abs", 0.7, output="probability").numpy(),
                               torch.tanh(eta * u).numpy(), atol=1e-12)
    np.testing.assert_allclose(beta_vq(u, "relu", 0.5, output="probability").numpy(),
                               torch.sigmoid(u).numpy(), atol=1e-12)
    x = _u((2, 3, 6, 4), 3)
    prob = beta_vq(x, "maxpool", 0.7, output="probability", kernel_size=2)
    cols = F.unfold(x, 2, stride=2).reshape(2, 3, 4, 3, 2)  # (N, C, window, Ho, Wo)
    oracle = torch.softmax(eta * cols, dim=2).permute(0, 1, 3, 4, 2)
    np.testing.assert_allclose(prob.numpy(), oracle.numpy(), atol=1e-12)
    np.testing.assert_allclose(prob.sum(-1).numpy(), 1.0, atol=1e-12)


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 0.9])
def test_maxpool_value_matches_oracle_1d_and_2d(beta):
    x = _u((2, 3, 7), 4)  # L = 7, kernel 3, stride 2 -> 3 windows
    eta = beta / (1 - beta)
    windows = np.stack([x.numpy()[..., i:i + 3] for i in (0, 2, 4)], axis=2)
    _, z = _oracle(windows, beta)
    got = beta_vq(x, "maxpool", beta, kernel_size=3, stride=2)
    np.testing.assert_allclose(got.numpy(), z, atol=TOL)
    x2 = _u((2, 2, 6, 6), 5)
    cols = F.unfold(x2, (2, 3), stride=(2, 3)).reshape(2, 2, 6, 3, 2).permute(0, 1, 3, 4, 2)
    t = torch.softmax(eta * cols, -1)
    got2 = beta_vq(x2, "maxpool", beta, kernel_size=(2, 3))
    np.testing.assert_allclose(got2.numpy(), (t * cols).sum(-1).numpy(), atol=TOL)


# ---------------------------------------------------------------- limits

def test_hard_limit_is_the_maso_exactly():
    u = torch.cat([_u((100,), 6), torch.tensor([0.0, -0.0, 1e-300, -1e-300],
                                               dtype=torch.float64)])
    assert torch.equal(beta_vq(u, "relu", 1.0), F.relu(u))
    assert torch.equal(beta_vq(u, "leaky_relu", 1.0, negative_slope=0.1),
                       F.leaky_relu(u, 0.1))
    assert torch.equal(beta_vq(u, "abs", 1.0), u.abs())
    assert torch.equal(beta_vq(u, "relu", 1.0, output="probability"), (u > 0).double())
    x = _u((2, 3, 8), 7)
    assert torch.equal(beta_vq(x, "maxpool", 1.0, kernel_size=2), F.max_pool1d(x, 2))
    x2 = _u((2, 3, 6, 6), 8)
    assert torch.equal(beta_vq(x2, "maxpool", 1.0, kernel_size=3, stride=(3, 2)),
                       F.max_pool2d(x2, 3, stride=(3, 2)))
    assert torch.equal(BetaVQ("relu", 1.0)(u), F.relu(u))


def test_near_hard_limit_is_stable_and_close():
    beta = 1 - 1e-9  # eta ~ 1e9: a huge but finite inverse temperature
    u = torch.cat([_u((100,), 9, 100.0), torch.tensor([0.0, 1e-12, -1e-12, 1e6, -1e6],
                                                       dtype=torch.float64)])
    # |sigma(eta u) u - relu(u)| <= max_u |u| sigma(-eta |u|) ~ 0.28 / eta ~ 3e-10
    np.testing.assert_allclose(beta_vq(u, "relu", beta).numpy(), F.relu(u).numpy(), atol=1e-6)
    np.testing.assert_allclose(beta_vq(u, "leaky_relu", beta, negative_slope=0.2).numpy(),
                               F.leaky_relu(u, 0.2).numpy(), atol=1e-6)
    np.testing.assert_allclose(beta_vq(u, "abs", beta).numpy(), u.abs().numpy(), atol=1e-6)
    x = _u((2, 3, 6, 6), 10)
    np.testing.assert_allclose(beta_vq(x, "maxpool", beta, kernel_size=2).numpy(),
                               F.max_pool2d(x, 2).numpy(), atol=1e-6)


def test_uniform_limit_is_average_of_pieces():
    u = _u((100,), 11)
    np.testing.assert_allclose(beta_vq(u, "relu", 0.0).numpy(), (u / 2).numpy(), atol=1e-15)
    np.testing.assert_allclose(beta_vq(u, "leaky_relu", 0.0, negative_slope=0.3).numpy(),
                               (0.65 * u).numpy(), atol=1e-14)
    np.testing.assert_allclose(beta_vq(u, "abs", 0.0).numpy(), 0.0, atol=1e-15)
    x = _u((2, 3, 6, 6), 12)
    np.testing.assert_allclose(beta_vq(x, "maxpool", 0.0, kernel_size=3).numpy(),
                               F.avg_pool2d(x, 3).numpy(), atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("pieces", ["relu", "leaky_relu", "abs", "maxpool"])
def test_no_nan_or_inf_for_large_inputs(dtype, pieces):
    big = 1e30 if dtype == torch.float32 else 1e200
    u = torch.tensor([[-big, -1.0, 0.0, big, 3.0, -big / 3]], dtype=dtype).reshape(1, 1, 6)
    for beta in (0.0, 1e-9, 0.5, 1 - 1e-9, 1.0):
        x = u.clone().requires_grad_(True)
        out = beta_vq(x, pieces, beta, kernel_size=2)
        assert torch.isfinite(out).all(), (beta, out)
        out.sum().backward()
        assert torch.isfinite(x.grad).all(), (beta, x.grad)
    # a learned eta far out in the tail (theta = 60 -> eta ~ 1e26) also stays finite
    act = BetaVQ(pieces, 0.5, learn_beta=True, kernel_size=2).to(dtype)
    with torch.no_grad():
        act.beta_logit.fill_(60.0)
    x = u.clone().requires_grad_(True)
    act(x).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(act.beta_logit.grad).all()


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("pieces", ["relu", "leaky_relu", "abs", "maxpool"])
def test_gradcheck_wrt_input_and_beta(pieces):
    x = _u((2, 3, 6), 13).requires_grad_(True)
    shape = (1, 3, 3) if pieces == "maxpool" else (1, 3, 6)
    beta = torch.full(shape, 0.6, dtype=torch.float64).requires_grad_(True)
    torch.autograd.gradcheck(
        lambda a, b: beta_vq(a, pieces, b, negative_slope=0.1, kernel_size=2), (x, beta))
    torch.autograd.gradcheck(
        lambda a, b: beta_vq(a, pieces, b, output="probability", kernel_size=2), (x, beta))


@pytest.mark.parametrize("pieces", ["relu", "leaky_relu", "abs", "maxpool"])
def test_gradcheck_learned_per_channel_beta(pieces):
    act = BetaVQ(pieces, [0.3, 0.5, 0.8], learn_beta=True, num_channels=3, kernel_size=2,
                 dtype=torch.float64)
    x = _u((2, 3, 4, 4), 14).requires_grad_(True)
    theta = act.beta_logit.detach().clone().requires_grad_(True)

    def f(a, th):
        return torch.func.functional_call(act, {"beta_logit": th}, (a,))

    torch.autograd.gradcheck(f, (x, theta))


def test_soft_vq_pieces_padding_and_gradcheck():
    p = _u((5, 4, 3), 15).requires_grad_(True)
    beta = torch.full((5, 4), 0.4, dtype=torch.float64).requires_grad_(True)
    torch.autograd.gradcheck(lambda a, b: soft_vq_pieces(a, b), (p, beta))
    # -inf pieces are padding: same value and finite gradients, for every beta incl. 0 and 1
    pad = torch.cat([p.detach(), torch.full((5, 4, 2), -math.inf, dtype=torch.float64)], -1)
    for b in (0.0, 0.4, 1.0):
        q = pad.clone().requires_grad_(True)
        out = soft_vq_pieces(q, b)
        np.testing.assert_allclose(out.detach().numpy(), soft_vq_pieces(p.detach(), b).numpy(),
                                   atol=1e-14)
        out.sum().backward()
        assert torch.isfinite(q.grad).all()
        assert (q.grad[..., 3:] == 0).all()


def test_learned_beta_trains_and_stays_in_unit_interval():
    torch.manual_seed(0)
    act = BetaVQ("relu", 0.5, learn_beta=True, num_channels=4)
    opt = torch.optim.SGD(act.parameters(), lr=50.0)
    x = torch.randn(64, 4)
    for _ in range(5):  # push beta towards 1 hard: target is ReLU
        loss = ((act(x) - F.relu(x)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    beta = act.beta.detach()
    assert ((beta > 0.5) & (beta <= 1)).all()
    assert isinstance(act.beta_logit, torch.nn.Parameter)


# ---------------------------------------------------------------- shapes, MASO, errors

@pytest.mark.parametrize("shape", [(5, 3), (5, 3, 7), (5, 3, 4, 6)])
@pytest.mark.parametrize("pieces", ["relu", "leaky_relu", "abs"])
def test_per_channel_beta_shapes(shape, pieces):
    betas = [0.2, 0.5, 0.9]
    x = _u(shape, 16)
    for learn in (False, True):
        act = BetaVQ(pieces, betas, learn_beta=learn, num_channels=3, dtype=torch.float64)
        out = act(x)
        assert out.shape == x.shape
        for c, b in enumerate(betas):  # oracle: channel c alone with a scalar beta
            np.testing.assert_allclose(out[:, c].detach().numpy(),
                                       beta_vq(x[:, c], pieces, b).numpy(), atol=1e-12)


def test_channel_dim_last_and_maxpool_per_channel():
    x = _u((4, 7, 3), 17)
    act = BetaVQ("abs", [0.2, 0.5, 0.9], num_channels=3, channel_dim=-1, dtype=torch.float64)
    np.testing.assert_allclose(act(x)[..., 2].numpy(), beta_vq(x[..., 2], "abs", 0.9).numpy(),
                               atol=1e-12)
    x2 = _u((2, 3, 4, 4), 18)
    pool = BetaVQ("maxpool", [0.2, 0.5, 0.9], num_channels=3, kernel_size=2,
                  dtype=torch.float64)
    out = pool(x2)
    assert out.shape == (2, 3, 2, 2)
    np.testing.assert_allclose(out[:, 1].numpy(),
                               beta_vq(x2[:, 1:2], "maxpool", 0.5, kernel_size=2)[:, 0].numpy(),
                               atol=1e-12)
    prob = BetaVQ("maxpool", 0.5, kernel_size=2, output="probability")(x2)
    assert prob.shape == (2, 3, 2, 2, 4)


def test_soft_maso_matches_units_and_hard_limit():
    g = torch.Generator().manual_seed(19)
    A = torch.randn(4, 3, 2, generator=g, dtype=torch.float64)
    B = torch.randn(4, 3, generator=g, dtype=torch.float64)
    maso = MASO(A, B)
    x = torch.randn(10, 2, generator=g, dtype=torch.float64)
    p = (torch.einsum("krd,nd->nkr", A, x) + B).numpy()
    _, z = _oracle(p, 0.5)
    np.testing.assert_allclose(soft_maso(maso, x, 0.5).numpy(), z, atol=TOL)
    assert torch.equal(soft_maso(maso, x, 1.0), maso.evaluate(x))
    assert torch.equal(soft_maso(maso, x, 1.0, output="probability").argmax(-1), maso.code(x))


def test_beta_to_eta():
    np.testing.assert_allclose(beta_to_eta(torch.tensor([0.0, 0.5, 0.75])).numpy(), [0, 1, 3])
    assert math.isinf(beta_to_eta(1.0).item())


def test_errors():
    u = _u((3, 4), 20)
    with pytest.raises(InputError, match="beta must lie in"):
        beta_vq(u, "relu", 1.5)
    with pytest.raises(InputError, match="beta must lie in"):
        BetaVQ("relu", -0.1)
    with pytest.raises(InputError, match="pieces must be one of"):
        beta_vq(u, "gelu", 0.5)
    with pytest.raises(InputError, match="output must be one of"):
        BetaVQ("relu", output="logits")
    with pytest.raises(InputError, match="negative_slope"):
        beta_vq(u, "leaky_relu", 0.5, negative_slope=1.0)
    with pytest.raises(InputError, match="kernel_size"):
        BetaVQ("maxpool")
    with pytest.raises(InputError, match="kernel_size"):
        beta_vq(u.reshape(1, 3, 4), "maxpool", 0.5, kernel_size=5)
    with pytest.raises(InputError, match=r"\(N, C, L\)"):
        beta_vq(u, "maxpool", 0.5, kernel_size=2)
    with pytest.raises(InputError, match="open"):
        BetaVQ("relu", 1.0, learn_beta=True)
    with pytest.raises(InputError, match="num_channels"):
        BetaVQ("relu", [0.5, 0.5], num_channels=3)
    with pytest.raises(InputError, match="num_channels"):
        BetaVQ("relu", [0.5, 0.5])
    with pytest.raises(InputError, match="num_channels=3"):
        BetaVQ("relu", 0.5, num_channels=3)(u)
    with pytest.raises(InputError, match="last dimension"):
        soft_vq_pieces(torch.zeros(3, 0), 0.5)
