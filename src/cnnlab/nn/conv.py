"""Convolution layers: each subclasses its ``torch.nn`` twin (so ``isinstance`` checks, init
loops and torch's constructor, validation, parameters, initialisation, ``extra_repr`` and
``state_dict`` are torch's own) and overrides only the compute, one call into
:mod:`cnnlab.functional.conv`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .. import functional
from ..functional._utils import (
    PADDING_MODES,
    PADDING_STRINGS,
    IntOrTuple,
    check_non_negative,
    check_positive,
    conv_transpose_output_size,
    ntuple,
    resolve_padding,
)
from ..functional.conv.dispatch import check_algorithm

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
    "StdConv2d",
]


def _check_arguments(layer: str, spatial_dims: int, transposed: bool, in_channels, out_channels, kernel_size, stride,
                     padding, dilation, output_padding, groups, padding_mode) -> None:  # fmt: skip
    """cnnlab's checks of a convolution's constructor arguments, before torch's own: torch's
    exception types, with messages that name the layer, the argument, the value and what is allowed."""
    if not isinstance(groups, int) or groups <= 0:
        raise ValueError(f"{layer}: groups must be a positive integer, but got groups={groups!r}")
    if in_channels % groups != 0:
        raise ValueError(
            f"{layer}: in_channels must be divisible by groups, but got in_channels={in_channels}, groups={groups}"
        )
    if out_channels % groups != 0:
        raise ValueError(
            f"{layer}: out_channels must be divisible by groups, but got out_channels={out_channels}, groups={groups}"
        )
    if padding_mode not in PADDING_MODES:
        raise ValueError(
            f"{layer}: padding_mode must be one of {set(PADDING_MODES)}, but got padding_mode={padding_mode!r}"
        )
    kernel_size, stride = ntuple(kernel_size, spatial_dims, "kernel_size"), ntuple(stride, spatial_dims, "stride")
    dilation = ntuple(dilation, spatial_dims, "dilation")
    check_positive("kernel_size", kernel_size, layer)
    check_positive("stride", stride, layer)
    check_positive("dilation", dilation, layer)
    if isinstance(padding, str):
        if transposed or padding not in PADDING_STRINGS:
            allowed = "an int or a tuple of ints" if transposed else f"one of {set(PADDING_STRINGS)}"
            raise ValueError(f"{layer}: invalid padding string {padding!r}, should be {allowed}")
        resolve_padding(padding, kernel_size, stride, dilation)  # 'same' + stride check ('tf_same' takes any)
    else:
        check_non_negative("padding", ntuple(padding, spatial_dims, "padding"), layer)
    check_non_negative("output_padding", ntuple(output_padding, spatial_dims, "output_padding"), layer)


class _Conv:
    """``ConvNd(torch.nn.ConvNd)``: torch's constructor, parameters, ``reset_parameters``,
    ``extra_repr`` and ``state_dict``, after cnnlab's argument checks; the compute is one call of
    ``cnnlab.functional.convNd`` with the layer's ``algorithm`` (keyword-only, default ``auto``;
    a class may fix another, as :class:`FFTConv2d` does)."""

    algorithm: str = "auto"
    _spatial_dims: int

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
        _check_arguments(type(self).__name__, self._spatial_dims, False, in_channels, out_channels, kernel_size,
                         stride, padding, dilation, 0, groups, padding_mode)  # fmt: skip
        tf_same = padding == "tf_same"  # cnnlab's extension: torch's constructor knows only 'same' and 'valid'
        super().__init__(in_channels, out_channels, kernel_size, stride, 0 if tf_same else padding, dilation, groups,
                         bias, padding_mode, device, dtype)  # fmt: skip
        if tf_same:
            self.padding = padding
        if algorithm is not None:
            check_algorithm(algorithm, self._spatial_dims, type(self).__name__)
            self.algorithm = algorithm

    def extra_repr(self) -> str:
        """torch's, and the algorithm where it is not the class's own (``auto``, or ``fft`` for FFTConv2d)."""
        shown = f", algorithm={self.algorithm!r}" if self.algorithm != type(self).algorithm else ""
        return super().extra_repr() + shown


class Conv1d(_Conv, nn.Conv1d):
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
        algorithm (str, keyword-only): one of :data:`cnnlab.functional.conv.algorithms.ALGORITHMS` or ``auto``.

    Shape:
        ``(N, C_in, L)`` or ``(C_in, L)`` → ``(N, C_out, L_out)`` with
        ``L_out = floor((L + 2p - d(k-1) - 1) / s) + 1``.

    Example:
        >>> Conv1d(4, 8, 3, padding="same")(torch.randn(2, 4, 50)).shape
        torch.Size([2, 8, 50])
    """

    _spatial_dims = 1

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return functional.conv1d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups,
                                 padding_mode=self.padding_mode, algorithm=self.algorithm)  # fmt: skip


