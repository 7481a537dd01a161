"""FFT convolution: cross-correlation is a pointwise product in the frequency domain,
``x ⋆ w = IFFT(FFT(x) · conj(FFT(w)))``. Its cost does not grow with the kernel size, so it pays
for large kernels (7×7 and up).

Same contract as :mod:`.gemm`. The transform size equals the zero-padded input, which is enough:
every valid output position ``y <= H - (d(k-1)+1)`` reads ``x[y + i*d]`` without wrapping around.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._utils import pad_input
from . import gemm

__all__ = ["conv2d"]

_FFT_DTYPES = (torch.float32, torch.float64)


def dilate_kernel(weight: Tensor, dilation: tuple[int, int]) -> Tensor:
    """Insert ``d - 1`` zeros between kernel taps: ``(O, C, kH, kW)`` → ``(O, C, d(kH-1)+1, ...)``."""
    if dilation == (1, 1):
        return weight
    o, c, kh, kw = weight.shape
    out = weight.new_zeros(o, c, dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    out[:, :, :: dilation[0], :: dilation[1]] = weight
    return out


def conv2d(
    input: Tensor,
    weight: Tensor,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> Tensor:
    """Same result as :func:`cnnlab.functional.algorithms.gemm.conv2d`, computed with ``torch.fft``.

    Half-precision inputs are transformed in float32 (torch.fft has no bfloat16 kernels on CPU).
    """
    if input.shape[0] == 0:  # MKL rejects empty transforms; an empty batch has nothing to transform
        return gemm.conv2d(input, weight, stride, padding, dilation, groups)
    dtype = input.dtype
    compute = dtype if dtype in _FFT_DTYPES else torch.float32
    x = pad_input(input.to(compute), tuple((p, p) for p in padding))
    w = dilate_kernel(weight.to(compute), dilation)
    n, _, height, width = x.shape
    out_channels, group_channels, kh, kw = w.shape
    size = (height, width)
    x_hat = torch.fft.rfft2(x, s=size).reshape(n, groups, group_channels, height, -1)
    w_hat = torch.fft.rfft2(w, s=size).conj()
    w_hat = w_hat.reshape(groups, out_channels // groups, group_channels, height, -1)
    y_hat = torch.einsum("ngchw,gochw->ngohw", x_hat, w_hat).reshape(n, out_channels, height, -1)
    y = torch.fft.irfft2(y_hat, s=size)
    y = y[:, :, : height - kh + 1 : stride[0], : width - kw + 1 : stride[1]]
    return y.to(dtype).contiguous(memory_format=gemm.memory_format_of(input))
