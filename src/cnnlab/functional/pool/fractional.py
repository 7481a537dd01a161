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
    """2-D fractional max pooling (Graham, 2014), ``torch.nn.functional.fractional_max_pool2d``'s
    drop-in: the output size is any fraction of the input's, reached by pseudo-random,
    overlapping windows of ``kernel_size`` whose starts follow torch's sequence
    ``α = (size − k) / (out − 1)``, ``start_i = floor((i + u)·α) − floor(u·α)`` (the last at
    ``size − k``), ``u ∈ [0, 1)`` drawn per image and channel (or given as ``_random_samples``).

    Args:
        input: ``(N, C, H, W)`` or unbatched ``(C, H, W)``.
        kernel_size: window size, an int or one per spatial dim.
        output_size: the output's spatial size; or give ``output_ratio`` (of the input's size).
        output_ratio: a fraction in (0, 1), or one per dim.
        return_indices: also return each maximum's flat spatial index. Default False.
        _random_samples: ``(N, C, 2)`` samples ``u`` in [0, 1) (torch's argument, for reproducibility).

    Shape:
        ``(N, C, *output_size)``; indices the same shape, ``int64``.

    Example:
        >>> fractional_max_pool2d(torch.randn(2, 4, 32, 32), 3, output_ratio=0.7).shape
        torch.Size([2, 4, 22, 22])
    """
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
    """3-D fractional max pooling (Graham, 2014), ``torch.nn.functional.fractional_max_pool3d``'s
    drop-in: the output size is any fraction of the input's, reached by pseudo-random,
    overlapping windows of ``kernel_size`` whose starts follow torch's sequence
    ``α = (size − k) / (out − 1)``, ``start_i = floor((i + u)·α) − floor(u·α)`` (the last at
    ``size − k``), ``u ∈ [0, 1)`` drawn per image and channel (or given as ``_random_samples``).

    Args:
        input: ``(N, C, D, H, W)`` or unbatched ``(C, D, H, W)``.
        kernel_size: window size, an int or one per spatial dim.
        output_size: the output's spatial size; or give ``output_ratio`` (of the input's size).
        output_ratio: a fraction in (0, 1), or one per dim.
        return_indices: also return each maximum's flat spatial index. Default False.
        _random_samples: ``(N, C, 3)`` samples ``u`` in [0, 1) (torch's argument, for reproducibility).

    Shape:
        ``(N, C, *output_size)``; indices the same shape, ``int64``.

    Example:
        >>> fractional_max_pool3d(torch.randn(2, 4, 8, 16, 16), 2, output_size=(5, 10, 10)).shape
        torch.Size([2, 4, 5, 10, 10])
    """
    return _fractional_max_pool(
        "fractional_max_pool3d", input, kernel_size, output_size, output_ratio, return_indices, _random_samples, 3
    )


fractional_max_pool2d_with_indices = with_indices(fractional_max_pool2d)
fractional_max_pool3d_with_indices = with_indices(fractional_max_pool3d)
