"""The one matrix multiply every convolution algorithm goes through.

``matmul_nt(a, b) = a @ bᵀ`` for ``a (M, K)`` and ``b (N, K)``, optionally written into a given
``out``, and ``addmm_nt(acc, a, b)``: ``acc += a @ bᵀ`` in place.

Which GEMM runs depends on the CPU (``docs/benchmarks.md``):

- With AVX-512, for float32 (and bfloat16) outside autograd: oneDNN's matmul primitive
  (``torch.ops.mkldnn._linear_pointwise``, the GEMM behind inductor's CPU ``linear``; a matrix
  multiply, not a convolution). There torch's ``mm`` goes to MKL's ``sgemm``, which on AMD EPYC
  runs its AVX2 path: 8192×2304 @ 2304×256 took 48 ms vs 20 ms through oneDNN (2 cores, 2026-11-24).
- Everywhere else (AVX2-only CPUs, CUDA, float64, autograd recording a graph for double backward):
  ``torch.mm``. On an AVX2-only AMD EPYC (2026-11-29) MKL matched oneDNN on the convolution's
  products and beat it on weight-gradient shapes (``(O × M)·(M × K)`` with a long ``M``: 40–148 vs
  20–100 GFLOP/s), and it writes straight into ``out`` and accumulates with β = 1, so chunked
  convolutions need no copy of each product.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import recording

__all__ = ["addmm_nt", "matmul_nt", "onednn_available"]


def _onednn_linear_dtypes() -> tuple[Any, frozenset[torch.dtype]]:
    """oneDNN's matmul op and the dtypes :func:`matmul_nt` gives it on this CPU: none without
    AVX-512 (there MKL's GEMM is as fast for products, faster for weight gradients, and writes
    into ``out``); with it, each dtype is probed (a CPU that lacks bfloat16 kernels gets "could
    not create a primitive descriptor")."""
    if not torch.backends.mkldnn.is_available() or "AVX512" not in torch.backends.cpu.get_cpu_capability():
        return None, frozenset()
    try:
        op = torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None, frozenset()
    working = set()
    for dtype in (torch.float32, torch.bfloat16):
        probe = torch.arange(1.0, 7.0).view(2, 3).to(dtype)
        try:
            if torch.equal(op(probe, probe, None, "none", [], ""), probe @ probe.t()):
                working.add(dtype)
        except RuntimeError:
            pass
    return (op if working else None), frozenset(working)


_ONEDNN_LINEAR, _ONEDNN_DTYPES = _onednn_linear_dtypes()


def onednn_available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether :func:`matmul_nt` uses oneDNN for ``dtype`` on this machine."""
    return dtype in _ONEDNN_DTYPES


def _matrix_layout(x: Tensor) -> Tensor:
    """``x`` if it is row- or column-major with a valid leading dimension (what oneDNN's memory
    descriptors accept), else a contiguous copy (e.g. size-1 dims with arbitrary strides)."""
    (rows, cols), (row_stride, col_stride) = x.shape, x.stride()
    if (col_stride == 1 and row_stride >= max(cols, 1)) or (row_stride == 1 and col_stride >= max(rows, 1)):
        return x
    return x.contiguous()


def _use_onednn(a: Tensor, b: Tensor) -> bool:
    return (
        a.device.type == "cpu"
        and a.dtype in _ONEDNN_DTYPES
        and a.dtype == b.dtype
        and a.numel() > 0
        and b.numel() > 0
        and not recording(a, b)
    )


def _onednn_nt(a: Tensor, b: Tensor) -> Tensor:
    return _ONEDNN_LINEAR(_matrix_layout(a), _matrix_layout(b), None, "none", [], "")


def matmul_nt(a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    """``a @ bᵀ``: ``a (M, K)``, ``b (N, K)`` → ``(M, N)``, written into ``out`` (any strides) when
    given. Either operand may be a strided view."""
    if _use_onednn(a, b):
        result = _onednn_nt(a, b)
        return result if out is None else out.copy_(result)
    if out is None:
        return torch.matmul(a, b.t())
    if recording(a, b, out):  # out= is not differentiable: an in-place copy is
        return out.copy_(torch.matmul(a, b.t()))
    return torch.mm(a, b.t(), out=out)


def addmm_nt(acc: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``acc += a @ bᵀ`` in place (one GEMM with β = 1 where the GEMM is BLAS's); returns ``acc``."""
    if _use_onednn(a, b):
        return acc.add_(_onednn_nt(a, b))
    return acc.addmm_(a, b.t())
