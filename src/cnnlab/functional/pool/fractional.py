"""Fractional max pooling (Graham, 2014): windows at pseudo-random, increasing offsets."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._tracing import fx_leaf
from .._utils import IntOrTuple, check_input_rank, check_positive, ntuple
from . import traceable
from .base import check_not_empty, finish, with_indices

__all__ = [
    "fractional_max_pool2d",
    "fractional_max_pool2d_with_indices",
    "fractional_max_pool3d",
    "fractional_max_pool3d_with_indices",
]


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
    # torch's rule: one row of samples per image at least (the first N are used), one per channel
    if samples.dim() != 3 or samples.shape[0] < x.shape[0] or samples.shape[1:] != (x.shape[1], spatial_dims):
        raise RuntimeError(
            f"{op}: _random_samples must have shape (at least {x.shape[0]}, {x.shape[1]}, {spatial_dims}), "
            f"but got {list(samples.shape)}"
        )
    samples = samples[: x.shape[0]]
    check_not_empty(op, input, x)
    return finish(*traceable.fractional_max_pool(x, k, out, samples), batched, return_indices)


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


fractional_max_pool2d_with_indices = with_indices(fractional_max_pool2d)
fractional_max_pool3d_with_indices = with_indices(fractional_max_pool3d)
