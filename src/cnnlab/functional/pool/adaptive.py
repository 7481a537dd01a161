"""Adaptive pooling (any input size to a fixed output size) and global pooling."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .._tracing import fx_leaf
from .._utils import check_input_rank
from . import traceable
from .base import accumulation, check_not_empty, finish, gather_flat, in_layout_of, with_indices
from .dispatch import PoolKernels, run
from .max_pool import MAX_POOL2D, NativeWindowMax, max_indices_2d, scan_argmax

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
    "global_avg_pool2d",
    "global_max_pool2d",
]


def _adaptive_output_size(
    op: str, input: Tensor, output_size, spatial_dims: int
) -> tuple[Tensor, bool, tuple[int, ...]]:
    sizes = output_size if isinstance(output_size, Sequence) else (output_size,) * spatial_dims
    if None in sizes and input.dim() <= len(sizes):  # torch reads the kept sizes before the rank check
        raise ValueError(
            f"{op}: input dimension should be at least {len(sizes) + 1} to keep the sizes output_size={output_size!r} "
            f"leaves as None, but got input of size {list(input.shape)}"
        )
    batched = check_input_rank(input, spatial_dims, op)
    x = input if batched else input.unsqueeze(0)
    if len(sizes) != spatial_dims:
        raise RuntimeError(f"{op}: output_size must have {spatial_dims} elements, but got output_size={output_size!r}")
    out = tuple(x.shape[2 + i] if v is None else int(v) for i, v in enumerate(sizes))
    if any(v < 0 for v in out):
        raise RuntimeError(f"{op}: output_size must be non-negative, but got output_size={out}")
    check_not_empty(op, input, x)
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
    windows = F.pad(x, [0, 1], value=traceable.lowest(x.dtype))[..., positions.clamp(max=size)]
    # One max gives the first maximum of each window, torch's rule, unless a NaN is in the way
    # (torch takes the last one): then the exact scan. Taps past a window's end read -inf.
    values, tap = windows.max(-1)
    if bool(values.sum().isnan()):
        return scan_argmax(windows, positions, size)[1]
    return start + tap


def _adaptive_avg(x: Tensor, out: tuple[int, ...]) -> Tensor:
    """Adaptive averages of a batched ``(N, C, *S)``: along each spatial dim, a product with the
    ``(out, size)`` averaging matrix (float16/bfloat16 accumulated in float32)."""
    result = accumulation(x)
    for axis, size in enumerate(out, start=2):
        matrix = _adaptive_matrix(result.shape[axis], size, result)
        last = result.dim() - 1  # non-negative axes: ONNX's Transpose rejects negative ones
        result = torch.matmul(result.movedim(axis, last), matrix.t()).movedim(last, axis)
    (result,) = in_layout_of(x, result.to(x.dtype))
    return result


class _NativeAdaptiveMean(torch.autograd.Function):
    """cnnlab's compiled adaptive window mean (``csrc/windows.cpp``, 2-D and 3-D) and its backward,
    which spreads each output's gradient over its window; under ``create_graph`` the backward is
    the averaging matrices' product, which autograd records."""

    @staticmethod
    def forward(x: Tensor, out: tuple[int, ...]) -> Tensor:
        return torch.ops.cnnlab_native.adaptive_window_mean(x, out)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.input_size = inputs[0].shape[2:]

    @staticmethod
    def backward(ctx, grad: Tensor):
        if torch.is_grad_enabled():  # the adjoint of the averaging matrices: Pᵀ along each axis
            result = accumulation(grad)
            for axis, size in enumerate(ctx.input_size, start=2):
                matrix = _adaptive_matrix(size, result.shape[axis], result)
                result = torch.matmul(result.movedim(axis, -1), matrix).movedim(-1, axis)
            return in_layout_of(grad, result.to(grad.dtype))[0], None
        return torch.ops.cnnlab_native.adaptive_window_mean_backward(grad, ctx.input_size), None


def _tiles(x: Tensor, out: tuple[int, ...]) -> bool:
    """Whether the windows tile the input (each size a multiple of its output size: global pooling,
    32² → 4²)."""
    return all(o and size % o == 0 for size, o in zip(x.shape[2:], out))


