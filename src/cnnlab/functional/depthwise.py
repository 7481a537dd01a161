"""Depthwise convolution, the compute two families share: the ``depthwise`` convolution algorithm
(``groups == in_channels``, :mod:`.conv.depthwise`) and the pools that filter every channel with
one filter (average pooling with one divisor, blur and distance-weighted pooling). Each channel is
filtered on its own, so instead of a GEMM with a k²-long inner dimension it is ``k²`` multiply-adds
of shifted views:

    out[n, c·m + j] = Σ_{u, v} w[c·m + j, 0, u, v] · x_pad[n, c, y·s + u·d, x·s + v·d]

No column buffer is built. On the CPU, with depth multiplier 1 in float32 or bfloat16, cnnlab's
compiled kernels run (``csrc/depthwise.cpp``: the same sum, vectorised over channels in NHWC and
over a plane's positions in NCHW) where they are built. Eager only: under a tracer the callers
take their traceable forms (:func:`tap_sum` is the depthwise one).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from . import native
from ._tracing import KernelConv, recorded_grads
from ._utils import conv_output_size, output_size_unpadded, pad_input, window_taps
from .backends import memory_format_of

__all__ = ["depthwise_conv2d", "native_fits", "tap_sum"]

_CHUNK_ELEMENTS = 2 * 1024 * 1024


def _tap(padded: Tensor, i: int, j: int, stride, dilation, output_size) -> Tensor:
    """The strided view of ``padded`` that kernel tap ``(i, j)`` reads, shape ``(N, C, H_out, W_out)``."""
    top, left = i * dilation[0], j * dilation[1]
    return padded[
        :,
        :,
        top : top + stride[0] * (output_size[0] - 1) + 1 : stride[0],
        left : left + stride[1] * (output_size[1] - 1) + 1 : stride[1],
    ]


def _correlate_taps(padded: Tensor, weight: Tensor, stride, dilation) -> Tensor:
    """``(N, C, Hp, Wp)`` * filters ``(C·m, 1, kH, kW)`` → ``(N, C·m, H_out, W_out)``: one in-place
    multiply-add of a shifted view per tap, into a contiguous output."""
    n, channels, height, width = padded.shape
    out_channels, _, kh, kw = weight.shape
    multiplier = out_channels // channels
    size = output_size_unpadded((height, width), (kh, kw), stride, dilation)
    w = weight.view(channels, multiplier, kh, kw)
    out = None
    for i in range(kh):
        for j in range(kw):
            tap = _tap(padded, i, j, stride, dilation, size).unsqueeze(2)
            if out is None:  # every tap covers the whole output: the first one initialises it
                out = (tap * w[:, :, i, j, None, None]).contiguous()
            else:
                out.addcmul_(tap, w[:, :, i, j, None, None])
    return out.view(n, out_channels, *size)


class _DepthwiseConv2d(torch.autograd.Function):
    """Eager only: under a tracer or ``torch.func`` transform the traceable form runs instead."""

    @staticmethod
    def forward(padded: Tensor, weight: Tensor, stride, dilation) -> Tensor:
        return _correlate_taps(padded, weight, stride, dilation)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        padded, weight, stride, dilation = inputs
        ctx.save_for_backward(padded, weight)
        ctx.geometry = (stride, dilation, tuple(output.shape[2:]))

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        padded, weight = ctx.saved_tensors
        stride, dilation, size = ctx.geometry
        n, channels = padded.shape[:2]
        out_channels, _, kh, kw = weight.shape
        w = weight.view(channels, out_channels // channels, kh, kw)
        grad = grad_out.reshape(n, channels, out_channels // channels, *size)
        # stride 1, multiplier 1: ∂padded is the correlation of ∂out, zero-padded by the kernel's
        # reach, with the rotated filters, written contiguously (adding into ∂padded's strided tap
        # views, the general route, ran 2.3× slower: 128 channels 3×3 @16², batch 128)
        by_correlation = tuple(stride) == (1, 1) and grad.shape[2] == 1
        add_into_taps = ctx.needs_input_grad[0] and not by_correlation
        grad_input = torch.zeros_like(padded) if add_into_taps else None
        if ctx.needs_input_grad[0] and by_correlation:
            reach = [d * (k - 1) for d, k in zip(dilation, (kh, kw))]
            spread = pad_input(grad_out, tuple((r, r) for r in reach))
            grad_input = _correlate_taps(spread, weight.flip(2, 3), (1, 1), dilation)
        grad_weight = padded.new_zeros(channels, out_channels // channels, kh, kw) if ctx.needs_input_grad[1] else None
        # The weight gradient multiplies whole tensors before reducing: a batch chunk at a time,
        # so the products stay small enough for the allocator to reuse (one 33 MB product per
        # tap cost 50 ms for 128 3×3 @16², batch 128; 16-image chunks 12 ms; 2-core x86).
        step = max(1, _CHUNK_ELEMENTS // max(grad[0].numel(), 1)) if n else 1
        for i in range(kh):
            for j in range(kw):
                if add_into_taps:
                    target = _tap(grad_input, i, j, stride, dilation, size)
                    if grad.shape[2] == 1:  # depth multiplier 1: no sum over multiplier copies
                        target.addcmul_(grad[:, :, 0], w[:, 0, i, j, None, None])
                    else:
                        target.add_((grad * w[:, :, i, j, None, None]).sum(2))
                if grad_weight is not None:
                    for start in range(0, n, step):
                        tap = _tap(padded[start : start + step], i, j, stride, dilation, size).unsqueeze(2)
                        grad_weight[:, :, i, j] += (grad[start : start + step] * tap).sum((0, 3, 4))
        return grad_input, grad_weight.view_as(weight) if grad_weight is not None else None, None, None


class _NativeDepthwiseConv2d(KernelConv):
    """The compiled kernels (multiplier 1): forward (the bias added before the one rounding), ∂x
    and ∂w each one op, in the input's memory format. Under ``create_graph`` the backward
    differentiates the traceable form instead."""

    @staticmethod
    def forward(input: Tensor, weight: Tensor, stride, padding, dilation, bias: Tensor | None) -> Tensor:
        return torch.ops.cnnlab_native.depthwise(input, weight, bias, stride, padding, dilation)

    @staticmethod
    def backward(ctx, grad: Tensor):
        input, weight = ctx.saved_tensors
        stride, padding, dilation, _ = ctx.arguments
        wanted = ctx.needs_input_grad[:2]
        grad_bias = grad.sum((0, 2, 3)) if ctx.needs_input_grad[5] else None
        if torch.is_grad_enabled():  # create_graph: differentiate the recording traceable form
            grads = recorded_grads(partial(tap_sum, stride=stride, padding=padding, dilation=dilation), (input, weight),
                                   grad, wanted)  # fmt: skip
            return *grads, None, None, None, grad_bias
        ops, geometry = torch.ops.cnnlab_native, (stride, padding, dilation)
        grad = grad.contiguous(memory_format=memory_format_of(input))  # laid out once for both kernels
        grad_weight = ops.depthwise_weight_grad(input, grad, weight.shape[2:], *geometry) if wanted[1] else None
        grad_input = ops.depthwise_input_grad(grad, weight, *geometry, input.shape[2:]) if wanted[0] else None
        return grad_input, grad_weight, None, None, None, grad_bias


def native_fits(input: Tensor, weight: Tensor) -> bool:
    """float32 or bfloat16 CPU tensors of one dtype, one filter per channel, kernels built."""
    return (
        input.device.type == "cpu"
        and input.dtype in (torch.float32, torch.bfloat16)
        and weight.dtype == input.dtype
        and weight.shape[0] == input.shape[1]
        and native.available()
    )


def depthwise_conv2d(input: Tensor, weight: Tensor, stride, padding, dilation, bias: Tensor | None = None) -> Tensor:
    """``(N, C, H, W)`` ⋆ filters ``(C·m, 1, kH, kW)`` with symmetric zero ``padding``, plus
    ``bias`` ``(C·m,)`` where given → ``(N, C·m, H_out, W_out)`` in eager mode: cnnlab's compiled
    kernels where they fit (:func:`native_fits`; the bias added inside them), else the tap loop of
    :func:`_correlate_taps`."""
    if native_fits(input, weight):
        return _NativeDepthwiseConv2d.apply(input, weight, list(stride), list(padding), list(dilation), bias)
    padded = pad_input(input, tuple((p, p) for p in padding))
    out = _DepthwiseConv2d.apply(padded, weight, stride, dilation)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def tap_sum(input: Tensor, weight: Tensor, stride, padding, dilation) -> Tensor:
    """The traceable form, any number of spatial dims: ``Σ_taps slice · w_tap`` over the strided
    slices of the channels-last, zero-padded input (no in-place op, no custom Function) → ``(N,
    C·m, *S_out)`` in the input's memory format."""
    _, channels, *sizes = input.shape
    out_channels, _, *kernel = weight.shape
    dims = len(sizes)
    outs = [conv_output_size(*geometry) for geometry in zip(sizes, kernel, stride, [(p, p) for p in padding], dilation)]
    taps = window_taps(input.permute(0, *range(2, dims + 2), 1), 1, kernel, stride, padding, dilation, outs)
    filters = weight.reshape(channels, out_channels // channels, len(taps))
    out = sum(tap.unsqueeze(-1) * filters[:, :, t] for t, tap in enumerate(taps)).flatten(-2)  # (N, *S_out, C·m)
    return out.permute(0, dims + 1, *range(1, dims + 1)).contiguous(memory_format=memory_format_of(input))
