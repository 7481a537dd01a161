"""The one matrix multiply every convolution algorithm goes through.

``matmul_nt(a, b) = a @ bᵀ`` for ``a (M, K)`` and ``b (N, K)``. On the CPU, for float32 and
bfloat16 outside autograd, it calls oneDNN's matmul primitive (``torch.ops.mkldnn._linear_pointwise``,
the GEMM behind inductor's CPU ``linear``; a matrix multiply, not a convolution). torch's own
``matmul`` goes to MKL's ``sgemm``, which on this project's AMD EPYC VMs runs its AVX2 path:
8192×2304 @ 2304×256 took 48 ms there vs 20 ms through oneDNN (2 cores, 2026-11-24). Everywhere
else (CUDA, float64, autograd recording a graph for double backward, a torch build without
oneDNN) it is ``torch.matmul``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["matmul_nt", "onednn_available"]

_ONEDNN_DTYPES = (torch.float32, torch.bfloat16)


def _find_onednn_linear():
    try:
        op = torch.ops.mkldnn._linear_pointwise
        probe = torch.ones(2, 3)
        if not torch.equal(op(probe, probe, None, "none", [], ""), probe @ probe.t()):
            return None
        return op
    except (AttributeError, RuntimeError):
        return None


_ONEDNN_LINEAR = _find_onednn_linear() if torch.backends.mkldnn.is_available() else None


def onednn_available() -> bool:
    """Whether :func:`matmul_nt` can use oneDNN on this build."""
    return _ONEDNN_LINEAR is not None


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
