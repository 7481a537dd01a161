"""Convolution layers with ``torch.nn``'s constructor arguments, parameter names, shapes and
initialisation, so a ``state_dict`` moves between a torch layer and ours both ways.

The math is in :mod:`cnnlab.functional.conv`; these modules only hold parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import init
from torch.nn.modules.conv import _LazyConvXdMixin
from torch.nn.parameter import UninitializedParameter

from .. import functional
from ..functional._utils import (
    PADDING_MODES,
    PADDING_STRINGS,
    check_non_negative,
    check_positive,
    conv_transpose_output_size,
    ntuple,
    resolve_padding,
)

__all__ = [
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "FFTConv2d",
    "LazyConv1d",
    "LazyConv2d",
    "LazyConv3d",
    "LazyConvTranspose1d",
    "LazyConvTranspose2d",
    "LazyConvTranspose3d",
]

IntOrTuple = int | Sequence[int]


class _ConvNd(nn.Module):
    """Shared argument validation, parameters and initialisation for every convolution.

    ``weight`` is ``(out_channels, in_channels / groups, *kernel_size)``, or for the transposed
    convolution ``(in_channels, out_channels / groups, *kernel_size)``; ``bias`` is
    ``(out_channels,)``. Both are drawn as in torch: ``weight ~ kaiming_uniform(a=√5)``, i.e.
    ``U(-1/√fan_in, 1/√fan_in)``, and ``bias ~ U(-1/√fan_in, 1/√fan_in)`` with
    ``fan_in = weight.size(1) * prod(kernel_size)``.
    """

    spatial_dims: int = 2
    transposed: bool = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple,
        padding: str | IntOrTuple,
        dilation: IntOrTuple,
        output_padding: IntOrTuple,
        groups: int,
        bias: bool,
        padding_mode: str,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        n = self.spatial_dims
        if not isinstance(groups, int) or groups <= 0:
            raise ValueError(f"{name}: groups must be a positive integer, but got groups={groups!r}")
        if in_channels % groups != 0:
            raise ValueError(
                f"{name}: in_channels must be divisible by groups, but got in_channels={in_channels}, groups={groups}"
            )
        if out_channels % groups != 0:
            raise ValueError(
                f"{name}: out_channels must be divisible by groups, "
                f"but got out_channels={out_channels}, groups={groups}"
            )
        if padding_mode not in PADDING_MODES:
            raise ValueError(
                f"{name}: padding_mode must be one of {set(PADDING_MODES)}, but got padding_mode={padding_mode!r}"
            )
        if self.transposed and padding_mode != "zeros":
            raise ValueError(f'{name}: only "zeros" padding_mode is supported, but got padding_mode={padding_mode!r}')
        self.kernel_size = ntuple(kernel_size, n, "kernel_size")
        self.stride = ntuple(stride, n, "stride")
        self.dilation = ntuple(dilation, n, "dilation")
        self.output_padding = ntuple(output_padding, n, "output_padding")
        check_positive("kernel_size", self.kernel_size, name)
        check_positive("stride", self.stride, name)
        check_positive("dilation", self.dilation, name)
        if isinstance(padding, str):
            if self.transposed or padding not in PADDING_STRINGS:
                allowed = "an int or a tuple of ints" if self.transposed else f"one of {set(PADDING_STRINGS)}"
                raise ValueError(f"{name}: invalid padding string {padding!r}, should be {allowed}")
            resolve_padding(padding, self.kernel_size, self.stride, self.dilation)  # 'same' + stride check
            self.padding: str | tuple[int, ...] = padding
        else:
            self.padding = ntuple(padding, n, "padding")
            check_non_negative("padding", self.padding, name)
        check_non_negative("output_padding", self.output_padding, name)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.groups = groups
        self.padding_mode = padding_mode

        factory = {"device": device, "dtype": dtype}
        shape = (in_channels, out_channels // groups) if self.transposed else (out_channels, in_channels // groups)
        self.weight = nn.Parameter(torch.empty(*shape, *self.kernel_size, **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draw ``weight`` and ``bias`` from torch's default distribution (see class docstring)."""
        if self.weight.numel() == 0:
            return
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * self.spatial_dims:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self.spatial_dims:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * self.spatial_dims:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class _Conv(_ConvNd):
    """Forward of ``Conv1d``/``Conv2d``: one call into :mod:`cnnlab.functional`."""

    algorithm: str = "auto"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: str | IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        algorithm: str | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            0,
            groups,
            bias,
            padding_mode,
            device,
            dtype,
        )
        if algorithm is not None:
            self.algorithm = algorithm

    def forward(self, input: Tensor) -> Tensor:
        conv = (functional.conv1d, functional.conv2d, functional.conv3d)[self.spatial_dims - 1]
        return conv(
            input,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            padding_mode=self.padding_mode,
            algorithm=self.algorithm,
        )