class Conv2d(_Conv, nn.Conv2d):
    r"""2-D convolution (cross-correlation), torch.nn.Conv2d's drop-in replacement.

    .. math:: \text{out}(N_i, C_{out_j}, y, x) = \text{bias}(C_{out_j}) + \sum_{c \in g(j)}
              \sum_{u, v} \text{weight}(C_{out_j}, c, u, v)\,
              \text{input}(N_i, c, s_0 y + d_0 u - p_0, s_1 x + d_1 v - p_1)

    Each output sees a ``d(k-1)+1`` square of the input (sparse interactions), and the same
    ``weight`` is used at every position (parameter sharing), which makes the layer translation
    equivariant. ``dilation=d`` spreads the taps to widen the receptive field at no extra cost.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output (filters).
        kernel_size: taps of each filter, an int or a pair.
        stride: step between outputs. Default 1.
        padding: implicit padding on both sides: an int, a pair, ``"valid"``, ``"same"`` (stride
            1) or ``"tf_same"`` (cnnlab's: TensorFlow's SAME for any stride). Default 0.
        dilation: spacing between taps. Default 1.
        groups: blocked connections from input to output channels (``groups = in_channels``:
            depthwise). Default 1.
        bias: a learnable bias. Default True.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``. Default ``"zeros"``.
        device, dtype: of the parameters.
        algorithm: (keyword-only) ``"auto"`` or one of :data:`cnnlab.functional.conv.algorithms.ALGORITHMS`
            (checked here; shown by ``repr`` when it is not ``auto``).

    Shape:
        ``(N, C_in, H, W)`` or ``(C_in, H, W)`` → ``(N, C_out, H_out, W_out)`` with
        ``H_out = floor((H + 2p_0 - d_0(k_0-1) - 1) / s_0) + 1`` (likewise ``W_out``).

    Example:
        >>> Conv2d(3, 16, 3, padding=1)(torch.randn(8, 3, 32, 32)).shape
        torch.Size([8, 16, 32, 32])
    """

    _spatial_dims = 2

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return functional.conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups,
                                 padding_mode=self.padding_mode, algorithm=self.algorithm)  # fmt: skip


class Conv3d(_Conv, nn.Conv3d):
    r"""3-D convolution over volumes or video clips, ``torch.nn.Conv3d``'s drop-in: every output sums
    a ``C_in/groups × k_0 × k_1 × k_2`` block of the input times the filter,

    .. math:: \text{out}(N_i, C_{out_j}, z, y, x) = \text{bias}(C_{out_j}) + \sum_{c, t, u, v}
              \text{weight}(C_{out_j}, c, t, u, v)\,
              \text{input}(N_i, c, s_0 z + d_0 t - p_0, s_1 y + d_1 u - p_1, s_2 x + d_2 v - p_2)

    computed by cnnlab's compiled ``direct`` kernels (channels-last, float32) or as strided slices of
    the padded channels-last input and one matrix product (:func:`cnnlab.functional.conv3d`).

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output (filters).
        kernel_size: taps of each filter, an int or one per spatial dim.
        stride: step between outputs. Default 1.
        padding: implicit padding on both sides: an int, one per dim, ``"valid"``, ``"same"`` (stride
            1) or ``"tf_same"`` (cnnlab's: TensorFlow's SAME for any stride). Default 0.
        dilation: spacing between taps. Default 1.
        groups: blocked connections from input to output channels. Default 1.
        bias: a learnable bias. Default True.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``. Default ``"zeros"``.
        device, dtype: of the parameters.
        algorithm: (keyword-only) ``"auto"`` or ``"direct"`` or ``"traceable"``
            (checked here; shown by ``repr`` when it is not the class's default).

    Shape:
        ``(N, C_in, D, H, W)`` or ``(C_in, D, H, W)`` → ``(N, C_out, D_out, H_out, W_out)``, each
        ``size_out = floor((size + 2p − d(k − 1) − 1) / s) + 1``.

    Example:
        >>> Conv3d(3, 8, 3, padding=1)(torch.randn(2, 3, 8, 16, 16)).shape
        torch.Size([2, 8, 8, 16, 16])
    """

    _spatial_dims = 3

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return functional.conv3d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups,
                                 padding_mode=self.padding_mode, algorithm=self.algorithm)  # fmt: skip


