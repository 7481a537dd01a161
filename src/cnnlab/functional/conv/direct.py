"""Direct convolution on channels-last float32 data by cnnlab's compiled CPU kernels
(``src/cnnlab/csrc/conv.cpp``): each output row accumulates ``Σ_taps A_tap · B_tap`` with the
input read in place (no column matrix, no padded copy), through ATen's batch-reduce GEMM
microkernel; the input gradient scatters ``∂Y · B_tapᵀ`` into the rows of ``∂X``; the weight
gradient sums ``∂Yᵀ · A_tap`` per tap. Threads split output rows (forward), images (input
gradient) and row ranges with their own accumulators (weight gradient).

Double backward (``create_graph=True``) needs products that autograd records: there the
:mod:`.gemm` products run instead.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import native
from .base import ConvAlgorithm, ConvCall, ConvProducts, Geometry
from .gemm import GEMM

__all__ = ["DIRECT"]


def _recording(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _forward(x: Tensor, weight: Tensor, geometry: Geometry, padding, out_size) -> Tensor:
    if _recording(x, weight):
        return GEMM.products.forward(x, weight, geometry, padding, out_size)
    return torch.ops.cnnlab_native.correlate_nhwc(
        x, weight, geometry.stride, padding, geometry.dilation, geometry.groups, out_size
    )


def _input_grad(grad: Tensor, weight: Tensor, geometry: Geometry, padding, input_size) -> Tensor:
    if _recording(grad, weight):
        return GEMM.products.input_grad(grad, weight, geometry, padding, input_size)
    return torch.ops.cnnlab_native.correlate_nhwc_input_grad(
        grad, weight, geometry.stride, padding, geometry.dilation, geometry.groups, input_size
    )


def _weight_grad(x: Tensor, grad: Tensor, geometry: Geometry, weight_shape, padding) -> Tensor:
    if _recording(x, grad):
        return GEMM.products.weight_grad(x, grad, geometry, weight_shape, padding)
    return torch.ops.cnnlab_native.correlate_nhwc_weight_grad(
        x, grad, list(weight_shape), geometry.stride, padding, geometry.dilation, geometry.groups
    )


def _float32_on_cpu(call: ConvCall) -> str | None:
    if call.input.device.type == "cpu" and call.input.dtype == torch.float32 and native.available():
        return None
    return (
        "a float32 CPU tensor and cnnlab's compiled kernels (a C++ compiler; CNNLAB_NATIVE unset), but got "
        f"{call.input.dtype} on {call.input.device}, compiled kernels {'built' if native.available() else 'missing'}"
    )


DIRECT = ConvAlgorithm(
    "direct",
    requires=_float32_on_cpu,
    products=ConvProducts(_forward, _input_grad, _weight_grad),
    compiled=True,
)
