"""Pooling as reductions over window views: the traceable form of cnnlab's pooling.

Used whenever a tracer or ``torch.func`` transform is watching (:mod:`cnnlab.functional._tracing`):
every window of ``(N, C, *S)`` (any number of spatial dims) is laid out as ``(N, C, *S_out, K)``
(``K = prod(kernel)`` taps in row-major order) by ``F.pad`` and strided slices (regular windows,
:func:`cnnlab.functional._utils.window_taps`) or index selection and gathers (adaptive and
fractional windows), and the pool is a reduction over the last dim. No custom Function, no
in-place op, no decision on values, so autograd, functorch, inductor and the exporters take it op
by op. The 3-D pools and fractional max pooling use this form in eager mode too.

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

from .._utils import window_taps

__all__ = ["adaptive_max_pool", "fractional_max_pool", "lowest", "max_pool", "weighted_pool2d", "window_sum"]


def _windows(x: Tensor, k, s, p, d, o, value: float) -> Tensor:
    """``(N, C, *S)`` → ``(N, C, *S_out, K)`` with ``K = prod(k)`` taps in row-major order, for any
    number of spatial dims; positions outside the input read ``value``."""
    return torch.stack(window_taps(x, 2, k, s, p, d, o, value), -1)


def _positions(size: int, kernel: int, stride: int, padding: int, dilation: int, out: int, device) -> Tensor:
    """Input index read by tap ``j`` of window ``o``: ``o·stride − padding + j·dilation``, ``(out, kernel)``."""
    return (
        torch.arange(out, device=device)[:, None] * stride
        - padding
        + torch.arange(kernel, device=device)[None, :] * dilation
    )


def _flat_taps(positions: list[Tensor], sizes) -> tuple[Tensor, Tensor]:
    """Flat input index (row-major over ``sizes``) and in-bounds mask of every tap,
    ``(*S_out, prod(k))``, from per-dim positions ``(S_out_i, k_i)``."""
    dims = len(positions)
    index = valid = None
    stride = 1
    for i in reversed(range(dims)):
        shape = [1] * (2 * dims)
        shape[i], shape[dims + i] = positions[i].shape
        pos = positions[i].reshape(shape)
        inside = (pos >= 0) & (pos < sizes[i])
        index = pos * stride if index is None else index + pos * stride
        valid = inside if valid is None else valid & inside
        stride *= sizes[i]
    out_shape = [q.shape[0] for q in positions] + [math.prod([q.shape[1] for q in positions])]
    return index.reshape(out_shape), valid.reshape(out_shape)


def _max_over_taps(windows: Tensor, index: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """torch's max over the last dim of ``windows (N, C, *S_out, K)``: the values, gathered
    (so differentiable), and the flat input index of each (``index`` and ``valid``: the taps'
    flat input index and in-bounds mask, ``(*S_out, K)`` or per sample ``(N, C, *S_out, K)``).

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
    flat = index.expand(windows.shape).gather(-1, tap).squeeze(-1)
    return values, flat


def lowest(dtype: torch.dtype) -> float:
    """The padding of max pooling: ``-inf``, or an integer dtype's minimum."""
    return -math.inf if dtype.is_floating_point else torch.iinfo(dtype).min


def max_pool(x: Tensor, k, s, p, d, o) -> tuple[Tensor, Tensor]:
    """Values and flat (row-major, per channel) indices of max pooling a batched ``(N, C, *S)``."""
    sizes = x.shape[2:]
    windows = _windows(x, k, s, p, d, o, lowest(x.dtype))
    positions = [_positions(*geometry, x.device) for geometry in zip(sizes, k, s, p, d, o)]
    return _max_over_taps(windows, *_flat_taps(positions, sizes))


def window_sum(x: Tensor, k, s, p, o) -> Tensor:
    """Window sums of the zero-padded ``(N, C, *S)``: ``(N, C, *S_out)``."""
    return _windows(x, k, s, p, (1,) * len(k), o, 0).sum(-1, dtype=x.dtype)


def weighted_pool2d(x: Tensor, weights: Tensor, s, p, o) -> Tensor:
    """``Σ_taps weights · window`` of the zero-padded ``(N, C, H, W)``, the same ``(kH, kW)`` weights
    for every channel (a depthwise convolution with one shared filter)."""
    return torch.matmul(_windows(x, weights.shape, s, p, (1, 1), o, 0.0), weights.reshape(-1))


