"""Depthwise 2D convolution as nine (k_h k_w) shifted multiply-adds.

PyTorch's CPU kernels for grouped convolution in float64 run one small convolution per
group; a depthwise layer of 576 channels on a 4x4 map takes ~1 s at batch 2 (MobileNetV2
at 32x32 input spends most of its float64 forward there), while the same sum written as
one ``addcmul`` per kernel offset over all channels takes ~1 ms. Both compute

.. math::
    y_{b,o,h,w} = \\sum_{i,j} W_{o,0,i,j}\\, x_{b,\\lfloor o/m \\rfloor, s h + d i - p, s w + d j - p}

(``m`` output channels per input channel, zero padding ``p``, stride ``s``, dilation ``d``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fast_depthwise(x: torch.Tensor, weight: torch.Tensor, groups: int, padding) -> bool:
    """Whether :func:`depthwise_conv2d` should replace ``F.conv2d`` for this call."""
    return (x.device.type == "cpu" and x.dtype == torch.float64 and x.dim() == 4
            and weight.dim() == 4 and groups > 1 and weight.shape[1] == 1
            and groups == x.shape[1] and not isinstance(padding, str))


def _out_size(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _window(t: torch.Tensor, i: int, j: int, shape, stride, dilation) -> torch.Tensor:
    Ho, Wo = shape
    r0, c0 = i * dilation[0], j * dilation[1]
    return t[:, :, r0:r0 + stride[0] * (Ho - 1) + 1:stride[0],
             c0:c0 + stride[1] * (Wo - 1) + 1:stride[1]]


def depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     stride, padding, dilation) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride, padding, dilation, groups=C)``, shape (B, O, Ho, Wo)."""
    B, C, H, W = x.shape
    O, _, kh, kw = weight.shape
    shape = (_out_size(H, kh, stride[0], padding[0], dilation[0]),
             _out_size(W, kw, stride[1], padding[1], dilation[1]))
    xp = F.pad(x, (padding[1], padding[1], padding[0], padding[0])) if any(padding) else x
    if O != C:
        xp = xp.repeat_interleave(O // C, 1)
    if bias is None:
        out = torch.zeros((B, O) + shape, dtype=x.dtype, device=x.device)
    else:
        out = bias.reshape(1, -1, 1, 1).expand((B, O) + shape).clone()
    for i in range(kh):
        for j in range(kw):
            out.addcmul_(_window(xp, i, j, shape, stride, dilation),
                         weight[:, 0, i, j].reshape(1, -1, 1, 1))
    return out


def depthwise_conv2d_input(in_shape, weight: torch.Tensor, grad: torch.Tensor, stride, padding,
                           dilation) -> torch.Tensor:
    """The transpose of :func:`depthwise_conv2d` applied to ``grad`` (B, O, Ho, Wo)."""
    B, C, H, W = in_shape
    O, _, kh, kw = weight.shape
    shape = tuple(grad.shape[2:])
    gp = torch.zeros((B, O, H + 2 * padding[0], W + 2 * padding[1]), dtype=grad.dtype,
                     device=grad.device)
    for i in range(kh):
        for j in range(kw):
            _window(gp, i, j, shape, stride, dilation).addcmul_(
                grad, weight[:, 0, i, j].reshape(1, -1, 1, 1))
    if O != C:
        gp = gp.reshape(B, C, O // C, *gp.shape[2:]).sum(2)
    return gp[:, :, padding[0]:padding[0] + H, padding[1]:padding[1] + W]
