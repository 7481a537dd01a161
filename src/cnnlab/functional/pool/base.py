"""What every pooling op shares: argument validation and normalisation, the output size, the
batch dim of unbatched input, the memory format of the result, float32 accumulation of
half-precision sums, and torch's ``*_with_indices`` forms."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor

from .._utils import check_input_rank, check_non_negative, check_positive, ntuple, pool_output_size, tf_same_padding
from ..backends import memory_format_of

__all__ = [
    "accumulation",
    "check_not_empty",
    "finish",
    "gather_flat",
    "in_layout_of",
    "pool_args",
    "pool_geometry",
    "with_indices",
]


def pool_geometry(op: str, spatial_dims: int, kernel_size, stride, padding, dilation=1):
    """Validate and normalise pooling geometry (torch's ``RuntimeError`` for bad values).

    ``stride=None`` means ``stride = kernel_size``; padding may be at most half the effective
    kernel ``d(k-1)+1``, so every window holds at least one input element (``'tf_same'`` is
    returned as zeros: its padding depends on the input, see :func:`pool_args`).
    """
    k = ntuple(kernel_size, spatial_dims, "kernel_size")
    empty = stride is None or (isinstance(stride, Sequence) and len(stride) == 0)
    s = k if empty else ntuple(stride, spatial_dims, "stride")
    p = ntuple(0 if padding == "tf_same" else padding, spatial_dims, "padding")  # tf_same: sized per input
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


def check_not_empty(op: str, input: Tensor, x: Tensor) -> None:
    if any(size == 0 for size in x.shape[1:]):
        raise RuntimeError(
            f"{op}: expected non-empty channel and spatial dimensions, but got input of size {list(input.shape)}"
        )


def pool_args(
    op: str, input: Tensor, spatial_dims: int, kernel_size, stride, padding, dilation=1, ceil_mode: bool = False
):
    """Validate input and arguments; returns ``(batched input, batched?, k, s, p, d, output size)``.
    ``padding="tf_same"`` (cnnlab's extension) gives TensorFlow's SAME windows: ``p`` is then each
    dim's left padding, and ``ceil_mode`` is not used."""
    batched = check_input_rank(input, spatial_dims, op)
    x = input if batched else input.unsqueeze(0)
    tf_same = padding == "tf_same"
    k, s, p, d = pool_geometry(op, spatial_dims, kernel_size, stride, padding, dilation)
    check_not_empty(op, input, x)
    if tf_same:  # TensorFlow's SAME: ceil(size / s) windows, padded (left, right); the right pad is the
        # part of the last windows past the input's end, which every pooling kernel clips anyway
        p = tuple(tf_same_padding(*args)[0] for args in zip(x.shape[2:], k, s, d))
        return x, batched, k, s, p, d, tuple((size + ss - 1) // ss for size, ss in zip(x.shape[2:], s))
    out = tuple(
        pool_output_size(size, kk, ss, pp, dd, ceil_mode) for size, kk, ss, pp, dd in zip(x.shape[2:], k, s, p, d)
    )
    if any(o <= 0 for o in out):
        raise RuntimeError(
            f"{op}: given input size {tuple(x.shape[1:])}, kernel_size={k}, stride={s}, padding={p}, "
            f"dilation={d}: calculated output size {out} is too small"
        )
    return x, batched, k, s, p, d, out


def gather_flat(x: Tensor, index: Tensor) -> Tensor:
    """``x (N, C, *S)`` gathered at flat spatial ``index (N, C, *S_out)``; gradient goes to that index."""
    n, c = x.shape[:2]
    flat_x = x.reshape(n, c, x.shape[2:].numel())
    return flat_x.gather(-1, index.reshape(n, c, index.shape[2:].numel())).view(index.shape)


def finish(out: Tensor, index: Tensor | None, batched: bool, return_indices: bool):
    if not batched:
        out = out.squeeze(0)
        index = index.squeeze(0) if index is not None else None
    return (out, index) if return_indices else out


def in_layout_of(x: Tensor, *outputs: Tensor, keep_3d: bool = False) -> tuple[Tensor, ...]:
    """``outputs`` stored as torch's kernels store them: channels-last 4-D input gives channels-last
    output; channels-last 5-D input only where torch keeps it (``keep_3d``: max pooling)."""
    layout = memory_format_of(x)
    if layout == torch.channels_last_3d and not keep_3d:
        layout = torch.contiguous_format
    return tuple([t.contiguous(memory_format=layout) for t in outputs])


def accumulation(x: Tensor) -> Tensor:
    """float16/bfloat16 are summed in float32 and rounded once at the end, as torch's kernels do."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def with_indices(pool):
    """torch's ``*with_indices`` form of a max pool: the same arguments, always ``(values, indices)``."""

    @functools.wraps(pool)
    def with_indices(*args, **kwargs):
        kwargs.pop("return_indices", None)
        return pool(*args, **kwargs, return_indices=True)

    with_indices.__name__ = with_indices.__qualname__ = f"{pool.__name__}with_indices"
    return with_indices
