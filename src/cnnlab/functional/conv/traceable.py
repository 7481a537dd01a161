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

from .._utils import conv_output_size, window_taps
from ..backends import memory_format_of
from ..depthwise import tap_sum
from .base import ConvAlgorithm

__all__ = ["TRACEABLE", "conv", "conv_transpose"]


def conv(
    input: Tensor,
    weight: Tensor,
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
    groups: int,
) -> Tensor:
    """``(N, C, *S)`` ⋆ ``(O, C/G, *k)`` → ``(N, O, *S_out)`` in the input's memory format, for any
    number of spatial dims (2-D here, 3-D for :func:`cnnlab.functional.conv3d`)."""
    _, _, *sizes = input.shape
    out_channels, group_channels, *kernel = weight.shape
    if group_channels == 1 and groups > 1:  # depthwise: out[..., c·m + j] = Σ_taps tap[..., c] · w[c·m + j, tap]
        return tap_sum(input, weight, stride, padding, dilation)
    dims = len(sizes)
    outs = [conv_output_size(*geometry) for geometry in zip(sizes, kernel, stride, [(p, p) for p in padding], dilation)]
    x = input.permute(0, *range(2, dims + 2), 1)  # (N, *S, C)
    taps = window_taps(x, 1, kernel, stride, padding, dilation, outs)  # each (N, *S_out, C), row-major
    count = len(taps)
    if groups == 1:
        cols = torch.cat(taps, -1)  # (N, *S_out, K·C)
        out = torch.matmul(cols, weight.permute(0, *range(2, dims + 2), 1).reshape(out_channels, -1).t())
    else:
        cols = torch.stack(taps, -2).unflatten(-1, (groups, group_channels))  # (N, *S_out, K, G, C/G)
        cols = cols.permute(dims + 2, *range(dims + 2), dims + 3).flatten(1, dims + 1).flatten(-2)  # (G, N·L, K·C/G)
        filters = weight.reshape(groups, out_channels // groups, group_channels, count)
        filters = filters.permute(0, 3, 2, 1).reshape(groups, count * group_channels, -1)
        out = torch.matmul(cols, filters).permute(1, 0, 2).unflatten(0, (-1, *outs)).flatten(-2)  # (N, *S_out, O)
    return out.permute(0, dims + 1, *range(1, dims + 1)).contiguous(memory_format=memory_format_of(input))


def _zero_stuffed(x: Tensor, stride: tuple[int, ...]) -> Tensor:
    """``stride - 1`` zeros between neighbours along each spatial dim: ``(N, C, *S)`` → ``(N, C, *((S-1)s+1))``."""
    for axis, s in enumerate(stride, start=2):
        if s > 1:
            size = x.shape[axis]
            x = F.pad(x.unsqueeze(axis + 1), [0, 0] * (x.dim() - axis - 1) + [0, s - 1])
            x = x.flatten(axis, axis + 1).narrow(axis, 0, (size - 1) * s + 1)
    return x


def conv_transpose(
    input: Tensor,
    weight: Tensor,
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    output_padding: tuple[int, ...],
    dilation: tuple[int, ...],
    groups: int,
) -> Tensor:
    """``(N, C, *S)`` with filters ``(C, O/G, *k)`` → ``(N, O, (S-1)s − 2p + d(k−1) + op + 1)``.

    The stride-1 convolution of the zero-stuffed input, padded by ``d(k−1) − p`` (negative: cropped)
    and ``output_padding`` more at the end, with the filters transposed per group and rotated by
    180°. ``F.fold`` would skip the zeros, but its output size becomes a traced value under
    ``torch.jit.trace``, which the ONNX exporter cannot read."""
    in_channels, group_out, *kernel = weight.shape
    dims = len(kernel)
    if groups == 1 and list(stride) == kernel and not any(padding) and not any(output_padding) and set(dilation) == {1}:
        return _non_overlapping_transpose(input, weight)
    x = _zero_stuffed(input, stride)
    before = [d * (k - 1) - p for k, d, p in zip(kernel, dilation, padding)]
    x = F.pad(x, [side for b, op in zip(reversed(before), reversed(output_padding)) for side in (b, b + op)])
    filters = weight.reshape(groups, in_channels // groups, group_out, *kernel).transpose(1, 2)
    filters = filters.reshape(groups * group_out, in_channels // groups, *kernel).flip(list(range(2, dims + 2)))
    out = conv(x, filters, (1,) * dims, (0,) * dims, dilation, groups)
    return out.contiguous(memory_format=memory_format_of(input))


def _non_overlapping_transpose(input: Tensor, weight: Tensor) -> Tensor:
    """``stride == kernel`` (no padding, no dilation): every input pixel writes its own ``k``-block,
    ``out[n, o, s·i + a] = Σ_c x[n, c, i] · w[c, o, a]``: one matrix product and a reshape, no
    zero-stuffed input (upsampling layers such as a U-Net's 2×2 stride-2)."""
    n, channels, *sizes = input.shape
    _, out_channels, *kernel = weight.shape
    dims = len(kernel)
    rows = input.permute(0, *range(2, dims + 2), 1).reshape(-1, channels)  # (N·L, C)
    blocks = torch.matmul(rows, weight.reshape(channels, -1)).reshape(n, *sizes, out_channels, *kernel)
    order = [0, dims + 1] + [axis for i in range(dims) for axis in (1 + i, dims + 2 + i)]  # (N, O, S_0, k_0, ...)
    out = blocks.permute(order).reshape(n, out_channels, *[s * k for s, k in zip(sizes, kernel)])
    return out.contiguous(memory_format=memory_format_of(input))


TRACEABLE = ConvAlgorithm("traceable", eager=conv, traceable=conv)
