"""Depthwise convolution (``groups == in_channels``): each channel is filtered on its own, so
instead of a GEMM with a k²-long inner dimension it is ``k²`` multiply-adds of shifted views:

    out[n, c·m + j] = Σ_{u, v} w[c·m + j, 0, u, v] · x_pad[n, c, y·s + u·d, x·s + v·d]

No column buffer is built. On CUDA the dispatch runs :mod:`.triton_depthwise` instead; on the CPU,
with depth multiplier 1 in float32 or bfloat16, cnnlab's compiled kernels
(``csrc/depthwise.cpp``: the same sum, vectorised over channels in NHWC and over a row's positions
in NCHW) where they are built.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import native
from .._utils import output_size_unpadded, pad_input
from . import traceable
from .base import ConvAlgorithm, ConvCall, KernelConv, memory_format_of

__all__ = ["DEPTHWISE", "native_fits", "one_channel_per_group"]

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
    """The compiled kernels (multiplier 1): forward, ∂x and ∂w each one op, in the input's memory
    format. Under ``create_graph`` the backward differentiates the traceable form instead."""

    @staticmethod
    def forward(input: Tensor, weight: Tensor, stride, padding, dilation) -> Tensor:
        return torch.ops.cnnlab_native.depthwise(input, weight, stride, padding, dilation)

    @staticmethod
    def backward(ctx, grad: Tensor):
        input, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.arguments
        wanted = ctx.needs_input_grad[:2]
        if torch.is_grad_enabled():  # create_graph: differentiate the recording traceable form
            grads = traceable.recorded_grads(input, weight, grad, wanted, stride, padding, dilation, input.shape[1])
            return *grads, None, None, None
        ops, geometry = torch.ops.cnnlab_native, (stride, padding, dilation)
        grad = grad.contiguous(memory_format=memory_format_of(input))  # laid out once for both kernels
        grad_weight = ops.depthwise_weight_grad(input, grad, weight.shape[2:], *geometry) if wanted[1] else None
        grad_input = ops.depthwise_input_grad(grad, weight, *geometry, input.shape[2:]) if wanted[0] else None
        return grad_input, grad_weight, None, None, None


def native_fits(input: Tensor, weight: Tensor) -> bool:
    """float32 or bfloat16 CPU tensors of one dtype, one filter per channel, kernels built."""
    return (
        input.device.type == "cpu"
        and input.dtype in (torch.float32, torch.bfloat16)
        and weight.dtype == input.dtype
        and weight.shape[0] == input.shape[1]
        and native.available()
    )


def _conv2d(input: Tensor, weight: Tensor, stride, padding, dilation, groups: int) -> Tensor:
    if native_fits(input, weight):
        return _NativeDepthwiseConv2d.apply(input, weight, list(stride), list(padding), list(dilation))
    padded = pad_input(input, tuple((p, p) for p in padding))
    return _DepthwiseConv2d.apply(padded, weight, stride, dilation)


def one_channel_per_group(call: ConvCall) -> str | None:
    """``None`` where every group holds one input channel, else what depthwise kernels need."""
    if call.weight.shape[1] == 1 and call.groups == call.input.shape[1]:
        return None
    return f"groups == in_channels, but got groups={call.groups}, in_channels={call.input.shape[1]}"


DEPTHWISE = ConvAlgorithm("depthwise", requires=one_channel_per_group, eager=_conv2d)
