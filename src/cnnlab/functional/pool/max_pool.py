"""Max pooling (1-, 2- and 3-D) with torch's exact index rule.

Every 2-D pool is separable: a rectangle's max is the max over rows of the per-row maxima. Max
pooling picks its index exactly as torch does (scan in row-major order, a later element wins only
if strictly greater or NaN; padding is never picked), and its output is ``input.gather(index)``,
so the gradient flows to that index.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from .._tracing import fx_leaf
from .._utils import IntOrTuple, tap_ranges
from ..backends import memory_format_of
from . import traceable, triton
from .base import accumulation, finish, gather_flat, in_layout_of, pool_args, with_indices
from .dispatch import PoolKernels, run

__all__ = [
    "max_pool1d",
    "max_pool1d_with_indices",
    "max_pool2d",
    "max_pool2d_with_indices",
    "max_pool3d",
    "max_pool3d_with_indices",
]


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


def scan_argmax(windows: Tensor, positions: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """torch's max-pool rule over the last dim of ``windows (..., out, K)``.

    Starts at the first in-bounds tap with ``-inf``, then a tap wins if it is strictly greater
    or NaN. Returns the maxima ``(..., out)`` and the input index of each ``(..., out)``.
    """
    valid = (positions >= 0) & (positions < size)
    first = positions.gather(1, valid.to(torch.uint8).argmax(1, keepdim=True)).squeeze(1)
    best = torch.full_like(windows[..., 0], traceable.lowest(windows.dtype))
    index = first.expand(windows.shape[:-1]).clone()
    for j in range(windows.shape[-1]):
        if not bool(valid[:, j].any()):
            continue
        value = windows[..., j]
        take = ((value > best) | value.isnan()) & valid[:, j]
        best = torch.where(take, value, best)
        index = torch.where(take, positions[:, j], index)
    return best, index


def max_indices_1d(x: Tensor, kernel, stride, padding, dilation, out) -> Tensor:
    """Index along the last dim of the maximum of every window of ``x``."""
    windows = _windows(x, kernel, stride, padding, dilation, out, traceable.lowest(x.dtype))
    positions = _window_positions(x.shape[-1], kernel, stride, padding, dilation, out, x.device)
    return scan_argmax(windows, positions, x.shape[-1])[1]


def max_indices_2d(x: Tensor, index_w_fn, index_h_fn) -> Tensor:
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
    """1-D max pooling, ``torch.nn.functional.max_pool1d``'s drop-in: the maximum of every window,
    ``out[n, c, y] = max_{j < k} input[n, c, s·y + d·j − p]`` per spatial dim (padding never wins),
    with torch's index rule (row-major scan; a later element wins only if greater, or NaN).

    Args:
        input: ``(N, C, L)`` or unbatched ``(C, L)``.
        kernel_size: window size, an int or one per spatial dim.
        stride: step between windows. Default ``kernel_size``.
        padding: implicit ``-inf`` on both sides, at most half the (dilated) window; or ``"tf_same"``
            (cnnlab's: TensorFlow's SAME windows). Default 0.
        dilation: spacing between a window's elements. Default 1.
        ceil_mode: round the output size up (a last, partial window). Default False.
        return_indices: also return each maximum's flat index into the input's spatial dims
            (``(L)`` flattened), for :func:`max_unpool1d`. Default False.

    Shape:
        ``(N, C, L_out)``, each size ``floor((size + 2p − d(k − 1) − 1) / s) + 1`` (``ceil`` with
        ``ceil_mode``); indices the same shape, ``int64``.

    Example:
        >>> max_pool1d(torch.tensor([[[1.0, 3.0, 2.0, 0.0]]]), 2, return_indices=True)
        (tensor([[[3., 2.]]]), tensor([[[1, 2]]]))
    """
    x, batched, (k,), (s,), (p,), (d,), (o,) = pool_args(
        "max_pool1d", input, 1, kernel_size, stride, padding, dilation, ceil_mode
    )
    return finish(*run(MAX_POOL1D, x, k, s, p, d, o), batched, return_indices)


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
    """2-D max pooling, ``torch.nn.functional.max_pool2d``'s drop-in: the maximum of every window,
    ``out[n, c, y] = max_{j < k} input[n, c, s·y + d·j − p]`` per spatial dim (padding never wins),
    with torch's index rule (row-major scan; a later element wins only if greater, or NaN).
    Channels-last input gives channels-last output.

    Args:
        input: ``(N, C, H, W)`` or unbatched ``(C, H, W)``.
        kernel_size: window size, an int or one per spatial dim.
        stride: step between windows. Default ``kernel_size``.
        padding: implicit ``-inf`` on both sides, at most half the (dilated) window; or ``"tf_same"``
            (cnnlab's: TensorFlow's SAME windows). Default 0.
        dilation: spacing between a window's elements. Default 1.
        ceil_mode: round the output size up (a last, partial window). Default False.
        return_indices: also return each maximum's flat index into the input's spatial dims
            (``(H, W)`` flattened), for :func:`max_unpool2d`. Default False.

    Shape:
        ``(N, C, H_out, W_out)``, each size ``floor((size + 2p − d(k − 1) − 1) / s) + 1`` (``ceil`` with
        ``ceil_mode``); indices the same shape, ``int64``.

    Example:
        >>> max_pool2d(torch.randn(8, 16, 32, 32), 3, stride=2, padding=1).shape
        torch.Size([8, 16, 16, 16])
    """
    x, batched, k, s, p, d, o = pool_args("max_pool2d", input, 2, kernel_size, stride, padding, dilation, ceil_mode)
    return finish(*run(MAX_POOL2D, x, k, s, p, d, o, return_indices), batched, return_indices)


def _eager_max_pool2d(x: Tensor, k, s, p, d, o, return_indices: bool, kernel=None) -> tuple[Tensor, Tensor | None]:
    """:class:`_MaxPool2d`, with ``kernel`` (the Triton kernel on CUDA) computing its forward if given.
    Route by index when asked for it, for NCHW input that needs a gradient, and for windows of
    more than 9 taps; otherwise by taps. Forward+backward of max 2×2, 64ch @32², batch 128
    (2026-11-24): on NCHW data, where the taps' stride-2 innermost views do not vectorise, taps
    won without ties (33 vs 39 ms) but lost on ReLU output, whose zero windows tie (75 vs 56 ms);
    channels-last data takes the taps (35 vs 77 ms with ties), and so does inference (forward
    1.5 vs 17 ms). A global max over 32² would be 1024 tap passes."""
    by_index = (
        return_indices
        or k[0] * k[1] > 9
        or (torch.is_grad_enabled() and x.requires_grad and memory_format_of(x) != torch.channels_last)
    )
    out, index = _MaxPool2d.apply(x, k, s, p, d, o, by_index, kernel)
    return in_layout_of(x, out, index) if return_indices else (*in_layout_of(x, out), None)


def _traceable_max_pool2d(x: Tensor, k, s, p, d, o, return_indices: bool) -> tuple[Tensor, Tensor | None]:
    out, index = in_layout_of(x, *traceable.max_pool(x, k, s, p, d, o))
    return out, index if return_indices else None


def _eager_max_pool1d(x: Tensor, k: int, s: int, p: int, d: int, o: int) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        index = max_indices_1d(x, k, s, p, d, o)
    return x.gather(-1, index), index


def _traceable_max_pool1d(x: Tensor, k: int, s: int, p: int, d: int, o: int) -> tuple[Tensor, Tensor]:
    return traceable.max_pool(x, (k,), (s,), (p,), (d,), (o,))


class NativeWindowMax(torch.autograd.Function):
    """cnnlab's compiled window maximum (``csrc/windows.cpp``; 2-D and 3-D, values and torch's
    indices in one pass): max pooling's windows ``(k, s, p, d, o)``, or adaptive pooling's when
    ``k`` is ``None``. Backward scatters the gradient to those indices; under ``create_graph`` the
    scatter is ``scatter_add``, which autograd records."""

    @staticmethod
    def forward(x: Tensor, k, s, p, d, o):
        if k is None:
            return torch.ops.cnnlab_native.adaptive_window_max(x, o)
        return torch.ops.cnnlab_native.window_max(x, k, s, p, d, o)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, k, s, _, d, _ = inputs
        ctx.save_for_backward(output[1])
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)  # no zeros made for the index's gradient (3 ms a step of `fast`)
        ctx.input_shape = x.shape
        # adaptive windows (k None) may overlap; max pooling's do where a window is longer than its stride
        ctx.overlapping = k is None or any(ss < dd * (kk - 1) + 1 for kk, ss, dd in zip(k, s, d))

    @staticmethod
    def backward(ctx, grad: Tensor | None, _grad_index):
        if grad is None:
            return (None,) * 6
        (index,) = ctx.saved_tensors
        if torch.is_grad_enabled():
            grad_input = _scatter_to_index(grad, index, ctx.input_shape)
        else:
            grad_input = torch.ops.cnnlab_native.window_max_backward(grad, index, ctx.input_shape[2:], ctx.overlapping)
        return grad_input, None, None, None, None, None


def _native_max_pool(x: Tensor, k, s, p, d, o, return_indices: bool = True) -> tuple[Tensor, Tensor | None]:
    out, index = NativeWindowMax.apply(x, k, s, p, d, o)
    return out, index if return_indices else None


MAX_POOL1D = PoolKernels(eager=_eager_max_pool1d, traceable=_traceable_max_pool1d)
MAX_POOL2D = PoolKernels(
    eager=_eager_max_pool2d,
    traceable=_traceable_max_pool2d,
    triton=functools.partial(_eager_max_pool2d, kernel=triton.max_pool2d),  # values and torch's indices in one kernel
    native=_native_max_pool,
)


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
    """3-D max pooling, ``torch.nn.functional.max_pool3d``'s drop-in: the maximum of every window,
    ``out[n, c, y] = max_{j < k} input[n, c, s·y + d·j − p]`` per spatial dim (padding never wins),
    with torch's index rule (row-major scan; a later element wins only if greater, or NaN).
    The compiled window kernel, or the window reduction of :mod:`cnnlab.functional.pool.traceable`.

    Args:
        input: ``(N, C, D, H, W)`` or unbatched ``(C, D, H, W)``.
        kernel_size: window size, an int or one per spatial dim.
        stride: step between windows. Default ``kernel_size``.
        padding: implicit ``-inf`` on both sides, at most half the (dilated) window; or ``"tf_same"``
            (cnnlab's: TensorFlow's SAME windows). Default 0.
        dilation: spacing between a window's elements. Default 1.
        ceil_mode: round the output size up (a last, partial window). Default False.
        return_indices: also return each maximum's flat index into the input's spatial dims
            (``(D, H, W)`` flattened), for :func:`max_unpool3d`. Default False.

    Shape:
        ``(N, C, D_out, H_out, W_out)``, each size ``floor((size + 2p − d(k − 1) − 1) / s) + 1`` (``ceil`` with
        ``ceil_mode``); indices the same shape, ``int64``.

    Example:
        >>> max_pool3d(torch.randn(2, 4, 8, 16, 16), 2).shape
        torch.Size([2, 4, 4, 8, 8])
    """
    x, batched, k, s, p, d, o = pool_args("max_pool3d", input, 3, kernel_size, stride, padding, dilation, ceil_mode)
    return finish(*in_layout_of(x, *run(MAX_POOL3D, x, k, s, p, d, o), keep_3d=True), batched, return_indices)


def _window_max_pool3d(x: Tensor, k, s, p, d, o) -> tuple[Tensor, Tensor]:
    values, index = traceable.max_pool(accumulation(x), k, s, p, d, o)  # gradients of overlaps add in float32
    return values.to(x.dtype), index


MAX_POOL3D = PoolKernels(eager=_window_max_pool3d, native=_native_max_pool)


class _MaxPool2d(torch.autograd.Function):
    """Two exact routes to torch's max pooling (eager only: under a tracer or ``torch.func``
    transform :mod:`.traceable` runs instead).

    By taps: forward is an in-place ``maximum`` per window tap over strided
    views (no window buffer, no index); backward hands each gradient to the first tap, in
    row-major order, equal to the maximum (torch's tie rule; padding is never a tap) and withholds
    it from later taps. Saves input and output instead of int64 indices.

    By index (and whenever a maximum is NaN, which equality cannot find): one ``max`` over
    the windows laid out as ``(N, C, OH, OW, kH·kW)`` (or the exact scan) gives the flat indices,
    and backward scatters the gradient to them (``scatter_add``, itself differentiable).
    """

    @staticmethod
    def forward(x: Tensor, k, s, p, d, o, need_index: bool, kernel):
        if kernel is not None:
            return kernel(x, k, s, p, d, o)
        if not need_index:
            out = torch.empty(*x.shape[:2], *o, dtype=x.dtype, device=x.device, memory_format=memory_format_of(x))
            taps = list(_tap_slices(x.shape[2:], k, s, p, d, o))
            first_outputs, first_inputs = taps[0]
            if out[first_outputs].shape == out.shape:  # the first tap reaches every output
                out.copy_(x[first_inputs])
                taps = taps[1:]
            else:
                out.fill_(traceable.lowest(out.dtype))
            for outputs, inputs in taps:
                torch.maximum(out[outputs], x[inputs], out=out[outputs])
            # NaN wins every maximum, so the sum shows it (a sum of +inf and -inf gives a false
            # alarm: the index route is exact too); 15× cheaper than isnan().any() on the CPU
            if not bool(out.sum().isnan()):
                return out, torch.empty(0, dtype=torch.long, device=x.device)  # no index: by taps
        values, index = _max_pool2d_direct(x, k, s, p, d, o)
        if index is None:  # NaN or -inf present: the exact scan keeps torch's NaN / first-valid rule
            index = max_indices_2d(
                x,
                lambda t: max_indices_1d(t, k[1], s[1], p[1], d[1], o[1]),
                lambda t: max_indices_1d(t, k[0], s[0], p[0], d[0], o[0]),
            )
            values = gather_flat(x, index)
        return values, index

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, k, s, p, d, o, _, _ = inputs
        out, index = output
        ctx.geometry = (k, s, p, d, o)
        ctx.by_taps = index.dim() == 1  # the by-taps route returns an empty 1-D index
        ctx.save_for_backward(*((x, out) if ctx.by_taps else (index,)))
        ctx.input_shape = x.shape
        ctx.mark_non_differentiable(index)
        ctx.set_materialize_grads(False)  # no zeros made for the index's gradient

    @staticmethod
    def backward(ctx, grad: Tensor | None, _grad_index):
        if grad is None:
            return (None,) * 8
        # overlapping windows add several gradients into one input: float16/bfloat16 add those in
        # float32 (windows that do not overlap, the common 2×2/2, hand each input one gradient at most)
        k, s, _, d, _ = ctx.geometry
        overlapping = any(ss < dd * (kk - 1) + 1 for kk, ss, dd in zip(k, s, d))
        wide = accumulation(grad) if overlapping else grad
        if ctx.by_taps:
            x, out = ctx.saved_tensors
            grad_input = _max_pool2d_backward_by_taps(wide, x, out, *ctx.geometry).to(grad.dtype)
            return grad_input, None, None, None, None, None, None, None
        (index,) = ctx.saved_tensors
        return _scatter_to_index(wide, index, ctx.input_shape).to(grad.dtype), None, None, None, None, None, None, None


def _scatter_to_index(grad: Tensor, index: Tensor, input_shape: torch.Size) -> Tensor:
    """``∂x`` of ``input_shape`` with ``∂x[n, c, index[n, c, o]] += grad[n, c, o]`` (``scatter_add``,
    which autograd records, so double backward works)."""
    n, c = input_shape[:2]
    flat = grad.new_zeros(n, c, input_shape[2:].numel())
    positions = index.shape[2:].numel()  # explicit: -1 is ambiguous for an empty batch
    flat = flat.scatter_add(-1, index.reshape(n, c, positions), grad.reshape(n, c, positions))
    return flat.view(input_shape)


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
        x = F.pad(x, [p[1], right[1], p[0], right[0]], value=traceable.lowest(x.dtype))
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


max_pool1d_with_indices = with_indices(max_pool1d)
max_pool2d_with_indices = with_indices(max_pool2d)
max_pool3d_with_indices = with_indices(max_pool3d)
