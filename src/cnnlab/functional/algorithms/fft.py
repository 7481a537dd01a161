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


def _spectrum(t: Tensor, size) -> Tensor:
    return torch.fft.rfft2(t, s=size)


def _correlate(x: Tensor, w_hat: Tensor, groups: int, size) -> Tensor:
    """Circular cross-correlation of ``x (N, C, H, W)`` with filters given by their conjugated
    spectra ``w_hat (G, O/G, C/G, H, W/2+1)`` → ``(N, O, H, W)``."""
    n = x.shape[0]
    x_hat = _spectrum(x, size).reshape(n, groups, w_hat.shape[2], size[0], -1)
    y_hat = torch.einsum("ngchw,gochw->ngohw", x_hat, w_hat).reshape(n, -1, size[0], x_hat.shape[-1])
    return torch.fft.irfft2(y_hat, s=size)


class _FFTConv2d(torch.autograd.Function):
    """FFT convolution that keeps only input and filters for backward (not their complex spectra,
    which took peak memory to 2.4× torch's at 7×7), a chunk of the batch at a time:

    - forward ``y = IFFT(FFT(x) · conj(FFT(w)))``, cropped to valid positions and strided;
    - ``∂x = IFFT(FFT(∂y) · FFT(w))`` (circular convolution with ``∂y`` scattered back onto the
      full grid), transposed over channels;
    - ``∂w = IFFT(Σ_n conj(FFT(∂y)) · FFT(x))``, cropped to the (dilated) kernel support.
    """

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, stride, padding, groups: int) -> Tensor:
        n = x.shape[0]
        height, width = (size + 2 * p for size, p in zip(x.shape[2:], padding))
        out_channels, group_channels, kh, kw = w.shape
        size = (height, width)
        w_hat = _spectrum(w, size).conj().reshape(groups, out_channels // groups, group_channels, height, -1)
        rows = slice(0, height - kh + 1, stride[0])
        cols = slice(0, width - kw + 1, stride[1])
        out = None
        for part in _batch_chunks(x):
            y = _correlate(_pad(x[part], padding), w_hat, groups, size)[:, :, rows, cols]
            if out is None:
                out = y.new_empty(n, *y.shape[1:])
            out[part] = y
        ctx.save_for_backward(x, w)
        ctx.geometry = (stride, padding, groups)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, w = ctx.saved_tensors
        stride, padding, groups = ctx.geometry
        channels = x.shape[1]
        height, width = (size + 2 * p for size, p in zip(x.shape[2:], padding))
        out_channels, group_channels, kh, kw = w.shape
        size, group_out = (height, width), out_channels // groups
        w_hat = _spectrum(w, size).reshape(groups, group_out, group_channels, height, -1)
        spectrum_shape = (groups, group_out, height, w_hat.shape[-1])
        grad_x = x.new_empty(x.shape) if ctx.needs_input_grad[0] else None
        grad_w_hat = None
        for part in _batch_chunks(x):
            full = grad.new_zeros(part.stop - part.start, out_channels, height, width)
            full[:, :, : height - kh + 1 : stride[0], : width - kw + 1 : stride[1]] = grad[part]
            g_hat = _spectrum(full, size).reshape(-1, *spectrum_shape)
            del full
            if grad_x is not None:
                x_hat = torch.einsum("ngohw,gochw->ngchw", g_hat, w_hat).reshape(-1, channels, height, w_hat.shape[-1])
                full_grad = torch.fft.irfft2(x_hat, s=size)
                grad_x[part] = full_grad[:, :, padding[0] : height - padding[0], padding[1] : width - padding[1]]
            if ctx.needs_input_grad[1]:
                x_hat = _spectrum(_pad(x[part], padding), size).reshape(
                    -1, groups, group_channels, height, w_hat.shape[-1]
                )
                term = torch.einsum("ngohw,ngchw->gochw", g_hat.conj(), x_hat)
                grad_w_hat = term if grad_w_hat is None else grad_w_hat.add_(term)
        grad_w = None
        if grad_w_hat is not None:
            grad_w = torch.fft.irfft2(grad_w_hat.reshape(out_channels, group_channels, height, -1), s=size)
            grad_w = grad_w[:, :, :kh, :kw].contiguous()
        return grad_x, grad_w, None, None, None


def _pad(x: Tensor, padding) -> Tensor:
    return pad_input(x, tuple((p, p) for p in padding))


# About 2 Mi complex numbers of spectrum per chunk of the batch: 64→64 7×7 @32², batch 128 took
# 752 / 529 / 402 ms forward+backward at 0.5 / 1 / 2 Mi (peak memory 1.86 / 1.95 / 2.19× torch's).
def _batch_chunks(x: Tensor) -> list[slice]:
    per_image = x.shape[1] * x.shape[2] * (x.shape[3] // 2 + 1)  # of the unpadded input: close enough
    step = max(1, (2 * 1024 * 1024) // max(per_image, 1))
    return [slice(start, min(start + step, x.shape[0])) for start in range(0, x.shape[0], step)] or [slice(0, 0)]


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
    w = dilate_kernel(weight.to(compute), dilation)
    y = _FFTConv2d.apply(input.to(compute), w, stride, padding, groups)
    return y.to(dtype).contiguous(memory_format=gemm.memory_format_of(input))
