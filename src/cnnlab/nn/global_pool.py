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

    def window_geometry(self) -> str:
        return "global"

    def extra_repr(self) -> str:
        return f"flatten={self.flatten}"


class GlobalAvgPool2d(_GlobalPool2d):
    r"""Global average pooling (Lin et al., 2013): the mean of each channel over the whole image,
    :math:`\text{out}[n, c] = \frac{1}{HW}\sum_{y, x} \text{input}[n, c, y, x]`, for any input size
    (:func:`cnnlab.functional.global_avg_pool2d`); the parameter-free head before a classifier.

    Args:
        flatten: return ``(N, C)`` instead of ``(N, C, 1, 1)``. Default False.

    Shape:
        ``(N, C, H, W)`` or ``(C, H, W)`` → ``(N, C, 1, 1)``, or ``(N, C)`` with ``flatten``.

    Example:
        >>> GlobalAvgPool2d(flatten=True)(torch.randn(4, 128, 7, 7)).shape
        torch.Size([4, 128])
    """

    def forward(self, input: Tensor) -> Tensor:
        return functional.global_avg_pool2d(input, self.flatten)


class GlobalMaxPool2d(_GlobalPool2d):
    """Global max pooling: the maximum of each channel over the whole image (torch's max-pool rule;
    :func:`cnnlab.functional.global_max_pool2d`), for any input size.

    Args:
        flatten: return ``(N, C)`` instead of ``(N, C, 1, 1)``. Default False.

    Shape:
        ``(N, C, H, W)`` or ``(C, H, W)`` → ``(N, C, 1, 1)``, or ``(N, C)`` with ``flatten``.

    Example:
        >>> GlobalMaxPool2d(flatten=True)(torch.arange(8.0).view(1, 2, 2, 2))
        tensor([[3., 7.]])
    """

    def forward(self, input: Tensor) -> Tensor:
        return functional.global_max_pool2d(input, self.flatten)