def _tiled_mean(x: Tensor, out: tuple[int, ...]) -> Tensor:
    """Adaptive averages of tiling windows: one mean over a view ``(N, C, o₁, k₁, o₂, k₂, …)``."""
    tiles = x
    for axis, o in enumerate(out):
        tiles = tiles.unflatten(2 + 2 * axis, (o, x.shape[2 + axis] // o))
    (result,) = in_layout_of(x, tiles.mean(tuple(range(3, tiles.dim(), 2))))
    return result


def _native_adaptive_avg(x: Tensor, out: tuple[int, ...]) -> Tensor:
    if _tiles(x, out):  # torch's reduction kernels vectorise a tile's sum; the window loop does not
        return _tiled_mean(x, out)
    (result,) = in_layout_of(x, _NativeAdaptiveMean.apply(x, out))
    return result


ADAPTIVE_AVG_POOL = PoolKernels(eager=_adaptive_avg, native=_native_adaptive_avg)


@fx_leaf
def adaptive_avg_pool1d(input: Tensor, output_size: int | Sequence[int]) -> Tensor:
    """1-D adaptive average pooling, ``torch.nn.functional.adaptive_avg_pool1d``'s drop-in: the
    output has ``output_size`` whatever the input's size; along each dim, output ``i`` of ``o``
    averages inputs ``floor(i·size/o)`` to ``ceil((i + 1)·size/o)`` (windows that may overlap by one).
    Windows that tile the input are one mean over a view; others the compiled window kernel, or a
    product with the averaging matrices.

    Args:
        input: ``(N, C, L)`` or unbatched ``(C, L)``.
        output_size: the output's spatial size, an int or one per dim (``None`` keeps that dim).

    Shape:
        ``(N, C, output_size)``.

    Example:
        >>> adaptive_avg_pool1d(torch.arange(5.0).view(1, 1, 5), 2)
        tensor([[[1., 3.]]])
    """
    x, batched, out = _adaptive_output_size("adaptive_avg_pool1d", input, output_size, 1)
    return finish(_adaptive_avg(x, out), None, batched, False)  # 1-D: no compiled kernel


@fx_leaf
def adaptive_avg_pool2d(input: Tensor, output_size: int | Sequence[int | None] | None) -> Tensor:
    """2-D adaptive average pooling, ``torch.nn.functional.adaptive_avg_pool2d``'s drop-in: the
    output has ``output_size`` whatever the input's size; along each dim, output ``i`` of ``o``
    averages inputs ``floor(i·size/o)`` to ``ceil((i + 1)·size/o)`` (windows that may overlap by one).
    Windows that tile the input are one mean over a view; others the compiled window kernel, or a
    product with the averaging matrices.

    Args:
        input: ``(N, C, H, W)`` or unbatched ``(C, H, W)``.
        output_size: the output's spatial size, an int or one per dim (``None`` keeps that dim).

    Shape:
        ``(N, C, *output_size)``.

    Example:
        >>> adaptive_avg_pool2d(torch.randn(2, 8, 13, 17), (3, 4)).shape
        torch.Size([2, 8, 3, 4])
    """
    x, batched, out = _adaptive_output_size("adaptive_avg_pool2d", input, output_size, 2)
    return finish(run(ADAPTIVE_AVG_POOL, x, out), None, batched, False)


@fx_leaf
def adaptive_avg_pool3d(input: Tensor, output_size: int | Sequence[int | None] | None) -> Tensor:
    """3-D adaptive average pooling, ``torch.nn.functional.adaptive_avg_pool3d``'s drop-in: the
    output has ``output_size`` whatever the input's size; along each dim, output ``i`` of ``o``
    averages inputs ``floor(i·size/o)`` to ``ceil((i + 1)·size/o)`` (windows that may overlap by one).
    Windows that tile the input are one mean over a view; others the compiled window kernel, or a
    product with the averaging matrices.

    Args:
        input: ``(N, C, D, H, W)`` or unbatched ``(C, D, H, W)``.
        output_size: the output's spatial size, an int or one per dim (``None`` keeps that dim).

    Shape:
        ``(N, C, *output_size)``.

    Example:
        >>> adaptive_avg_pool3d(torch.randn(2, 4, 5, 9, 9), 1).shape
        torch.Size([2, 4, 1, 1, 1])
    """
    x, batched, out = _adaptive_output_size("adaptive_avg_pool3d", input, output_size, 3)
    return finish(run(ADAPTIVE_AVG_POOL, x, out), None, batched, False)


@fx_leaf
def adaptive_max_pool1d(input: Tensor, output_size: int | Sequence[int], return_indices: bool = False):
    """1-D adaptive max pooling, ``torch.nn.functional.adaptive_max_pool1d``'s drop-in: the maximum
    over the windows of :func:`adaptive_avg_pool1d` (output ``i`` of ``o`` covers inputs
    ``floor(i·size/o)`` to ``ceil((i + 1)·size/o)``), with torch's index rule.

    Args:
        input: ``(N, C, L)`` or unbatched ``(C, L)``.
        output_size: the output's spatial size, an int or one per dim (``None`` keeps that dim).
        return_indices: also return each maximum's flat spatial index. Default False.

    Shape:
        ``(N, C, output_size)``; indices the same shape, ``int64``.

    Example:
        >>> adaptive_max_pool1d(torch.tensor([[[1.0, 5.0, 2.0, 4.0, 3.0]]]), 2, return_indices=True)
        (tensor([[[5., 4.]]]), tensor([[[1, 3]]]))
    """
    x, batched, (o,) = _adaptive_output_size("adaptive_max_pool1d", input, output_size, 1)
    return finish(*run(ADAPTIVE_MAX_POOL1D, x, o), batched, return_indices)


@fx_leaf
def adaptive_max_pool2d(input: Tensor, output_size: int | Sequence[int | None] | None, return_indices: bool = False):
    """2-D adaptive max pooling, ``torch.nn.functional.adaptive_max_pool2d``'s drop-in: the maximum
    over the windows of :func:`adaptive_avg_pool2d` (output ``i`` of ``o`` covers inputs
    ``floor(i·size/o)`` to ``ceil((i + 1)·size/o)``), with torch's index rule.

    Args:
        input: ``(N, C, H, W)`` or unbatched ``(C, H, W)``.
        output_size: the output's spatial size, an int or one per dim (``None`` keeps that dim).
        return_indices: also return each maximum's flat spatial index. Default False.

    Shape:
        ``(N, C, *output_size)``; indices the same shape, ``int64``.

    Example:
        >>> adaptive_max_pool2d(torch.randn(2, 8, 13, 17), (3, 4)).shape
        torch.Size([2, 8, 3, 4])
    """
    x, batched, (oh, ow) = _adaptive_output_size("adaptive_max_pool2d", input, output_size, 2)
    height, width = x.shape[2:]
    if oh and ow and isinstance(height, int) and isinstance(width, int) and height % oh == width % ow == 0:
        # Windows that tile the image (global pooling, 32² → 4²) are max_pool2d's, kernel = stride
        # (a symbolic size, under torch.export with a dynamic spatial dim, takes the general windows)
        kernel = (height // oh, width // ow)
        out, index = run(MAX_POOL2D, x, kernel, kernel, (0, 0), (1, 1), (oh, ow), return_indices)
        return finish(out, index, batched, return_indices)
    return finish(*in_layout_of(x, *run(ADAPTIVE_MAX_POOL2D, x, (oh, ow))), batched, return_indices)


def _eager_adaptive_max_pool1d(x: Tensor, out: int) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        index = _adaptive_argmax_1d(x, out)
    return x.gather(-1, index), index


def _eager_adaptive_max_pool2d(x: Tensor, out: tuple[int, int]) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        index = max_indices_2d(x, lambda t: _adaptive_argmax_1d(t, out[1]), lambda t: _adaptive_argmax_1d(t, out[0]))
    return gather_flat(x, index), index


ADAPTIVE_MAX_POOL1D = PoolKernels(
    eager=_eager_adaptive_max_pool1d, traceable=lambda x, out: traceable.adaptive_max_pool(x, (out,))
)


def _native_adaptive_max_pool(x: Tensor, out: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    return NativeWindowMax.apply(x, None, None, None, None, out)


def _window_adaptive_max_pool3d(x: Tensor, out: tuple[int, int, int]) -> tuple[Tensor, Tensor]:
    values, index = traceable.adaptive_max_pool(accumulation(x), out)  # gradients of overlaps add in float32
    return values.to(x.dtype), index


ADAPTIVE_MAX_POOL2D = PoolKernels(
    eager=_eager_adaptive_max_pool2d, traceable=traceable.adaptive_max_pool, native=_native_adaptive_max_pool
)
ADAPTIVE_MAX_POOL3D = PoolKernels(eager=_window_adaptive_max_pool3d, native=_native_adaptive_max_pool)


@fx_leaf
def adaptive_max_pool3d(input: Tensor, output_size: int | Sequence[int | None] | None, return_indices: bool = False):
    """3-D adaptive max pooling, ``torch.nn.functional.adaptive_max_pool3d``'s drop-in: the maximum
    over the windows of :func:`adaptive_avg_pool3d` (output ``i`` of ``o`` covers inputs
    ``floor(i·size/o)`` to ``ceil((i + 1)·size/o)``), with torch's index rule.

    Args:
        input: ``(N, C, D, H, W)`` or unbatched ``(C, D, H, W)``.
        output_size: the output's spatial size, an int or one per dim (``None`` keeps that dim).
        return_indices: also return each maximum's flat spatial index. Default False.

    Shape:
        ``(N, C, *output_size)``; indices the same shape, ``int64``.

    Example:
        >>> adaptive_max_pool3d(torch.randn(2, 4, 5, 9, 9), (2, 3, 3)).shape
        torch.Size([2, 4, 2, 3, 3])
    """
    x, batched, out = _adaptive_output_size("adaptive_max_pool3d", input, output_size, 3)
    return finish(*in_layout_of(x, *run(ADAPTIVE_MAX_POOL3D, x, out)), batched, return_indices)


@fx_leaf
def global_avg_pool2d(input: Tensor, flatten: bool = False) -> Tensor:
    r"""Global average pooling (Lin et al., 2013, "Network in Network"): the mean of each channel
    over the whole image, :math:`\text{out}[n, c] = \frac{1}{HW} \sum_{y, x} \text{input}[n, c, y, x]`;
    with no parameters and any input size, the usual head before a classifier.

    Args:
        input: ``(N, C, H, W)`` or unbatched ``(C, H, W)``.
        flatten: return ``(N, C)`` instead of ``(N, C, 1, 1)``. Default False.

    Shape:
        ``(N, C, 1, 1)``, or ``(N, C)`` with ``flatten``.

    Example:
        >>> global_avg_pool2d(torch.ones(2, 3, 4, 4), flatten=True)
        tensor([[1., 1., 1.],
                [1., 1., 1.]])
    """
    check_input_rank(input, 2, "global_avg_pool2d")
    return input.mean((-2, -1), keepdim=not flatten)


@fx_leaf
def global_max_pool2d(input: Tensor, flatten: bool = False) -> Tensor:
    """Global max pooling: the maximum of each channel over the whole image (torch's max-pool rule),
    ``adaptive_max_pool2d(input, 1)``.

    Args:
        input: ``(N, C, H, W)`` or unbatched ``(C, H, W)``.
        flatten: return ``(N, C)`` instead of ``(N, C, 1, 1)``. Default False.

    Shape:
        ``(N, C, 1, 1)``, or ``(N, C)`` with ``flatten``.

    Example:
        >>> global_max_pool2d(torch.arange(8.0).view(1, 2, 2, 2), flatten=True)
        tensor([[3., 7.]])
    """
    out = adaptive_max_pool2d(input, 1)
    return out.flatten(-3) if flatten else out


adaptive_max_pool1d_with_indices = with_indices(adaptive_max_pool1d)
adaptive_max_pool2d_with_indices = with_indices(adaptive_max_pool2d)
adaptive_max_pool3d_with_indices = with_indices(adaptive_max_pool3d)
