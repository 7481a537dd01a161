"""Pooling layers with a ``torch.nn`` twin: each subclasses it (torch's constructor, attributes,
``extra_repr`` and ``isinstance``), runs cnnlab's argument checks first, and overrides only
``forward``, one call into :mod:`cnnlab.functional.pool`.

Pooling replaces each output by a summary of a neighbourhood, which makes the representation
approximately invariant to small translations of the input; adaptive pooling also maps any input
size to a fixed output size. The pools torch lacks are in :mod:`.global_pool`,
:mod:`.weighted_pool` and :mod:`.maxout`.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .. import functional
from ..functional._utils import IntOrTuple
from ..functional.pool.base import pool_geometry

__all__ = [
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d",
    "AvgPool1d",
    "AvgPool2d",
    "AvgPool3d",
    "FractionalMaxPool2d",
    "FractionalMaxPool3d",
    "LPPool1d",
    "LPPool2d",
    "LPPool3d",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "MaxUnpool1d",
    "MaxUnpool2d",
    "MaxUnpool3d",
]


class _MaxPool:
    """cnnlab's checks of a max pool's arguments (torch's exception types), then torch's constructor."""

    _spatial_dims: int

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        pool_geometry(type(self).__name__, self._spatial_dims, kernel_size, stride, padding, dilation)
        super().__init__(kernel_size, stride, padding, dilation, return_indices, ceil_mode)


class MaxPool1d(_MaxPool, nn.MaxPool1d):
    """1-D max pooling: ``out[n, c, t] = max_{j<k} x_pad[n, c, s·t + d·j]`` (padding is −∞).

    Shape: ``(N, C, L)`` or ``(C, L)`` → ``(N, C, L_out)``,
    ``L_out = floor_or_ceil((L + 2p − d(k−1) − 1)/s) + 1``. With ``return_indices`` the index of
    each maximum in ``L`` comes too (for :class:`MaxUnpool2d`-style inverses). Ties go to the
    first element, NaN propagates, exactly as torch.
    """

    _spatial_dims = 1

    def forward(self, input: Tensor):
        return functional.max_pool1d(
            input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode, self.return_indices
        )


class MaxPool2d(_MaxPool, nn.MaxPool2d):
    """2-D max pooling: ``out[n, c, y, x] = max_{u,v} x_pad[n, c, s_0 y + d_0 u, s_1 x + d_1 v]``.

    Args:
        kernel_size, stride (default ``kernel_size``), padding (implicit −∞, at most half the
        effective kernel), dilation, return_indices, ceil_mode: as ``torch.nn.MaxPool2d``.

    Shape:
        ``(N, C, H, W)`` or ``(C, H, W)`` → ``(N, C, H_out, W_out)`` with
        ``H_out = floor_or_ceil((H + 2p_0 − d_0(k_0−1) − 1)/s_0) + 1``; in ``ceil_mode`` a last
        window that would start in the right padding is dropped. Indices are flat ``y·W + x``.

    Example:
        >>> MaxPool2d(2)(torch.randn(1, 8, 32, 32)).shape
        torch.Size([1, 8, 16, 16])
    """

    _spatial_dims = 2

    def forward(self, input: Tensor):
        return functional.max_pool2d(
            input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode, self.return_indices
        )


class MaxPool3d(_MaxPool, nn.MaxPool3d):
    """3-D max pooling over ``(N, C, D, H, W)`` or ``(C, D, H, W)``; indices flat ``(z·H + y)·W + x``.

    Example:
        >>> MaxPool3d(2)(torch.randn(1, 4, 8, 16, 16)).shape
        torch.Size([1, 4, 4, 8, 8])
    """

    _spatial_dims = 3

    def forward(self, input: Tensor):
        return functional.max_pool3d(
            input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode, self.return_indices
        )


class _MaxUnpool:
    """Inverse of max pooling: puts each value back at its saved index, zeros elsewhere.

    Shape: ``(N, C, *S)`` → ``(N, C, *S_out)``, ``S_out = (S − 1)s − 2p + k`` unless
    ``output_size`` is given to ``forward`` (within ``stride`` of that default).
    """

    _spatial_dims: int

    def __init__(self, kernel_size: IntOrTuple, stride: IntOrTuple | None = None, padding: IntOrTuple = 0) -> None:
        pool_geometry(type(self).__name__, self._spatial_dims, kernel_size, stride, 0)
        super().__init__(kernel_size, stride, padding)


class MaxUnpool1d(_MaxUnpool, nn.MaxUnpool1d):
    """Inverse of :class:`MaxPool1d`."""

    _spatial_dims = 1

    def forward(self, input: Tensor, indices: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        return functional.max_unpool1d(input, indices, self.kernel_size, self.stride, self.padding, output_size)


class MaxUnpool2d(_MaxUnpool, nn.MaxUnpool2d):
    """Inverse of :class:`MaxPool2d`: puts each value back at its saved index, zeros elsewhere."""

    _spatial_dims = 2

    def forward(self, input: Tensor, indices: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        return functional.max_unpool2d(input, indices, self.kernel_size, self.stride, self.padding, output_size)


class MaxUnpool3d(_MaxUnpool, nn.MaxUnpool3d):
    """Inverse of :class:`MaxPool3d`."""

    _spatial_dims = 3

    def forward(self, input: Tensor, indices: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        return functional.max_unpool3d(input, indices, self.kernel_size, self.stride, self.padding, output_size)


class AvgPool1d(nn.AvgPool1d):
    """1-D average pooling, ``torch.nn.AvgPool1d``'s arguments (``count_include_pad`` counts
    the zero padding in the divisor). Shape as :class:`MaxPool1d` without dilation."""

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:
        pool_geometry("AvgPool1d", 1, kernel_size, stride, padding)
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad)
        if padding == "tf_same":  # torch's constructor would store it as a tuple of characters
            self.padding = padding

    def forward(self, input: Tensor) -> Tensor:
        return functional.avg_pool1d(
            input, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad
        )


class _AvgPool:
    """cnnlab's checks of a 2-/3-D average pool's arguments, then torch's constructor."""

    _spatial_dims: int

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        name = type(self).__name__
        pool_geometry(name, self._spatial_dims, kernel_size, stride, padding)
        if divisor_override is not None and divisor_override == 0:
            raise ValueError(f"{name}: divisor_override must be non-zero, but got divisor_override=0")
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


