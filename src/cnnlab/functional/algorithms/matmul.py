"""The one matrix multiply every convolution algorithm goes through.

``matmul_nt(a, b) = a @ bᵀ`` for ``a (M, K)`` and ``b (N, K)``. On the CPU, for float32 (and
bfloat16 where the CPU has AVX-512) outside autograd, it calls oneDNN's matmul primitive
(``torch.ops.mkldnn._linear_pointwise``, the GEMM behind inductor's CPU ``linear``; a matrix
multiply, not a convolution). torch's own
``matmul`` goes to MKL's ``sgemm``, which on this project's AMD EPYC VMs runs its AVX2 path:
8192×2304 @ 2304×256 took 48 ms there vs 20 ms through oneDNN (2 cores, 2026-11-24). Everywhere
else (CUDA, float64, autograd recording a graph for double backward, a torch build without
oneDNN) it is ``torch.matmul``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["matmul_nt", "onednn_available"]


def _onednn_linear_dtypes() -> tuple[Any, frozenset[torch.dtype]]:
    """oneDNN's matmul op and the dtypes it computes correctly on this CPU: bfloat16 needs
    AVX-512 (an AVX2-only CPU gets "could not create a primitive descriptor"), so each is probed."""
    if not torch.backends.mkldnn.is_available():
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


def matmul_nt(a: Tensor, b: Tensor) -> Tensor:
    """``a @ bᵀ``: ``a (M, K)``, ``b (N, K)`` → ``(M, N)``. Either operand may be a strided view."""
    recording = torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)
    if (
        _ONEDNN_LINEAR is not None
        and not recording
        and a.device.type == "cpu"
        and a.dtype in _ONEDNN_DTYPES
        and a.dtype == b.dtype
        and a.numel() > 0
        and b.numel() > 0
    ):
        return _ONEDNN_LINEAR(_matrix_layout(a), _matrix_layout(b), None, "none", [], "")
    return torch.matmul(a, b.t())
