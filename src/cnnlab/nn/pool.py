"""Pooling layers. Those torch has keep its constructor arguments, attributes and ``repr``; the
others (distance-weighted, global, maxout, blur) follow the same conventions.

Pooling replaces each output by a summary of a neighbourhood, which makes the representation
approximately invariant to small translations of the input; adaptive and global pooling also
map any input size to a fixed output size. The math is in :mod:`cnnlab.functional.pool`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .. import functional
from ..functional.pool import pool_geometry

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
    "BlurPool2d",
    "ChannelMaxPool",
    "DistanceWeightedPool2d",
    "FractionalMaxPool2d",
    "FractionalMaxPool3d",
    "GlobalAvgPool2d",
    "GlobalMaxPool2d",
    "LPPool1d",
    "LPPool2d",
    "LPPool3d",
    "MaxBlurPool2d",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "MaxUnpool1d",
    "MaxUnpool2d",
    "MaxUnpool3d",
]

IntOrTuple = int | Sequence[int]


class _MaxPoolNd(nn.Module):
    spatial_dims = 2

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        pool_geometry(type(self).__name__, self.spatial_dims, kernel_size, stride, padding, dilation)
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )

    def forward(self, input: Tensor):
        pool = (functional.max_pool1d, functional.max_pool2d, functional.max_pool3d)[self.spatial_dims - 1]
        return pool(
            input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode, self.return_indices
        )


class MaxPool1d(_MaxPoolNd):
    r"""1-D max pooling: ``out[n, c, t] = max_{j<k} x_pad[n, c, s·t + d·j]`` (padding is −∞).

    Shape: ``(N, C, L)`` or ``(C, L)`` → ``(N, C, L_out)``,
    ``L_out = floor_or_ceil((L + 2p − d(k−1) − 1)/s) + 1``. With ``return_indices`` the index of
    each maximum in ``L`` comes too (for :class:`MaxUnpool2d`-style inverses). Ties go to the
    first element, NaN propagates, exactly as torch.
    """

    spatial_dims = 1


class MaxPool2d(_MaxPoolNd):
    r"""2-D max pooling: ``out[n, c, y, x] = max_{u,v} x_pad[n, c, s_0 y + d_0 u, s_1 x + d_1 v]``.

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

    spatial_dims = 2


class MaxPool3d(_MaxPoolNd):
    r"""3-D max pooling over ``(N, C, D, H, W)`` or ``(C, D, H, W)``; indices flat ``(z·H + y)·W + x``.

    Example:
        >>> MaxPool3d(2)(torch.randn(1, 4, 8, 16, 16)).shape
        torch.Size([1, 4, 4, 8, 8])
    """

    spatial_dims = 3


