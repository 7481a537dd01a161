"""Convolution as pure functions with ``torch.nn.functional``'s signatures.

Validation, normalisation and padding happen once here; :mod:`.dispatch` decides which algorithm
computes the result. 1-D convolution is 2-D convolution over a height-1 image.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._tracing import fx_leaf
from .._utils import (
    PADDING_MODES,
    IntOrTuple,
    check_floating,
    check_input_rank,
    check_non_negative,
    check_positive,
    conv_transpose_output_size,
    ntuple,
    pad_input,
    resolve_padding,
    unpad_adjoint,
)
from .dispatch import convolve, convolve_transpose, sums_in_float32


def _check_channels(input: Tensor, weight: Tensor, groups: int, transposed: bool) -> None:
    if groups <= 0:
        raise RuntimeError(f"non-positive groups is not supported: groups={groups}")
    channels = input.shape[1]
    if transposed:
        expected = weight.shape[0]
        if channels != expected:
            raise RuntimeError(
                f"Given transposed=1, weight of size {list(weight.shape)}, expected input"
                f"{list(input.shape)} to have {expected} channels, but got {channels} channels instead"
            )
        if expected % groups:
            raise ValueError(
                f"in_channels must be divisible by groups, but got in_channels={expected}, groups={groups}"
            )
    else:
        expected = weight.shape[1] * groups
        if channels != expected:
            raise RuntimeError(
                f"Given groups={groups}, weight of size {list(weight.shape)}, expected input"
                f"{list(input.shape)} to have {expected} channels, but got {channels} channels instead"
            )
        if weight.shape[0] % groups:
            raise ValueError(
                f"out_channels must be divisible by groups, but got out_channels={weight.shape[0]}, groups={groups}"
            )


def _autocast(input: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """Under ``torch.autocast``, convolutions run in the autocast dtype, as torch's do; casting
    before im2col also halves the column copy (instead of autocast casting it inside the GEMM)."""
    device = input.device.type
    if not torch.amp.is_autocast_available(device) or not torch.is_autocast_enabled(device):
        return input, weight, bias
    dtype = torch.get_autocast_dtype(device)
    return input.to(dtype), weight.to(dtype), bias.to(dtype) if bias is not None else None


def _batch_input(input: Tensor, weight: Tensor, spatial_dims: int, op: str) -> tuple[bool, Tensor]:
    """Check input rank, dtype and device against ``weight``; returns ``(batched?, batched input)``."""
    batched = check_input_rank(input, spatial_dims, op)
    if not batched:
        input = input.unsqueeze(0)
    check_floating(input, weight, op)
    if weight.dim() != spatial_dims + 2:
        raise RuntimeError(f"{op}: weight must be {spatial_dims + 2}D, but got weight of size {list(weight.shape)}")
    return batched, input


_TYPE_NAMES = {
    torch.float64: "double",
    torch.float32: "float",
    torch.float16: "c10::Half",
    torch.bfloat16: "c10::BFloat16",
    torch.complex64: "c10::complex<float>",
    torch.complex128: "c10::complex<double>",
}


def _check_bias(input: Tensor, bias: Tensor | None) -> None:
    """A convolution's bias has the input's dtype (torch raises, it does not promote)."""
    if bias is not None and bias.dtype != input.dtype:
        names = [_TYPE_NAMES.get(t.dtype, str(t.dtype).removeprefix("torch.")) for t in (input, bias)]
        raise RuntimeError(f"Input type ({names[0]}) and bias type ({names[1]}) should be the same")


def _in_float32(input: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """float16/bfloat16 operands as float32, so that long sums are rounded once at the end, as
    torch's kernels accumulate (used where cnnlab's own sums would round every partial sum)."""
    return input.float(), weight.float(), bias.float() if bias is not None else None


def _add_bias(out: Tensor, bias: Tensor | None, batched: bool) -> Tensor:
    """Add a per-channel ``bias`` to ``(N, C, *spatial)`` (in the output's dtype, as torch's
    transposed convolution does) and drop the batch dim again if unbatched."""
    if bias is not None:
        out = out + bias.to(out.dtype).view(1, -1, *([1] * (out.dim() - 2)))
    return out if batched else out.squeeze(0)


def _conv(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: IntOrTuple,
    padding: str | IntOrTuple,
    dilation: IntOrTuple,
    groups: int,
    padding_mode: str,
    algorithm: str,
    spatial_dims: int,
) -> Tensor:
    op = f"conv{spatial_dims}d"
    input, weight, bias = _autocast(input, weight, bias)
    batched, input = _batch_input(input, weight, spatial_dims, op)
    _check_bias(input, bias)
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {set(PADDING_MODES)}, but got padding_mode={padding_mode!r}")
    kernel_size = tuple(weight.shape[2:])
    stride = ntuple(stride, spatial_dims, "stride")
    dilation = ntuple(dilation, spatial_dims, "dilation")
    check_positive("kernel_size", kernel_size, op)
    check_positive("stride", stride, op)
    check_positive("dilation", dilation, op)
    tf_same = padding == "tf_same"
    try:
        pads = resolve_padding(padding, kernel_size, stride, dilation, input.shape[2:])
    except ValueError as error:  # the layers raise ValueError at construction; torch's functions raise RuntimeError
        raise RuntimeError(f"{op}: {error}") from None
    if tf_same and all(s == 1 for s in stride):  # stride 1: the total (k − 1)·d does not depend on the size
        pads = tuple((e // 2, e - e // 2) for e in (d * (k - 1) for k, d in zip(kernel_size, dilation)))
        tf_same = False  # static padding: no explicit pad needed where it is symmetric
    if not tf_same:  # (tf_same's pads are non-negative by construction, and may be symbolic)
        check_non_negative("padding", tuple(p for pair in pads for p in pair), op)
    _check_channels(input, weight, groups, transposed=False)

    padded_size = [s + left + right for s, (left, right) in zip(input.shape[2:], pads)]
    effective = [d * (k - 1) + 1 for k, d in zip(kernel_size, dilation)]
    if not tf_same and any(e > s for e, s in zip(effective, padded_size)):  # (tf_same's never are)
        raise RuntimeError(
            f"{op}: calculated padded input size per channel: {tuple(padded_size)}; effective kernel size "
            f"(dilation * (kernel_size - 1) + 1): {tuple(effective)}. Kernel size can't be greater than "
            f"actual input size"
        )

    dtype = input.dtype
    half = dtype in (torch.float16, torch.bfloat16) and (groups > 1 or spatial_dims == 3)  # sums of group/tap parts
    if half and not sums_in_float32(input, weight, groups, algorithm):
        input, weight, bias = _in_float32(input, weight, bias)
    # Symmetric zero padding is done inside the algorithm (F.unfold pads without a copy);
    # other modes and the asymmetric 'same' padding of even kernels are applied here.
    if tf_same:  # size-dependent (strided 'tf_same'): always one explicit pad, no test of its value
        input = pad_input(input, pads, padding_mode, skip_zero=False)
        inner = (0,) * spatial_dims
    elif padding_mode == "zeros" and all(left == right for left, right in pads):
        inner = tuple(left for left, _ in pads)
    else:
        input = pad_input(input, pads, padding_mode)
        inner = (0,) * spatial_dims

    if spatial_dims == 1:
        input, weight = input.unsqueeze(2), weight.unsqueeze(2)
        stride, dilation, inner = (1, *stride), (1, *dilation), (0, *inner)
    out = convolve(input, weight, stride, inner, dilation, groups, algorithm, bias)
    if spatial_dims == 1:
        out = out.squeeze(2)
    return (out if batched else out.squeeze(0)).to(dtype)


@fx_leaf
def conv1d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: str | IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    *,
    padding_mode: str = "zeros",
    algorithm: str = "auto",
) -> Tensor:
    r"""1-D convolution (cross-correlation), ``torch.nn.functional.conv1d``'s drop-in.

    .. math:: \text{out}[n, o, t] = \text{bias}[o] + \sum_{c \in g(o)} \sum_{i}
              \text{weight}[o, c, i]\, \text{input}[n, c, s t + d i - p]

    Args:
        input: ``(N, C_in, L)`` or unbatched ``(C_in, L)``; float (``float16``/``bfloat16`` under
            autocast too) or integer, on any device.
        weight: filters ``(C_out, C_in / groups, k)``.
        bias: ``(C_out,)`` added to every output position, or ``None``.
        stride: step between outputs, an int or one per spatial dim. Default 1.
        padding: zeros (or ``padding_mode`` values) on both sides of each spatial dim: an int, one
            per dim, ``"valid"`` (none), ``"same"`` (output size = input size, stride 1) or
            ``"tf_same"`` (cnnlab's: TensorFlow's SAME for any stride). Default 0.
        dilation: spacing between filter taps. Default 1.
        groups: split input and output channels into this many independent groups. Default 1.
        padding_mode: (keyword-only) ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``.
        algorithm: (keyword-only) ``"auto"`` or one of
            :data:`cnnlab.functional.conv.algorithms.ALGORITHMS` (``docs/site/guides/library.md``).

    Shape:
        ``(N, C_out, L_out)`` (unbatched: ``(C_out, L_out)``), ``L_out = floor((L + 2p − d(k − 1) − 1) / s) + 1``.

    Example:
        >>> conv1d(torch.randn(2, 4, 50), torch.randn(8, 4, 3), padding="same").shape
        torch.Size([2, 8, 50])
    """
    return _conv(input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm, 1)


@fx_leaf
def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: str | IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    *,
    padding_mode: str = "zeros",
    algorithm: str = "auto",
) -> Tensor:
    r"""2-D convolution (cross-correlation), ``torch.nn.functional.conv2d``'s drop-in.

    .. math:: \text{out}[n, o, y, x] = \text{bias}[o] + \sum_{c \in g(o)} \sum_{u, v}
              \text{weight}[o, c, u, v]\, \text{input}[n, c, s_0 y + d_0 u - p_0, s_1 x + d_1 v - p_1]

    Args:
        input: ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``; float (``float16``/``bfloat16`` under
            autocast too) or integer, on any device.
        weight: filters ``(C_out, C_in / groups, kH, kW)``.
        bias: ``(C_out,)`` added to every output position, or ``None``.
        stride: step between outputs, an int or one per spatial dim. Default 1.
        padding: zeros (or ``padding_mode`` values) on both sides of each spatial dim: an int, one
            per dim, ``"valid"`` (none), ``"same"`` (output size = input size, stride 1) or
            ``"tf_same"`` (cnnlab's: TensorFlow's SAME for any stride). Default 0.
        dilation: spacing between filter taps. Default 1.
        groups: split input and output channels into this many independent groups. Default 1.
        padding_mode: (keyword-only) ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``.
        algorithm: (keyword-only) ``"auto"`` or one of
            :data:`cnnlab.functional.conv.algorithms.ALGORITHMS` (``docs/site/guides/library.md``).

    Shape:
        ``(N, C_out, H_out, W_out)`` in the input's memory format,
        ``H_out = floor((H + 2p_0 − d_0(kH − 1) − 1) / s_0) + 1`` (likewise ``W_out``).

    Example:
        >>> conv2d(torch.randn(8, 3, 32, 32), torch.randn(16, 3, 3, 3), stride=2, padding=1).shape
        torch.Size([8, 16, 16, 16])
    """
    return _conv(input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm, 2)


@fx_leaf
def conv3d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: str | IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    *,
    padding_mode: str = "zeros",
    algorithm: str = "auto",
) -> Tensor:
    r"""3-D convolution over volumes or clips, ``torch.nn.functional.conv3d``'s drop-in: every
    output sums a ``C_in/groups × kD × kH × kW`` block of the input times the filter (the compiled
    ``direct`` kernels, or the N-d strided-slice form of :mod:`cnnlab.functional.conv.traceable`).

    Args:
        input: ``(N, C_in, D, H, W)`` or unbatched ``(C_in, D, H, W)``; float (``float16``/``bfloat16`` under
            autocast too) or integer, on any device.
        weight: filters ``(C_out, C_in / groups, kD, kH, kW)``.
        bias: ``(C_out,)`` added to every output position, or ``None``.
        stride: step between outputs, an int or one per spatial dim. Default 1.
        padding: zeros (or ``padding_mode`` values) on both sides of each spatial dim: an int, one
            per dim, ``"valid"`` (none), ``"same"`` (output size = input size, stride 1) or
            ``"tf_same"`` (cnnlab's: TensorFlow's SAME for any stride). Default 0.
        dilation: spacing between filter taps. Default 1.
        groups: split input and output channels into this many independent groups. Default 1.
        padding_mode: (keyword-only) ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``.
        algorithm: (keyword-only) ``"auto"`` or ``"direct"`` or
            ``"traceable"`` (``docs/site/guides/library.md``).

    Shape:
        ``(N, C_out, D_out, H_out, W_out)``, each size as :func:`conv1d`'s ``L_out``.

    Example:
        >>> conv3d(torch.randn(2, 3, 8, 16, 16), torch.randn(4, 3, 3, 3, 3), padding=1).shape
        torch.Size([2, 4, 8, 16, 16])
    """
    return _conv(input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm, 3)


@fx_leaf
def conv_tbc(input: Tensor, weight: Tensor, bias: Tensor, pad: int = 0) -> Tensor:
    """1-D convolution in time-batch-channel layout, ``torch.nn.functional.conv_tbc``'s drop-in:
    :func:`conv1d` on the input and filters permuted.

    Args:
        input: ``(T, B, C_in)``.
        weight: ``(k, C_in, C_out)``.
        bias: ``(C_out,)``.
        pad: zeros on both ends of the time axis. Default 0.

    Shape:
        ``(T + 2·pad − k + 1, B, C_out)``.

    Example:
        >>> conv_tbc(torch.randn(20, 2, 4), torch.randn(3, 4, 8), torch.zeros(8), pad=1).shape
        torch.Size([20, 2, 8])
    """
    if input.dim() != 3 or weight.dim() != 3:
        raise RuntimeError(
            f"conv_tbc: input must be (T, B, C_in) and weight (k, C_in, C_out), but got input of size "
            f"{list(input.shape)} and weight of size {list(weight.shape)}"
        )
    return conv1d(input.permute(1, 2, 0), weight.permute(2, 1, 0), bias, padding=pad).permute(2, 0, 1).contiguous()


@fx_leaf
def fft_conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: str | IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    *,
    padding_mode: str = "zeros",
) -> Tensor:
    """:func:`conv2d` computed with ``torch.fft`` (``algorithm="fft"``): by the convolution theorem,
    the padded input's and the filters' spectra multiplied over channels (one batched matrix product
    per frequency, the correlation taken as the conjugate product), then the inverse transform,
    cropped and subsampled by the stride. Its cost does not grow with the kernel size (cheaper than
    im2col from about 7×7).

    Args:
        input: ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``.
        weight: filters ``(C_out, C_in / groups, kH, kW)``.
        bias: ``(C_out,)`` added to every output position, or ``None``.
        stride: step between outputs, an int or a pair. Default 1.
        padding: an int, a pair, ``"valid"``, ``"same"`` or ``"tf_same"`` (as :func:`conv2d`). Default 0.
        dilation: spacing between filter taps. Default 1.
        groups: independent channel groups. Default 1.
        padding_mode: (keyword-only) ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``.

    Shape:
        ``(N, C_out, H_out, W_out)`` as :func:`conv2d`'s.

    Example:
        >>> fft_conv2d(torch.randn(2, 3, 32, 32), torch.randn(8, 3, 9, 9), padding="same").shape
        torch.Size([2, 8, 32, 32])
    """
    return _conv(input, weight, bias, stride, padding, dilation, groups, padding_mode, "fft", 2)


def standardize_weight(weight: Tensor, eps: float = 1e-6) -> Tensor:
    r"""Weight standardisation (Qiao et al., 2019): each output channel's filter ``w_o`` (all its
    input channels and taps) to zero mean and unit variance,
    :math:`\hat w_o = (w_o - \mathrm{mean}(w_o)) / \sqrt{\mathrm{var}(w_o) + \epsilon}` with
    the biased variance, as timm's ``StdConv2d`` computes it.

    Args:
        weight: filters ``(O, C/G, *k)``.
        eps: added to the variance. Default ``1e-6``.

    Shape:
        the same as ``weight``.

    Example:
        >>> w = standardize_weight(torch.randn(4, 3, 3, 3))
        >>> mean, var = w.flatten(1).mean(1), w.flatten(1).var(1, unbiased=False)
        >>> bool(mean.abs().max() < 1e-6), bool((var - 1).abs().max() < 1e-4)
        (True, True)
    """
    flat = weight.reshape(weight.shape[0], -1)
    var, mean = torch.var_mean(flat, dim=1, unbiased=False, keepdim=True)
    return ((flat - mean) * torch.rsqrt(var + eps)).reshape(weight.shape)


@fx_leaf
def std_conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: str | IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    *,
    eps: float = 1e-6,
    padding_mode: str = "zeros",
    algorithm: str = "auto",
) -> Tensor:
    """:func:`conv2d` with standardised filters, ``conv2d(input, standardize_weight(weight, eps), …)``
    (weight standardisation, timm's ``StdConv2d``): each output channel's filter to zero mean and
    unit variance before the convolution.

    Args:
        input: ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``.
        weight: filters ``(C_out, C_in / groups, kH, kW)``.
        bias: ``(C_out,)`` added to every output position, or ``None``.
        stride: step between outputs, an int or a pair. Default 1.
        padding: an int, a pair, ``"valid"``, ``"same"`` or ``"tf_same"`` (as :func:`conv2d`). Default 0.
        dilation: spacing between filter taps. Default 1.
        groups: independent channel groups. Default 1.
        padding_mode: (keyword-only) ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``.
        eps: (keyword-only) added to the filters' variance. Default ``1e-6``.
        algorithm: (keyword-only) as :func:`conv2d`'s.

    Shape:
        ``(N, C_out, H_out, W_out)`` as :func:`conv2d`'s.

    Example:
        >>> std_conv2d(torch.randn(2, 3, 16, 16), torch.randn(8, 3, 3, 3), padding=1).shape
        torch.Size([2, 8, 16, 16])
    """
    return conv2d(input, standardize_weight(weight, eps), bias, stride, padding, dilation, groups,
                  padding_mode=padding_mode, algorithm=algorithm)  # fmt: skip


def _conv_transpose(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: IntOrTuple,
    padding: IntOrTuple,
    output_padding: IntOrTuple,
    groups: int,
    dilation: IntOrTuple,
    spatial_dims: int,
    padding_mode: str = "zeros",
) -> Tensor:
    op = f"conv_transpose{spatial_dims}d"
    input, weight, bias = _autocast(input, weight, bias)
    batched, input = _batch_input(input, weight, spatial_dims, op)
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a tuple of ints, but got padding={padding!r}")
    kernel_size = tuple(weight.shape[2:])
    stride = ntuple(stride, spatial_dims, "stride")
    padding = ntuple(padding, spatial_dims, "padding")
    output_padding = ntuple(output_padding, spatial_dims, "output_padding")
    dilation = ntuple(dilation, spatial_dims, "dilation")
    check_positive("kernel_size", kernel_size, op)
    check_positive("stride", stride, op)
    check_positive("dilation", dilation, op)
    check_non_negative("padding", padding, op)
    check_non_negative("output_padding", output_padding, op)
    if any(op_ >= s and op_ >= d for op_, s, d in zip(output_padding, stride, dilation)):
        raise RuntimeError(
            f"{op}: output padding must be smaller than either stride or dilation, but got "
            f"output_padding={output_padding}, stride={stride}, dilation={dilation}"
        )
    _check_channels(input, weight, groups, transposed=True)
    sizes = [
        conv_transpose_output_size(size, k, s, p, o, d)
        for size, k, s, p, o, d in zip(input.shape[2:], kernel_size, stride, padding, output_padding, dilation)
    ]
    if any(size <= 0 for size in sizes):
        raise RuntimeError(
            f"{op}: given input size {tuple(input.shape[2:])}, the output size {tuple(sizes)} is too small"
        )
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {set(PADDING_MODES)}, but got padding_mode={padding_mode!r}")
    _check_mode_padding(op, padding_mode, padding, sizes)

    dtype = input.dtype
    if dtype in (torch.float16, torch.bfloat16):  # the adjoint's overlapping sums, rounded once
        input, weight, bias = _in_float32(input, weight, bias)
    # another padding mode: the adjoint of (pad by the mode, then the unpadded convolution) is the
    # unpadded transposed convolution, then the padding's adjoint (border values added back where
    # the mode copied them from)
    mode_pads = tuple((p, p) for p in padding) if padding_mode != "zeros" else None
    if mode_pads is not None:
        padding = (0,) * spatial_dims
    if spatial_dims == 1:
        input, weight = input.unsqueeze(2), weight.unsqueeze(2)
        stride, padding, output_padding, dilation = (1, *stride), (0, *padding), (0, *output_padding), (1, *dilation)
    out = convolve_transpose(input, weight, stride, padding, output_padding, dilation, groups)
    if spatial_dims == 1:
        out = out.squeeze(2)
    if mode_pads is not None:
        out = unpad_adjoint(out, mode_pads, padding_mode)
    return _add_bias(out, bias, batched).to(dtype)


def _check_mode_padding(op: str, padding_mode: str, padding: tuple[int, ...], sizes: list[int]) -> None:
    """The convolution whose adjoint a transposed convolution with ``padding_mode`` is pads its
    input (the transposed output) by ``padding``: reflect needs ``padding < size``, circular
    ``padding <= size`` (``F.pad``'s rules)."""
    limit = {"reflect": lambda p, n: p < n, "circular": lambda p, n: p <= n}.get(padding_mode)
    if limit is not None and not all(limit(p, n) for p, n in zip(padding, sizes)):
        allowed = "smaller than" if padding_mode == "reflect" else "at most"
        raise ValueError(
            f"{op}: padding_mode={padding_mode!r} needs padding {allowed} the output size, but got "
            f"padding={padding} for an output of size {tuple(sizes)}"
        )


@fx_leaf
def conv_transpose1d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    *,
    padding_mode: str = "zeros",
) -> Tensor:
    r"""1-D transposed convolution, ``torch.nn.functional.conv_transpose1d``'s drop-in: the adjoint
    (gradient with respect to the input) of :func:`conv1d` with the same arguments, which
    upsamples by ``stride``: every input value adds ``weight``-scaled copies into the output,
    ``out[n, o, s·t + d·i − p] += input[n, c, t] · weight[c, o, i]`` (per spatial dim).

    Args:
        input: ``(N, C_in, L)`` or unbatched ``(C_in, L)``.
        weight: filters ``(C_in, C_out / groups, k)`` (the layout of the convolution it is the adjoint of).
        bias: ``(C_out,)`` or ``None``.
        stride: step between the input's positions in the output. Default 1.
        padding: ``dilation·(k − 1) − padding`` zeros added on both sides, i.e. what the matching
            convolution's ``padding`` removed. Default 0.
        output_padding: extra size on one side of each output dim, to reach sizes a strided
            convolution maps to the same input size (smaller than stride or dilation). Default 0.
        groups: independent channel groups. Default 1.
        dilation: spacing between filter taps. Default 1.
        padding_mode: (keyword-only) ``"zeros"``, or cnnlab's ``"reflect"``, ``"replicate"``,
            ``"circular"``: the exact adjoint of the convolution with that padding mode.

    Shape:
        ``(N, C_out, L_out)``, ``L_out = (L − 1)s − 2p + d(k − 1) + output_padding + 1``.

    Example:
        >>> conv_transpose1d(torch.randn(1, 8, 16), torch.randn(8, 4, 2), stride=2).shape
        torch.Size([1, 4, 32])
    """
    return _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, 1, padding_mode)


