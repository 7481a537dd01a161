"""Global pooling: one summary per channel of the whole image, ``(N, C, H, W)`` → ``(N, C, 1, 1)``
(or ``(N, C)`` with ``flatten=True``), the usual head of a convolutional classifier."""

from __future__ import annotations

from torch import Tensor, nn

from .. import functional

__all__ = ["GlobalAvgPool2d", "GlobalMaxPool2d"]


class _GlobalPool2d(nn.Module):
    """What both global pools hold: whether to drop the two spatial dims of size 1."""

    def __init__(self, flatten: bool = False) -> None:
        super().__init__()
        self.flatten = flatten

    def extra_repr(self) -> str:
        return f"flatten={self.flatten}"


class GlobalAvgPool2d(_GlobalPool2d):
    """Mean over the whole image: ``(N, C, H, W)`` → ``(N, C, 1, 1)``, or ``(N, C)`` with ``flatten=True``."""

    def forward(self, input: Tensor) -> Tensor:
        return functional.global_avg_pool2d(input, self.flatten)


class GlobalMaxPool2d(_GlobalPool2d):
    """Max over the whole image: ``(N, C, H, W)`` → ``(N, C, 1, 1)``, or ``(N, C)`` with ``flatten=True``."""

    def forward(self, input: Tensor) -> Tensor:
        return functional.global_max_pool2d(input, self.flatten)