class FFTConv2d(Conv2d):
    """:class:`Conv2d` computed with ``torch.fft`` (``algorithm="fft"``, :func:`cnnlab.functional.fft_conv2d`):
    the same arguments, parameters, results and ``state_dict``. By the convolution theorem the
    spectra of the input and the filters are multiplied per frequency and transformed back; the cost
    does not grow with the kernel size, so it is cheaper than im2col from about 7×7.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output (filters).
        kernel_size: taps of each filter, an int or one per spatial dim.
        stride: step between outputs. Default 1.
        padding: implicit padding on both sides: an int, one per dim, ``"valid"``, ``"same"`` (stride
            1) or ``"tf_same"`` (cnnlab's: TensorFlow's SAME for any stride). Default 0.
        dilation: spacing between taps. Default 1.
        groups: blocked connections from input to output channels. Default 1.
        bias: a learnable bias. Default True.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``. Default ``"zeros"``.
        device, dtype: of the parameters.
        algorithm: (keyword-only) another algorithm for the same layer. Default ``"fft"``.

    Shape:
        as :class:`Conv2d`'s: ``(N, C_in, H, W)`` → ``(N, C_out, H_out, W_out)``.

    Example:
        >>> FFTConv2d(3, 8, 9, padding="same")(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 8, 32, 32])
    """

    algorithm = "fft"


