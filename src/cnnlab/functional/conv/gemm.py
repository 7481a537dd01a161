"""im2col + GEMM convolution on channels-last data, and the transposed convolution built from it.

Everything here works on ``(N, H, W, C)`` (channels-last) tensors. There a receptive field is
``kH·kW`` runs of ``C`` contiguous numbers, so ``im2col`` is one strided copy of long runs and its
result is a plain ``(N·H_out·W_out, kH·kW·C)`` row matrix; one GEMM with the filters
``(O, kH·kW·C)`` gives the output already in channels-last order, with no transpose.

The three products of a convolution, all through :mod:`.matmul`:

- forward ``out = cols(x) · Wᵀ``, each chunk's product written into its rows of the output;
- weight gradient ``∂W += ∂outᵀ · cols(x)`` (columns rebuilt chunk by chunk, never stored;
  accumulated in place);
- input gradient: for stride 1 it is itself a stride-1 convolution of ``∂out`` with the flipped,
  transposed filters (``conv_nhwc`` again, no scatter); otherwise ``col2im(∂out · W)``, the
  adjoint of im2col as ``kH·kW`` strided adds.

The transposed convolution's forward is the convolution's input gradient, and its backward the
convolution's forward and weight gradient: one machinery, no zero-dilated input.

The batch is processed in chunks so the column buffer stays about ``_CHUNK_BYTES`` bytes (in
cache), and zero padding is applied per chunk: no padded copy of the whole input is ever held.
One bordered input buffer and one column buffer serve all chunks of a call.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from .base import ConvAlgorithm, ConvCall, ConvProducts, Geometry, flipped_weight_matrix, weight_matrix
from .matmul import addmm_nt, matmul_nt

__all__ = ["GEMM", "POINTWISE", "column_chunks", "conv_nhwc", "input_grad_nhwc", "weight_grad_nhwc"]

# Bytes per column buffer: 1 Mi float32 numbers, 2 Mi bfloat16 ones. On the 2-core x86 VM
# (2026-11-24) float32 layer speed was flat from 1 Mi to 8 Mi numbers while peak memory grew with
# the buffer (512→512 3×3 @4²: 1.40× torch's at 1 Mi, 1.8× at 2 Mi); a bfloat16 training step of
# the fast model (batch 512) ran 0.55× torch at 1 Mi numbers and 0.68× at 2 Mi, where fewer chunks
# mean fewer small ops.
_CHUNK_BYTES = 4 * 1024 * 1024


def _padding_plan(x: Tensor, geometry: Geometry, out_size, padding) -> tuple[Tensor, tuple[int, int, int, int]]:
    """``x`` cropped where ``padding`` is negative, and the ``(top, bottom, left, right)`` zero rows
    and columns the windows of ``out_size`` outputs still need around it."""
    (kh, kw), (sy, sx), (dy, dx) = geometry.kernel, geometry.stride, geometry.dilation
    oh, ow = out_size
    top, left = padding
    if top < 0:
        x, top = x[:, -top:], 0
    if left < 0:
        x, left = x[:, :, -left:], 0
    height, width = x.shape[1:3]
    bottom = max((oh - 1) * sy + (kh - 1) * dy + 1 - top - height, 0)
    right = max((ow - 1) * sx + (kw - 1) * dx + 1 - left - width, 0)
    return x, (top, bottom, left, right)


def _windows(x: Tensor, geometry: Geometry, out_size, group: int) -> Tensor:
    """The receptive fields of ``group`` in padded ``x (N, H, W, C)`` as a view
    ``(N, H_out, W_out, kH, kW, C/G)``."""
    (kh, kw), (sy, sx), (dy, dx) = geometry.kernel, geometry.stride, geometry.dilation
    group_channels = x.shape[3] // geometry.groups
    sn, sh, sw, sc = x.stride()
    return x.as_strided(
        (x.shape[0], *out_size, kh, kw, group_channels),
        (sn, sh * sy, sw * sx, sh * dy, sw * dx, sc),
        x.storage_offset() + group * group_channels * sc,
    )


def _zero_padded(x: Tensor, top: int, bottom: int, left: int, right: int) -> Tensor:
    """``(N, H, W, C)`` → ``(N, top + H + bottom, left + W + right, C)`` with zeros around: only the
    border is zero-filled (a full ``new_zeros`` wrote every number twice)."""
    n, height, width, c = x.shape
    padded = x.new_empty(n, top + height + bottom, left + width + right, c)
    padded[:, :top] = 0
    padded[:, top + height :] = 0
    padded[:, top : top + height, :left] = 0
    padded[:, top : top + height, left + width :] = 0
    padded[:, top : top + height, left : left + width] = x
    return padded


def _chunks(batch: int, rows_per_image: int, row_length: int, element_size: int) -> list[slice]:
    step = max(1, _CHUNK_BYTES // max(rows_per_image * row_length * element_size, 1))
    return [slice(start, min(start + step, batch)) for start in range(0, batch, step)] or [slice(0, 0)]


def _chunk_buffer(like: Tensor, parts: list[slice], rows_per_image: int, row_length: int) -> Tensor | None:
    """One ``(rows of the largest chunk, row_length)`` buffer for every chunk of a call, or ``None``
    under autograd recording, where each chunk's product must be a fresh tensor the graph keeps."""
    if torch.is_grad_enabled():
        return None
    return like.new_empty((parts[0].stop - parts[0].start) * rows_per_image, row_length)


