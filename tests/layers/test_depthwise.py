"""The shifted-sum depthwise convolution equals torch's, and its transpose is the adjoint."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from maxaffine.layers._depthwise import depthwise_conv2d, depthwise_conv2d_input, fast_depthwise


@pytest.mark.parametrize("seed", range(12))
def test_depthwise_matches_conv2d_and_its_transpose(seed):
    g = torch.Generator().manual_seed(seed)
    pick = lambda *xs: xs[int(torch.randint(len(xs), (1,), generator=g))]
    C, mult, k = pick(2, 3, 8), pick(1, 2), pick(1, 2, 3, 5)
    stride, dil, pad = (pick(1, 2, 3), pick(1, 2)), (pick(1, 2), pick(1, 3)), (pick(0, 1, 2), pick(0, 2))
    H, W = pick(5, 8, 9), pick(6, 7)
    x = torch.randn(3, C, H, W, dtype=torch.float64, generator=g)
    w = torch.randn(C * mult, 1, k, pick(k, 1), dtype=torch.float64, generator=g)
    b = torch.randn(C * mult, dtype=torch.float64, generator=g)
    try:
        ref = F.conv2d(x, w, b, stride, pad, dil, C)
    except RuntimeError:
        pytest.skip("kernel larger than the padded input")
    assert fast_depthwise(x, w, C, pad)
    # same products summed in another order: float64 rounding only
    assert torch.allclose(depthwise_conv2d(x, w, b, stride, pad, dil), ref, atol=1e-12, rtol=0)
    grad = torch.randn(ref.shape, dtype=torch.float64, generator=g)
    xr = x.clone().requires_grad_(True)
    (F.conv2d(xr, w, None, stride, pad, dil, C) * grad).sum().backward()
    got = depthwise_conv2d_input(x.shape, w, grad, stride, pad, dil)
    assert torch.allclose(got, xr.grad, atol=1e-12, rtol=0)


def test_only_cpu_float64_depthwise_takes_the_fast_path():
    x = torch.zeros(2, 4, 5, 5, dtype=torch.float64)
    assert not fast_depthwise(x.float(), torch.zeros(4, 1, 3, 3), 4, (1, 1))
    assert not fast_depthwise(x, torch.zeros(4, 2, 3, 3, dtype=torch.float64), 2, (1, 1))
    assert not fast_depthwise(x, torch.zeros(4, 1, 3, 3, dtype=torch.float64), 4, "same")
