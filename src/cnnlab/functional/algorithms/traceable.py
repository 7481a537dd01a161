"""Convolution from slicing, ``cat`` and ``matmul``: the traceable form of every algorithm.

What every convolution computes under a tracer or ``torch.func`` transform (see
:mod:`cnnlab.functional._tracing`): no custom ``autograd.Function``, no chunk loop, no in-place
op, so autograd derives the backward, functorch batches it, inductor fuses it, ``torch.export``
and both ONNX exporters record it op by op, and meta and fake tensors infer its shapes.
Selectable in eager too, as ``algorithm="traceable"``.

- forward: on the channels-last view of the zero-padded input, the ``kH·kW`` strided slices that
  the taps read are concatenated along channels into the ``(N·H_out·W_out, kH·kW·C/G)`` column
  matrix, and one matrix product per group with the filters gives the channels-last output;
  depthwise filters (one input channel per group) skip the matrix: ``Σ_taps slice · w_tap``;
- transposed: the stride-1 convolution of the zero-stuffed input with the flipped, transposed
  filters (the adjoint of the forward).

Under ``torch.compile`` the slices and ``cat`` become one fused copy, and their backward one fused
sum: the 64→64 3×3 layer @32² (batch 128, forward+backward, 2-core x86, 2026-11-25) took 431 ms
this way against 588 ms through ``F.unfold`` (aten's ``im2col``, which inductor decomposes into
index arithmetic).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .._utils import conv_output_size
from .gemm import memory_format_of

__all__ = ["conv2d", "conv_transpose2d"]


def conv2d(
    input: Tensor,
    weight: Tensor,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> Tensor:
    """``(N, C, H, W)`` ⋆ ``(O, C/G, kH, kW)`` → ``(N, O, H_out, W_out)`` in the input's memory format."""
    n, channels, height, width = input.shape
    out_channels, group_channels, kh, kw = weight.shape
    (sh, sw), (dh, dw) = stride, dilation
    oh, ow = (
        conv_output_size(size, k, s, (p, p), d)
        for size, k, s, p, d in zip((height, width), (kh, kw), stride, padding, dilation)
    )
    x = F.pad(input.permute(0, 2, 3, 1), (0, 0, padding[1], padding[1], padding[0], padding[0]))  # (N, H, W, C)
    taps = [
        x[:, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw]
        for i in range(kh)
        for j in range(kw)
    ]  # each (N, H_out, W_out, C)
    if group_channels == 1 and groups > 1:  # depthwise: out[..., c·m + j] = Σ_taps tap[..., c] · w[c·m + j, tap]
        multiplier = out_channels // channels
        filters = weight.reshape(channels, multiplier, kh * kw)
        out = sum(tap.unsqueeze(-1) * filters[:, :, t] for t, tap in enumerate(taps))
        out = out.reshape(n, oh, ow, out_channels)
    elif groups == 1:
        cols = torch.cat(taps, -1).reshape(-1, kh * kw * channels)  # (N·H_out·W_out, kH·kW·C)
        out = torch.matmul(cols, weight.permute(0, 2, 3, 1).reshape(out_channels, -1).t())
        out = out.reshape(n, oh, ow, out_channels)
    else:
        cols = torch.stack(taps, -2).reshape(-1, kh * kw, groups, group_channels)  # (N·L, kH·kW, G, C/G)
        cols = cols.permute(2, 0, 1, 3).reshape(groups, -1, kh * kw * group_channels)
        filters = weight.reshape(groups, out_channels // groups, group_channels, kh * kw)
        filters = filters.permute(0, 3, 2, 1).reshape(groups, kh * kw * group_channels, -1)
        out = torch.matmul(cols, filters)  # (G, N·L, O/G)
        out = out.permute(1, 0, 2).reshape(n, oh, ow, out_channels)
    return out.permute(0, 3, 1, 2).contiguous(memory_format=memory_format_of(input))


def _zero_stuffed(x: Tensor, stride: tuple[int, int]) -> Tensor:
    """``stride - 1`` zeros between neighbouring pixels: ``(N, C, H, W)`` → ``(N, C, (H-1)s+1, (W-1)s+1)``."""
    sh, sw = stride
    height, width = x.shape[2:]
    if sw > 1:
        x = F.pad(x.unsqueeze(-1), (0, sw - 1)).flatten(-2)[..., : (width - 1) * sw + 1]
    if sh > 1:
        x = F.pad(x.unsqueeze(-2), (0, 0, 0, sh - 1)).flatten(-3, -2)[..., : (height - 1) * sh + 1, :]
    return x


def conv_transpose2d(
    input: Tensor,
    weight: Tensor,
    stride: tuple[int, int],
    padding: tuple[int, int],
    output_padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> Tensor:
    """``(N, C, H, W)`` with filters ``(C, O/G, kH, kW)`` → ``(N, O, (H-1)s − 2p + d(k−1) + op + 1, …)``.

    The stride-1 convolution of the zero-stuffed input, padded by ``d(k−1) − p`` (negative: cropped)
    and ``output_padding`` more at the end, with the filters transposed per group and rotated by
    180°. ``F.fold`` would skip the zeros, but its output size becomes a traced value under
    ``torch.jit.trace``, which the ONNX exporter cannot read."""
    in_channels, group_out, kh, kw = weight.shape
    group_in = in_channels // groups
    x = _zero_stuffed(input, stride)
    before = [d * (k - 1) - p for k, d, p in zip((kh, kw), dilation, padding)]
    x = F.pad(x, [before[1], before[1] + output_padding[1], before[0], before[0] + output_padding[0]])
    filters = weight.reshape(groups, group_in, group_out, kh, kw).transpose(1, 2)
    filters = filters.reshape(groups * group_out, group_in, kh, kw).flip(-2, -1)
    return conv2d(x, filters, (1, 1), (0, 0), dilation, groups).contiguous(memory_format=memory_format_of(input))
