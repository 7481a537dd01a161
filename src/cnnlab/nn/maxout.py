"""Maxout: pooling over channels instead of positions."""

from __future__ import annotations

from torch import Tensor, nn

from .. import functional

__all__ = ["ChannelMaxPool"]


class ChannelMaxPool(nn.Module):
    """Maxout (Goodfellow et al., 2013): the max over groups of ``kernel_size`` consecutive channels,
    ``out[n, j] = max_{i < k} input[n, j·k + i]`` (:func:`cnnlab.functional.channel_max_pool`).

    Pooling over the outputs of separately parameterised filters (a conv with ``k·C`` outputs)
    lets the network learn which transformations its features become invariant to: if the ``k``
    filters of a group detect rotated copies of a pattern, their max responds to any rotation.

    Args:
        kernel_size: channels per group; the input's channels must be a multiple of it.

    Shape:
        ``(N, C, *S)`` or ``(C, H, W)`` → ``(N, C / kernel_size, *S)``.

    Example:
        >>> ChannelMaxPool(4)(torch.randn(2, 64, 8, 8)).shape
        torch.Size([2, 16, 8, 8])
    """

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        if not isinstance(kernel_size, int) or kernel_size <= 0:
            raise RuntimeError(
                f"ChannelMaxPool: kernel_size must be a positive int, but got kernel_size={kernel_size!r}"
            )
        self.kernel_size = kernel_size

    def window_geometry(self) -> str:
        return "pointwise"  # a maximum across channels, position by position

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"

    def forward(self, input: Tensor) -> Tensor:
        return functional.channel_max_pool(input, self.kernel_size)