@fx_leaf
def conv_transpose2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    *,
    padding_mode: str = "zeros",
) -> Tensor:
    r"""2-D transposed convolution, ``torch.nn.functional.conv_transpose2d``'s drop-in: the adjoint
    (gradient with respect to the input) of :func:`conv2d` with the same arguments, which
    upsamples by ``stride``: every input value adds ``weight``-scaled copies into the output,
    ``out[n, o, s·t + d·i − p] += input[n, c, t] · weight[c, o, i]`` (per spatial dim).

    Args:
        input: ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``.
        weight: filters ``(C_in, C_out / groups, kH, kW)`` (the layout of the convolution it is the adjoint of).
        bias: ``(C_out,)`` or ``None``.
        stride: step between the input's positions in the output. Default 1.
        padding: ``dilation·(k − 1) − padding`` zeros added on both sides, i.e. what the matching
            convolution's ``padding`` removed. Default 0.
        output_padding: extra size on one side of each output dim, to reach sizes a strided
            convolution maps to the same input size (smaller than stride or dilation). Default 0.
        groups: independent channel groups. Default 1.
        dilation: spacing between filter taps. Default 1.
        padding_mode: (keyword-only) ``"zeros"``, or cnnlab's ``"reflect"``, ``"replicate"``,
            ``"circular"``: the exact adjoint of the convolution with that padding mode.

    Shape:
        ``(N, C_out, H_out, W_out)``, ``H_out = (H − 1)s_0 − 2p_0 + d_0(kH − 1) + output_padding_0 + 1``
        (likewise ``W_out``).

    Example:
        >>> x, w = torch.randn(4, 16, 8, 8), torch.randn(16, 8, 3, 3)
        >>> conv_transpose2d(x, w, stride=2, padding=1, output_padding=1).shape
        torch.Size([4, 8, 16, 16])
    """
    return _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, 2, padding_mode)


