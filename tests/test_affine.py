"""Exact affine maps and VQ codes on random architectures against independent oracles."""

import pytest
import torch
from archs import FAMILIES, random_network
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import maxaffine
from maxaffine.testing import jacobian_oracle


@given(family=st.sampled_from(FAMILIES), seed=st.integers(0, 10_000))
def test_affine_map_matches_autograd_and_model(family, seed):
    net, x = random_network(family, seed)
    m = maxaffine.affine_map(net, x)
    y = net(x).reshape(len(x), -1).detach()
    assert ((m(x) - y).norm() / y.norm()) < 1e-10
    torch.testing.assert_close(m.A, jacobian_oracle(net, x), rtol=1e-9, atol=1e-10)
    # the matrix-free map computes b independently (the fixed-code network at zero)
    lazy = maxaffine.affine_map(net, x, materialize=False)
    torch.testing.assert_close(lazy.b, m.b, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(torch.einsum("ncd,nd->nc", m.A, x.flatten(1)) + lazy.b, y,
                               rtol=1e-10, atol=1e-10)


@given(family=st.sampled_from(FAMILIES), seed=st.integers(0, 10_000))
def test_map_is_constant_on_the_region(family, seed):
    """A tiny step that keeps the code keeps the map; the affine prediction stays exact."""
    net, x = random_network(family, seed)
    m = maxaffine.affine_map(net, x)
    step = 1e-7 * torch.randn_like(x)
    moved = x + step
    q0, q1 = m.codes.region_keys(), maxaffine.codes(net, moved).region_keys()
    same = torch.tensor([a == b for a, b in zip(q0, q1)])
    y = net(moved).reshape(len(x), -1).detach()
    pred = m(moved)
    assert same.any()
    torch.testing.assert_close(pred[same], y[same], rtol=1e-9, atol=1e-12)


def test_intermediate_ranges_compose():
    net, x = random_network("mlp", 3, d=4)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2)).double()
    first = maxaffine.affine_map(net, x[:, :4] if x.shape[1] >= 4 else torch.randn(5, 4, dtype=torch.float64),
                                 end="1")
    xin = first.x
    h = net[1](net[0](xin))
    torch.testing.assert_close(first(xin), h.detach())
    second = maxaffine.affine_map(net, xin, start="1", end="3")
    torch.testing.assert_close(second(h.detach()), net[3](net[2](h)).detach())
    whole = maxaffine.affine_map(net, xin)
    last = maxaffine.affine_map(net, xin, start="3")
    composed = last.A @ second.A @ first.A
    torch.testing.assert_close(composed, whole.A)


def test_bypassing_start_is_refused():
    net, x = random_network("residual", 1)
    name = maxaffine.trace(net, x).piecewise[1]  # inside the first residual block
    with pytest.raises(maxaffine.InputError, match="bypasses"):
        maxaffine.affine_map(net, x, start=name)


def test_chunked_equals_unchunked_and_both_directions():
    torch.manual_seed(1)
    wide_out = nn.Sequential(nn.Linear(2, 7), nn.ReLU(), nn.Linear(7, 9)).double()  # D < C: forward
    x = torch.randn(11, 2, dtype=torch.float64)
    a = maxaffine.affine_map(wide_out, x)
    b = maxaffine.affine_map(wide_out, x, chunk_size=3)
    torch.testing.assert_close(a.A, b.A)
    torch.testing.assert_close(a.b, b.b)
    torch.testing.assert_close(a.A, jacobian_oracle(wide_out, x))
    assert torch.equal(a.codes.flat(), b.codes.flat())


def test_codes_and_region_keys():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 4), nn.LeakyReLU(0.1),
                        nn.Linear(4, 6), nn.Unflatten(1, (1, 6)), nn.MaxPool1d(2), nn.Flatten()).double()
    x = torch.randn(50, 2, dtype=torch.float64)
    q = maxaffine.codes(net, x)
    assert list(q) == ["1", "3", "6"]
    assert q["1"].dtype == torch.bool and q["6"].dtype == torch.int64
    # oracle: recompute activation patterns by hand
    h1 = net[0](x)
    assert torch.equal(q["1"], h1 > 0)
    h2 = net[2](net[1](h1))
    assert torch.equal(q["3"], h2 > 0)
    z = net[5](net[4](net[3](h2)))
    assert torch.equal(q["6"], torch.nn.functional.max_pool1d(z, 2, return_indices=True)[1])
    keys, ids = q.region_keys(), q.region_ids()
    for i in range(len(x)):
        for j in range(len(x)):
            same = bool(torch.equal(q.flat()[i], q.flat()[j]))
            assert (keys[i] == keys[j]) == same == bool(ids[i] == ids[j])
    # duplicated input -> same key
    assert maxaffine.codes(net, x[:1].repeat(2, 1)).region_keys()[0] == keys[0]


def test_matrix_free_products_for_image_inputs():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(4 * 13 * 13, 10)).double().eval()
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    lazy = maxaffine.affine_map(net, x, materialize=False)
    v = torch.randn_like(x)
    u = torch.randn(3, 10, dtype=torch.float64)
    jvp = torch.func.jvp(net, (x,), (v,))[1]
    torch.testing.assert_close(lazy.jvp(v), jvp)
    _, pullback = torch.func.vjp(net, x)
    torch.testing.assert_close(lazy.vjp(u), pullback(u)[0])
    torch.testing.assert_close(lazy(x), net(x).detach())


def test_bad_inputs_raise_clear_errors():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(maxaffine.InputError, match="shape"):
        maxaffine.affine_map(net, torch.randn(5, 4))
    bad = torch.randn(4, 3)
    bad[2, 1] = float("nan")
    with pytest.raises(maxaffine.InputError, match="NaN"):
        maxaffine.affine_map(maxaffine.trace(net, torch.randn(2, 3)), bad)
    m = maxaffine.affine_map(net, torch.randn(4, 3))
    with pytest.raises(maxaffine.InputError, match="must have shape"):
        m.jvp(torch.randn(2, 3))
    with pytest.raises(maxaffine.InputError, match="no layer named"):
        maxaffine.affine_map(net, torch.randn(4, 3), end="nope")


def test_single_unbatched_input_and_float32_model():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(3)
    m = maxaffine.affine_map(net, x)
    assert m.A.shape == (1, 2, 3) and m.A.dtype == torch.float64
    assert next(net.parameters()).dtype == torch.float32  # the user's model is untouched
