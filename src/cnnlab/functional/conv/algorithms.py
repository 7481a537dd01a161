"""The table of convolution algorithms: one line per algorithm module's record.

Adding an algorithm is one module that exports a :class:`~.base.ConvAlgorithm` and one line
here; :mod:`.dispatch` decides when it runs (``algorithm=`` names it, ``auto`` may pick it).
"""

from __future__ import annotations

from .base import ConvAlgorithm
from .depthwise import DEPTHWISE
from .direct import DIRECT
from .fft import FFT
from .gemm import GEMM, POINTWISE
from .shift import SHIFT
from .traceable import TRACEABLE
from .triton import TRITON
from .triton_depthwise import TRITON_DEPTHWISE
from .winograd import WINOGRAD

__all__ = ["ALGORITHMS"]

ALGORITHMS: dict[str, ConvAlgorithm] = {
    record.name: record
    for record in (GEMM, POINTWISE, DIRECT, SHIFT, WINOGRAD, FFT, DEPTHWISE, TRACEABLE, TRITON, TRITON_DEPTHWISE)
}