class AvgPool2d(_AvgPool, nn.AvgPool2d):
    """2-D average pooling: ``out = Σ_window x_pad / divisor``.

    The divisor is the window's size clipped to the padded input (``count_include_pad=True``) or
    to the input itself (``False``), or ``divisor_override``. Shape as :class:`MaxPool2d`
    without dilation.

    Example:
        >>> AvgPool2d(3, stride=2, padding=1)(torch.randn(1, 8, 32, 32)).shape
        torch.Size([1, 8, 16, 16])
    """

    _spatial_dims = 2

    def forward(self, input: Tensor) -> Tensor:
        return functional.avg_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )


class AvgPool3d(_AvgPool, nn.AvgPool3d):
    """3-D average pooling over ``(N, C, D, H, W)``, ``torch.nn.AvgPool3d``'s arguments."""

    _spatial_dims = 3

    def forward(self, input: Tensor) -> Tensor:
        return functional.avg_pool3d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )


class _LPPool:
    """cnnlab's checks of a power-average pool's arguments, then torch's constructor."""

    _spatial_dims: int

    def __init__(
        self, norm_type: float, kernel_size: IntOrTuple, stride: IntOrTuple | None = None, ceil_mode: bool = False
    ) -> None:
        pool_geometry(type(self).__name__, self._spatial_dims, kernel_size, stride, 0)
        if norm_type <= 0:
            raise ValueError(f"{type(self).__name__}: norm_type must be positive, but got norm_type={norm_type}")
        super().__init__(norm_type, kernel_size, stride, ceil_mode)


class LPPool1d(_LPPool, nn.LPPool1d):
    """1-D power-average pooling ``(Σ_window x^p)^{1/p}``, torch's semantics (no padding)."""

    _spatial_dims = 1

    def forward(self, input: Tensor) -> Tensor:
        return functional.lp_pool1d(input, float(self.norm_type), self.kernel_size, self.stride, self.ceil_mode)


