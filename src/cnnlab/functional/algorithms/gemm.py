"""im2col + GEMM convolution: ``F.unfold`` gathers every receptive field into a column, one
(batched, grouped) matrix multiply applies all filters, and ``F.fold`` (col2im) is its adjoint,
used by the transposed convolution.

Contract (shared by every algorithm): 4-D batched input ``(N, C, H, W)`` already validated;
``padding`` is symmetric zero padding per dimension, applied here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .._utils import conv_output_size

__all__ = ["conv2d", "conv_transpose2d"]


def conv2d(
    input: Tensor,
    weight: Tensor,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> Tensor:
    """``out[n, o, y, x] = sum_{c, i, j} w[o, c, i, j] * x_pad[n, g(o)*C_g + c, y*s + i*d, x*s + j*d]``.

    ``input (N, C, H, W)``, ``weight (O, C/groups, kH, kW)`` → ``(N, O, H_out, W_out)``.
    """
    n, channels, height, width = input.shape
    out_channels, group_channels, kh, kw = weight.shape
    oh = conv_output_size(height, kh, stride[0], (padding[0],) * 2, dilation[0])
    ow = conv_output_size(width, kw, stride[1], (padding[1],) * 2, dilation[1])
    if (kh, kw) == (1, 1) and stride == (1, 1) and padding == (0, 0):
        cols = input.reshape(n, channels, height * width)  # 1x1: the input already is the column matrix
    else:
        cols = F.unfold(input, (kh, kw), dilation=dilation, padding=padding, stride=stride)
    if groups == 1:
        # (N, L, K) @ (K, O): the result (N, L, O) is channels_last memory, so for channels_last
        # input we return channels_last without a copy, as torch does.
        w = weight.reshape(out_channels, -1)
        if input.is_contiguous(memory_format=torch.channels_last) and not input.is_contiguous():
            out = torch.matmul(cols.transpose(1, 2), w.t())
            return out.view(n, oh, ow, out_channels).permute(0, 3, 1, 2)
        return torch.matmul(w, cols).view(n, out_channels, oh, ow)
    cols = cols.reshape(n, groups, group_channels * kh * kw, oh * ow)
    w = weight.reshape(groups, out_channels // groups, group_channels * kh * kw)
    return torch.matmul(w, cols).view(n, out_channels, oh, ow)


def conv_transpose2d(
    input: Tensor,
    weight: Tensor,
    stride: tuple[int, int],
    padding: tuple[int, int],
    output_padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> Tensor:
    """The adjoint of :func:`conv2d`: ``cols = Wᵀ x`` then col2im (``F.fold``) scatters the columns.

    ``input (N, C_in, H, W)``, ``weight (C_in, C_out/groups, kH, kW)`` →
    ``(N, C_out, (H-1)s - 2p + d(k-1) + output_padding + 1, ...)``.
    """
    n, in_channels, height, width = input.shape
    _, group_out, kh, kw = weight.shape
    group_in = in_channels // groups
    w = weight.reshape(groups, group_in, group_out * kh * kw).transpose(1, 2)
    cols = torch.matmul(w, input.reshape(n, groups, group_in, height * width))
    cols = cols.reshape(n, groups * group_out * kh * kw, height * width)
    full = [(size - 1) * s + d * (k - 1) + 1 for size, s, d, k in zip((height, width), stride, dilation, (kh, kw))]
    if all(op < s for op, s in zip(output_padding, stride)):
        # fold crops `padding` itself; the output_padding rows past the last block stay zero.
        size = [f - 2 * p + op for f, p, op in zip(full, padding, output_padding)]
        return F.fold(cols, size, (kh, kw), dilation=dilation, padding=padding, stride=stride)
    # output_padding >= stride (allowed when dilation is larger): fold the full result, then crop
    # `padding` on the left and pad/crop to the requested size on the right.
    out = F.fold(cols, full, (kh, kw), dilation=dilation, stride=stride)
    return F.pad(out, [-padding[1], output_padding[1] - padding[1], -padding[0], output_padding[0] - padding[0]])
