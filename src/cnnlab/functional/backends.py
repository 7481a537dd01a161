"""What the convolution and pooling families share besides shape arithmetic (``_utils``): how a
tensor is laid out, and which backends can run on it. Neither family imports the other; both
import this floor.

- :func:`memory_format_of`: the memory format a result keeps (the input's);
- :func:`triton_available`: whether the Triton kernels run on a tensor (CUDA, or any device under
  ``TRITON_INTERPRET=1``); cnnlab's compiled CPU kernels answer in :mod:`.native`.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

try:
    import triton
except ImportError:  # pragma: no cover - triton is optional
    triton = None

__all__ = ["memory_format_of", "triton_available"]

_INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


def memory_format_of(x: Tensor) -> torch.memory_format:
    """``channels_last`` (4-D) or ``channels_last_3d`` (5-D) when ``x`` is stored that way (and not
    also plainly contiguous), else ``contiguous_format``."""
    channels_last = {4: torch.channels_last, 5: torch.channels_last_3d}.get(x.dim())
    if channels_last is None:
        return torch.contiguous_format
    try:
        stored = x.is_contiguous(memory_format=channels_last) and not x.is_contiguous()
    except RuntimeError:  # vmap's batched tensors cannot answer: they have no layout of their own to keep
        return torch.contiguous_format
    return channels_last if stored else torch.contiguous_format


def triton_available(x: Tensor) -> bool:
    """Whether the Triton kernels can run on ``x``: triton importable and ``x`` on CUDA (or any
    device under the interpreter)."""
    return triton is not None and (x.is_cuda or _INTERPRETED)
