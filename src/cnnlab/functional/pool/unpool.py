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
