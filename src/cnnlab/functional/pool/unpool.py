"""Max unpooling: the inverse of max pooling, each value put back at its saved index."""

from __future__ import annotations

import math

from torch import Tensor

from .._tracing import fx_leaf, is_tracing
from .._utils import check_input_rank, conv_transpose_output_size, ntuple
from .base import in_layout_of

__all__ = ["max_unpool1d", "max_unpool2d", "max_unpool3d"]


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
    (out,) = in_layout_of(x, out)
    return out if batched else out.squeeze(0)


@fx_leaf
def max_unpool1d(input, indices, kernel_size, stride=None, padding=0, output_size=None) -> Tensor:
    """1-D max unpooling, ``torch.nn.functional.max_unpool1d``'s drop-in: the (partial) inverse of
    :func:`max_pool1d`: every value goes back to the position its index names, zeros elsewhere,
    ``out.flatten(2)[n, c, indices[n, c, i]] = input.flatten(2)[n, c, i]``.

    Args:
        input: the pooled values ``(N, C, L)`` (or unbatched).
        indices: their flat spatial indices, as :func:`max_pool1d` with ``return_indices=True`` gives.
        kernel_size, stride, padding: the pooling's (``stride`` defaults to ``kernel_size``).
        output_size: the spatial size to restore (with or without N and C), when the pooling's size
            formula has several preimages. Default: ``(size − 1)·s − 2p + k`` per dim.

    Shape:
        ``(N, C, *output_size)``.

    Example:
        >>> values, indices = max_pool1d(torch.tensor([[[1.0, 3.0, 2.0, 0.0]]]), 2, return_indices=True)
        >>> max_unpool1d(values, indices, 2)
        tensor([[[0., 3., 2., 0.]]])
    """
    return _max_unpool("max_unpool1d", input, indices, kernel_size, stride, padding, output_size, 1)


@fx_leaf
def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None) -> Tensor:
    """2-D max unpooling, ``torch.nn.functional.max_unpool2d``'s drop-in: the (partial) inverse of
    :func:`max_pool2d`: every value goes back to the position its index names, zeros elsewhere,
    ``out.flatten(2)[n, c, indices[n, c, i]] = input.flatten(2)[n, c, i]``.

    Args:
        input: the pooled values ``(N, C, H, W)`` (or unbatched).
        indices: their flat spatial indices, as :func:`max_pool2d` with ``return_indices=True`` gives.
        kernel_size, stride, padding: the pooling's (``stride`` defaults to ``kernel_size``).
        output_size: the spatial size to restore (with or without N and C), when the pooling's size
            formula has several preimages. Default: ``(size − 1)·s − 2p + k`` per dim.

    Shape:
        ``(N, C, *output_size)``.

    Example:
        >>> values, indices = max_pool2d(torch.randn(1, 3, 8, 8), 2, return_indices=True)
        >>> max_unpool2d(values, indices, 2).shape
        torch.Size([1, 3, 8, 8])
    """
    return _max_unpool("max_unpool2d", input, indices, kernel_size, stride, padding, output_size, 2)


@fx_leaf
def max_unpool3d(input, indices, kernel_size, stride=None, padding=0, output_size=None) -> Tensor:
    """3-D max unpooling, ``torch.nn.functional.max_unpool3d``'s drop-in: the (partial) inverse of
    :func:`max_pool3d`: every value goes back to the position its index names, zeros elsewhere,
    ``out.flatten(2)[n, c, indices[n, c, i]] = input.flatten(2)[n, c, i]``.

    Args:
        input: the pooled values ``(N, C, D, H, W)`` (or unbatched).
        indices: their flat spatial indices, as :func:`max_pool3d` with ``return_indices=True`` gives.
        kernel_size, stride, padding: the pooling's (``stride`` defaults to ``kernel_size``).
        output_size: the spatial size to restore (with or without N and C), when the pooling's size
            formula has several preimages. Default: ``(size − 1)·s − 2p + k`` per dim.

    Shape:
        ``(N, C, *output_size)``.

    Example:
        >>> values, indices = max_pool3d(torch.randn(1, 2, 4, 8, 8), 2, return_indices=True)
        >>> max_unpool3d(values, indices, 2).shape
        torch.Size([1, 2, 4, 8, 8])
    """
    return _max_unpool("max_unpool3d", input, indices, kernel_size, stride, padding, output_size, 3)
