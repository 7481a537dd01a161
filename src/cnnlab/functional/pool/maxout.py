"""Maxout: the max over groups of consecutive channels."""

from __future__ import annotations

from torch import Tensor

from .._tracing import fx_leaf
from .._utils import check_input_rank

__all__ = ["channel_max_pool"]


@fx_leaf
def channel_max_pool(input: Tensor, kernel_size: int) -> Tensor:
    """Maxout: max over groups of ``kernel_size`` consecutive channels of ``(N, C, H, W)`` or
    ``(C, H, W)``. See :class:`cnnlab.nn.ChannelMaxPool`."""
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
