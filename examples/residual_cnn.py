"""A residual CNN for 8x8 digits, used with ``maxaffine report``.

    python examples/residual_cnn.py                 # trains briefly, saves residual_cnn.pt
    maxaffine report --model examples/residual_cnn.py:make_model \
        --weights residual_cnn.pt --data digits --points 0,1255,511 --out residual-report

The residual block computes relu(conv2(relu(conv1(z))) + z): a sum of piecewise-affine maps,
so the whole network is still a composition of max-affine spline operators, affine on each
linear region, and maxaffine reads it exactly.
"""

from __future__ import annotations

import sys

import torch
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(torch.relu(self.bn(self.conv1(z)))) + z)


class ResidualCNN(nn.Module):
    def __init__(self, channels: int = 8, n_classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(1, channels, 3, padding=1)
        self.block = ResidualBlock(channels)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(channels * 4 * 4, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.pool(self.block(torch.relu(self.stem(x))))
        return self.head(z.flatten(1))


def make_model() -> nn.Module:
    """The factory ``maxaffine report --model examples/residual_cnn.py:make_model`` calls."""
    torch.manual_seed(0)
    return ResidualCNN()


if __name__ == "__main__":
    from maxaffine.datasets import digits
    from maxaffine.training import accuracy, train

    out = sys.argv[1] if len(sys.argv) > 1 else "residual_cnn.pt"
    data = digits(image=True)
    model = make_model()
    train(model, data.X_train, data.y_train, epochs=5, lr=3e-3, progress=True)
    print(f"test accuracy {accuracy(model, data.X_test, data.y_test):.3f}")
    torch.save(model.state_dict(), out)  # a state_dict: loads with weights_only=True
    print(f"saved {out}")