def column_chunks(
    x: Tensor, geometry: Geometry, out_size: tuple[int, int], padding: tuple[int, int] = (0, 0)
) -> Iterator[tuple[slice, int, Tensor]]:
    """im2col of ``x (N, H, W, C)``, zero-padded by ``padding`` (negative: a crop), a chunk of
    about ``_CHUNK_BYTES`` at a time: yields ``(images, group, columns)`` with ``columns
    (len(images)·H_out·W_out, kH·kW·C/G)`` whose row ``(n, y, x)`` holds the receptive field of
    output ``(y, x)``, ``x[n, y·s − p + i·d, x·s − p + j·d, group's channels]`` (one strided copy).

    Outside autograd recording, one zero-bordered input buffer and one column buffer serve every
    chunk (each chunk's columns are overwritten by the next: use them before asking for more).
    Fresh buffers for every chunk, page-faulted in and zero-filled each time, cost a third of a
    32×32 layer's forward time on the 2-core VM. Under ``create_graph`` every chunk gets its own,
    as the products that record them keep them for double backward.
    """
    x, pads = _padding_plan(x, geometry, out_size, padding)
    n, height, width, channels = x.shape
    kh, kw = geometry.kernel
    group_channels = channels // geometry.groups
    per_image = out_size[0] * out_size[1]
    parts = _chunks(n, per_image, kh * kw * group_channels, x.element_size())
    top, bottom, left, right = pads
    bordered = any(pads)
    columns = _chunk_buffer(x, parts, per_image, kh * kw * group_channels)
    if columns is None:
        for part in parts:
            images = _zero_padded(x[part], *pads) if bordered else x[part]
            for group in range(geometry.groups):
                yield part, group, _windows(images, geometry, out_size, group).reshape(-1, kh * kw * group_channels)
        return
    # the buffers' views are made once: each chunk costs one slice and one copy per buffer
    if bordered:
        padded = x.new_zeros(parts[0].stop - parts[0].start, top + height + bottom, left + width + right, channels)
        interior = padded[:, top : top + height, left : left + width]
    windows = [_windows(padded if bordered else x, geometry, out_size, g) for g in range(geometry.groups)]
    for part in parts:
        count = part.stop - part.start
        if bordered:
            interior[:count].copy_(x[part])
            sources = [w[:count] for w in windows]
        else:
            sources = [w[part] for w in windows]
        cols = columns[: count * per_image]
        for group, source in enumerate(sources):
            cols.view(source.shape).copy_(source)
            yield part, group, cols


def _group_rows(x: Tensor, group: int, groups: int) -> Tensor:
    """``(N, H, W, C)`` → the ``(N·H·W, C/G)`` rows of one channel group (a view when possible)."""
    rows = x.reshape(-1, x.shape[-1])
    width = rows.shape[1] // groups
    return rows if groups == 1 else rows[:, group * width : (group + 1) * width]


def conv_nhwc(
    x: Tensor, wmat: Tensor, geometry: Geometry, out_size: tuple[int, int], padding: tuple[int, int] = (0, 0)
) -> Tensor:
    """Convolution of ``(N, H, W, C)``, zero-padded by ``padding``, with :func:`weight_matrix`
    filters ``(G, O/G, kH·kW·C/G)`` → ``(N, H_out, W_out, O)``; each chunk's product is written
    straight into the output.

    ``out[n, y, x, o] = Σ_{i, j, c} W[o, c, i, j] · x[n, y·s − p + i·d, x·s − p + j·d, g(o)·C/G + c]``
    """
    groups, group_out, _ = wmat.shape
    out = x.new_empty(x.shape[0], *out_size, groups * group_out)
    rows = out.view(-1, groups * group_out)
    per_image = out_size[0] * out_size[1]
    for part, g, cols in column_chunks(x, geometry, out_size, padding):
        target = rows[part.start * per_image : part.stop * per_image, g * group_out : (g + 1) * group_out]
        matmul_nt(cols, wmat[g], out=target)
    return out


