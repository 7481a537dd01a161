"""Pooling as reductions over window views: the traceable form of cnnlab's pooling.

Used whenever a tracer or ``torch.func`` transform is watching (:mod:`cnnlab.functional._tracing`):
every window of ``(N, C, H, W)`` is laid out as ``(N, C, H_out, W_out, K)`` (``K = kH·kW`` taps in
row-major order) by ``F.pad`` and strided slices or a reshape (regular windows) or one gather
(adaptive windows), and the pool is a reduction over the last dim. No custom Function, no in-place op, no
decision on values, so autograd, functorch, inductor and the exporters take it op by op. 1-D
pooling is 2-D pooling of a height-1 image.

Max pooling keeps torch's exact rule without a data-dependent branch: the index is that of the
*last* NaN if the window holds one, else the *first* maximal tap (padding is never picked, even in
a window of ``-inf``). The output gathers that tap,
so the gradient flows to it, as in torch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["adaptive_max_pool2d", "avg_pool2d", "max_pool2d", "weighted_pool2d"]


def _unfold(x: Tensor, dim: int, kernel: int, stride: int, padding: int, dilation: int, out: int, value: float):
    """Windows along the negative ``dim``, appended as a last dim of size ``kernel``; the right
    side gets the padding plus what ``ceil_mode`` needs for the last window.

    Windows that tile (``kernel == stride``, no dilation) are a reshape; others stack one strided
    slice per tap. Neither uses ``Tensor.unfold``, whose ONNX export needs every input size static
    (a dynamic batch fails)."""
    effective = dilation * (kernel - 1) + 1
    right = max((out - 1) * stride + effective - x.shape[dim] - padding, 0)
    if padding or right:
        x = F.pad(x, [0, 0] * (-dim - 1) + [padding, right], value=value)
    if kernel == stride and dilation == 1:
        axis = x.dim() + dim  # non-negative axes throughout: ONNX's Transpose rejects negative ones
        tiles = x.narrow(axis, 0, out * kernel).unflatten(axis, (out, kernel))
        return tiles.permute([i for i in range(tiles.dim()) if i != axis + 1] + [axis + 1])
    after = (slice(None),) * (-dim - 1)
    taps = [x[(..., slice(j * dilation, j * dilation + stride * (out - 1) + 1, stride), *after)] for j in range(kernel)]
    return torch.stack(taps, dim=-1)


def _windows(x: Tensor, k, s, p, d, o, value: float) -> Tensor:
    """``(N, C, H, W)`` → ``(N, C, H_out, W_out, kH·kW)``, taps in row-major order."""
    along_w = _unfold(x, -1, k[1], s[1], p[1], d[1], o[1], value)  # (N, C, H, W_out, kW)
    both = _unfold(along_w, -3, k[0], s[0], p[0], d[0], o[0], value)  # (N, C, H_out, W_out, kW, kH)
    return both.transpose(-1, -2).reshape(*x.shape[:2], o[0], o[1], k[0] * k[1])


def _positions(size: int, kernel: int, stride: int, padding: int, dilation: int, out: int, device) -> Tensor:
    """Input index read by tap ``j`` of window ``o``: ``o·stride − padding + j·dilation``, ``(out, kernel)``."""
    return (
        torch.arange(out, device=device)[:, None] * stride
        - padding
        + torch.arange(kernel, device=device)[None, :] * dilation
    )


def _flat_taps(rows: Tensor, cols: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Flat input index ``r·W + c`` and in-bounds mask of every tap, ``(H_out, W_out, kH·kW)``, from
    per-dim positions ``rows (H_out, kH)`` and ``cols (W_out, kW)``."""
    index = rows[:, None, :, None] * width + cols[None, :, None, :]
    valid = ((rows >= 0) & (rows < height))[:, None, :, None] & ((cols >= 0) & (cols < width))[None, :, None, :]
    shape = (rows.shape[0], cols.shape[0], rows.shape[1] * cols.shape[1])
    return index.reshape(shape), valid.reshape(shape)


