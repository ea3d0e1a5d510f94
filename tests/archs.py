"""Seeded random piecewise-affine architectures for property-based tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from maxaffine.testing import randomize_batchnorm


class Abs(nn.Module):
    def forward(self, x):
        return torch.abs(x)


ACTIVATIONS = {
    "relu": lambda c, g: nn.ReLU(),
    "leaky": lambda c, g: nn.LeakyReLU(0.1 + 0.5 * float(torch.rand((), generator=g))),
    "prelu": lambda c, g: _prelu(c, g),
    "abs": lambda c, g: Abs(),
    "hardtanh": lambda c, g: nn.Hardtanh(-0.7, 0.9),
    "relu6": lambda c, g: nn.ReLU6(),
}


def _prelu(c: int, g: torch.Generator) -> nn.PReLU:
    m = nn.PReLU(c)
    with torch.no_grad():
        m.weight.copy_(torch.rand(c, generator=g) * 0.6 - 0.1)
    return m


class Residual(nn.Module):
    def __init__(self, width, act):
        super().__init__()
        self.a, self.b, self.act = nn.Linear(width, width), nn.Linear(width, width), act

    def forward(self, x):
        return x + self.b(self.act(self.a(x)))


class Concat(nn.Module):
    def __init__(self, d, width, act1, act2):
        super().__init__()
        self.p, self.q = nn.Linear(d, width), nn.Linear(d, width)
        self.act1, self.act2 = act1, act2

    def forward(self, x):
        return torch.cat([self.act1(self.p(x)), self.act2(self.q(x))], dim=1)


class Maxout(nn.Module):
    def __init__(self, d, units, pieces):
        super().__init__()
        self.lin, self.units, self.pieces = nn.Linear(d, units * pieces), units, pieces

    def forward(self, x):
        return self.lin(x).view(x.size(0), self.units, self.pieces).max(dim=2)[0]


class ResBlock2d(nn.Module):
    def __init__(self, c, act):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.act = act

    def forward(self, x):
        return F.relu(x + self.conv2(self.act(self.bn1(self.conv1(x)))))


def random_network(family: str, seed: int, d: int = 3, n_out: int = 3):
    """A seeded random network of a family and an example input batch, both float64.

    Families: ``mlp``, ``residual``, ``concat``, ``maxout``, ``cnn``, ``resnet``.
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    names = list(ACTIVATIONS)

    def act(c):
        return ACTIVATIONS[names[int(torch.randint(len(names), (), generator=g))]](c, g)

    def width():
        return int(torch.randint(2, 9, (), generator=g))

    if family == "mlp":
        layers, prev = [], d
        for _ in range(int(torch.randint(1, 4, (), generator=g))):
            w = width()
            layers += [nn.Linear(prev, w), act(w)]
            if torch.rand((), generator=g) < 0.3:
                layers.append(nn.BatchNorm1d(w))
            prev = w
        net = nn.Sequential(*layers, nn.Linear(prev, n_out))
        x = torch.randn(6, d, generator=g)
    elif family == "residual":
        w = width()
        net = nn.Sequential(nn.Linear(d, w), act(w), Residual(w, act(w)), Residual(w, act(w)),
                            nn.Linear(w, n_out))
        x = torch.randn(6, d, generator=g)
    elif family == "concat":
        w = width()
        net = nn.Sequential(Concat(d, w, act(w), act(w)), nn.Linear(2 * w, w), act(w),
                            nn.Linear(w, n_out))
        x = torch.randn(6, d, generator=g)
    elif family == "maxout":
        net = nn.Sequential(Maxout(d, width(), int(torch.randint(2, 5, (), generator=g))))
        units = net[0].units
        net.append(nn.Linear(units, n_out))
        x = torch.randn(6, d, generator=g)
    elif family == "cnn":
        c = int(torch.randint(1, 4, (), generator=g))
        pool = [nn.MaxPool2d(2), nn.AvgPool2d(2), nn.MaxPool2d(3, stride=1, padding=1),
                nn.AdaptiveMaxPool2d(3)][int(torch.randint(4, (), generator=g))]
        net = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), act(c), pool,
                            nn.Conv2d(c, 2, 2, stride=1), act(2), nn.Flatten())
        with torch.no_grad():
            flat = net(torch.zeros(2, 1, 6, 6)).shape[1]
        net.append(nn.Linear(flat, n_out))
        x = torch.randn(4, 1, 6, 6, generator=g)
    elif family == "resnet":
        net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), ResBlock2d(2, act(2)),
                            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(8, n_out))
        x = torch.randn(4, 1, 5, 5, generator=g)
    else:
        raise ValueError(family)
    randomize_batchnorm(net, g)
    return net.eval().double(), x.double()


FAMILIES = ("mlp", "residual", "concat", "maxout", "cnn", "resnet")