def _adaptive_positions(size: int, out: int, device) -> Tensor:
    """Taps of torch's adaptive windows ``[floor(o·size/out), ceil((o+1)·size/out))``, ``(out, longest)``;
    taps past a window's end point at ``size`` (out of bounds). A symbolic ``size`` (``torch.export``
    with a dynamic spatial dim) gets the bound ``ceil(size/out) + 1`` on every window's length."""
    if isinstance(size, int):
        longest = max((((o + 1) * size + out - 1) // out - (o * size) // out for o in range(out)), default=1)
    else:
        longest = (size + out - 1) // out + 1
    o = torch.arange(out, device=device)
    start, end = (o * size) // out, ((o + 1) * size + out - 1) // out
    positions = start[:, None] + torch.arange(longest, device=device)[None, :]
    return torch.where(positions < end[:, None], positions, size)


def adaptive_max_pool(x: Tensor, out: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Values and flat indices of adaptive max pooling a batched ``(N, C, *S)`` to ``out``."""
    sizes, dims = x.shape[2:], len(out)
    positions = [_adaptive_positions(size, o, x.device) for size, o in zip(sizes, out)]
    windows = F.pad(x, [0, 1] * dims, value=lowest(x.dtype))  # position S_i reads the lowest value
    for i, pos in enumerate(positions):  # axis 2 + 2i becomes (S_out_i, k_i)
        axis = 2 + 2 * i
        windows = windows.index_select(axis, pos.reshape(-1)).unflatten(axis, pos.shape)
    order = [0, 1, *range(2, 2 + 2 * dims, 2), *range(3, 3 + 2 * dims, 2)]
    windows = windows.permute(order).reshape(*x.shape[:2], *out, math.prod([q.shape[1] for q in positions]))
    return _max_over_taps(windows, *_flat_taps(positions, sizes))


def fractional_max_pool(x: Tensor, k, out, samples: Tensor) -> tuple[Tensor, Tensor]:
    """torch's fractional max pooling of a batched ``(N, C, *S)``: along each dim, window ``i``
    starts at ``trunc((i + u)·α) − trunc(u·α)`` with ``α = (S − k)/(out − 1)`` and ``u`` the sample of that
    (n, c, dim) from ``samples (N, C, dims)``; the last window ends at the input's end. torch's 2-D
    kernel reads the samples as (W, H), its 3-D kernel as (T, H, W)."""
    n, c, *sizes = x.shape
    dims = len(k)
    sample_of_dim = (1, 0) if dims == 2 else tuple(range(dims))
    positions = []
    for i in range(dims):
        # in the input's dtype, rounded after each operation like torch's scalar_t arithmetic
        u = samples[:, :, sample_of_dim[i], None].to(x.dtype)  # (N, C, 1)
        steps = torch.arange(out[i], device=x.device, dtype=u.dtype)
        alpha = torch.tensor(sizes[i] - k[i], dtype=u.dtype) / max(out[i] - 1, 1)
        # torch's static_cast<int>: truncation toward zero (samples outside [0, 1) are accepted)
        start = (torch.trunc((steps + u) * alpha) - torch.trunc(u * alpha)).to(torch.int64)  # (N, C, out_i)
        start = torch.where(steps == out[i] - 1, sizes[i] - k[i], start).clamp(0, sizes[i] - k[i])
        positions.append(start[..., None] + torch.arange(k[i], device=x.device))  # (N, C, out_i, k_i)
    index = None
    stride = 1
    for i in reversed(range(dims)):
        shape = [n, c] + [1] * (2 * dims)
        shape[2 + i], shape[2 + dims + i] = out[i], k[i]
        term = positions[i].reshape(shape) * stride
        index = term if index is None else index + term
        stride *= sizes[i]
    index = index.reshape(n, c, *out, math.prod(k))
    taps = index.shape[2:].numel()  # explicit sizes: -1 is ambiguous for an empty batch
    windows = x.reshape(n, c, math.prod(sizes)).gather(-1, index.reshape(n, c, taps)).reshape(index.shape)
    return _max_over_taps(windows, index, torch.ones_like(index, dtype=torch.bool))  # every tap is in bounds