def _max_over_taps(windows: Tensor, index: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """torch's max over the last dim of ``windows (N, C, H_out, W_out, K)``: the values, gathered
    (so differentiable), and the flat input index of each.

    One ``max`` gives the first maximal tap. Two cases are then corrected from tests that do not
    compare values for equality (inductor may compute a value in two fused kernels with results
    an ulp apart, so ``windows == windows.amax()`` can miss): a window holding NaN takes its last
    NaN, and a window whose maximum is ``-inf`` its first in-bounds tap, never the padding.
    """
    taps = windows.shape[-1]
    maximum, first_max = windows.max(-1, keepdim=True)
    order = torch.arange(1, taps + 1, device=windows.device, dtype=torch.float32)
    nan = windows.isnan()
    last_nan = (nan.to(torch.float32) * order).argmax(-1, keepdim=True)
    first_valid = valid.to(torch.float32).argmax(-1, keepdim=True)
    tap = torch.where(maximum == -math.inf, first_valid.expand_as(first_max), first_max)
    tap = torch.where(nan.any(-1, keepdim=True), last_nan, tap)
    values = windows.gather(-1, tap).squeeze(-1)
    flat = index.expand(*windows.shape[:2], *index.shape).gather(-1, tap).squeeze(-1)
    return values, flat


def max_pool2d(x: Tensor, k, s, p, d, o) -> tuple[Tensor, Tensor]:
    """Values and flat ``h·W + w`` indices of max pooling a batched ``(N, C, H, W)``."""
    height, width = x.shape[2:]
    windows = _windows(x, k, s, p, d, o, -math.inf)
    rows = _positions(height, k[0], s[0], p[0], d[0], o[0], x.device)
    cols = _positions(width, k[1], s[1], p[1], d[1], o[1], x.device)
    return _max_over_taps(windows, *_flat_taps(rows, cols, height, width))


def avg_pool2d(x: Tensor, k, s, p, o, divisor: Tensor) -> Tensor:
    """Window sums of the zero-padded ``(N, C, H, W)`` divided by ``divisor (H_out, W_out)``."""
    return _windows(x, k, s, p, (1, 1), o, 0.0).sum(-1) / divisor


def weighted_pool2d(x: Tensor, weights: Tensor, s, p, o) -> Tensor:
    """``Σ_taps weights · window`` of the zero-padded ``(N, C, H, W)``, the same ``(kH, kW)`` weights
    for every channel (a depthwise convolution with one shared filter)."""
    return torch.matmul(_windows(x, weights.shape, s, p, (1, 1), o, 0.0), weights.reshape(-1))


def _adaptive_positions(size: int, out: int, device) -> Tensor:
    """Taps of torch's adaptive windows ``[floor(o·size/out), ceil((o+1)·size/out))``, ``(out, longest)``;
    taps past a window's end point at ``size`` (out of bounds)."""
    longest = max((((o + 1) * size + out - 1) // out - (o * size) // out for o in range(out)), default=1)
    o = torch.arange(out, device=device)
    start, end = (o * size) // out, ((o + 1) * size + out - 1) // out
    positions = start[:, None] + torch.arange(longest, device=device)[None, :]
    return torch.where(positions < end[:, None], positions, size)


def adaptive_max_pool2d(x: Tensor, out: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Values and flat indices of adaptive max pooling a batched ``(N, C, H, W)`` to ``out``."""
    n, c, height, width = x.shape
    rows = _adaptive_positions(height, out[0], x.device)
    cols = _adaptive_positions(width, out[1], x.device)
    padded = F.pad(x, [0, 1, 0, 1], value=-math.inf)  # position H (or W) reads -inf
    windows = padded[:, :, rows][..., cols]  # (N, C, H_out, kH, W_out, kW)
    windows = windows.permute(0, 1, 2, 4, 3, 5).reshape(n, c, out[0], out[1], rows.shape[1] * cols.shape[1])
    return _max_over_taps(windows, *_flat_taps(rows, cols, height, width))
