"""Per-layer MASOs and power diagrams against brute force and the torch layers."""

import itertools

import pytest
import torch
from torch import nn

import maxaffine
from maxaffine.testing import randomize_batchnorm


def _all_codes(K, R):
    return torch.tensor(list(itertools.product(range(R), repeat=K)))


@pytest.mark.parametrize("act", [nn.ReLU(), nn.LeakyReLU(0.2), nn.PReLU(5, 0.3), None])
def test_first_layer_maso_reproduces_layer_and_power_argmin_is_code(act):
    torch.manual_seed(0)

    class AbsNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 5)

        def forward(self, x):
            return torch.abs(self.fc(x))

    net = (nn.Sequential(nn.Linear(3, 5), act) if act is not None else AbsNet()).double()
    x = torch.randn(40, 3, dtype=torch.float64)
    layer = maxaffine.trace(net, x).piecewise[0]
    S = maxaffine.maso(net, layer, x[:1])
    torch.testing.assert_close(S.evaluate(x), net(x).detach())
    pd = maxaffine.power_diagram(net, layer, x)
    q = maxaffine.codes(net, x)[layer].long()
    assert torch.equal(pd.code, q)
    # brute force over all 2^5 codes: the power-distance argmin equals the VQ code
    cand = _all_codes(5, 2).expand(len(x), -1, -1)
    dist = pd.power_distance(x, cand)
    best = cand[torch.arange(len(x)), dist.argmin(1)]
    assert torch.equal(best, q)
    assert torch.equal(pd.assign(x), q)
    # the ReLU closed form mu = W^T q, rad = ||W^T q||^2 + 2 b^T q
    if isinstance(act, nn.ReLU):
        W, b = net[0].weight.detach(), net[0].bias.detach()
        mu = q.double() @ W
        torch.testing.assert_close(pd.centroid, mu)
        torch.testing.assert_close(pd.radius, (mu**2).sum(1) + 2 * q.double() @ b)


def test_deep_layer_pullback_restricted_to_region():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 1)).double()
    x = torch.randn(30, 2, dtype=torch.float64)
    pd = maxaffine.power_diagram(net, "3", x)
    q = maxaffine.codes(net, x)["3"].long()
    cand = _all_codes(4, 2).expand(len(x), -1, -1)
    best = cand[torch.arange(len(x)), pd.power_distance(x, cand).argmin(1)]
    assert torch.equal(best, q)
    # formula of DESIGN §5: mu_w = A_w^T W^T q, rad_w = ||mu_w||^2 + 2(<W^T q, b_w> + c^T q)
    first = maxaffine.affine_map(net, x, end="1")
    W, c = net[2].weight.detach(), net[2].bias.detach()
    mu_l = q.double() @ W  # (B, 6)
    mu_w = torch.einsum("bkd,bk->bd", first.A, mu_l)
    torch.testing.assert_close(pd.centroid, mu_w)
    rad = (mu_w**2).sum(1) + 2 * ((mu_l * first.b).sum(1) + q.double() @ c)
    torch.testing.assert_close(pd.radius, rad)
    # within x's region the pulled-back MASO reproduces the layer
    S = maxaffine.maso(net, "3", x[:1])
    torch.testing.assert_close(S.evaluate(x[:1]), net[:4](x[:1]).detach())
    # relative to the previous layer's output the MASO is global
    h = net[:2](x).detach()
    G = maxaffine.maso(net, "3", x[:1], start="1")
    torch.testing.assert_close(G.evaluate(h), net[2:4](h).detach())


def test_maxpool_and_maxout_maso():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 2), nn.BatchNorm2d(2), nn.MaxPool2d(2, stride=1, padding=1),
                        nn.Flatten()).double().eval()
    randomize_batchnorm(net)
    x = torch.randn(5, 1, 4, 4, dtype=torch.float64)
    layer = maxaffine.trace(net, x).piecewise[0]
    S = maxaffine.maso(net, layer, x[:1])
    torch.testing.assert_close(S.evaluate(x), net(x).detach())
    pd = maxaffine.power_diagram(net, layer, x)
    assert torch.equal(pd.assign(x), pd.code)
    # piece index -> window element equals torch's argmax index
    assert torch.equal(S.code(x), pd.code)

    class Maxout(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 12)

        def forward(self, x):
            return self.fc(x).view(-1, 4, 3).amax(2)

    m = Maxout().double()
    x = torch.randn(7, 3, dtype=torch.float64)
    S = maxaffine.maso(m, "amax", x[:1])
    torch.testing.assert_close(S.evaluate(x), m(x).detach())
    assert torch.equal(maxaffine.power_diagram(m, "amax", x).code, maxaffine.codes(m, x)["amax"])


def test_non_convex_layers_have_no_maso():
    net = nn.Sequential(nn.Linear(2, 3), nn.Hardtanh()).double()
    with pytest.raises(maxaffine.NotPiecewiseLinearError, match="not convex"):
        maxaffine.maso(net, "1", torch.randn(1, 2))
    with pytest.raises(maxaffine.InputError, match="not a piecewise"):
        maxaffine.maso(net, "0", torch.randn(1, 2))