class Conv1d(_Conv):
    r"""1-D convolution (cross-correlation) over a sequence, e.g. a time series.

    .. math:: \text{out}(N_i, C_{out_j}, t) = \text{bias}(C_{out_j})
              + \sum_{k} \sum_{i} \text{weight}(C_{out_j}, k, i)\, \text{input}(N_i, k, s t + d i - p)

    Args:
        in_channels, out_channels (int): channels of input and output.
        kernel_size (int | tuple): taps of the filter.
        stride (int | tuple): step between outputs. Default 1.
        padding (int | tuple | "same" | "valid"): implicit padding on both sides. Default 0.
        dilation (int | tuple): spacing between taps. Default 1.
        groups (int): blocked connections from input to output channels. Default 1.
        bias (bool): learnable bias. Default True.
        padding_mode (str): ``zeros``, ``reflect``, ``replicate`` or ``circular``. Default ``zeros``.
        algorithm (str, keyword-only): see :mod:`cnnlab.functional.algorithms`. Default ``auto``.

    Shape:
        ``(N, C_in, L)`` or ``(C_in, L)`` → ``(N, C_out, L_out)`` with
        ``L_out = floor((L + 2p - d(k-1) - 1) / s) + 1``.

    Example:
        >>> Conv1d(4, 8, 3, padding="same")(torch.randn(2, 4, 50)).shape
        torch.Size([2, 8, 50])
    """

    spatial_dims = 1


class Conv2d(_Conv):
    r"""2-D convolution (cross-correlation), torch.nn.Conv2d's drop-in replacement.

    .. math:: \text{out}(N_i, C_{out_j}, y, x) = \text{bias}(C_{out_j}) + \sum_{c \in g(j)}
              \sum_{u, v} \text{weight}(C_{out_j}, c, u, v)\,
              \text{input}(N_i, c, s_0 y + d_0 u - p_0, s_1 x + d_1 v - p_1)

    Each output sees a ``d(k-1)+1`` square of the input (sparse interactions), and the same
    ``weight`` is used at every position (parameter sharing), which makes the layer translation
    equivariant. ``dilation=d`` spreads the taps to widen the receptive field at no extra cost.

    Args: as :class:`Conv1d`, with ints or pairs.

    Shape:
        ``(N, C_in, H, W)`` or ``(C_in, H, W)`` → ``(N, C_out, H_out, W_out)`` with
        ``H_out = floor((H + 2p_0 - d_0(k_0-1) - 1) / s_0) + 1`` (likewise ``W_out``).

    Example:
        >>> Conv2d(3, 16, 3, padding=1)(torch.randn(8, 3, 32, 32)).shape
        torch.Size([8, 16, 32, 32])
    """

    spatial_dims = 2


class Conv3d(_Conv):
    r"""3-D convolution over volumes or video clips ``(N, C, D, H, W)``, torch.nn.Conv3d's drop-in
    replacement: every output sums a ``C_in/G × k_0 × k_1 × k_2`` block of the input times the
    filter. Computed as strided slices of the padded channels-last input and one matrix product
    (:func:`cnnlab.functional.conv3d`); the backward comes from autograd.

    Shape:
        ``(N, C_in, D, H, W)`` or ``(C_in, D, H, W)`` → ``(N, C_out, D_out, H_out, W_out)``, each as
        :class:`Conv1d`'s ``L_out``.

    Example:
        >>> Conv3d(3, 8, 3, padding=1)(torch.randn(2, 3, 8, 16, 16)).shape
        torch.Size([2, 8, 8, 16, 16])
    """

    spatial_dims = 3


