"""Direct convolution of float32 CPU tensors by cnnlab's compiled kernels
(``src/cnnlab/csrc/correlate.cpp``): each output row accumulates ``Σ_taps A_tap · B_tap`` with the
input read in place (no column matrix, no padded copy), through ATen's batch-reduce GEMM
microkernel; the input gradient scatters ``∂Y · B_tapᵀ`` into the rows of ``∂X``; the weight
gradient sums ``∂Yᵀ · A_tap`` per tap. Threads split output rows (forward), images (input
gradient) and row ranges with their own accumulators (weight gradient).

Channels-last input runs the channels-last kernels, 2-D (NHWC) and 3-D (NDHWC) alike (and as
opaque custom ops under ``torch.compile``, 2-D). Contiguous (NCHW) 2-D input with stride 1 along
W and rows of at least ``_NCHW_MIN_ROW`` outputs runs the NCHW kernels, which need no layout copy;
shorter rows make their products too thin (256→256 3×3 @8², batch 128: 1.60× torch's
forward+backward in NCHW against 1.2× through the NHWC kernels; at 32² and 16² NCHW took
0.76× and 0.98×), and they take the channels-last kernels too, as do contiguous 3-D inputs. So do
all contiguous inputs where the channels-last products run on the AVX2 tiles
(:func:`~cnnlab.functional.native.float32_kernels`): the NCHW kernels took 1.3–2.5× as long as the
channels-last ones there (AMD EPYC Zen 3, the ``fast`` model's layers, batch 128), far more than the
two layout copies.

Double backward (``create_graph=True``) needs products that autograd records: there the
traceable form (eager) or the :mod:`.gemm` products (the opaque ops, transposed convolutions) run
instead.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import torch
from torch import Tensor

from .. import native
from .._tracing import KernelConv, recorded_grads
from ..backends import memory_format_of
from . import traceable
from .base import (
    ConvAlgorithm,
    ConvCall,
    ConvProducts,
    Geometry,
    nhwc,
    output_size,
    recording,
    to_nchw,
)
from .gemm import GEMM

__all__ = ["DIRECT"]


def _forward(x: Tensor, weight: Tensor, geometry: Geometry, padding, out_size) -> Tensor:
    if recording(x, weight):
        return GEMM.products.forward(x, weight, geometry, padding, out_size)
    return torch.ops.cnnlab_native.correlate_nhwc(
        x, weight, geometry.stride, padding, geometry.dilation, geometry.groups, out_size
    )


def _input_grad(grad: Tensor, weight: Tensor, geometry: Geometry, padding, input_size) -> Tensor:
    if recording(grad, weight):
        return GEMM.products.input_grad(grad, weight, geometry, padding, input_size)
    return torch.ops.cnnlab_native.correlate_nhwc_input_grad(
        grad, weight, geometry.stride, padding, geometry.dilation, geometry.groups, input_size
    )


def _weight_grad(x: Tensor, grad: Tensor, geometry: Geometry, weight_shape, padding) -> Tensor:
    if recording(x, grad):
        return GEMM.products.weight_grad(x, grad, geometry, weight_shape, padding)
    return torch.ops.cnnlab_native.correlate_nhwc_weight_grad(
        x, grad, list(weight_shape), geometry.stride, padding, geometry.dilation, geometry.groups
    )


_NCHW_MIN_ROW = 16


class _Layout(NamedTuple):
    """One layout's three kernels, and how tensors get into and out of it."""

    forward: Callable
    input_grad: Callable
    weight_grad: Callable
    to_kernel: Callable[[Tensor], Tensor]  # (N, C, *S) → what the kernels take
    from_kernel: Callable[[Tensor, torch.memory_format], Tensor]  # their result → (N, C, *S) in a format


def _layout(nchw: bool) -> _Layout:
    ops = torch.ops.cnnlab_native
    if nchw:
        return _Layout(ops.correlate_nchw, ops.correlate_nchw_input_grad, ops.correlate_nchw_weight_grad,
                       Tensor.contiguous, lambda out, _: out)  # fmt: skip
    return _Layout(ops.correlate_nhwc, ops.correlate_nhwc_input_grad, ops.correlate_nhwc_weight_grad, nhwc, to_nchw)


