"""Average and power-average (LP) pooling: separable window sums divided by torch's divisors. On
the CPU, where every window of a 2-D pool shares one divisor, the sums are cnnlab's compiled
depthwise convolution with a filter of ones (:func:`_native_avg_pool2d`)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._tracing import fx_leaf, is_tracing
from .._utils import IntOrTuple, ntuple, tap_ranges
from ..depthwise import depthwise_conv2d
from . import traceable, triton
from .base import accumulation, in_layout_of, pool_args
from .dispatch import PoolKernels, run

__all__ = ["avg_pool1d", "avg_pool2d", "avg_pool3d", "lp_pool1d", "lp_pool2d", "lp_pool3d"]


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


def _avg_pool(op, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, spatial_dims):
    x, batched, k, s, p, _, o = pool_args(op, input, spatial_dims, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None and divisor_override == 0:
        raise RuntimeError(f"{op}: divisor_override must be non-zero, but got divisor_override={divisor_override}")
    if padding == "tf_same" and count_include_pad and divisor_override is None:
        divisor_override = math.prod(k)  # every 'tf_same' window lies inside the padded input: k taps each
    kernels = AVG_POOL2D if spatial_dims == 2 else AVG_POOL
    out = run(kernels, x, k, s, p, o, count_include_pad, divisor_override)
    return out if batched else out.squeeze(0)


def _averages(window_sum):
    """An average pool from a ``window_sum(x, k, s, p, o)``: the sums (in float32 for half
    precision) divided by torch's divisors, in the input's layout."""

    def average(x: Tensor, k, s, p, o, count_include_pad: bool, divisor_override) -> Tensor:
        sums = window_sum(accumulation(x), k, s, p, o)
        divisor = _divisors(x, k, s, p, o, count_include_pad, divisor_override)
        (out,) = in_layout_of(x, _mean_of_sums(sums, divisor, x.dtype))
        return out

    return average


def _separable_window_sum(x: Tensor, k, s, p, o) -> Tensor:
    """One dim at a time, the last first: separable window sums of :class:`_WindowSum`."""
    for axis in range(len(k)):
        dim = -1 - axis
        x = _WindowSum.apply(x, dim, k[dim], s[dim], p[dim], o[dim])
    return x


def _triton_avg_pool2d(x: Tensor, k, s, p, o, count_include_pad: bool, divisor_override) -> Tensor:
    divisors = [_avg_divisor(x.shape[2 + a], k[a], s[a], p[a], o[a], count_include_pad, x.device) for a in (0, 1)]
    if divisor_override is not None:
        divisors = [torch.full_like(divisors[0], divisor_override), torch.ones_like(divisors[1])]
    return triton.avg_pool2d(x, k, s, p, o, *divisors)


def _uniform_divisor(x: Tensor, k, s, p, o, count_include_pad: bool, divisor_override) -> int | None:
    """The divisor shared by every window, or None where torch's divisors differ between windows
    (windows clipped at the border: ``count_include_pad=False`` with padding) or a window reaches
    past the padding (``ceil_mode``)."""
    padded = [size + 2 * pad for size, pad in zip(x.shape[2:], p)]
    if any((out - 1) * stride + kernel > limit for out, stride, kernel, limit in zip(o, s, k, padded)):
        return None  # ceil_mode's last window reaches past the padding: a convolution has no output there
    if divisor_override is not None:
        return divisor_override
    if not count_include_pad and any(p):
        return None
    return math.prod(k)


def _native_takes(x: Tensor, k, s, p, o, count_include_pad: bool, divisor_override) -> bool:
    """Whether every window shares one divisor that the compiled path divides by as torch does:
    any for float32; for bfloat16 a power of two (the division of the rounded sum then exact).
    Eager only: under ``torch.compile`` the traceable window sums run (inductor 2.14 returned NaN
    gradients for two depthwise correlations of window views in a row, e.g. this pool's traceable
    form followed by a distance-weighted pool)."""
    if is_tracing(x):  # (and before any test of a size a tracer may hold symbolic)
        return False
    divisor = _uniform_divisor(x, k, s, p, o, count_include_pad, divisor_override)
    if divisor is None:
        return False
    return x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and divisor & (divisor - 1) == 0)


def _native_avg_pool2d(x: Tensor, k, s, p, o, count_include_pad: bool, divisor_override) -> Tensor:
    """Window sums as cnnlab's compiled depthwise convolution with a filter of ones (float32 sums,
    rounded once), divided by the divisor every window shares (:func:`_native_takes`)."""
    divisor = _uniform_divisor(x, k, s, p, o, count_include_pad, divisor_override)
    ones = torch.ones(x.shape[1], 1, *k, dtype=x.dtype, device=x.device)
    return depthwise_conv2d(x, ones, s, p, (1, 1)) / divisor


AVG_POOL = PoolKernels(eager=_averages(_separable_window_sum), traceable=_averages(traceable.window_sum))
AVG_POOL2D = PoolKernels(AVG_POOL.eager, AVG_POOL.traceable, _triton_avg_pool2d, _native_avg_pool2d, _native_takes)


@fx_leaf
def avg_pool1d(
    input: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Tensor:
    """1-D average pooling, ``torch.nn.functional.avg_pool1d``'s drop-in: the mean of every window,
    computed as separable window sums (one strided add per tap) divided by torch's divisor: the
    window's size clipped to the padded input (``count_include_pad``) or to the input, or
    ``divisor_override``. float16/bfloat16 sum in float32; integers divide with truncation.

    Args:
        input: ``(N, C, L)`` or unbatched ``(C, L)``.
        kernel_size: window size, an int or one per spatial dim.
        stride: step between windows. Default ``kernel_size``.
        padding: implicit zeros on both sides, at most half the window; or ``"tf_same"`` (cnnlab's).
            Default 0.
        ceil_mode: round the output size up (a last, partial window). Default False.
        count_include_pad: count the padding zeros in the divisor. Default True.
        divisor_override: divide every window's sum by this instead. Default None.

    Shape:
        ``(N, C, L_out)``, each size ``floor((size + 2p − k) / s) + 1`` (``ceil`` with ``ceil_mode``).

    Example:
        >>> avg_pool1d(torch.tensor([[[1.0, 3.0, 2.0, 0.0]]]), 2)
        tensor([[[2., 1.]]])
    """
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
    """2-D average pooling, ``torch.nn.functional.avg_pool2d``'s drop-in: the mean of every window,
    computed as separable window sums (one strided add per tap) divided by torch's divisor: the
    window's size clipped to the padded input (``count_include_pad``) or to the input, or
    ``divisor_override``. float16/bfloat16 sum in float32; integers divide with truncation.

    Args:
        input: ``(N, C, H, W)`` or unbatched ``(C, H, W)``.
        kernel_size: window size, an int or one per spatial dim.
        stride: step between windows. Default ``kernel_size``.
        padding: implicit zeros on both sides, at most half the window; or ``"tf_same"`` (cnnlab's).
            Default 0.
        ceil_mode: round the output size up (a last, partial window). Default False.
        count_include_pad: count the padding zeros in the divisor. Default True.
        divisor_override: divide every window's sum by this instead. Default None.

    Shape:
        ``(N, C, H_out, W_out)``, each size ``floor((size + 2p − k) / s) + 1`` (``ceil`` with ``ceil_mode``).

    Example:
        >>> avg_pool2d(torch.randn(8, 16, 32, 32), 3, stride=2, padding=1, count_include_pad=False).shape
        torch.Size([8, 16, 16, 16])
    """
    return _avg_pool(
        "avg_pool2d", input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 2
    )


def _lpfinish(pooled: Tensor, norm_type: float, window: int) -> Tensor:
    # torch's formula: (sign(avg) · relu(|avg|) · window) ** (1/p)
    return (torch.sign(pooled) * torch.relu(torch.abs(pooled))).mul(window).pow(1.0 / norm_type)


@fx_leaf
def lp_pool1d(
    input: Tensor, norm_type: float, kernel_size: int, stride: IntOrTuple | None = None, ceil_mode: bool = False
) -> Tensor:
    r"""1-D power-average pooling, ``torch.nn.functional.lp_pool1d``'s drop-in:
    :math:`\left(\sum_{x \in \text{window}} x^p\right)^{1/p}` with ``p = norm_type`` (``p = 1``: sum pooling,
    ``p = 2``: L2-norm pooling, ``p → ∞``: max pooling), as torch computes it: the average pool
    of ``x^p`` times the window size, then the ``1/p``-th power (sign kept, ReLU'd as torch does).

    Args:
        input: ``(N, C, L)`` or unbatched ``(C, L)``.
        norm_type: the power ``p``.
        kernel_size: window size.
        stride: step between windows. Default ``kernel_size``.
        ceil_mode: round the output size up. Default False.

    Shape:
        ``(N, C, L_out)``, each size ``floor((size − k) / s) + 1``.

    Example:
        >>> lp_pool1d(torch.tensor([[[3.0, 4.0]]]), 2, 2)
        tensor([[[5.]]])
    """
    (k,) = ntuple(kernel_size, 1, "kernel_size")
    return _lpfinish(avg_pool1d(input.pow(norm_type), k, stride, 0, ceil_mode), norm_type, k)


@fx_leaf
def lp_pool2d(
    input: Tensor, norm_type: float, kernel_size: IntOrTuple, stride: IntOrTuple | None = None, ceil_mode: bool = False
) -> Tensor:
    r"""2-D power-average pooling, ``torch.nn.functional.lp_pool2d``'s drop-in:
    :math:`\left(\sum_{x \in \text{window}} x^p\right)^{1/p}` with ``p = norm_type`` (``p = 1``: sum pooling,
    ``p = 2``: L2-norm pooling, ``p → ∞``: max pooling), as torch computes it: the average pool
    of ``x^p`` times the window size, then the ``1/p``-th power (sign kept, ReLU'd as torch does).

    Args:
        input: ``(N, C, H, W)`` or unbatched ``(C, H, W)``.
        norm_type: the power ``p``.
        kernel_size: window size.
        stride: step between windows. Default ``kernel_size``.
        ceil_mode: round the output size up. Default False.

    Shape:
        ``(N, C, H_out, W_out)``, each size ``floor((size − k) / s) + 1``.

    Example:
        >>> lp_pool2d(torch.randn(2, 8, 16, 16), 2, 2).shape
        torch.Size([2, 8, 8, 8])
    """
    kh, kw = ntuple(kernel_size, 2, "kernel_size")
    return _lpfinish(avg_pool2d(input.pow(norm_type), (kh, kw), stride, 0, ceil_mode), norm_type, kh * kw)


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
    """3-D average pooling, ``torch.nn.functional.avg_pool3d``'s drop-in: the mean of every window,
    computed as separable window sums (one strided add per tap) divided by torch's divisor: the
    window's size clipped to the padded input (``count_include_pad``) or to the input, or
    ``divisor_override``. float16/bfloat16 sum in float32; integers divide with truncation.

    Args:
        input: ``(N, C, D, H, W)`` or unbatched ``(C, D, H, W)``.
        kernel_size: window size, an int or one per spatial dim.
        stride: step between windows. Default ``kernel_size``.
        padding: implicit zeros on both sides, at most half the window; or ``"tf_same"`` (cnnlab's).
            Default 0.
        ceil_mode: round the output size up (a last, partial window). Default False.
        count_include_pad: count the padding zeros in the divisor. Default True.
        divisor_override: divide every window's sum by this instead. Default None.

    Shape:
        ``(N, C, D_out, H_out, W_out)``, each size ``floor((size + 2p − k) / s) + 1`` (``ceil`` with ``ceil_mode``).

    Example:
        >>> avg_pool3d(torch.randn(2, 4, 8, 16, 16), 2).shape
        torch.Size([2, 4, 4, 8, 8])
    """
    return _avg_pool(
        "avg_pool3d", input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 3
    )


@fx_leaf
def lp_pool3d(
    input: Tensor, norm_type: float, kernel_size: IntOrTuple, stride: IntOrTuple | None = None, ceil_mode: bool = False
) -> Tensor:
    r"""3-D power-average pooling, ``torch.nn.functional.lp_pool3d``'s drop-in:
    :math:`\left(\sum_{x \in \text{window}} x^p\right)^{1/p}` with ``p = norm_type`` (``p = 1``: sum pooling,
    ``p = 2``: L2-norm pooling, ``p → ∞``: max pooling), as torch computes it: the average pool
    of ``x^p`` times the window size, then the ``1/p``-th power (sign kept, ReLU'd as torch does).

    Args:
        input: ``(N, C, D, H, W)`` or unbatched ``(C, D, H, W)``.
        norm_type: the power ``p``.
        kernel_size: window size.
        stride: step between windows. Default ``kernel_size``.
        ceil_mode: round the output size up. Default False.

    Shape:
        ``(N, C, D_out, H_out, W_out)``, each size ``floor((size − k) / s) + 1``.

    Example:
        >>> lp_pool3d(torch.randn(2, 4, 8, 8, 8), 2, 2).shape
        torch.Size([2, 4, 4, 4, 4])
    """
    k = ntuple(kernel_size, 3, "kernel_size")
    return _lpfinish(avg_pool3d(input.pow(norm_type), k, stride, 0, ceil_mode), norm_type, math.prod(k))