def weight_grad_nhwc(
    x: Tensor, grad_out: Tensor, geometry: Geometry, weight_shape, padding: tuple[int, int] = (0, 0)
) -> Tensor:
    """``∂W[o, c, i, j] = Σ_{n, y, x} ∂out[n, y, x, o] · x[n, y·s − p + i·d, x·s − p + j·d, c]`` for
    ``x (N, H, W, C)`` and ``∂out (N, H_out, W_out, O)`` → ``(O, C/G, kH, kW)``, accumulated chunk
    by chunk in place."""
    out_channels, group_channels, kh, kw = weight_shape
    groups = geometry.groups
    grad = x.new_zeros(groups, out_channels // groups, kh * kw * group_channels)
    for part, g, cols in column_chunks(x, geometry, tuple(grad_out.shape[1:3]), padding):
        addmm_nt(grad[g], _group_rows(grad_out[part], g, groups).t(), cols.t())
    grad = grad.view(out_channels, kh, kw, group_channels)
    return grad.permute(0, 3, 1, 2).contiguous()


def input_grad_nhwc(
    grad_out: Tensor, weight: Tensor, geometry: Geometry, padding: tuple[int, int], input_size: tuple[int, int]
) -> Tensor:
    """``∂x`` of :func:`conv_nhwc` for ``∂out (N, H_out, W_out, O)`` and filters ``(O, C/G, kH, kW)``
    → ``(N, H, W, C)`` with ``(H, W) = input_size`` (unpadded; ``padding`` is cropped).

    Stride 1 goes through the flipped convolution (columns of ``∂out``, ``kH·kW·O`` long), except
    in float32/float64 with ``O > 2·C``, where ``col2im`` (columns of ``∂x``, ``kH·kW·C`` long)
    copies less: on the fast model's 24→64 layer at 32² (batch 128, 2026-11-24) 16 ms against
    24 ms, equal at 64→128. Its strided bfloat16 adds are slow (167 against 40 ms at batch 512).
    """
    out_channels, group_channels = weight.shape[:2]
    wide = out_channels > 2 * group_channels * geometry.groups and grad_out.dtype in (torch.float32, torch.float64)
    if geometry.stride == (1, 1) and not wide:
        # ∂x is the correlation of ∂out, padded by d(k-1)-p (negative: cropped), with the flipped filters
        padding = tuple(d * (k - 1) - p for k, d, p in zip(geometry.kernel, geometry.dilation, padding))
        return conv_nhwc(grad_out, flipped_weight_matrix(weight, geometry.groups), geometry, input_size, padding)
    return _col2im_input_grad(grad_out, weight, geometry, padding, input_size)


def _col2im_input_grad(grad_out: Tensor, weight: Tensor, geometry: Geometry, padding, input_size) -> Tensor:
    """``∂x = col2im(∂out · W)``: each chunk's column gradient scattered by ``kH·kW`` strided adds."""
    _, group_channels, kh, kw = weight.shape
    groups = geometry.groups
    (sy, sx), (dy, dx) = geometry.stride, geometry.dilation
    n, oh, ow, _ = grad_out.shape
    wmat = weight_matrix(weight, groups)
    padded_size = [size + 2 * p for size, p in zip(input_size, padding)]
    grad = grad_out.new_zeros(n, *padded_size, group_channels * groups)
    parts = _chunks(n, oh * ow, kh * kw * group_channels, grad_out.element_size())
    buffer = _chunk_buffer(grad_out, parts, oh * ow, kh * kw * group_channels)
    for part in parts:
        out = None if buffer is None else buffer[: (part.stop - part.start) * oh * ow]
        for g in range(groups):
            cols = matmul_nt(_group_rows(grad_out[part], g, groups), wmat[g].t(), out=out)
            taps = cols.view(-1, oh, ow, kh, kw, group_channels)
            channels = slice(g * group_channels, (g + 1) * group_channels)
            for i in range(kh):
                for j in range(kw):
                    rows = slice(i * dy, i * dy + sy * (oh - 1) + 1, sy)
                    columns = slice(j * dx, j * dx + sx * (ow - 1) + 1, sx)
                    grad[part, rows, columns, channels] += taps[:, :, :, i, j]
    return grad[:, padding[0] : padding[0] + input_size[0], padding[1] : padding[1] + input_size[1]]


def _forward(x: Tensor, weight: Tensor, geometry: Geometry, padding, out_size) -> Tensor:
    return conv_nhwc(x, weight_matrix(weight, geometry.groups), geometry, out_size, padding)


def _pointwise_geometry(call: ConvCall) -> str | None:
    if call.pointwise:
        return None
    return f"a 1×1 kernel and padding=0, but got kernel_size={call.kernel}, padding={call.padding}"


_PRODUCTS = ConvProducts(forward=_forward, input_grad=input_grad_nhwc, weight_grad=weight_grad_nhwc)

GEMM = ConvAlgorithm("gemm", products=_PRODUCTS, compiled=True)
"""Channels-last im2col + GEMM: every geometry; the transposed convolution's default."""

POINTWISE = ConvAlgorithm("pointwise", requires=_pointwise_geometry, products=_PRODUCTS, compiled=True)
"""The same products for unpadded 1×1 filters: on channels-last data the input rows already are
the columns, so the convolution is one GEMM with no column copy."""