class StdConv2d(Conv2d):
    r"""Weight-standardised 2-D convolution (Qiao et al., 2019; timm's ``StdConv2d``, used by BiT
    and NFNets), a layer torch.nn lacks: every forward convolves with each output channel's filter
    standardised to zero mean and unit variance,

    .. math:: \hat w_o = g_o \, \frac{w_o - \mathrm{mean}(w_o)}{\sqrt{\mathrm{var}(w_o) + \epsilon}}

    (biased variance over the channel's inputs and taps; :func:`cnnlab.functional.standardize_weight`).
    The stored ``weight`` stays raw, so its ``state_dict`` is :class:`Conv2d`'s (plus ``gain``).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode: as
            :class:`Conv2d`'s (``device``, ``dtype`` and the keyword-only ``algorithm`` too).
        eps: (keyword-only) added to the variance. Default ``1e-6`` (timm's).
        gain: (keyword-only) a learnable per-output-channel scale ``g``, initialised to 1. Default False.

    Shape:
        as :class:`Conv2d`'s: ``(N, C_in, H, W)`` → ``(N, C_out, H_out, W_out)``.

    Example:
        >>> layer = StdConv2d(3, 8, 3, padding=1, gain=True)
        >>> layer(torch.randn(2, 3, 16, 16)).shape, sorted(layer.state_dict())
        (torch.Size([2, 8, 16, 16]), ['bias', 'gain', 'weight'])
    """

    def __init__(self, *args, eps: float = 1e-6, gain: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not eps > 0:
            raise ValueError(f"StdConv2d: eps must be positive, but got eps={eps!r}")
        self.eps = eps
        self.gain = nn.Parameter(torch.ones(self.out_channels, 1, 1, 1, **_factory(self.weight))) if gain else None

    def forward(self, input: Tensor) -> Tensor:  # its own forward: convert() never swaps it for torch's Conv2d
        weight = functional.standardize_weight(self.weight, self.eps)
        if self.gain is not None:
            weight = weight * self.gain
        return self._conv_forward(input, weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, eps={self.eps}, gain={self.gain is not None}"


def _factory(t: Tensor) -> dict:
    return {"device": t.device, "dtype": t.dtype}


class _ConvTranspose:
    """``ConvTransposeNd(torch.nn.ConvTransposeNd)``: torch's constructor, parameters and
    ``forward(input, output_size=None)`` (its ``output_padding`` rule), after cnnlab's argument
    checks; the compute is one call of ``cnnlab.functional.conv_transposeNd``."""

    _spatial_dims: int

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
        _check_arguments(type(self).__name__, self._spatial_dims, True, in_channels, out_channels, kernel_size,
                         stride, padding, dilation, output_padding, groups, padding_mode)  # fmt: skip
        # torch's constructor accepts only "zeros"; cnnlab's other modes make the layer the exact
        # adjoint of the convolution with that padding mode (cnnlab.functional.conv_transpose2d)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias,
                         dilation, "zeros", device, dtype)  # fmt: skip
        self.padding_mode = padding_mode

    def _output_padding(
        self,
        input: Tensor,
        output_size: Sequence[int] | None,
        stride: Sequence[int],
        padding: Sequence[int],
        kernel_size: Sequence[int],
        num_spatial_dims: int,
        dilation: Sequence[int] | None = None,
    ) -> list[int]:
        """torch's rule (the ``output_padding`` that yields ``output_size``, which may include N and
        C), with a message that names the layer and lists what is allowed."""
        if output_size is None:
            return list(self.output_padding)
        n = num_spatial_dims
        if len(output_size) not in (n, n + 1, n + 2):
            raise ValueError(
                f"{type(self).__name__}: output_size must have {n} (or {n + 2} with batch and channels) "
                f"elements, but got output_size={list(output_size)}"
            )
        spatial = list(output_size)[-n:]
        dilation = dilation or (1,) * n
        min_sizes = [
            conv_transpose_output_size(size, k, s, p, 0, d)
            for size, s, p, d, k in zip(input.shape[-n:], stride, padding, dilation, kernel_size)
        ]
        max_sizes = [m + s - 1 for m, s in zip(min_sizes, stride)]
        if not all(lo <= size <= hi for size, lo, hi in zip(spatial, min_sizes, max_sizes)):
            raise ValueError(
                f"{type(self).__name__}: requested an output size of {spatial}, but valid sizes range from "
                f"{min_sizes} to {max_sizes} (for an input of {list(input.shape[-n:])})"
            )
        return [size - lo for size, lo in zip(spatial, min_sizes)]


class ConvTranspose1d(_ConvTranspose, nn.ConvTranspose1d):
    """1-D transposed convolution, ``torch.nn.ConvTranspose1d``'s drop-in: the adjoint (gradient with
    respect to the input) of :class:`Conv1d` with the same arguments, used to upsample. Each input
    value scatters ``weight``-scaled copies into the output at stride ``s``:
    ``out[n, o, s·t + d·i − p] += input[n, c, t] · weight[c, o, i]`` (per spatial dim).

    ``forward(input, output_size=None)``: ``output_size`` picks the ``output_padding`` that reaches it.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        kernel_size: taps of each filter, an int or one per spatial dim.
        stride: upsampling step. Default 1.
        padding: ``dilation·(k − 1) − padding`` zeros on both sides: what the matching convolution's
            ``padding`` removed. Default 0.
        output_padding: extra size on one side of each output dim (smaller than stride or dilation),
            to reach the sizes a strided convolution maps to the same input size. Default 0.
        groups: blocked connections from input to output channels. Default 1.
        bias: a learnable bias. Default True.
        dilation: spacing between taps. Default 1.
        padding_mode: ``"zeros"``, or cnnlab's ``"reflect"``, ``"replicate"``, ``"circular"``: the exact
            adjoint of the convolution with that padding mode. Default ``"zeros"``.
        device, dtype: of the parameters.

    Shape:
        ``(N, C_in, L)`` or ``(C_in, L)`` → ``(N, C_out, L_out)``,
        ``L_out = (L − 1)s − 2p + d(k − 1) + output_padding + 1``.

    Example:
        >>> ConvTranspose1d(8, 4, 2, stride=2)(torch.randn(1, 8, 16)).shape
        torch.Size([1, 4, 32])
    """

    _spatial_dims = 1

    def forward(self, input: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size, 1, self.dilation
        )
        return functional.conv_transpose1d(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                                            self.groups, self.dilation, padding_mode=self.padding_mode)  # fmt: skip


class ConvTranspose2d(_ConvTranspose, nn.ConvTranspose2d):
    """2-D transposed convolution, ``torch.nn.ConvTranspose2d``'s drop-in: the adjoint (gradient with
    respect to the input) of :class:`Conv2d` with the same arguments, used to upsample. Each input
    value scatters ``weight``-scaled copies into the output at stride ``s``:
    ``out[n, o, s·t + d·i − p] += input[n, c, t] · weight[c, o, i]`` (per spatial dim).
    Computed as that convolution's input gradient (``∂out · W`` then col2im, or for stride 1 a
    correlation with the flipped filters), never by dilating the input with zeros.
    ``forward(input, output_size=None)``: ``output_size`` picks the ``output_padding`` that reaches it.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        kernel_size: taps of each filter, an int or one per spatial dim.
        stride: upsampling step. Default 1.
        padding: ``dilation·(k − 1) − padding`` zeros on both sides: what the matching convolution's
            ``padding`` removed. Default 0.
        output_padding: extra size on one side of each output dim (smaller than stride or dilation),
            to reach the sizes a strided convolution maps to the same input size. Default 0.
        groups: blocked connections from input to output channels. Default 1.
        bias: a learnable bias. Default True.
        dilation: spacing between taps. Default 1.
        padding_mode: ``"zeros"``, or cnnlab's ``"reflect"``, ``"replicate"``, ``"circular"``: the exact
            adjoint of the convolution with that padding mode. Default ``"zeros"``.
        device, dtype: of the parameters.

    Shape:
        ``(N, C_in, H, W)`` or ``(C_in, H, W)`` → ``(N, C_out, H_out, W_out)``,
        ``H_out = (H − 1)s_0 − 2p_0 + d_0(k_0 − 1) + output_padding_0 + 1`` (likewise ``W_out``).

    Example:
        >>> ConvTranspose2d(16, 8, 2, stride=2)(torch.randn(4, 16, 8, 8)).shape
        torch.Size([4, 8, 16, 16])
    """

    _spatial_dims = 2

    def forward(self, input: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size, 2, self.dilation
        )
        return functional.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                                            self.groups, self.dilation, padding_mode=self.padding_mode)  # fmt: skip


