"""Maxout: the max over groups of consecutive channels."""

from __future__ import annotations

from torch import Tensor

from .._tracing import fx_leaf
from .._utils import check_input_rank

__all__ = ["channel_max_pool"]


@fx_leaf
def channel_max_pool(input: Tensor, kernel_size: int) -> Tensor:
    """Maxout (Goodfellow et al., 2013): the maximum over groups of ``kernel_size`` consecutive
    channels, ``out[n, j] = max_{i < k} input[n, j·k + i]``, a learned piecewise-linear activation
    when the channels come from a convolution.

    Args:
        input: ``(N, C, *S)`` with ``C`` a multiple of ``kernel_size`` (unbatched ``(C, H, W)`` too).
        kernel_size: channels per group.

    Shape:
        ``(N, C / kernel_size, *S)``.

    Example:
        >>> channel_max_pool(torch.tensor([[[[1.0]], [[4.0]], [[3.0]], [[2.0]]]]), 2).flatten()
        tensor([4., 3.])
    """
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
