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
    """1-D max pooling, ``torch.nn.MaxPool1d``'s drop-in: ``out[n, c, t] = max_{j<k} x_pad[n, c, s·t + d·j]``.

    Computed by :func:`cnnlab.functional.max_pool1d`: ties go to the first element in row-major
    order and NaN propagates, exactly as torch; padding is never picked.

    Args:
        kernel_size: window size, an int or one per spatial dim.
        stride: step between windows. Default ``kernel_size``.
        padding: implicit ``-inf`` on both sides, at most half the (dilated) window; or ``"tf_same"``
            (cnnlab's extension: TensorFlow's SAME windows). Default 0.
        dilation: spacing between a window's elements. Default 1.
        return_indices: ``forward`` also returns each maximum's flat index into ``(L)``, for
            :class:`MaxUnpool1d`. Default False.
        ceil_mode: round the output size up: a last, partial window (one that would start in the
            right padding is dropped). Default False.

    Shape:
        ``(N, C, L)`` or ``(C, L)`` → ``(N, C, L_out)``, each ``size_out = floor((size + 2p − d(k − 1) − 1) / s) + 1``
        (``ceil`` in ``ceil_mode``).

    Example:
        >>> MaxPool1d(2, return_indices=True)(torch.tensor([[[1.0, 3.0, 2.0, 0.0]]]))
        (tensor([[[3., 2.]]]), tensor([[[1, 2]]]))
    """

    _spatial_dims = 1

    def forward(self, input: Tensor):
        return functional.max_pool1d(
            input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode, self.return_indices
        )