class ConvTranspose3d(_ConvTranspose, nn.ConvTranspose3d):
    """3-D transposed convolution, ``torch.nn.ConvTranspose3d``'s drop-in: the adjoint (gradient with
    respect to the input) of :class:`Conv3d` with the same arguments, used to upsample. Each input
    value scatters ``weight``-scaled copies into the output at stride ``s``:
    ``out[n, o, s·t + d·i − p] += input[n, c, t] · weight[c, o, i]`` (per spatial dim).
    Computed as the stride-1 convolution of the zero-stuffed input with the flipped filters.
    ``forward(input, output_size=None)``: ``output_size`` picks the ``output_padding`` that reaches it.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        kernel_size: taps of each filter, an int or one per spatial dim.
        stride: upsampling step. Default 1.
        padding: ``dilation·(k − 1) − padding`` zeros on both sides: what the matching convolution's
            ``padding`` removed. Default 0.
        output_padding: extra size on one side of each output dim (smaller than stride or dilation),
            to reach the sizes a strided convolution maps to the same input size. Default 0.
        groups: blocked connections from input to output channels. Default 1.
        bias: a learnable bias. Default True.
        dilation: spacing between taps. Default 1.
        padding_mode: ``"zeros"``, or cnnlab's ``"reflect"``, ``"replicate"``, ``"circular"``: the exact
            adjoint of the convolution with that padding mode. Default ``"zeros"``.
        device, dtype: of the parameters.

    Shape:
        ``(N, C_in, D, H, W)`` or ``(C_in, D, H, W)`` → ``(N, C_out, D_out, H_out, W_out)``, each as
        :class:`ConvTranspose1d`'s ``L_out``.

    Example:
        >>> ConvTranspose3d(8, 4, 2, stride=2)(torch.randn(1, 8, 4, 8, 8)).shape
        torch.Size([1, 4, 8, 16, 16])
    """

    _spatial_dims = 3

    def forward(self, input: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size, 3, self.dilation
        )
        return functional.conv_transpose3d(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                                            self.groups, self.dilation, padding_mode=self.padding_mode)  # fmt: skip


class LazyConv1d(nn.LazyConv1d, Conv1d):
    """:class:`Conv1d` whose ``in_channels`` is read from the first input (``torch.nn.LazyConv1d``'s
    drop-in): the weight is an ``UninitializedParameter`` until the first ``forward``, after which
    the layer becomes a :class:`Conv1d`.

    Args:
        out_channels, kernel_size, stride, padding, …: as :class:`Conv1d`'s, without ``in_channels``.

    Shape:
        as :class:`Conv1d`'s.

    Example:
        >>> layer = LazyConv1d(8, 3)
        >>> layer(torch.randn(2, 4, 20)).shape, type(layer).__name__
        (torch.Size([2, 8, 18]), 'Conv1d')
    """

    cls_to_become = Conv1d


