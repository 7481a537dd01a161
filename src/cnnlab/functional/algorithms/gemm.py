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

__all__ = ["col2im", "conv2d", "conv_transpose2d", "im2col"]


def im2col(
    padded: Tensor,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    output_size: tuple[int, int],
) -> Tensor:
    """``(N, C, H, W)`` → ``(N, C·kH·kW, H_out·W_out)``: column ``(y, x)`` holds the window of output ``(y, x)``.

    Built as an ``as_strided`` view (no copy) that one ``reshape`` materialises; about 1.6× faster
    than ``F.unfold`` (64→64 3×3 @32², batch 128: 83 vs 131 ms, 2-core x86 CPU, 2026-11-23,
    /tmp/mm2.py during development).
    """
    n, c, _, _ = padded.shape
    sn, sc, sh, sw = padded.stride()
    windows = padded.as_strided(
        (n, c, *kernel_size, *output_size),
        (sn, sc, sh * dilation[0], sw * dilation[1], sh * stride[0], sw * stride[1]),
        padded.storage_offset(),
    )
    return windows.reshape(n, c * kernel_size[0] * kernel_size[1], output_size[0] * output_size[1])


def col2im(
    cols: Tensor,
    padded_size: tuple[int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> Tensor:
    """Adjoint of :func:`im2col`: ``(N, C·kH·kW, H_out·W_out)`` → ``(N, C, H, W)``, summing overlaps.

    One strided add per kernel tap; about 2× faster than ``F.fold`` on the same shapes.
    """
    n = cols.shape[0]
    kh, kw = kernel_size
    height, width = padded_size
    oh = (height - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (width - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    channels = cols.shape[1] // (kh * kw)
    taps = cols.reshape(n, channels, kh, kw, oh, ow)
    out = cols.new_zeros(n, channels, height, width)
    for i in range(kh):
        for j in range(kw):
            top, left = i * dilation[0], j * dilation[1]
            out[
                :,
                :,
                top : top + stride[0] * (oh - 1) + 1 : stride[0],
                left : left + stride[1] * (ow - 1) + 1 : stride[1],
            ] += taps[:, :, i, j]
    return out


class _Im2colConv2d(torch.autograd.Function):
    """``out = W · im2col(x)`` with a hand-written backward:
    ``∂W = Σ_n ∂out · colsᵀ`` and ``∂x = col2im(Wᵀ · ∂out)``.

    The columns are kept for ``∂W`` (speed over memory); under ``create_graph`` they are rebuilt
    differentiably from ``x``, so double backward works.
    """

    @staticmethod
    def forward(ctx, padded: Tensor, weight: Tensor, stride, dilation, groups: int) -> Tensor:
        n, _, height, width = padded.shape
        out_channels, group_channels, kh, kw = weight.shape
        oh = (height - dilation[0] * (kh - 1) - 1) // stride[0] + 1
        ow = (width - dilation[1] * (kw - 1) - 1) // stride[1] + 1
        cols = im2col(padded, (kh, kw), stride, dilation, (oh, ow)).view(n, groups, group_channels * kh * kw, oh * ow)
        w = weight.reshape(groups, out_channels // groups, group_channels * kh * kw)
        ctx.save_for_backward(padded, weight, cols)
        ctx.geometry = (stride, dilation, groups, (oh, ow))
        if groups == 1 and padded.is_contiguous(memory_format=torch.channels_last) and not padded.is_contiguous():
            # (N, L, K) @ (K, O) lays the result out as channels_last, so channels_last in gives
            # channels_last out (as torch does) without a copy.
            out = torch.matmul(cols[:, 0].transpose(1, 2), w[0].t())
            return out.view(n, oh, ow, out_channels).permute(0, 3, 1, 2)
        return torch.matmul(w, cols).view(n, out_channels, oh, ow)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        padded, weight, cols = ctx.saved_tensors
        stride, dilation, groups, (oh, ow) = ctx.geometry
        n = padded.shape[0]
        out_channels, _, kh, kw = weight.shape
        grad = grad_out.reshape(n, groups, out_channels // groups, oh * ow)
        w = weight.reshape(groups, out_channels // groups, -1)
        grad_input = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_cols = torch.matmul(w.transpose(1, 2), grad).view(n, w.shape[2] * groups, oh * ow)
            grad_input = col2im(grad_cols, padded.shape[2:], (kh, kw), stride, dilation)
        if ctx.needs_input_grad[1]:
            if torch.is_grad_enabled():  # create_graph: columns must depend on the input again
                cols = im2col(padded, (kh, kw), stride, dilation, (oh, ow)).view(n, groups, cols.shape[2], oh * ow)
            grad_weight = torch.matmul(grad, cols.transpose(-1, -2)).sum(0).view_as(weight)
        return grad_input, grad_weight, None, None, None


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
        return torch.matmul(weight.reshape(groups, out_channels // groups, -1), x).view(n, out_channels, h, w)
    padded = F.pad(input, [padding[1], padding[1], padding[0], padding[0]]) if any(padding) else input
    return _Im2colConv2d.apply(padded, weight, stride, dilation, groups)


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
    n, in_channels, height, width = input.shape
    _, group_out, kh, kw = weight.shape
    group_in = in_channels // groups
    w = weight.reshape(groups, group_in, group_out * kh * kw).transpose(1, 2)
    cols = torch.matmul(w, input.reshape(n, groups, group_in, height * width))
    full = tuple((size - 1) * s + d * (k - 1) + 1 for size, s, d, k in zip((height, width), stride, dilation, (kh, kw)))
    out = col2im(cols.reshape(n, groups * group_out * kh * kw, height * width), full, (kh, kw), stride, dilation)
    # Crop `padding` on the left; on the right, crop `padding` and add `output_padding` (zeros
    # where it reaches past the last window).
    return F.pad(out, [-padding[1], output_padding[1] - padding[1], -padding[0], output_padding[0] - padding[0]])