@fx_leaf
def conv_transpose3d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    *,
    padding_mode: str = "zeros",
) -> Tensor:
    r"""3-D transposed convolution, ``torch.nn.functional.conv_transpose3d``'s drop-in: the adjoint
    (gradient with respect to the input) of :func:`conv3d` with the same arguments, which
    upsamples by ``stride``: every input value adds ``weight``-scaled copies into the output,
    ``out[n, o, s·t + d·i − p] += input[n, c, t] · weight[c, o, i]`` (per spatial dim).

    Args:
        input: ``(N, C_in, D, H, W)`` or unbatched ``(C_in, D, H, W)``.
        weight: filters ``(C_in, C_out / groups, kD, kH, kW)`` (the layout of the convolution it is the adjoint of).
        bias: ``(C_out,)`` or ``None``.
        stride: step between the input's positions in the output. Default 1.
        padding: ``dilation·(k − 1) − padding`` zeros added on both sides, i.e. what the matching
            convolution's ``padding`` removed. Default 0.
        output_padding: extra size on one side of each output dim, to reach sizes a strided
            convolution maps to the same input size (smaller than stride or dilation). Default 0.
        groups: independent channel groups. Default 1.
        dilation: spacing between filter taps. Default 1.
        padding_mode: (keyword-only) ``"zeros"``, or cnnlab's ``"reflect"``, ``"replicate"``,
            ``"circular"``: the exact adjoint of the convolution with that padding mode.

    Shape:
        ``(N, C_out, D_out, H_out, W_out)``, each size as :func:`conv_transpose1d`'s ``L_out``.

    Example:
        >>> conv_transpose3d(torch.randn(1, 8, 4, 8, 8), torch.randn(8, 4, 2, 2, 2), stride=2).shape
        torch.Size([1, 4, 8, 16, 16])
    """
    return _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, 3, padding_mode)
