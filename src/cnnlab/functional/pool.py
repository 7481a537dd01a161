"""Pooling as pure functions with ``torch.nn.functional``'s signatures, built from strided views
(``Tensor.unfold``), reductions, ``gather``/``scatter`` and ``matmul``: never torch's pooling ops.

Every 2-D pool here is separable: a rectangle's max is the max over rows of the per-row maxima,
and its average the average of per-row averages. So each pool runs as two 1-D passes (along W,
then along H) over windows that are strided views of the input, and 1-D pooling is one pass.

Max pooling picks its index exactly as torch does (scan in row-major order, a later element wins
only if strictly greater or NaN; padding is never picked), and its output is
``input.gather(index)``, so the gradient flows to that index (``scatter_add`` in backward).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from . import pool_windows, triton_pool
from ._tracing import fx_leaf, is_tracing
from ._utils import (
    check_input_rank,
    check_non_negative,
    check_positive,
    conv_transpose_output_size,
    ntuple,
    output_size_unpadded,
    pool_output_size,
    tap_ranges,
)
from .algorithms import get_conv2d_algorithm
from .algorithms.gemm import memory_format_of

__all__ = [
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "adaptive_max_pool1d",
    "adaptive_max_pool1d_with_indices",
    "adaptive_max_pool2d",
    "adaptive_max_pool2d_with_indices",
    "adaptive_max_pool3d",
    "adaptive_max_pool3d_with_indices",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "binomial_filter",
    "blur_pool2d",
    "channel_max_pool",
    "distance_weighted_pool2d",
    "distance_weights",
    "fractional_max_pool2d",
    "fractional_max_pool2d_with_indices",
    "fractional_max_pool3d",
    "fractional_max_pool3d_with_indices",
    "global_avg_pool2d",
    "global_max_pool2d",
    "lp_pool1d",
    "lp_pool2d",
    "lp_pool3d",
    "max_blur_pool2d",
    "max_pool1d",
    "max_pool1d_with_indices",
    "max_pool2d",
    "max_pool2d_with_indices",
    "max_pool3d",
    "max_pool3d_with_indices",
    "max_unpool1d",
    "max_unpool2d",
    "max_unpool3d",
    "pool_geometry",
]

IntOrTuple = int | Sequence[int]


# --------------------------------------------------------------------------- argument handling
def pool_geometry(op: str, spatial_dims: int, kernel_size, stride, padding, dilation=1):
    """Validate and normalise pooling geometry (torch's ``RuntimeError`` for bad values).

    ``stride=None`` means ``stride = kernel_size``; padding may be at most half the effective
    kernel ``d(k-1)+1``, so every window holds at least one input element.
    """
    k = ntuple(kernel_size, spatial_dims, "kernel_size")
    empty = stride is None or (isinstance(stride, Sequence) and len(stride) == 0)
    s = k if empty else ntuple(stride, spatial_dims, "stride")
    p = ntuple(padding, spatial_dims, "padding")
    d = ntuple(dilation, spatial_dims, "dilation")
    check_positive("kernel_size", k, op)
    check_positive("stride", s, op)
    check_positive("dilation", d, op)
    check_non_negative("padding", p, op)
    # torch's 1-/2-D kernels bound the padding by half the effective (dilated) kernel, its 3-D ones by half the kernel
    effective = [kk if spatial_dims == 3 else dd * (kk - 1) + 1 for kk, dd in zip(k, d)]
    if any(pp > e // 2 for e, pp in zip(effective, p)):
        raise RuntimeError(
            f"{op}: pad should be at most half of {'the' if spatial_dims == 3 else 'effective'} kernel size, but got "
            f"padding={p}, kernel_size={k} and dilation={d}"
        )
    return k, s, p, d


def _check_not_empty(op: str, input: Tensor, x: Tensor) -> None:
    if any(size == 0 for size in x.shape[1:]):
        raise RuntimeError(
            f"{op}: expected non-empty channel and spatial dimensions, but got input of size {list(input.shape)}"
        )


def _pool_args(
    op: str, input: Tensor, spatial_dims: int, kernel_size, stride, padding, dilation=1, ceil_mode: bool = False
):
    """Validate input and arguments; returns ``(batched input, batched?, k, s, p, d, output size)``."""
    batched = check_input_rank(input, spatial_dims, op)
    x = input if batched else input.unsqueeze(0)
    k, s, p, d = pool_geometry(op, spatial_dims, kernel_size, stride, padding, dilation)
    _check_not_empty(op, input, x)
    out = tuple(
        pool_output_size(size, kk, ss, pp, dd, ceil_mode) for size, kk, ss, pp, dd in zip(x.shape[2:], k, s, p, d)
    )
    if any(o <= 0 for o in out):
        raise RuntimeError(
            f"{op}: given input size {tuple(x.shape[1:])}, kernel_size={k}, stride={s}, padding={p}, "
            f"dilation={d}: calculated output size {out} is too small"
        )
    return x, batched, k, s, p, d, out


def _windows(x: Tensor, kernel: int, stride: int, padding: int, dilation: int, out: int, value: float) -> Tensor:
    """Windows along the last dim as a strided view ``(..., out, kernel)``; padding filled with ``value``.

    The right side gets the padding plus what ``ceil_mode`` needs for the last window.
    """
    effective = dilation * (kernel - 1) + 1
    right = max((out - 1) * stride + effective - x.shape[-1] - padding, 0)
    if padding or right:
        x = F.pad(x, [padding, right], value=value)
    return x.unfold(-1, effective, stride)[..., ::dilation]


def _window_positions(size: int, kernel: int, stride: int, padding: int, dilation: int, out: int, device) -> Tensor:
    """Input index read by tap ``j`` of window ``o``: ``o·stride − padding + j·dilation``, shape ``(out, kernel)``."""
    o = torch.arange(out, device=device).unsqueeze(1)
    j = torch.arange(kernel, device=device)
    return o * stride - padding + j * dilation


def _scan_argmax(windows: Tensor, positions: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """torch's max-pool rule over the last dim of ``windows (..., out, K)``.

    Starts at the first in-bounds tap with ``-inf``, then a tap wins if it is strictly greater
    or NaN. Returns the maxima ``(..., out)`` and the input index of each ``(..., out)``.
    """
    valid = (positions >= 0) & (positions < size)
    first = positions.gather(1, valid.to(torch.uint8).argmax(1, keepdim=True)).squeeze(1)
    best = torch.full_like(windows[..., 0], pool_windows.lowest(windows.dtype))
    index = first.expand(windows.shape[:-1]).clone()
    for j in range(windows.shape[-1]):
        if not bool(valid[:, j].any()):
            continue
        value = windows[..., j]
        take = ((value > best) | value.isnan()) & valid[:, j]
        best = torch.where(take, value, best)
        index = torch.where(take, positions[:, j], index)
    return best, index


def _max_indices_1d(x: Tensor, kernel, stride, padding, dilation, out) -> Tensor:
    """Index along the last dim of the maximum of every window of ``x``."""
    windows = _windows(x, kernel, stride, padding, dilation, out, pool_windows.lowest(x.dtype))
    positions = _window_positions(x.shape[-1], kernel, stride, padding, dilation, out, x.device)
    return _scan_argmax(windows, positions, x.shape[-1])[1]


def _max_indices_2d(x: Tensor, index_w_fn, index_h_fn) -> Tensor:
    """Flat ``h·W + w`` index of each window maximum of ``x (N, C, H, W)``, found separably.

    ``index_*_fn(t)`` returns the argmax index along the last dim of ``t`` for each window. Rows
    first keeps torch's row-major tie and NaN order: the winning row is the first (or, for NaN,
    last) row holding the maximum, and in it the first (last NaN) column.
    """
    width = x.shape[-1]
    col = index_w_fn(x)  # (N, C, H, OW): best column per row and output column
    row_max = x.gather(-1, col)
    row = index_h_fn(row_max.transpose(-1, -2))  # (N, C, OW, OH): best row per output
    col = col.transpose(-1, -2).gather(-1, row)
    return (row * width + col).transpose(-1, -2)


def _gather_flat(x: Tensor, index: Tensor) -> Tensor:
    """``x (N, C, *S)`` gathered at flat spatial ``index (N, C, *S_out)``; gradient goes to that index."""
    n, c = x.shape[:2]
    flat_x = x.reshape(n, c, x.shape[2:].numel())
    return flat_x.gather(-1, index.reshape(n, c, index.shape[2:].numel())).view(index.shape)


def _finish(out: Tensor, index: Tensor | None, batched: bool, return_indices: bool):
    if not batched:
        out = out.squeeze(0)
        index = index.squeeze(0) if index is not None else None
    return (out, index) if return_indices else out


def _in_layout_of(x: Tensor, *outputs: Tensor, keep_3d: bool = False) -> tuple[Tensor, ...]:
    """``outputs`` stored as torch's kernels store them: channels-last 4-D input gives channels-last
    output; channels-last 5-D input only where torch keeps it (``keep_3d``: max pooling)."""
    layout = memory_format_of(x)
    if layout == torch.channels_last_3d and not keep_3d:
        layout = torch.contiguous_format
    return tuple([t.contiguous(memory_format=layout) for t in outputs])


# --------------------------------------------------------------------------- max pooling
@fx_leaf
def max_pool1d(
    input: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
):
    """1-D max pooling over ``(N, C, L)`` or ``(C, L)``. See :class:`cnnlab.nn.MaxPool1d`."""
    x, batched, (k,), (s,), (p,), (d,), (o,) = _pool_args(
        "max_pool1d", input, 1, kernel_size, stride, padding, dilation, ceil_mode
    )
    if is_tracing(x):
        return _finish(*pool_windows.max_pool(x, (k,), (s,), (p,), (d,), (o,)), batched, return_indices)
    with torch.no_grad():
        index = _max_indices_1d(x, k, s, p, d, o)
    return _finish(x.gather(-1, index), index, batched, return_indices)


@fx_leaf
def max_pool2d(
    input: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
):
    """2-D max pooling over ``(N, C, H, W)`` or ``(C, H, W)``. See :class:`cnnlab.nn.MaxPool2d`."""
    x, batched, k, s, p, d, o = _pool_args("max_pool2d", input, 2, kernel_size, stride, padding, dilation, ceil_mode)
    return _finish(*_max_pool2d(x, k, s, p, d, o, return_indices), batched, return_indices)


def _max_pool2d(x: Tensor, k, s, p, d, o, return_indices: bool) -> tuple[Tensor, Tensor | None]:
    """Route by index when asked for it, for NCHW input that needs a gradient, and for windows of
    more than 9 taps; otherwise by taps. Forward+backward of max 2×2, 64ch @32², batch 128
    (2026-11-24): on NCHW data, where the taps' stride-2 innermost views do not vectorise, taps
    won without ties (33 vs 39 ms) but lost on ReLU output, whose zero windows tie (75 vs 56 ms);
    channels-last data takes the taps (35 vs 77 ms with ties), and so does inference (forward
    1.5 vs 17 ms). A global max over 32² would be 1024 tap passes. Under a tracer: the window
    reduction of :mod:`.pool_windows`."""
    if is_tracing(x):
        out, index = _in_layout_of(x, *pool_windows.max_pool(x, k, s, p, d, o))
        return out, index if return_indices else None
    by_index = (
        return_indices
        or k[0] * k[1] > 9
        or (torch.is_grad_enabled() and x.requires_grad and memory_format_of(x) != torch.channels_last)
    )
    out, index = _MaxPool2d.apply(x, k, s, p, d, o, by_index)
    return _in_layout_of(x, out, index) if return_indices else (*_in_layout_of(x, out), None)


@fx_leaf
def max_pool3d(
    input: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
):
    """3-D max pooling over ``(N, C, D, H, W)`` or ``(C, D, H, W)``: the window reduction of
    :mod:`.pool_windows` (indices flat ``(z·H + y)·W + x``). See :class:`cnnlab.nn.MaxPool3d`."""
    x, batched, k, s, p, d, o = _pool_args("max_pool3d", input, 3, kernel_size, stride, padding, dilation, ceil_mode)
    values, index = pool_windows.max_pool(_accumulation(x), k, s, p, d, o)  # gradients of overlaps add in float32
    return _finish(*_in_layout_of(x, values.to(x.dtype), index, keep_3d=True), batched, return_indices)


class _MaxPool2d(torch.autograd.Function):
    """Two exact routes to torch's max pooling (eager only: under a tracer or ``torch.func``
    transform :mod:`.pool_windows` runs instead).

    By taps: forward is an in-place ``maximum`` per window tap over strided
    views (no window buffer, no index); backward hands each gradient to the first tap, in
    row-major order, equal to the maximum (torch's tie rule; padding is never a tap) and withholds
    it from later taps. Saves input and output instead of int64 indices.

    By index (and whenever a maximum is NaN, which equality cannot find): one ``max`` over
    the windows laid out as ``(N, C, OH, OW, kH·kW)`` (or the exact scan) gives the flat indices,
    and backward scatters the gradient to them (``scatter_add``, itself differentiable).
    """

    @staticmethod
    def forward(x: Tensor, k, s, p, d, o, need_index: bool):
        if triton_pool.available(x):  # CUDA: one kernel finds values and torch's indices
            return triton_pool.max_pool2d(x, k, s, p, d, o)
        if not need_index:
            out = torch.empty(*x.shape[:2], *o, dtype=x.dtype, device=x.device, memory_format=memory_format_of(x))
            taps = list(_tap_slices(x.shape[2:], k, s, p, d, o))
            first_outputs, first_inputs = taps[0]
            if out[first_outputs].shape == out.shape:  # the first tap reaches every output
                out.copy_(x[first_inputs])
                taps = taps[1:]
            else:
                out.fill_(pool_windows.lowest(out.dtype))
            for outputs, inputs in taps:
                torch.maximum(out[outputs], x[inputs], out=out[outputs])
            # NaN wins every maximum, so the sum shows it (a sum of +inf and -inf gives a false
            # alarm: the index route is exact too); 15× cheaper than isnan().any() on the CPU
            if not bool(out.sum().isnan()):
                return out, torch.empty(0, dtype=torch.long, device=x.device)  # no index: by taps
        values, index = _max_pool2d_direct(x, k, s, p, d, o)
        if index is None:  # NaN or -inf present: the exact scan keeps torch's NaN / first-valid rule
            index = _max_indices_2d(
                x,
                lambda t: _max_indices_1d(t, k[1], s[1], p[1], d[1], o[1]),
                lambda t: _max_indices_1d(t, k[0], s[0], p[0], d[0], o[0]),
            )
            values = _gather_flat(x, index)
        return values, index

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, k, s, p, d, o, _ = inputs
        out, index = output
        ctx.geometry = (k, s, p, d, o)
        ctx.by_taps = index.dim() == 1  # the by-taps route returns an empty 1-D index
        ctx.save_for_backward(*((x, out) if ctx.by_taps else (index,)))
        ctx.input_shape = x.shape
        ctx.mark_non_differentiable(index)

    @staticmethod
    def backward(ctx, grad: Tensor, _grad_index):
        # overlapping windows add several gradients into one input: float16/bfloat16 add those in
        # float32 (windows that do not overlap, the common 2×2/2, hand each input one gradient at most)
        k, s, _, d, _ = ctx.geometry
        overlapping = any(ss < dd * (kk - 1) + 1 for kk, ss, dd in zip(k, s, d))
        wide = _accumulation(grad) if overlapping else grad
        if ctx.by_taps:
            x, out = ctx.saved_tensors
            grad_input = _max_pool2d_backward_by_taps(wide, x, out, *ctx.geometry).to(grad.dtype)
            return grad_input, None, None, None, None, None, None
        (index,) = ctx.saved_tensors
        n, c = ctx.input_shape[:2]
        flat = wide.new_zeros(n, c, ctx.input_shape[2:].numel())
        positions = index.shape[2:].numel()  # explicit: -1 is ambiguous for an empty batch
        flat = flat.scatter_add(-1, index.reshape(n, c, positions), wide.reshape(n, c, positions))
        return flat.view(ctx.input_shape).to(grad.dtype), None, None, None, None, None, None


def _max_pool2d_backward_by_taps(grad: Tensor, x: Tensor, out: Tensor, k, s, p, d, o) -> Tensor:
    """The gradient of every window goes to its winning tap, the first in row-major order equal to
    the maximum: taps are visited in order and each claims the windows not yet claimed (0/1
    masks in the input's dtype; bool masks ran 5-10× slower). Windows that tile the input without
    ties take a one-pass shortcut."""
    n, c, h, w = x.shape
    if k == s and d == (1, 1) and p == (0, 0) and (h, w) == (o[0] * k[0], o[1] * k[1]):
        # Windows tile the input: one broadcast compare marks every maximum, as 0/1 in x's dtype
        # (torch.where on bool masks ran 5-10× slower on the CPU). If each window has exactly one
        # (no ties, the usual case unless a ReLU came before), the gradient goes straight there.
        mask = torch.empty_like(x)  # the input's memory format
        tiles = mask.view(n, c, o[0], k[0], o[1], k[1])
        torch.eq(x.view(n, c, o[0], k[0], o[1], k[1]), out.view(n, c, o[0], 1, o[1], 1), out=tiles)
        if _count_ones(mask) == out.numel():
            routed = grad.view(n, c, o[0], 1, o[1], 1)
            if torch.is_grad_enabled():  # double backward: in-place ops would not record
                return (tiles * routed).reshape(n, c, h, w)
            tiles.mul_(routed)
            return mask
    unclaimed = torch.ones_like(out)  # 1 until a tap equal to the maximum claims the window
    grad_input = torch.zeros_like(x)
    for outputs, inputs in _tap_slices(x.shape[2:], k, s, p, d, o):
        claims = torch.empty_like(out[outputs])  # a fresh one per tap: double backward keeps it
        torch.eq(x[inputs], out[outputs], out=claims)
        claims.mul_(unclaimed[outputs])
        unclaimed[outputs] -= claims
        grad_input[inputs] += claims * grad[outputs]
    return grad_input


def _count_ones(mask: Tensor) -> int:
    """Number of ones in a 0/1 floating-point ``mask``, counted exactly on its bits read as integers
    (``count_nonzero`` on floats, and float sums, ran 10-15× slower on the CPU; a float32 sum also
    rounds above 2²⁴)."""
    return int(torch.count_nonzero(mask.view(_SAME_SIZE_INTEGER[mask.element_size()])))


_SAME_SIZE_INTEGER = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def _tap_slices(size, k, s, p, d, o):
    """``(output index, input index)`` pairs, one per in-bounds 2-D window tap in row-major order:
    output ``[y, x]`` of the first reads input ``[y·s + i·d − p, x·s + j·d − p]`` of the second."""
    rows = tap_ranges(size[0], k[0], s[0], p[0], o[0], d[0])
    cols = tap_ranges(size[1], k[1], s[1], p[1], o[1], d[1])
    for lo_h, hi_h, top in rows:
        for lo_w, hi_w, left in cols:
            outputs = (..., slice(lo_h, hi_h), slice(lo_w, hi_w))
            inputs = (
                ...,
                slice(top, top + s[0] * (hi_h - lo_h - 1) + 1, s[0]),
                slice(left, left + s[1] * (hi_w - lo_w - 1) + 1, s[1]),
            )
            yield outputs, inputs


def _max_pool2d_direct(x: Tensor, k, s, p, d, o) -> tuple[Tensor, Tensor | None]:
    """Maxima and flat indices from one ``max`` over the windows laid out as ``(N, C, OH, OW, kH·kW)``
    (one strided copy). ``max`` returns the first maximum in row-major window order: torch's tie
    rule. The index is ``None`` when the maxima hold NaN or −inf, where that rule and torch's differ
    (torch takes the last NaN and never a padded −inf). The check is whether their sum is finite:
    a +inf maximum is a false alarm, which only costs the exact scan."""
    n, c, height, width = x.shape
    effective = [dd * (kk - 1) + 1 for kk, dd in zip(k, d)]
    right = [max((oo - 1) * ss + e - size - pp, 0) for oo, ss, e, size, pp in zip(o, s, effective, (height, width), p)]
    if any(p) or any(right):
        x = F.pad(x, [p[1], right[1], p[0], right[0]], value=pool_windows.lowest(x.dtype))
    sn, sc, sh, sw = x.stride()
    windows = x.as_strided((n, c, *o, *k), (sn, sc, sh * s[0], sw * s[1], sh * d[0], sw * d[1]), x.storage_offset())
    values, position = windows.reshape(n, c, *o, k[0] * k[1]).max(-1)
    if not bool(values.sum().isfinite()):  # NaN or −inf among the maxima (or a false alarm: +inf)
        return values, None
    # flat index = window origin (per output) + tap offset (per window position): two small tables
    device = x.device
    top = torch.arange(o[0], device=device) * s[0] - p[0]
    left = torch.arange(o[1], device=device) * s[1] - p[1]
    origin = top[:, None] * width + left
    taps = torch.arange(k[0], device=device)[:, None] * (d[0] * width) + torch.arange(k[1], device=device) * d[1]
    return values, origin + taps.flatten()[position]


def _max_unpool(op: str, input: Tensor, indices: Tensor, kernel_size, stride, padding, output_size, spatial_dims):
    batched = check_input_rank(input, spatial_dims, op)
    k = ntuple(kernel_size, spatial_dims, "kernel_size")
    s = k if stride is None else ntuple(stride, spatial_dims, "stride")
    p = ntuple(padding, spatial_dims, "padding")
    if indices.shape != input.shape:
        raise RuntimeError(
            f"{op}: indices must have the shape of input {list(input.shape)}, but got {list(indices.shape)}"
        )
    default = [
        conv_transpose_output_size(size, kk, ss, pp, 0, 1)
        for size, kk, ss, pp in zip(input.shape[-spatial_dims:], k, s, p)
    ]
    if output_size is None:
        size = default
    else:
        size = list(output_size)[-spatial_dims:]
        for dim, (want, base, ss) in enumerate(zip(size, default, s)):
            if not base - ss < want < base + ss:
                raise ValueError(
                    f"{op}: invalid output_size={list(output_size)} (dim {dim} must be between "
                    f"{base - ss + 1} and {base + ss - 1})"
                )
    x = input if batched else input.unsqueeze(0)
    idx = indices if batched else indices.unsqueeze(0)
    n, c = x.shape[:2]
    numel = math.prod(size)
    if idx.numel() and not is_tracing(idx) and (int(idx.min()) < 0 or int(idx.max()) >= numel):
        raise RuntimeError(f"{op}: found an index outside the output of size {size}: indices must be in [0, {numel})")
    flat = x.shape[2:].numel()
    out = x.new_zeros(n, c, numel).scatter(-1, idx.reshape(n, c, flat), x.reshape(n, c, flat)).view(n, c, *size)
    (out,) = _in_layout_of(x, out)
    return out if batched else out.squeeze(0)


@fx_leaf
def max_unpool1d(input, indices, kernel_size, stride=None, padding=0, output_size=None) -> Tensor:
    """Inverse of :func:`max_pool1d`: each value goes back to its index, zeros elsewhere."""
    return _max_unpool("max_unpool1d", input, indices, kernel_size, stride, padding, output_size, 1)


@fx_leaf
def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None) -> Tensor:
    """Inverse of :func:`max_pool2d`. See :class:`cnnlab.nn.MaxUnpool2d`."""
    return _max_unpool("max_unpool2d", input, indices, kernel_size, stride, padding, output_size, 2)


@fx_leaf
def max_unpool3d(input, indices, kernel_size, stride=None, padding=0, output_size=None) -> Tensor:
    """Inverse of :func:`max_pool3d`. See :class:`cnnlab.nn.MaxUnpool3d`."""
    return _max_unpool("max_unpool3d", input, indices, kernel_size, stride, padding, output_size, 3)


# --------------------------------------------------------------------------- average pooling
def _avg_divisor(size: int, kernel: int, stride: int, padding: int, out: int, count_include_pad: bool, device):
    """torch's per-window divisor along one dim: the window clipped to the padded input
    (``count_include_pad``) or to the input itself."""
    start = torch.arange(out, device=device) * stride - padding
    end = torch.clamp(start + kernel, max=size + padding)
    if not count_include_pad:
        start, end = start.clamp(min=0), end.clamp(max=size)
    return end - start


def _along(dim: int, index: slice) -> tuple:
    """Index ``index`` along the negative ``dim``."""
    return (..., index, *(slice(None),) * (-dim - 1))


def _sum_taps(source: Tensor, dim: int, ranges, stride: int, out_len: int, adjoint: bool) -> Tensor:
    """Window sums along ``dim`` as one strided add per tap (no window buffer); ``adjoint`` sends
    each output back to the inputs of its window (the backward)."""
    shape = list(source.shape)
    shape[dim] = out_len
    out = source.new_zeros(shape)
    for lo, hi, start in ranges:
        outputs = _along(dim, slice(lo, hi))
        inputs = _along(dim, slice(start, start + stride * (hi - lo - 1) + 1, stride))
        if adjoint:
            out[inputs] += source[outputs]
        else:
            out[outputs] += source[inputs]
    return out


class _WindowSum(torch.autograd.Function):
    """Sum over windows along ``dim`` (−1 or −2); backward is the adjoint scatter, itself built
    from differentiable ops so double backward works."""

    @staticmethod
    def forward(x: Tensor, dim: int, kernel: int, stride: int, padding: int, out: int) -> Tensor:
        return _sum_taps(x, dim, tap_ranges(x.shape[dim], kernel, stride, padding, out), stride, out, adjoint=False)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, dim, kernel, stride, padding, out = inputs
        ctx.geometry = (dim, tap_ranges(x.shape[dim], kernel, stride, padding, out), stride, x.shape[dim])

    @staticmethod
    def backward(ctx, grad: Tensor):
        dim, ranges, stride, size = ctx.geometry
        return _sum_taps(grad, dim, ranges, stride, size, adjoint=True), None, None, None, None, None


def _divisors(x: Tensor, k, s, p, o, count_include_pad: bool, divisor_override) -> Tensor:
    """torch's divisor of every window, ``(*S_out)``: the product of the per-dim window lengths."""
    if divisor_override is not None:
        return torch.full(o, divisor_override, device=x.device)
    divisor = None
    for a in range(len(k)):
        d = _avg_divisor(x.shape[2 + a], k[a], s[a], p[a], o[a], count_include_pad, x.device)
        divisor = d if divisor is None else divisor.unsqueeze(-1) * d
    return divisor


def _mean_of_sums(sums: Tensor, divisor: Tensor, dtype: torch.dtype) -> Tensor:
    """``sums / divisor`` rounded once to ``dtype``; integer inputs divide with truncation, as torch."""
    if not dtype.is_floating_point:
        return torch.div(sums, divisor, rounding_mode="trunc").to(dtype)
    return (sums / divisor.to(sums.dtype)).to(dtype)


def _accumulation(x: Tensor) -> Tensor:
    """float16/bfloat16 are summed in float32 and rounded once at the end, as torch's kernels do."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _avg_pool(op, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, spatial_dims):
    x, batched, k, s, p, _, o = _pool_args(op, input, spatial_dims, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None and divisor_override == 0:
        raise RuntimeError(f"{op}: divisor_override must be non-zero, but got divisor_override={divisor_override}")
    if spatial_dims == 2 and triton_pool.available(x) and not is_tracing(x):
        divisors = [_avg_divisor(x.shape[2 + a], k[a], s[a], p[a], o[a], count_include_pad, x.device) for a in (0, 1)]
        if divisor_override is not None:
            divisors = [torch.full_like(divisors[0], divisor_override), torch.ones_like(divisors[1])]
        out = triton_pool.avg_pool2d(x, k, s, p, o, *divisors)
        return out if batched else out.squeeze(0)
    sums = _accumulation(x)
    if is_tracing(x):
        sums = pool_windows.window_sum(sums, k, s, p, o)
    else:
        for axis in range(spatial_dims):  # one dim at a time, the last first: separable window sums
            dim = -1 - axis
            sums = _WindowSum.apply(sums, dim, k[dim], s[dim], p[dim], o[dim])
    divisor = _divisors(x, k, s, p, o, count_include_pad, divisor_override)
    (out,) = _in_layout_of(x, _mean_of_sums(sums, divisor, x.dtype))
    return out if batched else out.squeeze(0)


@fx_leaf
def avg_pool1d(
    input: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Tensor:
    """1-D average pooling. See :class:`cnnlab.nn.AvgPool1d`."""
    return _avg_pool("avg_pool1d", input, kernel_size, stride, padding, ceil_mode, count_include_pad, None, 1)


@fx_leaf
def avg_pool2d(
    input: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """2-D average pooling. See :class:`cnnlab.nn.AvgPool2d`."""
    return _avg_pool(
        "avg_pool2d", input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 2
    )


def _lp_finish(pooled: Tensor, norm_type: float, window: int) -> Tensor:
    # torch's formula: (sign(avg) · relu(|avg|) · window) ** (1/p)
    return (torch.sign(pooled) * torch.relu(torch.abs(pooled))).mul(window).pow(1.0 / norm_type)


@fx_leaf
def lp_pool1d(
    input: Tensor, norm_type: float, kernel_size: int, stride: IntOrTuple | None = None, ceil_mode: bool = False
) -> Tensor:
    """1-D power-average pooling ``(Σ x^p)^(1/p)``. See :class:`cnnlab.nn.LPPool1d`."""
    (k,) = ntuple(kernel_size, 1, "kernel_size")
    return _lp_finish(avg_pool1d(input.pow(norm_type), k, stride, 0, ceil_mode), norm_type, k)


@fx_leaf
def lp_pool2d(
    input: Tensor, norm_type: float, kernel_size: IntOrTuple, stride: IntOrTuple | None = None, ceil_mode: bool = False
) -> Tensor:
    """2-D power-average pooling; ``norm_type=2`` is L2-norm pooling. See :class:`cnnlab.nn.LPPool2d`."""
    kh, kw = ntuple(kernel_size, 2, "kernel_size")
    return _lp_finish(avg_pool2d(input.pow(norm_type), (kh, kw), stride, 0, ceil_mode), norm_type, kh * kw)


@fx_leaf
def avg_pool3d(
    input: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """3-D average pooling over ``(N, C, D, H, W)``. See :class:`cnnlab.nn.AvgPool3d`."""
    return _avg_pool(
        "avg_pool3d", input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 3
    )


@fx_leaf
def lp_pool3d(
    input: Tensor, norm_type: float, kernel_size: IntOrTuple, stride: IntOrTuple | None = None, ceil_mode: bool = False
) -> Tensor:
    """3-D power-average pooling. See :class:`cnnlab.nn.LPPool3d`."""
    k = ntuple(kernel_size, 3, "kernel_size")
    return _lp_finish(avg_pool3d(input.pow(norm_type), k, stride, 0, ceil_mode), norm_type, math.prod(k))


# --------------------------------------------------------------------------- adaptive pooling
def _adaptive_output_size(
    op: str, input: Tensor, output_size, spatial_dims: int
) -> tuple[Tensor, bool, tuple[int, ...]]:
    batched = check_input_rank(input, spatial_dims, op)
    x = input if batched else input.unsqueeze(0)
    sizes = output_size if isinstance(output_size, Sequence) else (output_size,) * spatial_dims
    if len(sizes) != spatial_dims:
        raise RuntimeError(f"{op}: output_size must have {spatial_dims} elements, but got output_size={output_size!r}")
    out = tuple(x.shape[2 + i] if v is None else int(v) for i, v in enumerate(sizes))
    if any(v < 0 for v in out):
        raise RuntimeError(f"{op}: output_size must be non-negative, but got output_size={out}")
    _check_not_empty(op, input, x)
    return x, batched, out


def _adaptive_bounds(size: int, out: int, device) -> tuple[Tensor, Tensor]:
    """torch's window of output ``o``: ``[floor(o·size/out), ceil((o+1)·size/out))``."""
    o = torch.arange(out, device=device)
    return (o * size) // out, ((o + 1) * size + out - 1) // out


def _adaptive_matrix(size: int, out: int, like: Tensor) -> Tensor:
    """``(out, size)`` averaging matrix: row ``o`` is ``1/len`` over window ``o``."""
    start, end = _adaptive_bounds(size, out, like.device)
    j = torch.arange(size, device=like.device)
    inside = (j >= start[:, None]) & (j < end[:, None])
    return inside.to(like.dtype) / (end - start)[:, None].to(like.dtype)


def _adaptive_argmax_1d(x: Tensor, out: int) -> Tensor:
    size = x.shape[-1]
    start, end = _adaptive_bounds(size, out, x.device)
    kernel = int((end - start).max()) if out else 1
    positions = start[:, None] + torch.arange(kernel, device=x.device)
    positions = torch.where(positions < end[:, None], positions, size)  # beyond the window: invalid
    windows = F.pad(x, [0, 1], value=pool_windows.lowest(x.dtype))[..., positions.clamp(max=size)]
    # One max gives the first maximum of each window, torch's rule, unless a NaN is in the way
    # (torch takes the last one): then the exact scan. Taps past a window's end read -inf.
    values, tap = windows.max(-1)
    if bool(values.sum().isnan()):
        return _scan_argmax(windows, positions, size)[1]
    return start + tap


def _adaptive_avg(x: Tensor, out: tuple[int, ...]) -> Tensor:
    """Adaptive averages of a batched ``(N, C, *S)``: along each spatial dim, a product with the
    ``(out, size)`` averaging matrix (float16/bfloat16 accumulated in float32)."""
    result = _accumulation(x)
    for axis, size in enumerate(out, start=2):
        matrix = _adaptive_matrix(result.shape[axis], size, result)
        last = result.dim() - 1  # non-negative axes: ONNX's Transpose rejects negative ones
        result = torch.matmul(result.movedim(axis, last), matrix.t()).movedim(last, axis)
    (result,) = _in_layout_of(x, result.to(x.dtype))
    return result


@fx_leaf
def adaptive_avg_pool1d(input: Tensor, output_size: int | Sequence[int]) -> Tensor:
    """Average over ``output_size`` windows that tile any length. See :class:`cnnlab.nn.AdaptiveAvgPool1d`."""
    x, batched, out = _adaptive_output_size("adaptive_avg_pool1d", input, output_size, 1)
    return _finish(_adaptive_avg(x, out), None, batched, False)


@fx_leaf
def adaptive_avg_pool2d(input: Tensor, output_size: int | Sequence[int | None] | None) -> Tensor:
    """``P_H · x · P_Wᵀ`` with averaging matrices. See :class:`cnnlab.nn.AdaptiveAvgPool2d`."""
    x, batched, out = _adaptive_output_size("adaptive_avg_pool2d", input, output_size, 2)
    return _finish(_adaptive_avg(x, out), None, batched, False)


@fx_leaf
def adaptive_avg_pool3d(input: Tensor, output_size: int | Sequence[int | None] | None) -> Tensor:
    """Averaging matrices along D, H and W. See :class:`cnnlab.nn.AdaptiveAvgPool3d`."""
    x, batched, out = _adaptive_output_size("adaptive_avg_pool3d", input, output_size, 3)
    return _finish(_adaptive_avg(x, out), None, batched, False)


@fx_leaf
def adaptive_max_pool1d(input: Tensor, output_size: int | Sequence[int], return_indices: bool = False):
    """Max over ``output_size`` windows that tile any length. See :class:`cnnlab.nn.AdaptiveMaxPool1d`."""
    x, batched, (o,) = _adaptive_output_size("adaptive_max_pool1d", input, output_size, 1)
    if is_tracing(x):
        return _finish(*pool_windows.adaptive_max_pool(x, (o,)), batched, return_indices)
    with torch.no_grad():
        index = _adaptive_argmax_1d(x, o)
    return _finish(x.gather(-1, index), index, batched, return_indices)


@fx_leaf
def adaptive_max_pool2d(input: Tensor, output_size: int | Sequence[int | None] | None, return_indices: bool = False):
    """Max over windows that tile any image size. See :class:`cnnlab.nn.AdaptiveMaxPool2d`."""
    x, batched, (oh, ow) = _adaptive_output_size("adaptive_max_pool2d", input, output_size, 2)
    height, width = x.shape[2:]
    if is_tracing(x) and not (oh and ow and height % oh == 0 and width % ow == 0):
        return _finish(*_in_layout_of(x, *pool_windows.adaptive_max_pool(x, (oh, ow))), batched, return_indices)
    if oh and ow and height % oh == 0 and width % ow == 0:
        # Windows that tile the image (global pooling, 32² → 4²) are max_pool2d's, kernel = stride
        kernel = (height // oh, width // ow)
        out, index = _max_pool2d(x, kernel, kernel, (0, 0), (1, 1), (oh, ow), return_indices)
        return _finish(out, index, batched, return_indices)
    with torch.no_grad():
        index = _max_indices_2d(x, lambda t: _adaptive_argmax_1d(t, ow), lambda t: _adaptive_argmax_1d(t, oh))
    return _finish(*_in_layout_of(x, _gather_flat(x, index), index), batched, return_indices)


@fx_leaf
def adaptive_max_pool3d(input: Tensor, output_size: int | Sequence[int | None] | None, return_indices: bool = False):
    """Max over windows that tile any volume (the window form of :mod:`.pool_windows`). See
    :class:`cnnlab.nn.AdaptiveMaxPool3d`."""
    x, batched, out = _adaptive_output_size("adaptive_max_pool3d", input, output_size, 3)
    values, index = pool_windows.adaptive_max_pool(_accumulation(x), out)
    return _finish(*_in_layout_of(x, values.to(x.dtype), index), batched, return_indices)


def _fractional_max_pool(op, input, kernel_size, output_size, output_ratio, return_indices, samples, spatial_dims):
    if output_size is None and output_ratio is None:
        raise ValueError(f"{op} requires specifying either an output_size or an output_ratio")
    batched = check_input_rank(input, spatial_dims, op)
    x = input if batched else input.unsqueeze(0)
    k = ntuple(kernel_size, spatial_dims, "kernel_size")
    if output_size is None:
        ratio = tuple(output_ratio) if isinstance(output_ratio, Sequence) else (output_ratio,) * spatial_dims
        if not all(0 < r < 1 for r in ratio):
            raise ValueError(f"{op}: output_ratio must be between 0 and 1 (exclusive), but got output_ratio={ratio}")
        output_size = [int(size * r) for size, r in zip(input.shape[-spatial_dims:], ratio)]
    out = ntuple(output_size, spatial_dims, "output_size")
    check_positive("kernel_size", k, op)
    for size, kk, oo in zip(x.shape[2:], k, out):
        if oo + kk - 1 > size:
            raise RuntimeError(
                f"{op}: output_size={out} with kernel_size={k} needs an input of at least "
                f"{tuple(o + kk - 1 for o, kk in zip(out, k))}, but got {tuple(x.shape[2:])}"
            )
    if samples is None:  # the same draw as torch's, so a seeded run picks the same windows
        samples = torch.rand(x.shape[0], x.shape[1], spatial_dims, dtype=x.dtype, device=x.device)
    if samples.shape != (x.shape[0], x.shape[1], spatial_dims):
        raise RuntimeError(
            f"{op}: _random_samples must have shape {[x.shape[0], x.shape[1], spatial_dims]}, "
            f"but got {list(samples.shape)}"
        )
    _check_not_empty(op, input, x)
    return _finish(*pool_windows.fractional_max_pool(x, k, out, samples), batched, return_indices)


@fx_leaf
def fractional_max_pool2d(
    input: Tensor,
    kernel_size: IntOrTuple,
    output_size: IntOrTuple | None = None,
    output_ratio: float | Sequence[float] | None = None,
    return_indices: bool = False,
    _random_samples: Tensor | None = None,
):
    """Max over pseudo-random, overlapping windows (Graham, 2014). See :class:`cnnlab.nn.FractionalMaxPool2d`."""
    return _fractional_max_pool(
        "fractional_max_pool2d", input, kernel_size, output_size, output_ratio, return_indices, _random_samples, 2
    )


@fx_leaf
def fractional_max_pool3d(
    input: Tensor,
    kernel_size: IntOrTuple,
    output_size: IntOrTuple | None = None,
    output_ratio: float | Sequence[float] | None = None,
    return_indices: bool = False,
    _random_samples: Tensor | None = None,
):
    """3-D fractional max pooling. See :class:`cnnlab.nn.FractionalMaxPool3d`."""
    return _fractional_max_pool(
        "fractional_max_pool3d", input, kernel_size, output_size, output_ratio, return_indices, _random_samples, 3
    )


@fx_leaf
def global_avg_pool2d(input: Tensor, flatten: bool = False) -> Tensor:
    """Mean over the whole image: ``(N, C, H, W)`` → ``(N, C, 1, 1)`` (``(N, C)`` with ``flatten``).
    See :class:`cnnlab.nn.GlobalAvgPool2d`."""
    check_input_rank(input, 2, "global_avg_pool2d")
    return input.mean((-2, -1), keepdim=not flatten)


@fx_leaf
def global_max_pool2d(input: Tensor, flatten: bool = False) -> Tensor:
    """Max over the whole image (torch's max-pool rule). See :class:`cnnlab.nn.GlobalMaxPool2d`."""
    out = adaptive_max_pool2d(input, 1)
    return out.flatten(-3) if flatten else out


# --------------------------------------------------------------------------- layers torch lacks
@fx_leaf
def channel_max_pool(input: Tensor, kernel_size: int) -> Tensor:
    """Maxout: max over groups of ``kernel_size`` consecutive channels of ``(N, C, H, W)`` or
    ``(C, H, W)``. See :class:`cnnlab.nn.ChannelMaxPool`."""
    if not check_input_rank(input, 2, "channel_max_pool"):
        return channel_max_pool(input.unsqueeze(0), kernel_size).squeeze(0)
    channels = input.shape[1]
    if kernel_size <= 0 or channels % kernel_size:
        raise RuntimeError(
            f"channel_max_pool: channels ({channels}) must be divisible by kernel_size, "
            f"but got kernel_size={kernel_size}"
        )
    grouped = input.reshape(input.shape[0], channels // kernel_size, kernel_size, *input.shape[2:])
    return grouped.max(dim=2).values


def distance_weights(
    kernel_size: tuple[int, int], kind: str, sigma: Tensor | float, *, device=None, dtype=None
) -> Tensor:
    """``(kH, kW)`` weights that fall with the distance ``r`` from the window centre, summing to 1:
    ``exp(-r²/(2σ²))`` (``gaussian``) or ``1/(1 + r)`` (``inverse``). The centre of an even window
    lies between pixels, at ``((kH-1)/2, (kW-1)/2)``."""
    kh, kw = kernel_size
    y = torch.arange(kh, device=device, dtype=dtype) - (kh - 1) / 2
    x = torch.arange(kw, device=device, dtype=dtype) - (kw - 1) / 2
    r2 = y[:, None] ** 2 + x[None, :] ** 2
    if kind == "gaussian":
        weights = torch.exp(-r2 / (2 * torch.as_tensor(sigma, device=device, dtype=dtype) ** 2))
    elif kind == "inverse":
        weights = 1.0 / (1.0 + r2.sqrt())
    else:
        raise ValueError(f"distance_weights: kind must be 'gaussian' or 'inverse', but got kind={kind!r}")
    return weights / weights.sum()


def _weighted_pool(x: Tensor, weights: Tensor, stride, padding, out) -> Tensor:
    """``Σ_{u,v} weights[u, v] · x_pad[..., y·s + u, x·s + v]`` over ``(N, C, H, W)`` with zero
    padding: the same filter for every channel, i.e. a depthwise convolution (cnnlab's own)."""
    kh, kw = weights.shape
    if is_tracing(x):
        return pool_windows.weighted_pool2d(x, weights, stride, padding, out)
    right = [max((o - 1) * st + k - n - p, 0) for o, st, k, n, p in zip(out, stride, (kh, kw), x.shape[-2:], padding)]
    pads = [padding[1], right[1], padding[0], right[0]]
    if any(pads):
        x = F.pad(x, pads)
    channels = x.shape[1]
    filters = weights.expand(channels, 1, kh, kw)
    depthwise = get_conv2d_algorithm("depthwise", x, filters, stride, (0, 0), channels)
    return depthwise(x, filters, stride, (0, 0), (1, 1), channels)


@fx_leaf
def distance_weighted_pool2d(
    input: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    *,
    kind: str = "gaussian",
    sigma: Tensor | float = 1.0,
) -> Tensor:
    """Weighted average, weights falling with distance from the window centre (zero padding
    counts as zeros). See :class:`cnnlab.nn.DistanceWeightedPool2d`."""
    x, batched, k, s, p, _, o = _pool_args(
        "distance_weighted_pool2d", input, 2, kernel_size, stride, padding, 1, ceil_mode
    )
    weights = distance_weights(k, kind, sigma, device=x.device, dtype=x.dtype)
    out = _weighted_pool(x, weights, s, p, o)
    return out if batched else out.squeeze(0)


def binomial_filter(size: int, *, device=None, dtype=None) -> Tensor:
    """Normalised 1-D binomial filter, row ``size - 1`` of Pascal's triangle: 3 → [1, 2, 1] / 4."""
    if not 1 <= size <= 7:
        raise ValueError(f"binomial_filter: filter_size must be in 1..7, but got filter_size={size}")
    coefficients = torch.tensor([math.comb(size - 1, i) for i in range(size)], device=device, dtype=dtype)
    return coefficients / coefficients.sum()


@fx_leaf
def blur_pool2d(input: Tensor, filter_size: int = 3, stride: IntOrTuple = 2) -> Tensor:
    """Anti-aliased downsampling: binomial blur (reflect padding) then subsample, per channel.
    See :class:`cnnlab.nn.BlurPool2d`."""
    batched = check_input_rank(input, 2, "blur_pool2d")
    x = input if batched else input.unsqueeze(0)
    s = ntuple(stride, 2, "stride")
    if any(v <= 0 for v in s):
        raise RuntimeError(f"blur_pool2d: stride must be greater than zero, but got stride={s}")
    taps = binomial_filter(filter_size, device=x.device, dtype=x.dtype)
    left, right = (filter_size - 1) // 2, filter_size // 2
    if left or right:
        if min(x.shape[-2:]) <= max(left, right):
            raise RuntimeError(
                f"blur_pool2d: reflect padding of {max(left, right)} needs an input larger than that, "
                f"but got input of size {list(input.shape)}"
            )
        x = F.pad(x, [left, right, left, right], mode="reflect")
    out_size = output_size_unpadded(x.shape[-2:], (filter_size,) * 2, s, (1, 1))
    out = _weighted_pool(x, torch.outer(taps, taps), s, (0, 0), out_size)
    return out if batched else out.squeeze(0)


@fx_leaf
def max_blur_pool2d(input: Tensor, kernel_size: IntOrTuple = 2, filter_size: int = 3, stride: IntOrTuple = 2) -> Tensor:
    """Max with stride 1 (dense, no aliasing) then :func:`blur_pool2d` with ``stride`` (Zhang 2019).
    See :class:`cnnlab.nn.MaxBlurPool2d`."""
    return blur_pool2d(max_pool2d(input, kernel_size, stride=1), filter_size, stride)


def _with_indices(pool):
    """torch's ``*_with_indices`` form of a max pool: the same arguments, always ``(values, indices)``."""

    @functools.wraps(pool)
    def with_indices(*args, **kwargs):
        kwargs.pop("return_indices", None)
        return pool(*args, **kwargs, return_indices=True)

    with_indices.__name__ = with_indices.__qualname__ = f"{pool.__name__}_with_indices"
    return with_indices


max_pool1d_with_indices = _with_indices(max_pool1d)
max_pool2d_with_indices = _with_indices(max_pool2d)
max_pool3d_with_indices = _with_indices(max_pool3d)
adaptive_max_pool1d_with_indices = _with_indices(adaptive_max_pool1d)
adaptive_max_pool2d_with_indices = _with_indices(adaptive_max_pool2d)
adaptive_max_pool3d_with_indices = _with_indices(adaptive_max_pool3d)
fractional_max_pool2d_with_indices = _with_indices(fractional_max_pool2d)
fractional_max_pool3d_with_indices = _with_indices(fractional_max_pool3d)
