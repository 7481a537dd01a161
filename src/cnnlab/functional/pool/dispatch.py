"""The one place that decides how a pooling op computes.

Each pooling module describes an op by its :class:`PoolKernels` (the eager kernel, its
traceable form, a Triton kernel where one exists) and calls :func:`run`, which picks from the
tracer state and the device, never from tensor values:

- the traceable form (reductions over window views, :mod:`.traceable`) under ``torch.export``,
  ``jit.trace``, the ``torch.func`` transforms, on meta/fake tensors
  (:mod:`cnnlab.functional._tracing`), and under ``torch.compile`` where no compiled kernel runs;
- the Triton kernel for CUDA tensors (or any tensor under ``TRITON_INTERPRET=1``);
- cnnlab's compiled kernel for floating-point CPU tensors, where one exists, was built and takes
  the call (``native_takes``: shapes, dtypes and arguments)
  (:mod:`cnnlab.functional.native`), in eager mode and under ``torch.compile`` alike: inductor
  calls the ``cnnlab_native`` op (its fake implementation gives the output's shape and strides)
  and traces the ``autograd.Function`` around it for the backward. (The traceable form there cost
  the ``fast`` model a third of its compiled step: it made inductor store the pools' outputs
  contiguous, and every convolution after a pool copied its input and gradient to channels-last.)
- the eager kernel (Python, from tensor primitives) everywhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from .. import native
from .._tracing import is_compiling_graph, is_tracing
from ..backends import triton_available

__all__ = ["PoolKernels", "run"]


@dataclass(frozen=True)
class PoolKernels:
    """The implementations of one pooling op, all called as ``kernel(x, *args)`` with a validated
    batched ``x``. ``traceable=None``: the eager kernel is itself traceable (the 3-D pools)."""

    eager: Callable
    traceable: Callable | None = None
    triton: Callable | None = None
    native: Callable | None = None
    native_takes: Callable[..., bool] | None = None  # (x, *args) → whether ``native`` serves this call


def run(kernels: PoolKernels, x: Tensor, *args):
    """Compute ``kernels`` on ``x`` by the implementation the module docstring's rule picks."""
    native_fits = (
        kernels.native is not None
        and x.device.type == "cpu"
        and x.dtype.is_floating_point
        and (kernels.native_takes is None or kernels.native_takes(x, *args))
    )
    if is_tracing(x) and not (native_fits and is_compiling_graph() and native.available()):
        return (kernels.traceable or kernels.eager)(x, *args)
    if kernels.triton is not None and triton_available(x):
        return kernels.triton(x, *args)
    if native_fits and native.available():
        return kernels.native(x, *args)
    return kernels.eager(x, *args)