class _MaxUnpoolNd(nn.Module):
    """Inverse of max pooling: puts each value back at its saved index, zeros elsewhere.

    Shape: ``(N, C, *S)`` → ``(N, C, *S_out)``, ``S_out = (S − 1)s − 2p + k`` unless
    ``output_size`` is given to ``forward`` (within ``stride`` of that default).
    """

    spatial_dims = 2

    def __init__(self, kernel_size: IntOrTuple, stride: IntOrTuple | None = None, padding: IntOrTuple = 0) -> None:
        super().__init__()
        n = self.spatial_dims
        self.kernel_size, self.stride, _, _ = pool_geometry(type(self).__name__, n, kernel_size, stride, 0)
        self.padding = (padding,) * n if isinstance(padding, int) else tuple(padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def forward(self, input: Tensor, indices: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        unpool = (functional.max_unpool1d, functional.max_unpool2d, functional.max_unpool3d)[self.spatial_dims - 1]
        return unpool(input, indices, self.kernel_size, self.stride, self.padding, output_size)


class MaxUnpool1d(_MaxUnpoolNd):
    """Inverse of :class:`MaxPool1d`."""

    spatial_dims = 1


class MaxUnpool2d(_MaxUnpoolNd):
    """Inverse of :class:`MaxPool2d`: puts each value back at its saved index, zeros elsewhere."""

    spatial_dims = 2


class MaxUnpool3d(_MaxUnpoolNd):
    """Inverse of :class:`MaxPool3d`."""

    spatial_dims = 3


class AvgPool1d(nn.Module):
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
        super().__init__()
        self.kernel_size, self.stride, self.padding, _ = pool_geometry("AvgPool1d", 1, kernel_size, stride, padding)
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def forward(self, input: Tensor) -> Tensor:
        return functional.avg_pool1d(
            input, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad
        )


class AvgPool2d(nn.Module):
    r"""2-D average pooling: ``out = Σ_window x_pad / divisor``.

    The divisor is the window's size clipped to the padded input (``count_include_pad=True``) or
    to the input itself (``False``), or ``divisor_override``. Shape as :class:`MaxPool2d`
    without dilation.

    Example:
        >>> AvgPool2d(3, stride=2, padding=1)(torch.randn(1, 8, 32, 32)).shape
        torch.Size([1, 8, 16, 16])
    """

    spatial_dims = 2

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        pool_geometry(name, self.spatial_dims, kernel_size, stride, padding)
        if divisor_override is not None and divisor_override == 0:
            raise ValueError(f"{name}: divisor_override must be non-zero, but got divisor_override=0")
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def forward(self, input: Tensor) -> Tensor:
        pool = functional.avg_pool2d if self.spatial_dims == 2 else functional.avg_pool3d
        return pool(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )


class AvgPool3d(AvgPool2d):
    """3-D average pooling over ``(N, C, D, H, W)``, ``torch.nn.AvgPool3d``'s arguments."""

    spatial_dims = 3


class _LPPoolNd(nn.Module):
    spatial_dims = 2

    def __init__(
        self, norm_type: float, kernel_size: IntOrTuple, stride: IntOrTuple | None = None, ceil_mode: bool = False
    ) -> None:
        super().__init__()
        pool_geometry(type(self).__name__, self.spatial_dims, kernel_size, stride, 0)
        if norm_type <= 0:
            raise ValueError(f"{type(self).__name__}: norm_type must be positive, but got norm_type={norm_type}")
        self.norm_type = norm_type
        self.kernel_size = kernel_size
        self.stride = stride
        self.ceil_mode = ceil_mode

    def extra_repr(self) -> str:
        return (
            f"norm_type={self.norm_type}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"ceil_mode={self.ceil_mode}"
        )

    def forward(self, input: Tensor) -> Tensor:
        pool = (functional.lp_pool1d, functional.lp_pool2d, functional.lp_pool3d)[self.spatial_dims - 1]
        return pool(input, float(self.norm_type), self.kernel_size, self.stride, self.ceil_mode)


class LPPool1d(_LPPoolNd):
    r"""1-D power-average pooling ``(Σ_window x^p)^{1/p}``, torch's semantics (no padding)."""

    spatial_dims = 1


class LPPool2d(_LPPoolNd):
    r"""2-D power-average pooling ``(Σ_window x^p)^{1/p}``; ``norm_type=2`` is the L2-norm pooling
    of the textbook, ``p → ∞`` approaches max pooling and ``p = 1`` is sum pooling.

    Example:
        >>> LPPool2d(2, 2)(torch.randn(1, 8, 32, 32)).shape
        torch.Size([1, 8, 16, 16])
    """

    spatial_dims = 2


class LPPool3d(_LPPoolNd):
    r"""3-D power-average pooling ``(Σ_window x^p)^{1/p}``."""

    spatial_dims = 3


class _AdaptivePoolNd(nn.Module):
    def __init__(self, output_size, return_indices: bool = False) -> None:
        super().__init__()
        self.output_size = output_size
        self.return_indices = return_indices

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class _AdaptiveAvgPoolNd(_AdaptivePoolNd):
    spatial_dims = 2

    def __init__(self, output_size) -> None:
        super().__init__(output_size)

    def forward(self, input: Tensor) -> Tensor:
        pool = (functional.adaptive_avg_pool1d, functional.adaptive_avg_pool2d, functional.adaptive_avg_pool3d)
        return pool[self.spatial_dims - 1](input, self.output_size)


class _AdaptiveMaxPoolNd(_AdaptivePoolNd):
    spatial_dims = 2

    def forward(self, input: Tensor):
        pool = (functional.adaptive_max_pool1d, functional.adaptive_max_pool2d, functional.adaptive_max_pool3d)
        return pool[self.spatial_dims - 1](input, self.output_size, self.return_indices)


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    """Average over ``output_size`` windows ``[floor(i·L/out), ceil((i+1)·L/out))`` that tile any length."""

    spatial_dims = 1


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    """Average over windows ``[floor(i·H/H_out), ceil((i+1)·H/H_out))`` (and likewise in W): any
    input size maps to ``output_size`` (``None`` keeps that dimension)."""

    spatial_dims = 2


class AdaptiveAvgPool3d(_AdaptiveAvgPoolNd):
    """Average over windows that tile any ``(D, H, W)`` volume; ``None`` keeps that dimension."""

    spatial_dims = 3


class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    """Max over the windows of :class:`AdaptiveAvgPool1d`; ``return_indices`` as MaxPool1d."""

    spatial_dims = 1


class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    """Max over the windows of :class:`AdaptiveAvgPool2d`; ``return_indices`` as MaxPool2d."""

    spatial_dims = 2


class AdaptiveMaxPool3d(_AdaptiveMaxPoolNd):
    """Max over the windows of :class:`AdaptiveAvgPool3d`; ``return_indices`` as MaxPool3d."""

    spatial_dims = 3


def _per_dim(value, n: int):
    """``None`` stays ``None``, a number becomes an ``n``-tuple, a sequence stays as it is."""
    return value if value is None or isinstance(value, Sequence) else (value,) * n


class _FractionalMaxPoolNd(nn.Module):
    """Fractional max pooling (Graham, 2014): windows of ``kernel_size`` at pseudo-random,
    increasing offsets, so the output shrinks by a non-integer ratio. ``_random_samples``
    ``(N, C, dims)`` in [0, 1) fixes the offsets (a buffer, as in torch); without it each call
    draws them with ``torch.rand``, exactly as torch does."""

    spatial_dims = 2

    def __init__(
        self,
        kernel_size: IntOrTuple,
        output_size: IntOrTuple | None = None,
        output_ratio: float | Sequence[float] | None = None,
        return_indices: bool = False,
        _random_samples: Tensor | None = None,
    ) -> None:
        super().__init__()
        name, n = type(self).__name__, self.spatial_dims
        self.kernel_size = kernel_size if isinstance(kernel_size, Sequence) else (kernel_size,) * n
        self.return_indices = return_indices
        self.register_buffer("_random_samples", _random_samples)
        self.output_size = (
            output_size if output_size is None or isinstance(output_size, Sequence) else (output_size,) * n
        )
        self.output_ratio = (
            output_ratio if output_ratio is None or isinstance(output_ratio, Sequence) else (output_ratio,) * n
        )
        if output_size is None and output_ratio is None:
            raise ValueError(f"{name} requires specifying either an output size, or a pooling ratio")
        if output_size is not None and output_ratio is not None:
            raise ValueError(f"{name}: only one of output_size and output_ratio may be specified")
        if self.output_ratio is not None and not all(0 < r < 1 for r in self.output_ratio):
            raise ValueError(f"{name}: output_ratio must be between 0 and 1 (exclusive), but got {output_ratio}")

    def forward(self, input: Tensor):
        pool = functional.fractional_max_pool2d if self.spatial_dims == 2 else functional.fractional_max_pool3d
        return pool(
            input,
            self.kernel_size,
            self.output_size,
            self.output_ratio,
            self.return_indices,
            _random_samples=self._random_samples,
        )


class FractionalMaxPool2d(_FractionalMaxPoolNd):
    """2-D fractional max pooling, ``torch.nn.FractionalMaxPool2d``'s arguments.

    Example:
        >>> FractionalMaxPool2d(2, output_ratio=0.7)(torch.randn(1, 4, 32, 32)).shape
        torch.Size([1, 4, 22, 22])
    """

    spatial_dims = 2


class FractionalMaxPool3d(_FractionalMaxPoolNd):
    """3-D fractional max pooling, ``torch.nn.FractionalMaxPool3d``'s arguments."""

    spatial_dims = 3


class GlobalAvgPool2d(nn.Module):
    """Mean over the whole image: ``(N, C, H, W)`` → ``(N, C, 1, 1)``, or ``(N, C)`` with ``flatten=True``."""

    def __init__(self, flatten: bool = False) -> None:
        super().__init__()
        self.flatten = flatten

    def extra_repr(self) -> str:
        return f"flatten={self.flatten}"

    def forward(self, input: Tensor) -> Tensor:
        return functional.global_avg_pool2d(input, self.flatten)


class GlobalMaxPool2d(GlobalAvgPool2d):
    """Max over the whole image: ``(N, C, H, W)`` → ``(N, C, 1, 1)``, or ``(N, C)`` with ``flatten=True``."""

    def forward(self, input: Tensor) -> Tensor:
        return functional.global_max_pool2d(input, self.flatten)


class ChannelMaxPool(nn.Module):
    """Maxout: the max over groups of ``kernel_size`` consecutive channels,
    ``(N, C, *) → (N, C / k, *)``.

    Pooling over the outputs of separately parameterised filters (a conv with ``k·C`` outputs)
    lets the network learn which transformations its features become invariant to: if the ``k``
    filters of a group detect rotated copies of a pattern, their max responds to any rotation.

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

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"

    def forward(self, input: Tensor) -> Tensor:
        return functional.channel_max_pool(input, self.kernel_size)


class DistanceWeightedPool2d(nn.Module):
    r"""Weighted average whose weights fall with distance ``r`` from the window's centre:

    ``w(r) ∝ exp(−r²/2σ²)`` (``kind="gaussian"``) or ``w(r) ∝ 1/(1 + r)`` (``kind="inverse"``),
    normalised so ``Σ w = 1``. Odd and even windows (an even window's centre lies between
    pixels); stride and zero padding as :class:`AvgPool2d` (padding counts as zeros).

    Args:
        kernel_size, stride (default ``kernel_size``), padding, ceil_mode: as AvgPool2d.
        kind: ``"gaussian"`` or ``"inverse"``. Default ``"gaussian"``.
        sigma (float): Gaussian width in pixels. Default 1.0.
        learnable_sigma (bool): make ``sigma`` a parameter (Gaussian only). Default False.

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

    def forward(self, input: Tensor) -> Tensor:
        return functional.distance_weighted_pool2d(
            input, self.kernel_size, self.stride, self.padding, self.ceil_mode, kind=self.kind, sigma=self.sigma
        )


class BlurPool2d(nn.Module):
    """Anti-aliased downsampling (Zhang 2019, "Making Convolutional Networks Shift-Invariant
    Again"): a per-channel binomial low-pass filter of size ``filter_size`` (1–7; 1 is plain
    subsampling) with reflect padding, evaluated every ``stride`` pixels.

    Shape: ``(N, C, H, W)`` → ``(N, C, ceil(H/s), ceil(W/s))`` for odd filters.

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

    def forward(self, input: Tensor) -> Tensor:
        return functional.blur_pool2d(input, self.filter_size, self.stride)


class MaxBlurPool2d(nn.Module):
    """Max pooling made shift-robust (Zhang 2019): dense max over ``kernel_size`` windows with
    stride 1, then :class:`BlurPool2d` does the subsampling by ``stride``."""

    def __init__(self, kernel_size: IntOrTuple = 2, filter_size: int = 3, stride: IntOrTuple = 2) -> None:
        super().__init__()
        functional.binomial_filter(filter_size)
        self.kernel_size, self.stride, _, _ = pool_geometry("MaxBlurPool2d", 2, kernel_size, stride, 0)
        self.filter_size = filter_size

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, filter_size={self.filter_size}, stride={self.stride}"

    def forward(self, input: Tensor) -> Tensor:
        return functional.max_blur_pool2d(input, self.kernel_size, self.filter_size, self.stride)
