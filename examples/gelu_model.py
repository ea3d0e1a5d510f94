"""A model ``maxaffine report`` must refuse: GELU (and SiLU) are smooth, not piecewise-affine.

    maxaffine report --model examples/gelu_model.py:make_model --data digits

fails with exit code 1 and one message listing every offending module with the way out
(maxaffine.legendre for a max-affine approximation, or the soft-VQ reading of
maxaffine.activations).
"""

from __future__ import annotations

from torch import nn


def make_model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 32),
                         nn.SiLU(), nn.Linear(32, 10))
