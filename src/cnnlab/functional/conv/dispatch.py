"""The one place that decides which implementation computes a convolution.

From the algorithm's name (or ``auto``'s rule), the device, dtype and geometry, and the tracer
state (never tensor values), :func:`convolve` and :func:`convolve_transpose` run one of:

- the eager kernel: the record's own ``eager`` function, or its ``products`` through
  :class:`~.base.ChannelsLastConv2d`;
- the opaque ``cnnlab::`` custom ops (:mod:`.opaque`) under ``torch.compile``, for records
  marked ``compiled``;
- the traceable form (:mod:`.traceable`, or the record's own) under every other tracer and
  ``torch.func`` transform, and on meta/fake tensors (:mod:`cnnlab.functional._tracing`);
- Triton kernels for CUDA tensors (records ``triton`` and ``triton_depthwise``);
- cnnlab's compiled CPU kernels (:mod:`cnnlab.functional.native`, record ``direct``) for float32
  CPU tensors (and bfloat16 ones on CPUs with AVX512-BF16), where they were built.

Inputs arrive validated, batched and padded from :mod:`.api`. 1-D convolutions arrive as 2-D
ones over a height-1 image; 3-D ones run the compiled kernels (``direct``) or the N-d traceable
form, the two algorithms that cover them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import native
from .._tracing import is_compiling_graph, is_tracing
from .._utils import conv_transpose_output_size
from ..backends import triton_available
from ..depthwise import native_fits as depthwise_native_fits
from . import opaque, traceable
from .algorithms import ALGORITHMS
from .base import ChannelsLastConv2d, ChannelsLastConvTranspose2d, ConvAlgorithm, ConvCall, Geometry, output_size

__all__ = [
    "ALGORITHMS",
    "check_algorithm",
    "convolve",
    "convolve_transpose",
    "resolve",
    "select_algorithm",
    "sums_in_float32",
]

_FFT_DTYPES = (torch.float32, torch.float64)
_DIRECT_MIN_CHANNELS = 4  # input channels per group below which the direct kernel's input gradient is too thin
_N_D = ("direct", "traceable")  # the algorithms that cover 3-D convolutions


def _direct_fits(call: ConvCall, min_channels: int = _DIRECT_MIN_CHANNELS) -> bool:
    """A convolution the compiled kernels cover (float32, or bfloat16 where the CPU has
    AVX512-BF16), with enough channels per group, or any number where no input gradient is wanted
    (an RGB stem) and the tile kernels run (they gather a thin input's taps for the weight gradient:
    3→24 @32² forward+backward 4.5 ms against 8.4 on ``gemm``, bfloat16 8.0 against 17.9)."""
    if not call.input.requires_grad and native.bfloat16_available():
        min_channels = 1
    return call.weight.shape[1] >= min_channels and ALGORITHMS["direct"].requires(call) is None


def _gemm_wins(call: ConvCall) -> bool:
    """Where ``gemm`` beat ``direct`` on the CPU kind it was measured on: on an AMX Xeon, deep
    layers (256 input channels per group and up, filters wider than 1×1) with few outputs, at most
    14×14 in float32 (resnet18's 256→256 @14², 512 @7², CIFAR's 256 @8², 512 @4²) and 7×7 in
    bfloat16 (resnet18's layer4), where the AMX kernels' blocks of 32 positions are mostly padding."""
    if "AMX" not in native.instruction_sets() or call.pointwise or call.weight.shape[1] < 256:
        return False
    geometry = Geometry.of(call.weight, call.stride, call.dilation, call.groups)
    outputs = math.prod(output_size(call.input.shape[2:], geometry, call.padding))
    return outputs <= (49 if call.input.dtype == torch.bfloat16 else 196)


def select_algorithm(call: ConvCall) -> str:
    """The rule behind ``algorithm="auto"``; its measured reasons are in ``docs/benchmarks.md``
    ("Which algorithm auto picks")."""
    if call.input.dim() == 5:  # 3-D: the compiled kernels beat the traceable form at any channel count
        return "direct" if _direct_fits(call, min_channels=1) else "traceable"
    if call.depthwise:
        return "triton_depthwise" if triton_available(call.input) else "depthwise"
    if call.input.is_cuda and triton_available(call.input):
        return "triton"
    if _direct_fits(call) and not _gemm_wins(call):  # 1×1 included: 32→64 @16² f+b 1.7 ms, 5.8 on ``pointwise``
        return "direct"
    if call.pointwise:
        return "pointwise"
    if min(call.kernel) >= 7 and call.stride == (1, 1) and call.input.dtype in _FFT_DTYPES:
        return "fft"
    return "gemm"


def sums_in_float32(input: Tensor, weight: Tensor, groups: int, algorithm: str) -> bool:
    """Whether what runs for this grouped half-precision convolution sums its products in float32 and
    rounds once by itself (cnnlab's compiled depthwise kernels), so that the caller need not compute
    it in float32 (three dtype copies, more than the kernel's own time for a bfloat16 depthwise
    layer); elsewhere the group and tap parts would be summed in half precision."""
    if algorithm not in ("auto", "depthwise") or input.dim() != 4 or is_tracing(input, weight):
        return False
    return groups == input.shape[1] > 1 and depthwise_native_fits(input, weight)


def check_algorithm(algorithm: str, spatial_dims: int, op: str) -> None:
    """``ValueError`` naming ``op`` and listing the names allowed unless ``algorithm`` is ``auto`` or
    a registered algorithm covering ``spatial_dims``-D convolutions (1-D ones run as 2-D)."""
    names = sorted(ALGORITHMS) if spatial_dims < 3 else list(_N_D)
    if algorithm != "auto" and algorithm not in names:
        raise ValueError(f"{op}: algorithm must be 'auto' or one of {names}, but got algorithm={algorithm!r}")


def resolve(algorithm: str, call: ConvCall) -> ConvAlgorithm:
    """The record for ``algorithm`` (``auto`` resolved) that covers ``call``; ``ValueError`` for an
    unknown name (listing the registered ones) or a geometry the algorithm does not cover."""
    spatial_dims = call.input.dim() - 2
    check_algorithm(algorithm, spatial_dims, f"conv{spatial_dims}d")
    if algorithm == "auto":
        algorithm = select_algorithm(call)
    record = ALGORITHMS[algorithm]
    requirement = record.requires(call)
    if requirement is not None:
        raise ValueError(f"the {record.name!r} algorithm needs {requirement}")
    return record


def convolve(
    input: Tensor, weight: Tensor, stride, padding, dilation, groups: int, algorithm: str = "auto", bias=None
) -> Tensor:
    """Cross-correlation of a batched ``(N, C, *S)`` input with ``(O, C/G, *k)`` filters and
    symmetric zero ``padding``, plus ``bias`` ``(O,)`` where given (inside the kernel of a record
    that ``fuses_bias``), by the implementation this module picks → ``(N, O, *S_out)`` in the
    input's memory format."""
    call = ConvCall(input, weight, tuple(stride), tuple(padding), tuple(dilation), groups)
    record = resolve(algorithm, call)
    if is_tracing(input, weight, *([] if bias is None else [bias])):
        if record.compiled and is_compiling_graph() and input.dim() == 4:
            out = opaque.conv2d(call, record.name)
        else:
            out = (record.traceable or traceable.conv)(*call)
    elif record.fuses_bias:
        return record.eager(*call, bias)
    elif record.eager is not None:
        out = record.eager(*call)
    else:
        out = ChannelsLastConv2d.apply(*call, record.products)
    return out if bias is None else out + bias.view(1, -1, *[1] * (out.dim() - 2))


def convolve_transpose(
    input: Tensor, weight: Tensor, stride, padding, output_padding, dilation, groups: int, algorithm: str = "gemm"
) -> Tensor:
    """The adjoint of :func:`convolve` (``(N, C, *S)`` with filters ``(C, O/G, *k)``): the input
    gradient of the convolution, from the products of ``algorithm`` (``gemm``; ``direct`` or, on
    CUDA, ``triton`` by name: the direct kernels' scatter lost to ``gemm`` on the 2×2 stride-2
    upsampling of ``benchmarks/layers.py``, docs/benchmarks.md); under tracers the zero-stuffed
    traceable form."""
    if input.dim() != 4:  # 3-D: the N-d traceable form, in eager mode too
        return traceable.conv_transpose(input, weight, stride, padding, output_padding, dilation, groups)
    record = resolve(algorithm, ConvCall(input, weight, tuple(stride), tuple(padding), tuple(dilation), groups))
    out_size = tuple(
        conv_transpose_output_size(*sizes)
        for sizes in zip(input.shape[2:], weight.shape[2:], stride, padding, output_padding, dilation)
    )
    if is_tracing(input, weight):
        if is_compiling_graph():
            return opaque.conv_transpose2d(input, weight, stride, padding, dilation, groups, out_size, record.name)
        return traceable.conv_transpose(input, weight, stride, padding, output_padding, dilation, groups)
    return ChannelsLastConvTranspose2d.apply(
        input, weight, stride, padding, dilation, groups, out_size, record.products
    )