class LPPool2d(_LPPool, nn.LPPool2d):
    """2-D power-average pooling ``(Σ_window x^p)^{1/p}``; ``norm_type=2`` is the L2-norm pooling
    of the textbook, ``p → ∞`` approaches max pooling and ``p = 1`` is sum pooling.

    Example:
        >>> LPPool2d(2, 2)(torch.randn(1, 8, 32, 32)).shape
        torch.Size([1, 8, 16, 16])
    """

    _spatial_dims = 2

    def forward(self, input: Tensor) -> Tensor:
        return functional.lp_pool2d(input, float(self.norm_type), self.kernel_size, self.stride, self.ceil_mode)


class LPPool3d(_LPPool, nn.LPPool3d):
    """3-D power-average pooling ``(Σ_window x^p)^{1/p}``."""

    _spatial_dims = 3

    def forward(self, input: Tensor) -> Tensor:
        return functional.lp_pool3d(input, float(self.norm_type), self.kernel_size, self.stride, self.ceil_mode)


class AdaptiveAvgPool1d(nn.AdaptiveAvgPool1d):
    """Average over ``output_size`` windows ``[floor(i·L/out), ceil((i+1)·L/out))`` that tile any length."""

    def forward(self, input: Tensor) -> Tensor:
        return functional.adaptive_avg_pool1d(input, self.output_size)


class AdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """Average over windows ``[floor(i·H/H_out), ceil((i+1)·H/H_out))`` (and likewise in W): any
    input size maps to ``output_size`` (``None`` keeps that dimension)."""

    def forward(self, input: Tensor) -> Tensor:
        return functional.adaptive_avg_pool2d(input, self.output_size)


class AdaptiveAvgPool3d(nn.AdaptiveAvgPool3d):
    """Average over windows that tile any ``(D, H, W)`` volume; ``None`` keeps that dimension."""

    def forward(self, input: Tensor) -> Tensor:
        return functional.adaptive_avg_pool3d(input, self.output_size)


class AdaptiveMaxPool1d(nn.AdaptiveMaxPool1d):
    """Max over the windows of :class:`AdaptiveAvgPool1d`; ``return_indices`` as MaxPool1d."""

    def forward(self, input: Tensor):
        return functional.adaptive_max_pool1d(input, self.output_size, self.return_indices)


class AdaptiveMaxPool2d(nn.AdaptiveMaxPool2d):
    """Max over the windows of :class:`AdaptiveAvgPool2d`; ``return_indices`` as MaxPool2d."""

    def forward(self, input: Tensor):
        return functional.adaptive_max_pool2d(input, self.output_size, self.return_indices)


class AdaptiveMaxPool3d(nn.AdaptiveMaxPool3d):
    """Max over the windows of :class:`AdaptiveAvgPool3d`; ``return_indices`` as MaxPool3d."""

    def forward(self, input: Tensor):
        return functional.adaptive_max_pool3d(input, self.output_size, self.return_indices)


class FractionalMaxPool2d(nn.FractionalMaxPool2d):
    """2-D fractional max pooling, ``torch.nn.FractionalMaxPool2d``'s arguments.

    Example:
        >>> FractionalMaxPool2d(2, output_ratio=0.7)(torch.randn(1, 4, 32, 32)).shape
        torch.Size([1, 4, 22, 22])
    """

    def forward(self, input: Tensor):
        return functional.fractional_max_pool2d(
            input,
            self.kernel_size,
            self.output_size,
            self.output_ratio,
            self.return_indices,
            _random_samples=self._random_samples,
        )


class FractionalMaxPool3d(nn.FractionalMaxPool3d):
    """3-D fractional max pooling, ``torch.nn.FractionalMaxPool3d``'s arguments.

    Fractional max pooling (Graham, 2014): windows of ``kernel_size`` at pseudo-random,
    increasing offsets, so the output shrinks by a non-integer ratio. ``_random_samples``
    ``(N, C, dims)`` in [0, 1) fixes the offsets (a buffer, as in torch); without it each call
    draws them with ``torch.rand``, exactly as torch does."""

    def forward(self, input: Tensor):
        return functional.fractional_max_pool3d(
            input,
            self.kernel_size,
            self.output_size,
            self.output_ratio,
            self.return_indices,
            _random_samples=self._random_samples,
        )
