"""FFT convolution: cross-correlation is a pointwise product in the frequency domain,
``x ⋆ w = IFFT(FFT(x) · conj(FFT(w)))``. Its cost does not grow with the kernel size, so it pays
for large kernels (7×7 and up).

Same contract as every algorithm (:mod:`.base`). The transform size equals the zero-padded input,
which is enough: every valid output position ``y <= H - (d(k-1)+1)`` reads ``x[y + i*d]`` without wrapping around.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..backends import memory_format_of
from . import traceable
from .base import ConvAlgorithm

__all__ = ["FFT", "dilate_kernel"]

_FFT_DTYPES = (torch.float32, torch.float64)


def dilate_kernel(weight: Tensor, dilation: tuple[int, int]) -> Tensor:
    """Insert ``d - 1`` zeros between kernel taps: ``(O, C, kH, kW)`` → ``(O, C, d(kH-1)+1, ...)``.

    Written with ``F.pad`` and reshapes (no in-place writes), so autograd and ``torch.func`` see through it."""
    kh, kw = weight.shape[2:]
    dh, dw = dilation
    if dh > 1:  # (O, C, kH, 1, kW) padded to (O, C, kH, dH, kW): dH - 1 zero rows after each tap row
        weight = F.pad(weight.unsqueeze(3), (0, 0, 0, dh - 1)).flatten(2, 3)[:, :, : dh * (kh - 1) + 1]
    if dw > 1:
        weight = F.pad(weight.unsqueeze(-1), (0, dw - 1)).flatten(-2)[..., : dw * (kw - 1) + 1]
    return weight


def _spectrum(t: Tensor, size) -> Tensor:
    return torch.fft.rfft2(t, s=size)


def _by_frequency(spectrum: Tensor, groups: int, channels_last: bool) -> Tensor:
    """``(N, C, H, W/2+1)`` spectrum → ``(G·F, C/G, N)`` (or ``(G·F, N, C/G)`` with ``channels_last``),
    ``F = H·(W/2+1)`` frequencies: one small matrix per group and frequency, the layout in which
    a convolution is a batched matrix product over channels (one copy)."""
    n, c = spectrum.shape[:2]
    grouped = spectrum.reshape(n, groups, c // groups, -1)  # (N, G, Cg, F)
    by_frequency = grouped.permute(1, 3, 0, 2) if channels_last else grouped.permute(1, 3, 2, 0)
    return by_frequency.reshape(-1, *by_frequency.shape[2:])


def _filter_spectra(w: Tensor, size, groups: int, padding) -> Tensor:
    """Spectra of the filters ``(O, C/G, kH, kW)``, shifted by :func:`_padding_phase`, laid out
    ``(G·F, O/G, C/G)``; built a block of filters at a time, so the spectrum in its first layout
    never exists whole next to the second (with 64→64 filters on a 38² grid each is 25 MB)."""
    out_channels, group_channels = w.shape[:2]
    group_out = out_channels // groups
    frequencies = size[0] * (size[1] // 2 + 1)
    block = max(1, _CHUNK_SPECTRUM // (group_channels * frequencies))
    out = phase = None
    for g in range(groups):
        for start in range(0, group_out, block):
            stop = min(start + block, group_out)
            spectrum = _spectrum(w[g * group_out + start : g * group_out + stop], size)
            if out is None:
                out = spectrum.new_empty(groups, frequencies, group_out, group_channels)
                phase = _padding_phase(size, padding, spectrum)
            out[g, :, start:stop] = spectrum.reshape(stop - start, group_channels, -1).permute(2, 0, 1) * phase
    return out.view(groups * frequencies, group_out, group_channels)


def _to_spatial(products: Tensor, groups: int, size) -> Tensor:
    """``(G·F, C/G, N)`` products → ``(N, C, H, W)`` by the inverse transform."""
    rows, columns = size[0], size[1] // 2 + 1
    _, group_channels, n = products.shape
    spectrum = products.view(groups, rows, columns, group_channels, n).permute(4, 0, 3, 1, 2)
    return torch.fft.irfft2(spectrum.reshape(n, groups * group_channels, rows, columns), s=size)


def _padding_phase(size, padding, like: Tensor) -> Tensor:
    """``exp(2πi (f₀p₀/S₀ + f₁p₁/S₁))`` on the ``(S₀, S₁/2+1)`` rfft grid, flattened to ``(F, 1, 1)``.

    Zero padding by ``p`` on both sides equals padding by ``2p`` at the end (which ``rfft2(s=size)``
    does without a copy) followed by a circular shift by ``p``; in the frequency domain the shift
    is this phase, applied to the filter spectrum instead of the input."""
    rows = torch.arange(size[0], dtype=torch.float64, device=like.device) * (padding[0] / size[0])
    cols = torch.arange(size[1] // 2 + 1, dtype=torch.float64, device=like.device) * (padding[1] / size[1])
    turns = rows[:, None] + cols[None, :]
    return torch.polar(torch.ones_like(turns), 2 * math.pi * turns).to(like.dtype).reshape(-1, 1, 1)


class _FFTConv2d(torch.autograd.Function):
    """FFT convolution that keeps only input and filters for backward (not their complex spectra),
    a chunk of the batch at a time. Spectra are laid out frequency-major, ``(G·F, channels, N)``,
    so each product over channels is one batched matrix multiply (``bmm``), the filter spectra are
    rearranged once per call, and the weight gradient accumulates in place (``baddbmm_``). The
    input is never padded: ``rfft2(s=size)`` pads at the end and a phase on the filter spectrum
    (:func:`_padding_phase`) moves the zeros around.

    - forward ``y = IFFT(FFT(x) · conj(FFT(w_s)))``, cropped to valid positions and strided, with
      ``w_s`` the filters shifted circularly by ``-p``;
    - ``∂x = IFFT(FFT(∂y) · FFT(w_s))`` (circular convolution with ``∂y`` scattered back onto the
      full grid), transposed over channels, cropped to the input;
    - ``∂w = IFFT(Σ_n conj(FFT(∂y)) · FFT(x))`` shifted back by ``p``, cropped to the (dilated)
      kernel support.

    Eager only: under a tracer or ``torch.func`` transform :func:`_traceable_conv2d` runs instead.
    """

    @staticmethod
    def forward(x: Tensor, w: Tensor, stride, padding, groups: int) -> Tensor:
        n = x.shape[0]
        size = tuple(s + 2 * p for s, p in zip(x.shape[2:], padding))
        _, _, kh, kw = w.shape
        w_hat = _filter_spectra(w, size, groups, padding).conj_physical_()  # (G·F, O/G, Cg)
        rows = slice(0, size[0] - kh + 1, stride[0])
        cols = slice(0, size[1] - kw + 1, stride[1])
        out = None
        for part in _batch_chunks(x, size):
            x_hat = _by_frequency(_spectrum(x[part], size), groups, channels_last=False)  # (G·F, Cg, N)
            y = _to_spatial(torch.bmm(w_hat, x_hat), groups, size)[:, :, rows, cols]
            if out is None:
                out = y.new_empty(n, *y.shape[1:])
            out[part] = y
        return out

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, w, stride, padding, groups = inputs
        ctx.save_for_backward(x, w)
        ctx.geometry = (stride, padding, groups)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, w = ctx.saved_tensors
        stride, padding, groups = ctx.geometry
        height, width = x.shape[2:]
        size = tuple(s + 2 * p for s, p in zip(x.shape[2:], padding))
        out_channels, group_channels, kh, kw = w.shape

        def grad_spectra(part: slice) -> Tensor:  # (G·F, O/G, N)
            if stride == (1, 1):  # rfft2 pads ∂y with zeros up to the full grid
                return _by_frequency(_spectrum(grad[part], size), groups, channels_last=False)
            full = grad.new_zeros(part.stop - part.start, out_channels, *size)  # ∂y on every stride-th position
            full[:, :, : size[0] - kh + 1 : stride[0], : size[1] - kw + 1 : stride[1]] = grad[part]
            return _by_frequency(_spectrum(full, size), groups, channels_last=False)

        # Two passes over the batch, so the filter spectra and their gradient are never held together
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            w_hat = _filter_spectra(w, size, groups, padding).transpose(1, 2)  # (G·F, Cg, O/G)
            grad_x = torch.empty_like(x)  # x's memory format
            for part in _batch_chunks(x, size):
                grad_x[part] = _to_spatial(torch.bmm(w_hat, grad_spectra(part)), groups, size)[:, :, :height, :width]
            del w_hat
        if ctx.needs_input_grad[1]:
            grad_w_hat = None  # (G·F, O/G, Cg), summed over the batch
            for part in _batch_chunks(x, size):
                g_conj = grad_spectra(part).conj_physical_()
                x_hat = _by_frequency(_spectrum(x[part], size), groups, channels_last=True)  # (G·F, N, Cg)
                if grad_w_hat is None:
                    grad_w_hat = torch.bmm(g_conj, x_hat)
                else:
                    grad_w_hat.baddbmm_(g_conj, x_hat)
                del g_conj, x_hat
            columns = size[1] // 2 + 1
            grad_w_hat = grad_w_hat.view(groups, size[0] * columns, -1, group_channels)
            grad_w_hat.mul_(_padding_phase(size, padding, grad_w_hat).conj())  # shift back by the padding
            spectrum = grad_w_hat.view(groups, size[0], columns, out_channels // groups, group_channels)
            spectrum = spectrum.permute(0, 3, 4, 1, 2).reshape(out_channels, group_channels, size[0], columns)
            grad_w = torch.fft.irfft2(spectrum, s=size)[:, :, :kh, :kw].contiguous()
        return grad_x, grad_w, None, None, None


# Complex numbers of spectrum per chunk of the batch (and per block of filters). 64→64 7×7 @32²,
# batch 128, 2-core x86 (2026-11-24): 0.5 / 1 / 2 / 4 Mi took 428 / 375-413 / 424-461 / 471 ms
# forward+backward (torch 405-415) at 136-179 / 136-171 / 203-260 / 265-277 MB peak (torch 137-144).
_CHUNK_SPECTRUM = 1024 * 1024


def _batch_chunks(x: Tensor, size) -> list[slice]:
    """Batch chunks whose spectra hold about ``_CHUNK_SPECTRUM`` complex numbers."""
    per_image = x.shape[1] * size[0] * (size[1] // 2 + 1)
    step = max(1, _CHUNK_SPECTRUM // max(per_image, 1))
    return [slice(start, min(start + step, x.shape[0])) for start in range(0, x.shape[0], step)] or [slice(0, 0)]


def _conv2d(input: Tensor, weight: Tensor, stride, padding, dilation, groups: int) -> Tensor:
    """The convolution computed with ``torch.fft``.

    Half-precision inputs are transformed in float32 (torch.fft has no bfloat16 kernels on CPU).
    """
    if input.shape[0] == 0:  # MKL rejects empty transforms; an empty batch has nothing to transform
        return traceable.conv(input, weight, stride, padding, dilation, groups)
    dtype = input.dtype
    compute = dtype if dtype in _FFT_DTYPES else torch.float32
    w = dilate_kernel(weight.to(compute), dilation)
    y = _FFTConv2d.apply(input.to(compute), w, stride, padding, groups)
    return y.to(dtype).contiguous(memory_format=memory_format_of(input))


def _traceable_conv2d(input: Tensor, weight: Tensor, stride, padding, dilation, groups: int) -> Tensor:
    """The traceable form of :func:`_conv2d` (see :mod:`cnnlab.functional._tracing`): the same
    product, ``IFFT(Σ_c FFT(x_pad) · conj(FFT(w)))`` cropped and strided, in differentiable ops
    whose derivatives autograd derives (the spectra are kept for backward, unlike :class:`_FFTConv2d`)."""
    n = input.shape[0]
    if isinstance(n, int) and n == 0:  # MKL rejects empty transforms
        return traceable.conv(input, weight, stride, padding, dilation, groups)
    dtype = input.dtype
    compute = dtype if dtype in _FFT_DTYPES else torch.float32
    w = dilate_kernel(weight.to(compute), dilation)
    out_channels, group_channels, kh, kw = w.shape
    x = F.pad(input.to(compute), [padding[1], padding[1], padding[0], padding[0]])
    size = tuple(x.shape[2:])
    x_hat = _spectrum(x, size)
    x_hat = x_hat.reshape(n, groups, group_channels, *x_hat.shape[2:])
    w_hat = _spectrum(w, size)
    w_hat = w_hat.reshape(groups, out_channels // groups, group_channels, *w_hat.shape[2:])
    y_hat = torch.einsum("ngchw,gochw->ngohw", x_hat, w_hat.conj())
    y = torch.fft.irfft2(y_hat.reshape(n, out_channels, *y_hat.shape[3:]), s=size)
    y = y[:, :, : size[0] - kh + 1 : stride[0], : size[1] - kw + 1 : stride[1]]
    return y.to(dtype).contiguous(memory_format=memory_format_of(input))


FFT = ConvAlgorithm("fft", eager=_conv2d, traceable=_traceable_conv2d)
