"""Softshrink and transposed convolutions, each added as one rule class in one file."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import maxaffine
from maxaffine.errors import NotConvexError
from maxaffine.testing import check_rule, jacobian_oracle


def test_softshrink_codes_pieces_and_convexity():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 6), nn.Softshrink(0.3), nn.Linear(6, 1)).double()
    x = 2 * torch.randn(40, 2, dtype=torch.float64)
    u = net[0](x)
    want = torch.where(u < -0.3, 0, torch.where(u > 0.3, 2, 1))  # closed form of the code
    assert torch.equal(maxaffine.codes(net, x)["1"].long(), want)
    m = maxaffine.affine_map(net, x)
    torch.testing.assert_close(m.A, jacobian_oracle(net, x), rtol=1e-12, atol=1e-12)
    with pytest.raises(NotConvexError):
        maxaffine.maso(net, "1", x[:1])
    single = nn.Sequential(nn.Linear(1, 1), nn.Softshrink(0.5)).double()
    with torch.no_grad():
        single[0].weight.fill_(1.0)
        single[0].bias.zero_()
    report = maxaffine.is_convex(single, torch.linspace(-2, 2, 64, dtype=torch.float64)[:, None])
    assert not report.structural and report.reasons[0].reason == "not convex"
    assert report.status == "disproved"  # the slope drops from 1 to 0 at -λ
    path = maxaffine.partition_path(single, torch.tensor([[-2.0], [2.0]], dtype=torch.float64))
    # u = -2 + 4τ crosses ∓λ = ∓0.5 at τ = 0.375 and 0.625
    torch.testing.assert_close(torch.from_numpy(path.breakpoints),
                               torch.tensor([0.375, 0.625], dtype=torch.float64))


def test_softshrink_is_continuous_piecewise_affine_not_smooth():
    supported = maxaffine.supported_layers()
    assert "nn.Softshrink" in supported and "F.softshrink" in supported
    assert "not convex" in supported["nn.Softshrink"]


CASES = [
    (1, {"stride": 2, "padding": 1, "output_padding": 1, "groups": 1, "dilation": 1}),
    (1, {"stride": 3, "padding": 0, "output_padding": 2, "groups": 2, "dilation": 2}),
    (2, {"stride": (2, 1), "padding": (1, 0), "output_padding": (1, 0), "groups": 2, "dilation": (1, 2)}),
    (2, {"stride": 1, "padding": 2, "output_padding": 0, "groups": 1, "dilation": 3}),
    (3, {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2, "dilation": 1}),
]


@pytest.mark.parametrize("dims, kw", CASES)
def test_conv_transpose_matches_autograd_for_every_parameter(dims, kw):
    g = torch.Generator().manual_seed(dims)
    cls = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[dims - 1]
    conv = cls(2, 4, 3, **kw).double()
    size = (4, 3, 2)[dims - 1]
    x = torch.randn(3, 2, *([size] * dims), generator=g, dtype=torch.float64)
    net = nn.Sequential(conv, nn.ReLU(), nn.Flatten()).double()
    m = maxaffine.affine_map(net, x)
    torch.testing.assert_close(m.A, jacobian_oracle(net, x), rtol=1e-10, atol=1e-10)
    lazy = maxaffine.affine_map(net, x, materialize=False)
    u = torch.randn(len(x), m.A.shape[1], generator=g, dtype=torch.float64)
    torch.testing.assert_close(lazy.vjp(u).flatten(1), torch.einsum("nc,ncd->nd", u, m.A))


def test_conv_transpose_with_output_size_and_in_every_analysis():
    report = check_rule(maxaffine.layers.REGISTRY[nn.ConvTranspose2d])
    assert {"partition_slice", "partition_path", "local_complexity", "is_convex"} <= set(
        report.checked)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Unflatten(1, (2, 2, 2)),
                        nn.ConvTranspose2d(2, 1, 2, stride=2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(16, 1)).double()
    with torch.no_grad():
        net[3].weight.abs_()
        net[6].weight.abs_()
    x = torch.randn(32, 2, dtype=torch.float64)
    assert maxaffine.is_convex(net, x).status == "proved"
    with torch.no_grad():
        net[3].weight[0, 0, 0, 0] = -1.0
    assert [r.path for r in maxaffine.is_convex(net).reasons] == ["3"]
    part = maxaffine.partition_slice(net, maxaffine.Slice.box((-2, 2, -2, 2)), progress=False)
    part.verify(n_samples=300)
