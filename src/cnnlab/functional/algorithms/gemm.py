"""im2col + GEMM convolution.

``im2col`` gathers every receptive field of the padded input into a column (one strided copy),
one grouped matrix multiply applies all filters, and ``col2im`` (its adjoint: ``k²`` strided
adds) scatters columns back, which is both the input gradient of the convolution and the forward
of the transposed convolution.

Contract (shared by every algorithm): 4-D batched input ``(N, C, H, W)`` already validated;
``padding`` is symmetric zero padding per dimension, applied here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .._utils import output_size_unpadded, pad_input

__all__ = ["col2im", "conv2d", "conv_transpose2d", "im2col"]


def im2col(padded: Tensor, kernel_size, stride, dilation, groups: int) -> Tensor:
    """``(N, C, H, W)`` → columns ``(groups, C/groups·kH·kW, N·H_out·W_out)``.

    Column ``(n, y, x)`` holds the receptive field of output ``(y, x)`` of image ``n``. Batch and
    positions share one axis, so every GEMM below is a single large one (not ``N`` small ones
    followed by a reduction). Built as an ``as_strided`` view that one ``reshape`` materialises:
    about 1.6× faster than ``F.unfold`` (64→64 3×3 @32², batch 128: 83 vs 131 ms, 2-core x86,
    2026-11-23).
    """
    n, c, height, width = padded.shape
    oh, ow = output_size_unpadded((height, width), kernel_size, stride, dilation)
    sn, sc, sh, sw = padded.stride()
    windows = padded.as_strided(
        (c, *kernel_size, n, oh, ow),
        (sc, sh * dilation[0], sw * dilation[1], sn, sh * stride[0], sw * stride[1]),
        padded.storage_offset(),
    )
    return windows.reshape(groups, c // groups * kernel_size[0] * kernel_size[1], n * oh * ow)


def col2im(cols: Tensor, batch: int, padded_size, kernel_size, stride, dilation) -> Tensor:
    """Adjoint of :func:`im2col`: columns ``(groups, C/groups·kH·kW, N·H_out·W_out)`` →
    ``(N, C, H, W)``, summing where windows overlap. One strided add per kernel tap (about 2×
    faster than ``F.fold``)."""
    kh, kw = kernel_size
    oh, ow = output_size_unpadded(padded_size, kernel_size, stride, dilation)
    channels = cols.shape[0] * cols.shape[1] // (kh * kw)
    taps = cols.reshape(channels, kh, kw, batch, oh, ow).permute(3, 0, 1, 2, 4, 5)
    out = cols.new_zeros(batch, channels, *padded_size)
    for i in range(kh):
        for j in range(kw):
            top, left = i * dilation[0], j * dilation[1]
            bottom, right = top + stride[0] * (oh - 1) + 1, left + stride[1] * (ow - 1) + 1
            out[:, :, top : bottom : stride[0], left : right : stride[1]] += taps[:, :, i, j]
    return out


def _to_batch_first(y: Tensor, batch: int, size) -> Tensor:
    """``(groups, C_g, N·H·W)`` → ``(N, groups·C_g, H, W)``."""
    return y.reshape(y.shape[0] * y.shape[1], batch, *size).transpose(0, 1)


def _to_group_first(x: Tensor, groups: int) -> Tensor:
    """``(N, C, H, W)`` → ``(groups, C/groups, N·H·W)`` (a copy)."""
    return x.transpose(0, 1).reshape(groups, x.shape[1] // groups, -1)


# Columns per GEMM: the batch is processed in chunks of about this many output positions, so
# the column buffer stays cache-sized and is never held for backward. One 576×131072 column
# matrix (64→64 3×3 @32², batch 128) took 147 ms to multiply vs 67 ms as 128 per-image GEMMs
# (2-core x86, 2026-11-23). Sweeping this constant over 512..16384 (forward+backward ratio to
# torch on the 3×3 shapes of benchmarks/layers.py, batch 128) put 1024–4096 in front and 8192+
# clearly behind; the differences inside that band were within this VM's run-to-run noise.
_CHUNK_COLUMNS = 2048


def _chunks(batch: int, positions: int) -> list[slice]:
    step = max(1, _CHUNK_COLUMNS // max(positions, 1))
    return [slice(start, min(start + step, batch)) for start in range(0, batch, step)]


class _Im2colConv2d(torch.autograd.Function):
    """``out = W · im2col(x)``, a chunk of the batch at a time, with a hand-written backward that
    rebuilds each chunk's columns instead of keeping them: ``∂W = Σ ∂out · colsᵀ`` and
    ``∂x = col2im(Wᵀ · ∂out)``. Under ``create_graph`` the backward is built from differentiable
    ops on the whole batch, so double backward works.
    """

    @staticmethod
    def forward(ctx, padded: Tensor, weight: Tensor, stride, dilation, groups: int) -> Tensor:
        n = padded.shape[0]
        out_channels, _, kh, kw = weight.shape
        size = output_size_unpadded(padded.shape[2:], (kh, kw), stride, dilation)
        w = weight.reshape(groups, out_channels // groups, -1)
        out = torch.empty(
            n, out_channels, *size, dtype=padded.dtype, device=padded.device, memory_format=_memory_format(padded)
        )
        for part in _chunks(n, size[0] * size[1]):
            cols = im2col(padded[part], (kh, kw), stride, dilation, groups)
            out[part] = _to_batch_first(torch.matmul(w, cols), part.stop - part.start, size)
        ctx.save_for_backward(padded, weight)
        ctx.geometry = (stride, dilation, groups)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        padded, weight = ctx.saved_tensors
        stride, dilation, groups = ctx.geometry
        out_channels, _, kh, kw = weight.shape
        w = weight.reshape(groups, out_channels // groups, -1)
        need_input, need_weight = ctx.needs_input_grad[:2]
        if torch.is_grad_enabled():  # create_graph: differentiable ops over the whole batch
            grad = _to_group_first(grad_out, groups)
            grad_input = grad_weight = None
            if need_input:
                cols = torch.matmul(w.transpose(1, 2), grad)
                grad_input = col2im(cols, padded.shape[0], padded.shape[2:], (kh, kw), stride, dilation)
            if need_weight:
                cols = im2col(padded, (kh, kw), stride, dilation, groups)
                grad_weight = torch.matmul(grad, cols.transpose(1, 2)).view_as(weight)
            return grad_input, grad_weight, None, None, None
        grad_input = torch.empty_like(padded) if need_input else None
        grad_weight = torch.zeros_like(w) if need_weight else None
        for part in _chunks(padded.shape[0], grad_out.shape[2] * grad_out.shape[3]):
            grad = _to_group_first(grad_out[part], groups)
            if need_input:
                cols = torch.matmul(w.transpose(1, 2), grad)
                grad_input[part] = col2im(cols, part.stop - part.start, padded.shape[2:], (kh, kw), stride, dilation)
            if need_weight:
                cols = im2col(padded[part], (kh, kw), stride, dilation, groups)
                grad_weight.baddbmm_(grad, cols.transpose(1, 2))
        return grad_input, grad_weight.view_as(weight) if need_weight else None, None, None, None


def _memory_format(x: Tensor) -> torch.memory_format:
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def conv2d(
    input: Tensor,
    weight: Tensor,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> Tensor:
    """``out[n, o, y, x] = Σ_{c, i, j} w[o, c, i, j] · x_pad[n, g(o)·C_g + c, y·s + i·d, x·s + j·d]``.

    ``input (N, C, H, W)``, ``weight (O, C/groups, kH, kW)`` → ``(N, O, H_out, W_out)``.
    """
    if (*weight.shape[2:], *stride, *padding) == (1, 1, 1, 1, 0, 0):
        # 1×1: the input already is the column matrix, so the convolution is one GEMM.
        n, c, h, w = input.shape
        out_channels = weight.shape[0]
        x = input.reshape(n, groups, c // groups, h * w)
        out = torch.matmul(weight.reshape(groups, out_channels // groups, c // groups), x)
        return out.view(n, out_channels, h, w)
    padded = pad_input(input, tuple((p, p) for p in padding))
    return _Im2colConv2d.apply(padded, weight, stride, dilation, groups)


class _Col2imConvTranspose2d(torch.autograd.Function):
    """``out = col2im(Wᵀ · x)``; backward is the convolution's forward:
    ``∂x = W · im2col(∂out)`` and ``∂W = x · im2col(∂out)ᵀ``."""

    @staticmethod
    def forward(ctx, input: Tensor, weight: Tensor, stride, dilation, groups: int, full_size) -> Tensor:
        n = input.shape[0]
        _, group_out, kh, kw = weight.shape
        x = _to_group_first(input, groups)
        w = weight.reshape(groups, x.shape[1], group_out * kh * kw).transpose(1, 2)
        ctx.save_for_backward(x, weight)
        ctx.geometry = (stride, dilation, groups, input.shape)
        return col2im(torch.matmul(w, x), n, full_size, (kh, kw), stride, dilation)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, weight = ctx.saved_tensors
        stride, dilation, groups, input_shape = ctx.geometry
        _, group_out, kh, kw = weight.shape
        grad_cols = im2col(grad_out, (kh, kw), stride, dilation, groups)  # (G, C_out/G·k², N·H·W)
        grad_input = grad_weight = None
        if ctx.needs_input_grad[0]:
            w = weight.reshape(groups, x.shape[1], group_out * kh * kw)
            grad_input = _to_batch_first(torch.matmul(w, grad_cols), input_shape[0], input_shape[2:])
        if ctx.needs_input_grad[1]:
            grad_weight = torch.matmul(x, grad_cols.transpose(1, 2)).view_as(weight)
        return grad_input, grad_weight, None, None, None, None


def conv_transpose2d(
    input: Tensor,
    weight: Tensor,
    stride: tuple[int, int],
    padding: tuple[int, int],
    output_padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> Tensor:
    """The adjoint of :func:`conv2d`: ``cols = Wᵀ x`` then :func:`col2im` scatters the columns.

    ``input (N, C_in, H, W)``, ``weight (C_in, C_out/groups, kH, kW)`` →
    ``(N, C_out, (H-1)s - 2p + d(k-1) + output_padding + 1, ...)``.
    """
    kernel_size = weight.shape[2:]
    full = tuple(
        (size - 1) * s + d * (k - 1) + 1 for size, s, d, k in zip(input.shape[2:], stride, dilation, kernel_size)
    )
    out = _Col2imConvTranspose2d.apply(input, weight, stride, dilation, groups, full)
    # Crop `padding` on the left; on the right, crop `padding` and add `output_padding` (zeros
    # where it reaches past the last window).
    return F.pad(out, [-padding[1], output_padding[1] - padding[1], -padding[0], output_padding[0] - padding[0]])
