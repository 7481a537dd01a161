"""Pools that weight their window: distance-weighted averages and anti-aliased (blur) pooling,
each a fixed filter applied to every channel, i.e. cnnlab's depthwise convolution."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .._tracing import fx_leaf
from .._utils import IntOrTuple, check_input_rank, ntuple, output_size_unpadded
from ..depthwise import depthwise_conv2d
from . import traceable
from .base import pool_args
from .dispatch import PoolKernels, run
from .max_pool import max_pool2d

__all__ = ["binomial_filter", "blur_pool2d", "distance_weighted_pool2d", "distance_weights", "max_blur_pool2d"]


def distance_weights(
    kernel_size: tuple[int, int], kind: str, sigma: Tensor | float, *, device=None, dtype=None
) -> Tensor:
    """The ``(kH, kW)`` window weights of :func:`distance_weighted_pool2d`: falling with the distance
    ``r`` from the window's centre, ``exp(−r²/(2σ²))`` (``gaussian``) or ``1/(1 + r)`` (``inverse``),
    normalised to sum to 1. The centre of an even window lies between pixels, at
    ``((kH − 1)/2, (kW − 1)/2)``.

    Args:
        kernel_size: ``(kH, kW)``.
        kind: ``"gaussian"`` or ``"inverse"``.
        sigma: the gaussian's width (a tensor keeps it learnable); unused for ``inverse``.
        device, dtype: (keyword-only) of the result.

    Shape:
        ``(kH, kW)``.

    Example:
        >>> distance_weights((1, 3), "inverse", 1.0)
        tensor([[0.2500, 0.5000, 0.2500]])
    """
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
    return run(WEIGHTED_POOL2D, x, weights, stride, padding, out)


def _eager_weighted_pool2d(x: Tensor, weights: Tensor, stride, padding, out) -> Tensor:
    kh, kw = weights.shape
    right = [max((o - 1) * st + k - n - p, 0) for o, st, k, n, p in zip(out, stride, (kh, kw), x.shape[-2:], padding)]
    pads = [padding[1], right[1], padding[0], right[0]]
    if any(pads):
        x = F.pad(x, pads)
    channels = x.shape[1]
    filters = weights.expand(channels, 1, kh, kw)
    return depthwise_conv2d(x, filters, stride, (0, 0), (1, 1))


WEIGHTED_POOL2D = PoolKernels(eager=_eager_weighted_pool2d, traceable=traceable.weighted_pool2d)


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
    """Distance-weighted pooling (cnnlab's extension; the weighted-average pooling of the notes this
    project grew from): every window's weighted average, the weights falling with the distance
    from the window's centre (:func:`distance_weights`),
    ``out[n, c, y, x] = Σ_{u,v} w[u, v] · input_pad[n, c, s·y + u, s·x + v]``; zero padding counts
    as zeros. The same filter for every channel: a depthwise convolution, cnnlab's own.

    Args:
        input: ``(N, C, H, W)`` or unbatched ``(C, H, W)``.
        kernel_size: window size, an int or a pair.
        stride: step between windows. Default ``kernel_size``.
        padding: zeros on both sides. Default 0.
        ceil_mode: round the output size up. Default False.
        kind: (keyword-only) ``"gaussian"`` or ``"inverse"``. Default ``"gaussian"``.
        sigma: (keyword-only) the gaussian's width, a float or a (learnable) tensor. Default 1.0.

    Shape:
        ``(N, C, H_out, W_out)`` as :func:`avg_pool2d`'s.

    Example:
        >>> out = distance_weighted_pool2d(torch.ones(1, 2, 6, 6), 3)  # weights sum to 1
        >>> out.shape, bool(torch.allclose(out, torch.ones(1, 2, 2, 2)))
        (torch.Size([1, 2, 2, 2]), True)
    """
    x, batched, k, s, p, _, o = pool_args(
        "distance_weighted_pool2d", input, 2, kernel_size, stride, padding, 1, ceil_mode
    )
    weights = distance_weights(k, kind, sigma, device=x.device, dtype=x.dtype)
    out = _weighted_pool(x, weights, s, p, o)
    return out if batched else out.squeeze(0)


def binomial_filter(size: int, *, device=None, dtype=None) -> Tensor:
    """The normalised 1-D binomial filter of ``size`` taps, row ``size − 1`` of Pascal's triangle: 2 →
    ``[1, 1] / 2``, 3 → ``[1, 2, 1] / 4``, … (the blur of :func:`blur_pool2d`, Zhang 2019). Its outer
    product with itself is the 2-D filter.

    Args:
        size: taps, 1 to 7.
        device, dtype: (keyword-only) of the result.

    Shape:
        ``(size,)``.

    Example:
        >>> binomial_filter(3)
        tensor([0.2500, 0.5000, 0.2500])
    """
    if not 1 <= size <= 7:
        raise ValueError(f"binomial_filter: filter_size must be in 1..7, but got filter_size={size}")
    coefficients = torch.tensor([math.comb(size - 1, i) for i in range(size)], device=device, dtype=dtype)
    return coefficients / coefficients.sum()


@fx_leaf
def blur_pool2d(input: Tensor, filter_size: int = 3, stride: IntOrTuple = 2) -> Tensor:
    """Anti-aliased downsampling (Zhang, 2019, "Making convolutional networks shift-invariant again"):
    each channel low-pass filtered by the outer product of :func:`binomial_filter` with itself
    (reflect padding), then subsampled by ``stride``, so that a one-pixel shift of the input
    changes the output far less than subsampling alone.

    Args:
        input: ``(N, C, H, W)`` or unbatched ``(C, H, W)``.
        filter_size: binomial taps per dim, 1 to 7. Default 3.
        stride: subsampling step. Default 2.

    Shape:
        ``(N, C, ceil(H / s_0), ceil(W / s_1))``.

    Example:
        >>> blur_pool2d(torch.ones(1, 3, 8, 8)).shape
        torch.Size([1, 3, 4, 4])
    """
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
    """MaxBlurPool (Zhang, 2019): max pooling evaluated densely (stride 1, so without aliasing),
    then :func:`blur_pool2d` subsamples with ``stride``: ``blur_pool2d(max_pool2d(input, kernel_size,
    stride=1), filter_size, stride)``, a shift-robust replacement for strided max pooling.

    Args:
        input: ``(N, C, H, W)`` or unbatched ``(C, H, W)``.
        kernel_size: the max pool's window. Default 2.
        filter_size: binomial taps per dim. Default 3.
        stride: subsampling step. Default 2.

    Shape:
        ``(N, C, ceil((H − k_0 + 1) / s_0), ceil((W − k_1 + 1) / s_1))``.

    Example:
        >>> max_blur_pool2d(torch.randn(2, 4, 16, 16)).shape
        torch.Size([2, 4, 8, 8])
    """
    return blur_pool2d(max_pool2d(input, kernel_size, stride=1), filter_size, stride)
