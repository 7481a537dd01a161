"""Shift-and-add convolution: ``kH·kW`` channel GEMMs on shifted channels-last data, no column buffer.

A stride-1 convolution is a sum over kernel taps of 1×1 convolutions of shifted inputs:

    out[n, y, x] = Σ_{i, j} W[:, :, i, j] · x_pad[n, y + i·d, x + j·d]

Flatten the zero-padded channels-last input to rows ``(n, y, x)`` of a ``(N·Hp·Wp, C)`` matrix and
compute the output on the same padded grid: tap ``(i, j)`` then reads the rows shifted by
``i·d·Wp + j·d``, a contiguous slice of that matrix, so every tap is one plain GEMM on a view
and nothing is copied. Grid rows that straddle an image border compute junk and are cropped.
The cost is ``Hp·Wp / (H_out·W_out)`` extra rows (1.13× at 32² with padding 1, 1.56× at 8²) and
``kH·kW`` passes over the output instead of one over ``kH·kW``-times-larger columns.

The input gradient is again a shift-and-add convolution (of the gradient with the flipped,
transposed filters); the weight gradient of tap ``(i, j)`` is one GEMM between the gradient grid
and the same shifted slice. Stride 1 only: other strides make the shifted rows non-contiguous.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import ConvAlgorithm, ConvCall, ConvProducts, Geometry, flipped_filters
from .matmul import matmul_nt

__all__ = ["SHIFT"]


def _grid(x: Tensor, pads: tuple[tuple[int, int], tuple[int, int]], tail: int) -> Tensor:
    """Zero-pad ``(N, H, W, C)`` and flatten to ``(N·Hp·Wp + tail, C)`` rows (``tail`` zero rows
    at the end, so the last tap's slice stays inside)."""
    (top, bottom), (left, right) = pads
    n, h, w, c = x.shape
    hp, wp = h + top + bottom, w + left + right
    rows = x.new_zeros(n * hp * wp + tail, c)
    rows[: n * hp * wp].view(n, hp, wp, c)[:, top : top + h, left : left + w] = x
    return rows


def _offsets(geometry: Geometry, grid_width: int) -> list[int]:
    (kh, kw), (dy, dx) = geometry.kernel, geometry.dilation
    return [i * dy * grid_width + j * dx for i in range(kh) for j in range(kw)]


def _shift_conv(x: Tensor, weight: Tensor, geometry: Geometry, pads, out_size) -> Tensor:
    """``(N, H, W, C)`` * filters ``(O, C/G, kH, kW)`` → ``(N, H_out, W_out, O)`` by shift-and-add."""
    n, h, w, _ = x.shape
    out_channels, group_channels, kh, kw = weight.shape
    groups = geometry.groups
    group_out = out_channels // groups
    hp, wp = h + sum(pads[0]), w + sum(pads[1])
    offsets = _offsets(geometry, wp)
    rows = _grid(x, pads, offsets[-1])
    count = n * hp * wp
    taps = weight.view(groups, group_out, group_channels, kh * kw)
    out = x.new_empty(count, out_channels)
    for g in range(groups):
        channels = slice(g * group_channels, (g + 1) * group_channels)
        acc = None
        for t, offset in enumerate(offsets):
            term = matmul_nt(rows[offset : offset + count, channels], taps[g, :, :, t])
            acc = term if acc is None else acc.add_(term)
        out[:, g * group_out : (g + 1) * group_out] = acc
    return out.view(n, hp, wp, out_channels)[:, : out_size[0], : out_size[1]]


def _forward(x: Tensor, weight: Tensor, geometry: Geometry, padding, out_size) -> Tensor:
    return _shift_conv(x, weight, geometry, tuple((p, p) for p in padding), out_size)


def _input_grad(grad: Tensor, weight: Tensor, geometry: Geometry, padding, input_size) -> Tensor:
    """Correlating ∂out, padded by d(k-1)-p on both sides, with the flipped filters gives ∂x
    (padding beyond the kernel's reach becomes a crop)."""
    reach = [d * (k - 1) for k, d in zip(geometry.kernel, geometry.dilation)]
    before = [r - p for r, p in zip(reach, padding)]
    pads = tuple((max(b, 0), max(b, 0)) for b in before)
    size = [s + 2 * max(b, 0) - r for s, b, r in zip(grad.shape[1:3], before, reach)]
    full = _shift_conv(grad, flipped_filters(weight, geometry.groups), geometry, pads, size)
    crop = [max(-b, 0) for b in before]
    return full[:, crop[0] : crop[0] + input_size[0], crop[1] : crop[1] + input_size[1]]


def _weight_grad(x: Tensor, grad: Tensor, geometry: Geometry, weight_shape, padding) -> Tensor:
    """``∂W[:, :, i, j] = ∂out_gridᵀ · rows[shift(i, j)]``, the gradient placed on the padded grid."""
    n, h, w, _ = x.shape
    out_channels, group_channels, kh, kw = weight_shape
    groups = geometry.groups
    group_out = out_channels // groups
    hp, wp = h + 2 * padding[0], w + 2 * padding[1]
    offsets = _offsets(geometry, wp)
    rows = _grid(x, tuple((p, p) for p in padding), offsets[-1])
    count = n * hp * wp
    grad_grid = grad.new_zeros(n, hp, wp, out_channels)
    grad_grid[:, : grad.shape[1], : grad.shape[2]] = grad
    grad_rows = grad_grid.view(count, out_channels)
    taps = [
        torch.stack(
            [
                matmul_nt(
                    grad_rows[:, g * group_out : (g + 1) * group_out].t(),
                    rows[offset : offset + count, g * group_channels : (g + 1) * group_channels].t(),
                )
                for g in range(groups)
            ]
        )
        for offset in offsets
    ]
    return torch.stack(taps, -1).view(out_channels, group_channels, kh, kw)


def _stride_one(call: ConvCall) -> str | None:
    return None if call.stride == (1, 1) else f"stride=(1, 1), but got stride={call.stride}"


SHIFT = ConvAlgorithm("shift", requires=_stride_one, products=ConvProducts(_forward, _input_grad, _weight_grad))
