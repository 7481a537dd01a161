"""Pools that weight their window: distance-weighted averages and anti-aliased (blur) pooling."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import functional
from ..functional._utils import IntOrTuple
from ..functional.pool.base import pool_geometry
from .geometry import Window, window

__all__ = ["BlurPool2d", "DistanceWeightedPool2d", "MaxBlurPool2d"]


class DistanceWeightedPool2d(nn.Module):
    """Weighted average whose weights fall with distance ``r`` from the window's centre, a pooling
    torch.nn lacks (:func:`cnnlab.functional.distance_weighted_pool2d`):

    ``w(r) ∝ exp(−r²/2σ²)`` (``kind="gaussian"``) or ``w(r) ∝ 1/(1 + r)`` (``kind="inverse"``),
    normalised so ``Σ w = 1``. Odd and even windows (an even window's centre lies between
    pixels); stride and zero padding as :class:`AvgPool2d` (padding counts as zeros).

    Args:
        kernel_size: window size, an int or a pair.
        stride: step between windows. Default ``kernel_size``.
        padding: zeros on both sides. Default 0.
        ceil_mode: round the output size up. Default False.
        kind: ``"gaussian"`` or ``"inverse"``. Default ``"gaussian"``.
        sigma: Gaussian width in pixels. Default 1.0.
        learnable_sigma: make ``sigma`` a parameter (Gaussian only). Default False.
        device, dtype: of ``sigma`` when it is learnable.

    Shape:
        ``(N, C, H, W)`` or ``(C, H, W)`` → ``(N, C, H_out, W_out)`` as :class:`AvgPool2d`'s.

    Example:
        >>> DistanceWeightedPool2d(3, stride=2, padding=1)(torch.randn(1, 8, 32, 32)).shape
        torch.Size([1, 8, 16, 16])
    """

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        ceil_mode: bool = False,
        kind: str = "gaussian",
        sigma: float = 1.0,
        learnable_sigma: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding, _ = pool_geometry(
            "DistanceWeightedPool2d", 2, kernel_size, stride, padding
        )
        if kind not in ("gaussian", "inverse"):
            raise ValueError(f"DistanceWeightedPool2d: kind must be 'gaussian' or 'inverse', but got kind={kind!r}")
        if sigma <= 0:
            raise ValueError(f"DistanceWeightedPool2d: sigma must be positive, but got sigma={sigma}")
        if learnable_sigma and kind != "gaussian":
            raise ValueError("DistanceWeightedPool2d: learnable_sigma=True needs kind='gaussian'")
        self.ceil_mode = ceil_mode
        self.kind = kind
        self.learnable_sigma = learnable_sigma
        if learnable_sigma:
            self.sigma = nn.Parameter(torch.tensor(float(sigma), device=device, dtype=dtype))
        else:
            self.sigma = float(sigma)

    def extra_repr(self) -> str:
        sigma = float(self.sigma.detach()) if isinstance(self.sigma, Tensor) else self.sigma
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, kind={self.kind}"
            + (f", sigma={sigma:g}" if self.kind == "gaussian" else "")
            + (", learnable_sigma=True" if self.learnable_sigma else "")
        )

    def window_geometry(self) -> tuple[Window]:
        return window(self.kernel_size, self.stride, self.padding, 1, 2)

    def forward(self, input: Tensor) -> Tensor:
        return functional.distance_weighted_pool2d(
            input, self.kernel_size, self.stride, self.padding, self.ceil_mode, kind=self.kind, sigma=self.sigma
        )


class BlurPool2d(nn.Module):
    """Anti-aliased downsampling (Zhang 2019, "Making Convolutional Networks Shift-Invariant
    Again"): a per-channel binomial low-pass filter of size ``filter_size`` (1–7; 1 is plain
    subsampling) with reflect padding, evaluated every ``stride`` pixels
    (:func:`cnnlab.functional.blur_pool2d`). A layer torch.nn lacks.

    Args:
        filter_size: binomial taps per dim, 1 to 7. Default 3.
        stride: subsampling step. Default 2.

    Shape:
        ``(N, C, H, W)`` or ``(C, H, W)`` → ``(N, C, ceil(H/s), ceil(W/s))`` for odd filters.

    Example:
        >>> BlurPool2d(filter_size=3, stride=2)(torch.randn(1, 8, 32, 32)).shape
        torch.Size([1, 8, 16, 16])
    """

    def __init__(self, filter_size: int = 3, stride: IntOrTuple = 2) -> None:
        super().__init__()
        functional.binomial_filter(filter_size)  # validates 1..7
        self.filter_size = filter_size
        _, self.stride, _, _ = pool_geometry("BlurPool2d", 2, 1, stride, 0)

    def extra_repr(self) -> str:
        return f"filter_size={self.filter_size}, stride={self.stride}"

    def window_geometry(self) -> tuple[Window]:
        return window(self.filter_size, self.stride, (self.filter_size - 1) // 2, 1, 2)

    def forward(self, input: Tensor) -> Tensor:
        return functional.blur_pool2d(input, self.filter_size, self.stride)


class MaxBlurPool2d(nn.Module):
    """Max pooling made shift-robust (Zhang 2019): dense max over ``kernel_size`` windows with
    stride 1, then :class:`BlurPool2d` does the subsampling by ``stride``
    (:func:`cnnlab.functional.max_blur_pool2d`); a replacement for ``MaxPool2d(2)``.

    Args:
        kernel_size: the max pool's window. Default 2.
        filter_size: binomial taps per dim. Default 3.
        stride: subsampling step. Default 2.

    Shape:
        ``(N, C, H, W)`` or ``(C, H, W)`` → ``(N, C, ceil((H − k + 1)/s), ceil((W − k + 1)/s))``.

    Example:
        >>> MaxBlurPool2d(2)(torch.randn(1, 8, 32, 32)).shape
        torch.Size([1, 8, 16, 16])
    """

    def __init__(self, kernel_size: IntOrTuple = 2, filter_size: int = 3, stride: IntOrTuple = 2) -> None:
        super().__init__()
        functional.binomial_filter(filter_size)
        self.kernel_size, self.stride, _, _ = pool_geometry("MaxBlurPool2d", 2, kernel_size, stride, 0)
        self.filter_size = filter_size

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, filter_size={self.filter_size}, stride={self.stride}"

    def window_geometry(self) -> tuple[Window, Window]:
        """The dense max, then the blur that subsamples."""
        return *window(self.kernel_size, 1, 0, 1, 2), *BlurPool2d(self.filter_size, self.stride).window_geometry()

    def forward(self, input: Tensor) -> Tensor:
        return functional.max_blur_pool2d(input, self.kernel_size, self.filter_size, self.stride)