class FFTConv2d(Conv2d):
    """:class:`Conv2d` computed with ``torch.fft`` (``algorithm="fft"``): same arguments, results
    and parameters; cheaper than im2col for large kernels because its cost does not grow with k²."""

    algorithm = "fft"


class _ConvTranspose(_ConvNd):
    """Forward of ``ConvTranspose1d``/``ConvTranspose2d``, including torch's ``output_size=``."""

    transposed = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        output_padding: IntOrTuple = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: IntOrTuple = 1,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            output_padding,
            groups,
            bias,
            padding_mode,
            device,
            dtype,
        )

    def _output_padding(self, input: Tensor, output_size: Sequence[int] | None) -> tuple[int, ...]:
        """The ``output_padding`` that yields ``output_size`` (which may include N and C)."""
        if output_size is None:
            return self.output_padding
        n = self.spatial_dims
        spatial = list(output_size)[-n:] if len(output_size) in (n + 1, n + 2) else list(output_size)
        if len(spatial) != n or len(output_size) not in (n, n + 1, n + 2):
            raise ValueError(
                f"{type(self).__name__}: output_size must have {n} (or {n + 2} with batch and channels) "
                f"elements, but got output_size={list(output_size)}"
            )
        min_sizes = [
            conv_transpose_output_size(size, k, s, p, 0, d)
            for size, s, p, d, k in zip(input.shape[-n:], self.stride, self.padding, self.dilation, self.kernel_size)
        ]
        max_sizes = [m + s - 1 for m, s in zip(min_sizes, self.stride)]
        for size, lo, hi in zip(spatial, min_sizes, max_sizes):
            if not lo <= size <= hi:
                raise ValueError(
                    f"{type(self).__name__}: requested an output size of {spatial}, but valid sizes range from "
                    f"{min_sizes} to {max_sizes} (for an input of {list(input.shape[-n:])})"
                )
        return tuple(size - lo for size, lo in zip(spatial, min_sizes))

    def forward(self, input: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        conv = (functional.conv_transpose1d, functional.conv_transpose2d, functional.conv_transpose3d)
        conv = conv[self.spatial_dims - 1]
        output_padding = self._output_padding(input, output_size)
        return conv(
            input, self.weight, self.bias, self.stride, self.padding, output_padding, self.groups, self.dilation
        )


class ConvTranspose1d(_ConvTranspose):
    r"""1-D transposed convolution: the adjoint (gradient) of :class:`Conv1d`, used to upsample.

    Each input value scatters ``weight``-scaled copies into the output at stride ``s``:
    ``out[n, o, s t + d i - p] += input[n, c, t] * weight[c, o, i]``.

    Shape:
        ``(N, C_in, L)`` or ``(C_in, L)`` → ``(N, C_out, L_out)`` with
        ``L_out = (L - 1)s - 2p + d(k-1) + output_padding + 1``; ``forward(x, output_size=...)``
        picks ``output_padding`` to reach a requested size.

    Example:
        >>> ConvTranspose1d(8, 4, 2, stride=2)(torch.randn(1, 8, 16)).shape
        torch.Size([1, 4, 32])
    """

    spatial_dims = 1


class ConvTranspose2d(_ConvTranspose):
    r"""2-D transposed convolution: the adjoint (gradient) of :class:`Conv2d`, computed as that
    convolution's input gradient (``∂out · W`` then col2im, or for stride 1 a correlation with the
    flipped filters), never by dilating the input with zeros.

    Shape:
        ``(N, C_in, H, W)`` or ``(C_in, H, W)`` → ``(N, C_out, H_out, W_out)`` with
        ``H_out = (H - 1)s_0 - 2p_0 + d_0(k_0-1) + output_padding_0 + 1`` (likewise ``W_out``).

    Example:
        >>> ConvTranspose2d(16, 8, 2, stride=2)(torch.randn(4, 16, 8, 8)).shape
        torch.Size([4, 8, 16, 16])
    """

    spatial_dims = 2


class ConvTranspose3d(_ConvTranspose):
    r"""3-D transposed convolution, the adjoint of :class:`Conv3d`: the stride-1 convolution of
    the zero-stuffed input with the flipped filters.

    Shape:
        ``(N, C_in, D, H, W)`` → ``(N, C_out, D_out, H_out, W_out)``, each as :class:`ConvTranspose1d`'s.

    Example:
        >>> ConvTranspose3d(8, 4, 2, stride=2)(torch.randn(1, 8, 4, 8, 8)).shape
        torch.Size([1, 4, 8, 16, 16])
    """

    spatial_dims = 3


class _LazyConv(_LazyConvXdMixin):
    """torch's lazy initialisation (``in_channels`` from the first input) on cnnlab's layers: the
    weight and bias are ``UninitializedParameter`` until the first forward, then the layer becomes
    its ``cls_to_become`` with torch's initialisation."""

    def _get_num_spatial_dims(self) -> int:
        return self.spatial_dims

    def _uninitialised(self, out_channels: int, bias: bool, factory: dict) -> None:
        self.weight = UninitializedParameter(**factory)
        self.out_channels = out_channels
        if bias:
            self.bias = UninitializedParameter(**factory)


def _lazy_conv(base: type[_Conv]) -> type:
    class LazyConv(_LazyConv, base):
        cls_to_become = base

        def __init__(
            self,
            out_channels: int,
            kernel_size: IntOrTuple,
            stride: IntOrTuple = 1,
            padding: str | IntOrTuple = 0,
            dilation: IntOrTuple = 1,
            groups: int = 1,
            bias: bool = True,
            padding_mode: str = "zeros",
            device: torch.device | str | None = None,
            dtype: torch.dtype | None = None,
        ) -> None:
            factory = {"device": device, "dtype": dtype}
            super().__init__(0, 0, kernel_size, stride, padding, dilation, groups, False, padding_mode, **factory)
            self._uninitialised(out_channels, bias, factory)

    LazyConv.__name__ = LazyConv.__qualname__ = f"Lazy{base.__name__}"
    LazyConv.__doc__ = f"{base.__name__} whose ``in_channels`` comes from the first input (``torch.nn.Lazy*``)."
    return LazyConv


def _lazy_conv_transpose(base: type[_ConvTranspose]) -> type:
    class LazyConvTranspose(_LazyConv, base):
        cls_to_become = base

        def __init__(
            self,
            out_channels: int,
            kernel_size: IntOrTuple,
            stride: IntOrTuple = 1,
            padding: IntOrTuple = 0,
            output_padding: IntOrTuple = 0,
            groups: int = 1,
            bias: bool = True,
            dilation: IntOrTuple = 1,
            padding_mode: str = "zeros",
            device: torch.device | str | None = None,
            dtype: torch.dtype | None = None,
        ) -> None:
            factory = {"device": device, "dtype": dtype}
            super().__init__(
                0, 0, kernel_size, stride, padding, output_padding, groups, False, dilation, padding_mode, **factory
            )
            self._uninitialised(out_channels, bias, factory)

    LazyConvTranspose.__name__ = LazyConvTranspose.__qualname__ = f"Lazy{base.__name__}"
    LazyConvTranspose.__doc__ = f"""{base.__name__} whose ``in_channels`` is inferred from the first input."""
    return LazyConvTranspose


LazyConv1d = _lazy_conv(Conv1d)
LazyConv2d = _lazy_conv(Conv2d)
LazyConv3d = _lazy_conv(Conv3d)
LazyConvTranspose1d = _lazy_conv_transpose(ConvTranspose1d)
LazyConvTranspose2d = _lazy_conv_transpose(ConvTranspose2d)
LazyConvTranspose3d = _lazy_conv_transpose(ConvTranspose3d)
