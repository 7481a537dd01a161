"""Convolution algorithms behind one registry and one contract.

Each entry is ``conv2d(input, weight, stride, padding, dilation, groups) -> Tensor`` taking a
validated, batched 4-D input and symmetric zero ``padding`` (other padding modes and asymmetric
``'same'`` padding are applied before dispatch).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from . import depthwise, fft, gemm

__all__ = ["CONV2D_ALGORITHMS", "get_conv2d_algorithm", "select_conv2d_algorithm"]

CONV2D_ALGORITHMS: dict[str, Callable[..., Tensor]] = {
    "gemm": gemm.conv2d,
    "fft": fft.conv2d,
    "depthwise": depthwise.conv2d,
}


def select_conv2d_algorithm(input: Tensor, weight: Tensor, stride: tuple[int, int], groups: int) -> str:
    """The rule behind ``algorithm="auto"``:

    - ``depthwise`` when every group holds one input channel (``groups == in_channels > 1``): a
      GEMM with a k²-long inner dimension is ~25× slower than torch there, k² shifted
      multiply-adds are not (``benchmarks/layers.py``, depthwise row);
    - ``gemm`` (im2col + GEMM) for everything else.

    FFT is exact but only pays for large kernels at stride 1; it stays opt-in (``algorithm="fft"``
    or ``FFTConv2d``) until the CPU benchmark shows it faster than ``gemm``.
    """
    if groups > 1 and weight.shape[1] == 1 and input.shape[1] == groups:
        return "depthwise"
    return "gemm"


def get_conv2d_algorithm(name: str, input: Tensor, weight: Tensor, stride: tuple[int, int], groups: int):
    """Look up ``name`` (or resolve ``"auto"``); unknown names list the registered choices."""
    if name == "auto":
        name = select_conv2d_algorithm(input, weight, stride, groups)
    try:
        return CONV2D_ALGORITHMS[name]
    except KeyError:
        raise ValueError(
            f"algorithm must be 'auto' or one of {sorted(CONV2D_ALGORITHMS)}, but got algorithm={name!r}"
        ) from None