class MaxPool2d(_MaxPool, nn.MaxPool2d):
    """2-D max pooling, ``torch.nn.MaxPool2d``'s drop-in:
    ``out[n, c, y, x] = max_{u,v} x_pad[n, c, s_0 y + d_0 u, s_1 x + d_1 v]``. Channels-last in, channels-last out.

    Computed by :func:`cnnlab.functional.max_pool2d`: ties go to the first element in row-major
    order and NaN propagates, exactly as torch; padding is never picked.

    Args:
        kernel_size: window size, an int or one per spatial dim.
        stride: step between windows. Default ``kernel_size``.
        padding: implicit ``-inf`` on both sides, at most half the (dilated) window; or ``"tf_same"``
            (cnnlab's extension: TensorFlow's SAME windows). Default 0.
        dilation: spacing between a window's elements. Default 1.
        return_indices: ``forward`` also returns each maximum's flat index into ``(H, W)``, for
            :class:`MaxUnpool2d`. Default False.
        ceil_mode: round the output size up: a last, partial window (one that would start in the
            right padding is dropped). Default False.

    Shape:
        ``(N, C, H, W)`` or ``(C, H, W)`` → ``(N, C, H_out, W_out)``,
        each ``size_out = floor((size + 2p − d(k − 1) − 1) / s) + 1``
        (``ceil`` in ``ceil_mode``).

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
    """3-D max pooling over volumes or clips, ``torch.nn.MaxPool3d``'s drop-in: the maximum of every
    ``k_0 × k_1 × k_2`` window; indices flat ``(z·H + y)·W + x``.

    Computed by :func:`cnnlab.functional.max_pool3d`: ties go to the first element in row-major
    order and NaN propagates, exactly as torch; padding is never picked.

    Args:
        kernel_size: window size, an int or one per spatial dim.
        stride: step between windows. Default ``kernel_size``.
        padding: implicit ``-inf`` on both sides, at most half the (dilated) window; or ``"tf_same"``
            (cnnlab's extension: TensorFlow's SAME windows). Default 0.
        dilation: spacing between a window's elements. Default 1.
        return_indices: ``forward`` also returns each maximum's flat index into ``(D, H, W)``, for
            :class:`MaxUnpool3d`. Default False.
        ceil_mode: round the output size up: a last, partial window (one that would start in the
            right padding is dropped). Default False.

    Shape:
        ``(N, C, D, H, W)`` or ``(C, D, H, W)`` → ``(N, C, D_out, H_out, W_out)``,
        each ``size_out = floor((size + 2p − d(k − 1) − 1) / s) + 1``
        (``ceil`` in ``ceil_mode``).

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
    """1-D max unpooling, ``torch.nn.MaxUnpool1d``'s drop-in: the partial inverse of
    :class:`MaxPool1d`: ``forward(input, indices, output_size=None)`` puts every value back at the
    position its index names (:func:`cnnlab.functional.max_unpool1d`), zeros elsewhere, as in the
    decoders of SegNet-style networks.

    Args:
        kernel_size: the pooling's window.
        stride: the pooling's stride. Default ``kernel_size``.
        padding: the pooling's padding. Default 0.

    Shape:
        ``(N, C, L)`` or ``(C, L)`` with indices of the same shape → ``(N, C, *size)``,
        ``size = (size_in − 1)·s − 2p + k`` per dim, or ``output_size``.

    Example:
        >>> values, indices = MaxPool1d(2, return_indices=True)(torch.tensor([[[1.0, 3.0, 2.0, 0.0]]]))
        >>> MaxUnpool1d(2)(values, indices)
        tensor([[[0., 3., 2., 0.]]])
    """

    _spatial_dims = 1

    def forward(self, input: Tensor, indices: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        return functional.max_unpool1d(input, indices, self.kernel_size, self.stride, self.padding, output_size)


class MaxUnpool2d(_MaxUnpool, nn.MaxUnpool2d):
    """2-D max unpooling, ``torch.nn.MaxUnpool2d``'s drop-in: the partial inverse of
    :class:`MaxPool2d`: ``forward(input, indices, output_size=None)`` puts every value back at the
    position its index names (:func:`cnnlab.functional.max_unpool2d`), zeros elsewhere, as in the
    decoders of SegNet-style networks.

    Args:
        kernel_size: the pooling's window.
        stride: the pooling's stride. Default ``kernel_size``.
        padding: the pooling's padding. Default 0.

    Shape:
        ``(N, C, H, W)`` or ``(C, H, W)`` with indices of the same shape → ``(N, C, *size)``,
        ``size = (size_in − 1)·s − 2p + k`` per dim, or ``output_size``.

    Example:
        >>> values, indices = MaxPool2d(2, return_indices=True)(torch.randn(1, 3, 7, 7))
        >>> MaxUnpool2d(2)(values, indices, output_size=(7, 7)).shape
        torch.Size([1, 3, 7, 7])
    """

    _spatial_dims = 2

    def forward(self, input: Tensor, indices: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        return functional.max_unpool2d(input, indices, self.kernel_size, self.stride, self.padding, output_size)


class MaxUnpool3d(_MaxUnpool, nn.MaxUnpool3d):
    """3-D max unpooling, ``torch.nn.MaxUnpool3d``'s drop-in: the partial inverse of
    :class:`MaxPool3d`: ``forward(input, indices, output_size=None)`` puts every value back at the
    position its index names (:func:`cnnlab.functional.max_unpool3d`), zeros elsewhere, as in the
    decoders of SegNet-style networks.

    Args:
        kernel_size: the pooling's window.
        stride: the pooling's stride. Default ``kernel_size``.
        padding: the pooling's padding. Default 0.

    Shape:
        ``(N, C, D, H, W)`` or ``(C, D, H, W)`` with indices of the same shape → ``(N, C, *size)``,
        ``size = (size_in − 1)·s − 2p + k`` per dim, or ``output_size``.

    Example:
        >>> values, indices = MaxPool3d(2, return_indices=True)(torch.randn(1, 2, 4, 8, 8))
        >>> MaxUnpool3d(2)(values, indices).shape
        torch.Size([1, 2, 4, 8, 8])
    """

    _spatial_dims = 3

    def forward(self, input: Tensor, indices: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        return functional.max_unpool3d(input, indices, self.kernel_size, self.stride, self.padding, output_size)


class AvgPool1d(nn.AvgPool1d):
    """1-D average pooling, ``torch.nn.AvgPool1d``'s drop-in: ``out = Σ_window x_pad / divisor``, the
    divisor being the window's size clipped to the padded input (``count_include_pad=True``) or to
    the input itself, or ``divisor_override`` (:func:`cnnlab.functional.avg_pool1d`: separable window
    sums; float16/bfloat16 summed in float32, integers divided with truncation, as torch).

    Args:
        kernel_size: window size, an int or one per spatial dim.
        stride: step between windows. Default ``kernel_size``.
        padding: implicit zeros on both sides, at most half the window; or ``"tf_same"`` (cnnlab's).
            Default 0.
        ceil_mode: round the output size up (a last, partial window). Default False.
        count_include_pad: count the padding in the divisor. Default True.

    Shape:
        ``(N, C, L)`` or ``(C, L)`` → ``(N, C, L_out)``, each ``size_out = floor((size + 2p − k) / s) + 1`` (``ceil``
        in ``ceil_mode``).

    Example:
        >>> AvgPool1d(2)(torch.tensor([[[1.0, 3.0, 2.0, 0.0]]]))
        tensor([[[2., 1.]]])
    """

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
    """2-D average pooling, ``torch.nn.AvgPool2d``'s drop-in: ``out = Σ_window x_pad / divisor``, the
    divisor being the window's size clipped to the padded input (``count_include_pad=True``) or to
    the input itself, or ``divisor_override`` (:func:`cnnlab.functional.avg_pool2d`: separable window
    sums; float16/bfloat16 summed in float32, integers divided with truncation, as torch).

    Args:
        kernel_size: window size, an int or one per spatial dim.
        stride: step between windows. Default ``kernel_size``.
        padding: implicit zeros on both sides, at most half the window; or ``"tf_same"`` (cnnlab's).
            Default 0.
        ceil_mode: round the output size up (a last, partial window). Default False.
        count_include_pad: count the padding in the divisor. Default True.
        divisor_override: divide every window's sum by this instead. Default None.

    Shape:
        ``(N, C, H, W)`` or ``(C, H, W)`` → ``(N, C, H_out, W_out)``,
        each ``size_out = floor((size + 2p − k) / s) + 1`` (``ceil``
        in ``ceil_mode``).

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
    """3-D average pooling, ``torch.nn.AvgPool3d``'s drop-in: ``out = Σ_window x_pad / divisor``, the
    divisor being the window's size clipped to the padded input (``count_include_pad=True``) or to
    the input itself, or ``divisor_override`` (:func:`cnnlab.functional.avg_pool3d`: separable window
    sums; float16/bfloat16 summed in float32, integers divided with truncation, as torch).

    Args:
        kernel_size: window size, an int or one per spatial dim.
        stride: step between windows. Default ``kernel_size``.
        padding: implicit zeros on both sides, at most half the window; or ``"tf_same"`` (cnnlab's).
            Default 0.
        ceil_mode: round the output size up (a last, partial window). Default False.
        count_include_pad: count the padding in the divisor. Default True.
        divisor_override: divide every window's sum by this instead. Default None.

    Shape:
        ``(N, C, D, H, W)`` or ``(C, D, H, W)`` → ``(N, C, D_out, H_out, W_out)``,
        each ``size_out = floor((size + 2p − k) / s) + 1`` (``ceil``
        in ``ceil_mode``).

    Example:
        >>> AvgPool3d(2)(torch.randn(1, 4, 8, 16, 16)).shape
        torch.Size([1, 4, 4, 8, 8])
    """

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
    r"""1-D power-average pooling, ``torch.nn.LPPool1d``'s drop-in:
    :math:`\left(\sum_{x \in \text{window}} x^p\right)^{1/p}` (``p = 1`` sum pooling, ``p = 2`` L2-norm
    pooling, large ``p`` approaches max pooling; :func:`cnnlab.functional.lp_pool1d`).

    Args:
        norm_type: the power ``p``, positive.
        kernel_size: window size, an int or one per spatial dim.
        stride: step between windows. Default ``kernel_size``.
        ceil_mode: round the output size up. Default False.

    Shape:
        ``(N, C, L)`` or ``(C, L)`` → ``(N, C, L_out)``, each ``size_out = floor((size − k) / s) + 1``.

    Example:
        >>> LPPool1d(2, 2)(torch.tensor([[[3.0, 4.0]]]))
        tensor([[[5.]]])
    """

    _spatial_dims = 1

    def forward(self, input: Tensor) -> Tensor:
        return functional.lp_pool1d(input, float(self.norm_type), self.kernel_size, self.stride, self.ceil_mode)


class LPPool2d(_LPPool, nn.LPPool2d):
    r"""2-D power-average pooling, ``torch.nn.LPPool2d``'s drop-in:
    :math:`\left(\sum_{x \in \text{window}} x^p\right)^{1/p}` (``p = 1`` sum pooling, ``p = 2`` L2-norm
    pooling, large ``p`` approaches max pooling; :func:`cnnlab.functional.lp_pool2d`).

    Args:
        norm_type: the power ``p``, positive.
        kernel_size: window size, an int or one per spatial dim.
        stride: step between windows. Default ``kernel_size``.
        ceil_mode: round the output size up. Default False.

    Shape:
        ``(N, C, H, W)`` or ``(C, H, W)`` → ``(N, C, H_out, W_out)``, each ``size_out = floor((size − k) / s) + 1``.

    Example:
        >>> LPPool2d(2, 3, stride=2)(torch.randn(1, 8, 32, 32)).shape
        torch.Size([1, 8, 15, 15])
    """

    _spatial_dims = 2

    def forward(self, input: Tensor) -> Tensor:
        return functional.lp_pool2d(input, float(self.norm_type), self.kernel_size, self.stride, self.ceil_mode)


class LPPool3d(_LPPool, nn.LPPool3d):
    r"""3-D power-average pooling, ``torch.nn.LPPool3d``'s drop-in:
    :math:`\left(\sum_{x \in \text{window}} x^p\right)^{1/p}` (``p = 1`` sum pooling, ``p = 2`` L2-norm
    pooling, large ``p`` approaches max pooling; :func:`cnnlab.functional.lp_pool3d`).

    Args:
        norm_type: the power ``p``, positive.
        kernel_size: window size, an int or one per spatial dim.
        stride: step between windows. Default ``kernel_size``.
        ceil_mode: round the output size up. Default False.

    Shape:
        ``(N, C, D, H, W)`` or ``(C, D, H, W)`` → ``(N, C, D_out, H_out, W_out)``,
        each ``size_out = floor((size − k) / s) + 1``.

    Example:
        >>> LPPool3d(2, 2)(torch.randn(1, 4, 8, 8, 8)).shape
        torch.Size([1, 4, 4, 4, 4])
    """

    _spatial_dims = 3

    def forward(self, input: Tensor) -> Tensor:
        return functional.lp_pool3d(input, float(self.norm_type), self.kernel_size, self.stride, self.ceil_mode)


class AdaptiveAvgPool1d(nn.AdaptiveAvgPool1d):
    """1-D adaptive average pooling, ``torch.nn.AdaptiveAvgPool1d``'s drop-in: the output has
    ``output_size`` whatever the input's size; along each dim output ``i`` of ``o`` takes the average
    of inputs ``floor(i·size/o)`` to ``ceil((i + 1)·size/o)``
    (:func:`cnnlab.functional.adaptive_avg_pool1d`).

    Args:
        output_size: the output's spatial size, an int or one per dim (``None`` keeps that dim).

    Shape:
        ``(N, C, L)`` or ``(C, L)`` → ``(N, C, *output_size)``.

    Example:
        >>> AdaptiveAvgPool1d(2)(torch.arange(5.0).view(1, 1, 5))
        tensor([[[1., 3.]]])
    """

    def forward(self, input: Tensor) -> Tensor:
        return functional.adaptive_avg_pool1d(input, self.output_size)


class AdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """2-D adaptive average pooling, ``torch.nn.AdaptiveAvgPool2d``'s drop-in: the output has
    ``output_size`` whatever the input's size; along each dim output ``i`` of ``o`` takes the average
    of inputs ``floor(i·size/o)`` to ``ceil((i + 1)·size/o)``
    (:func:`cnnlab.functional.adaptive_avg_pool2d`).

    Args:
        output_size: the output's spatial size, an int or one per dim (``None`` keeps that dim).

    Shape:
        ``(N, C, H, W)`` or ``(C, H, W)`` → ``(N, C, *output_size)``.

    Example:
        >>> AdaptiveAvgPool2d((1, 1))(torch.randn(4, 512, 7, 7)).shape
        torch.Size([4, 512, 1, 1])
    """

    def forward(self, input: Tensor) -> Tensor:
        return functional.adaptive_avg_pool2d(input, self.output_size)


class AdaptiveAvgPool3d(nn.AdaptiveAvgPool3d):
    """3-D adaptive average pooling, ``torch.nn.AdaptiveAvgPool3d``'s drop-in: the output has
    ``output_size`` whatever the input's size; along each dim output ``i`` of ``o`` takes the average
    of inputs ``floor(i·size/o)`` to ``ceil((i + 1)·size/o)``
    (:func:`cnnlab.functional.adaptive_avg_pool3d`).

    Args:
        output_size: the output's spatial size, an int or one per dim (``None`` keeps that dim).

    Shape:
        ``(N, C, D, H, W)`` or ``(C, D, H, W)`` → ``(N, C, *output_size)``.

    Example:
        >>> AdaptiveAvgPool3d((2, 3, 3))(torch.randn(1, 4, 5, 9, 9)).shape
        torch.Size([1, 4, 2, 3, 3])
    """

    def forward(self, input: Tensor) -> Tensor:
        return functional.adaptive_avg_pool3d(input, self.output_size)


class AdaptiveMaxPool1d(nn.AdaptiveMaxPool1d):
    """1-D adaptive max pooling, ``torch.nn.AdaptiveMaxPool1d``'s drop-in: the output has
    ``output_size`` whatever the input's size; along each dim output ``i`` of ``o`` takes the maximum
    of inputs ``floor(i·size/o)`` to ``ceil((i + 1)·size/o)``
    (:func:`cnnlab.functional.adaptive_max_pool1d`).

    Args:
        output_size: the output's spatial size, an int or one per dim (``None`` keeps that dim).
        return_indices: ``forward`` also returns each maximum's flat spatial index. Default False.

    Shape:
        ``(N, C, L)`` or ``(C, L)`` → ``(N, C, *output_size)``.

    Example:
        >>> AdaptiveMaxPool1d(2)(torch.tensor([[[1.0, 5.0, 2.0, 4.0, 3.0]]]))
        tensor([[[5., 4.]]])
    """

    def forward(self, input: Tensor):
        return functional.adaptive_max_pool1d(input, self.output_size, self.return_indices)


class AdaptiveMaxPool2d(nn.AdaptiveMaxPool2d):
    """2-D adaptive max pooling, ``torch.nn.AdaptiveMaxPool2d``'s drop-in: the output has
    ``output_size`` whatever the input's size; along each dim output ``i`` of ``o`` takes the maximum
    of inputs ``floor(i·size/o)`` to ``ceil((i + 1)·size/o)``
    (:func:`cnnlab.functional.adaptive_max_pool2d`).

    Args:
        output_size: the output's spatial size, an int or one per dim (``None`` keeps that dim).
        return_indices: ``forward`` also returns each maximum's flat spatial index. Default False.

    Shape:
        ``(N, C, H, W)`` or ``(C, H, W)`` → ``(N, C, *output_size)``.

    Example:
        >>> AdaptiveMaxPool2d((3, 4))(torch.randn(2, 8, 13, 17)).shape
        torch.Size([2, 8, 3, 4])
    """

    def forward(self, input: Tensor):
        return functional.adaptive_max_pool2d(input, self.output_size, self.return_indices)


class AdaptiveMaxPool3d(nn.AdaptiveMaxPool3d):
    """3-D adaptive max pooling, ``torch.nn.AdaptiveMaxPool3d``'s drop-in: the output has
    ``output_size`` whatever the input's size; along each dim output ``i`` of ``o`` takes the maximum
    of inputs ``floor(i·size/o)`` to ``ceil((i + 1)·size/o)``
    (:func:`cnnlab.functional.adaptive_max_pool3d`).

    Args:
        output_size: the output's spatial size, an int or one per dim (``None`` keeps that dim).
        return_indices: ``forward`` also returns each maximum's flat spatial index. Default False.

    Shape:
        ``(N, C, D, H, W)`` or ``(C, D, H, W)`` → ``(N, C, *output_size)``.

    Example:
        >>> AdaptiveMaxPool3d(1)(torch.randn(1, 4, 5, 9, 9)).shape
        torch.Size([1, 4, 1, 1, 1])
    """

    def forward(self, input: Tensor):
        return functional.adaptive_max_pool3d(input, self.output_size, self.return_indices)


class FractionalMaxPool2d(nn.FractionalMaxPool2d):
    """2-D fractional max pooling (Graham, 2014), ``torch.nn.FractionalMaxPool2d``'s drop-in: the
    output is any fraction of the input's size, reached with pseudo-random, overlapping windows of
    ``kernel_size`` (starts ``floor((i + u)·α) − floor(u·α)``, ``α = (size − k)/(out − 1)``, ``u``
    drawn per image and channel; :func:`cnnlab.functional.fractional_max_pool2d`), a regulariser
    that downsamples more gently than stride 2.

    Args:
        kernel_size: window size, an int or one per spatial dim.
        output_size: the output's spatial size; or give ``output_ratio``.
        output_ratio: the output's size as a fraction in (0, 1) of the input's, or one per dim.
        return_indices: ``forward`` also returns each maximum's flat spatial index. Default False.
        _random_samples: fixed samples ``u``, ``(N, C, 2)`` (torch's argument, for reproducibility).

    Shape:
        ``(N, C, H, W)`` or ``(C, H, W)`` → ``(N, C, *output_size)``.

    Example:
        >>> FractionalMaxPool2d(3, output_ratio=0.5)(torch.randn(1, 8, 32, 32)).shape
        torch.Size([1, 8, 16, 16])
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
    """3-D fractional max pooling (Graham, 2014), ``torch.nn.FractionalMaxPool3d``'s drop-in: the
    output is any fraction of the input's size, reached with pseudo-random, overlapping windows of
    ``kernel_size`` (starts ``floor((i + u)·α) − floor(u·α)``, ``α = (size − k)/(out − 1)``, ``u``
    drawn per image and channel; :func:`cnnlab.functional.fractional_max_pool3d`), a regulariser
    that downsamples more gently than stride 2.

    Args:
        kernel_size: window size, an int or one per spatial dim.
        output_size: the output's spatial size; or give ``output_ratio``.
        output_ratio: the output's size as a fraction in (0, 1) of the input's, or one per dim.
        return_indices: ``forward`` also returns each maximum's flat spatial index. Default False.
        _random_samples: fixed samples ``u``, ``(N, C, 3)`` (torch's argument, for reproducibility).

    Shape:
        ``(N, C, D, H, W)`` or ``(C, D, H, W)`` → ``(N, C, *output_size)``.

    Example:
        >>> FractionalMaxPool3d(2, output_size=(3, 5, 5))(torch.randn(1, 2, 6, 10, 10)).shape
        torch.Size([1, 2, 3, 5, 5])
    """

    def forward(self, input: Tensor):
        return functional.fractional_max_pool3d(
            input,
            self.kernel_size,
            self.output_size,
            self.output_ratio,
            self.return_indices,
            _random_samples=self._random_samples,
        )
