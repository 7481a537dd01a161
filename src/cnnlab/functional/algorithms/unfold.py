"""Convolution as ``F.unfold`` + ``matmul``, nothing else.

The traceable form of every convolution algorithm (see :mod:`cnnlab.functional._tracing`): no
custom ``autograd.Function``, no chunk loop, no in-place op, so autograd derives the backward,
functorch batches it, inductor fuses it, ``torch.export``/ONNX record it op by op, and meta and
fake tensors infer its shapes. Selectable in eager too, as ``algorithm="unfold"``.

- forward ``out[n, g, :, l] = W_g · cols_g(x)[n, :, l]`` with ``cols = F.unfold(x)`` of shape
  ``(N, C·kH·kW, L)``, one column per output position ``l``;
- transposed: the stride-1 convolution of the zero-stuffed input with the flipped, transposed
  filters (the adjoint of the forward).
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
    n, _, height, width = input.shape
    out_channels, group_channels, kh, kw = weight.shape
    out_size = [
        conv_output_size(size, k, s, (p, p), d)
        for size, k, s, p, d in zip((height, width), (kh, kw), stride, padding, dilation)
    ]
    cols = F.unfold(input, (kh, kw), dilation=dilation, padding=padding, stride=stride)  # (N, C·kH·kW, L)
    cols = cols.reshape(n, groups, group_channels * kh * kw, out_size[0] * out_size[1])
    out = torch.matmul(weight.reshape(groups, out_channels // groups, -1), cols)  # (N, G, O/G, L)
    return out.reshape(n, out_channels, *out_size).contiguous(memory_format=memory_format_of(input))


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