class LazyConv2d(nn.LazyConv2d, Conv2d):
    """:class:`Conv2d` whose ``in_channels`` is read from the first input (``torch.nn.LazyConv2d``'s
    drop-in): the weight is an ``UninitializedParameter`` until the first ``forward``, after which
    the layer becomes a :class:`Conv2d`.

    Args:
        out_channels, kernel_size, stride, padding, …: as :class:`Conv2d`'s, without ``in_channels``.

    Shape:
        as :class:`Conv2d`'s.

    Example:
        >>> layer = LazyConv2d(8, 3)
        >>> layer(torch.randn(2, 4, 16, 16)).shape, type(layer).__name__
        (torch.Size([2, 8, 14, 14]), 'Conv2d')
    """

    cls_to_become = Conv2d


class LazyConv3d(nn.LazyConv3d, Conv3d):
    """:class:`Conv3d` whose ``in_channels`` is read from the first input (``torch.nn.LazyConv3d``'s
    drop-in): the weight is an ``UninitializedParameter`` until the first ``forward``, after which
    the layer becomes a :class:`Conv3d`.

    Args:
        out_channels, kernel_size, stride, padding, …: as :class:`Conv3d`'s, without ``in_channels``.

    Shape:
        as :class:`Conv3d`'s.

    Example:
        >>> layer = LazyConv3d(8, 3)
        >>> layer(torch.randn(1, 4, 4, 8, 8)).shape, type(layer).__name__
        (torch.Size([1, 8, 2, 6, 6]), 'Conv3d')
    """

    cls_to_become = Conv3d


class LazyConvTranspose1d(nn.LazyConvTranspose1d, ConvTranspose1d):
    """:class:`ConvTranspose1d` whose ``in_channels`` is read from the first input (``torch.nn.LazyConvTranspose1d``'s
    drop-in): the weight is an ``UninitializedParameter`` until the first ``forward``, after which
    the layer becomes a :class:`ConvTranspose1d`.

    Args:
        out_channels, kernel_size, stride, padding, …: as :class:`ConvTranspose1d`'s, without ``in_channels``.

    Shape:
        as :class:`ConvTranspose1d`'s.

    Example:
        >>> layer = LazyConvTranspose1d(8, 3)
        >>> layer(torch.randn(2, 4, 20)).shape, type(layer).__name__
        (torch.Size([2, 8, 22]), 'ConvTranspose1d')
    """

    cls_to_become = ConvTranspose1d


class LazyConvTranspose2d(nn.LazyConvTranspose2d, ConvTranspose2d):
    """:class:`ConvTranspose2d` whose ``in_channels`` is read from the first input (``torch.nn.LazyConvTranspose2d``'s
    drop-in): the weight is an ``UninitializedParameter`` until the first ``forward``, after which
    the layer becomes a :class:`ConvTranspose2d`.

    Args:
        out_channels, kernel_size, stride, padding, …: as :class:`ConvTranspose2d`'s, without ``in_channels``.

    Shape:
        as :class:`ConvTranspose2d`'s.

    Example:
        >>> layer = LazyConvTranspose2d(8, 3)
        >>> layer(torch.randn(2, 4, 16, 16)).shape, type(layer).__name__
        (torch.Size([2, 8, 18, 18]), 'ConvTranspose2d')
    """

    cls_to_become = ConvTranspose2d


class LazyConvTranspose3d(nn.LazyConvTranspose3d, ConvTranspose3d):
    """:class:`ConvTranspose3d` whose ``in_channels`` is read from the first input (``torch.nn.LazyConvTranspose3d``'s
    drop-in): the weight is an ``UninitializedParameter`` until the first ``forward``, after which
    the layer becomes a :class:`ConvTranspose3d`.

    Args:
        out_channels, kernel_size, stride, padding, …: as :class:`ConvTranspose3d`'s, without ``in_channels``.

    Shape:
        as :class:`ConvTranspose3d`'s.

    Example:
        >>> layer = LazyConvTranspose3d(8, 3)
        >>> layer(torch.randn(1, 4, 4, 8, 8)).shape, type(layer).__name__
        (torch.Size([1, 8, 6, 10, 10]), 'ConvTranspose3d')
    """

    cls_to_become = ConvTranspose3d