class _DirectConv(KernelConv):
    """The compiled kernels as a convolution: the NCHW ones (``nchw=True``, no layout copy) or the
    channels-last ones (2-D and 3-D; contiguous input pays a copy each way). Under
    ``create_graph`` the backward differentiates the traceable form instead (it records its ops)."""

    @staticmethod
    def forward(input: Tensor, weight: Tensor, stride, padding, dilation, groups: int, nchw: bool) -> Tensor:
        out_size = output_size(input.shape[2:], Geometry.of(weight, stride, dilation, groups), padding)
        kernels = _layout(nchw)
        out = kernels.forward(kernels.to_kernel(input), weight, stride, padding, dilation, groups, out_size)
        return kernels.from_kernel(out, memory_format_of(input))

    @staticmethod
    def backward(ctx, grad: Tensor):
        input, weight = ctx.saved_tensors
        stride, padding, dilation, groups, nchw = ctx.arguments
        wanted = ctx.needs_input_grad[:2]
        if torch.is_grad_enabled():  # create_graph: differentiate the recording traceable form
            forward = partial(traceable.conv, stride=stride, padding=padding, dilation=dilation, groups=groups)
            grads = recorded_grads(forward, (input, weight), grad, wanted)
            return *grads, None, None, None, None, None
        kernels = _layout(nchw)
        grad = kernels.to_kernel(grad)
        grad_input = grad_weight = None
        # weight gradient first: a channels-last input copy is gone before the input gradient's buffers exist
        if wanted[1]:
            grad_weight = kernels.weight_grad(
                kernels.to_kernel(input), grad, list(weight.shape), stride, padding, dilation, groups
            )
        if wanted[0]:
            grad_input = kernels.input_grad(grad, weight, stride, padding, dilation, groups, list(input.shape[2:]))
            del grad
            grad_input = kernels.from_kernel(grad_input, memory_format_of(input))
        return grad_input, grad_weight, None, None, None, None, None


def _convolve(input: Tensor, weight: Tensor, stride, padding, dilation, groups: int) -> Tensor:
    """NCHW kernels for contiguous 2-D input with stride 1 along W and long enough rows, except on
    CPUs with the AVX2 tiles; else the channels-last ones."""
    geometry = Geometry.of(weight, stride, dilation, groups)
    out_width = output_size(input.shape[2:], geometry, padding)[-1]
    nchw = input.dim() == 4 and input.dtype == torch.float32  # bfloat16 has channels-last kernels only
    nchw = nchw and memory_format_of(input) == torch.contiguous_format and input.is_contiguous()
    nchw = nchw and stride[1] == 1 and out_width >= _NCHW_MIN_ROW and native.float32_kernels() != "avx2"
    return _DirectConv.apply(input, weight, list(stride), list(padding), list(dilation), groups, nchw)


def _covered(call: ConvCall) -> str | None:
    """float32 CPU tensors, and bfloat16 ones of 2-D convolutions on CPUs with AVX512-BF16."""
    dtype, cpu = call.input.dtype, call.input.device.type == "cpu"
    bfloat16 = dtype == torch.bfloat16 and call.input.dim() == 4 and native.bfloat16_available()
    if cpu and call.weight.dtype == dtype and native.available() and (dtype == torch.float32 or bfloat16):
        return None
    return (
        "a float32 CPU tensor (or bfloat16, 2-D, on a CPU with AVX512-BF16) and cnnlab's compiled kernels (a C++ "
        f"compiler; CNNLAB_NATIVE unset), but got {dtype} {call.input.dim() - 2}-D on {call.input.device}, "
        f"compiled kernels {'built' if native.available() else 'missing'}"
    )


_PRODUCTS = ConvProducts(_forward, _input_grad, _weight_grad)

DIRECT = ConvAlgorithm("direct", requires=_covered, products=_PRODUCTS, eager=_convolve, compiled=True)
