"""Convolution algorithms behind one registry and one contract.

Each entry is ``conv2d(input, weight, stride, padding, dilation, groups) -> Tensor`` taking a
validated, batched 4-D input and symmetric zero ``padding`` (other padding modes and asymmetric
``'same'`` padding are applied before dispatch). Algorithms that only cover some geometries
(``shift``, ``winograd``, ``pointwise``, ``depthwise``, ``triton``) raise ``ValueError`` naming what
they need.

Under a tracer or ``torch.func`` transform every algorithm computes through its traceable form
(:mod:`cnnlab.functional._tracing`): ``traceable`` (slices, ``cat`` and ``matmul``), or for
``fft`` the same spectra product without its custom Function.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

from .._tracing import is_compiling_graph, is_tracing
from . import depthwise, fft, gemm, opaque, shift, traceable, triton_conv, winograd

__all__ = ["CONV2D_ALGORITHMS", "get_conv2d_algorithm", "get_conv_transpose2d", "select_conv2d_algorithm"]


def _pointwise(input: Tensor, weight: Tensor, stride, padding, dilation, groups: int) -> Tensor:
    """1×1 convolution as one GEMM: on channels-last data the input rows already are the columns."""
    if tuple(weight.shape[2:]) != (1, 1) or tuple(padding) != (0, 0):
        raise ValueError(
            "the 'pointwise' algorithm needs a 1×1 kernel and padding=0, but got "
            f"kernel_size={tuple(weight.shape[2:])}, padding={tuple(padding)}"
        )
    return gemm.conv2d(input, weight, stride, padding, dilation, groups)


CONV2D_ALGORITHMS: dict[str, Callable[..., Tensor]] = {
    "gemm": gemm.conv2d,
    "shift": shift.conv2d,
    "winograd": winograd.conv2d,
    "fft": fft.conv2d,
    "depthwise": depthwise.conv2d,
    "pointwise": _pointwise,
    "triton": triton_conv.conv2d,
    "traceable": traceable.conv2d,
}


def select_conv2d_algorithm(
    input: Tensor, weight: Tensor, stride: tuple[int, int], padding: tuple[int, int], groups: int
) -> str:
    """The rule behind ``algorithm="auto"`` (timings: ``docs/benchmarks.md``):

    - ``depthwise`` when every group holds one input channel (``groups == in_channels > 1``): a
      GEMM with a k²-long inner dimension starves the CPU, k² shifted multiply-adds do not;
    - ``triton`` (implicit-GEMM kernels) for every other convolution of a CUDA tensor when
      triton is installed;
    - ``pointwise`` for unpadded 1×1 filters: one GEMM, no column copy on channels-last input;
    - ``fft`` for float32/float64 stride-1 filters of 7×7 and up: its cost does not grow with
      the kernel, and forward+backward took 538 vs 735 ms (64→64 7×7 @32², batch 128), 383 vs
      558 (128→128 7×7 @16²), 203 vs 271 (32→32 9×9 @32²) against ``gemm``, level at 5×5 (2-core
      x86, 2026-11-24). Strided outputs would be computed in full and subsampled, and bfloat16 is
      transformed in float32, so those stay with ``gemm``; dilation counts by the taps, not the span;
    - ``gemm`` (channels-last im2col + GEMM, :mod:`.matmul`) for everything else. ``winograd`` needs 2.25×
      fewer multiplies, and alone it beat ``gemm`` from 64 channels in some runs, but its
      transformed tiles and 16 products are memory passes: up to 3.8× torch's peak memory, and
      the fast model's whole training step got slower with it. ``shift`` (k² passes over the
      output) lost on every 3×3 shape of ``benchmarks/layers.py``. Both stay opt-in.
    """
    if groups > 1 and weight.shape[1] == 1 and input.shape[1] == groups:
        return "depthwise"
    if input.is_cuda and triton_conv.available(input):
        return "triton"
    if (*weight.shape[2:], *padding) == (1, 1, 0, 0):
        return "pointwise"
    if min(weight.shape[2:]) >= 7 and tuple(stride) == (1, 1) and input.dtype in (torch.float32, torch.float64):
        return "fft"
    return "gemm"


def get_conv2d_algorithm(
    name: str, input: Tensor, weight: Tensor, stride: tuple[int, int], padding: tuple[int, int], groups: int
):
    """Look up ``name`` (or resolve ``"auto"``); unknown names list the registered choices. Under a
    tracer or transform, the algorithm's traceable form."""
    if name == "auto":
        name = select_conv2d_algorithm(input, weight, stride, padding, groups)
    if name not in CONV2D_ALGORITHMS:
        raise ValueError(f"algorithm must be 'auto' or one of {sorted(CONV2D_ALGORITHMS)}, but got algorithm={name!r}")
    if is_tracing(input, weight):
        if is_compiling_graph() and _opaque_covers(name, weight, padding, input):
            return functools.partial(opaque.conv2d, algorithm="gemm" if name == "pointwise" else name)
        return fft.traceable_conv2d if name == "fft" else traceable.conv2d
    return CONV2D_ALGORITHMS[name]


def _opaque_covers(name: str, weight: Tensor, padding, input: Tensor) -> bool:
    """Whether ``torch.compile`` can run algorithm ``name`` as :mod:`.opaque` custom ops: those
    with :class:`~.gemm.ConvProducts`, in geometries they cover (explicit ``shift``/``winograd``
    and the depthwise and FFT kernels take the traceable form)."""
    if name == "pointwise":
        return (*weight.shape[2:], *padding) == (1, 1, 0, 0)
    return name == "gemm" or (name == "triton" and input.is_cuda)


def get_conv_transpose2d(input: Tensor, weight: Tensor):
    """The transposed convolution for these tensors: the eager ``gemm`` adjoint, its opaque custom
    op under ``torch.compile``, or the traceable form under other tracers and transforms."""
    if not is_tracing(input, weight):
        return gemm.conv_transpose2d
    return opaque.conv_transpose2d if is_compiling_graph() else traceable.conv_transpose2d
