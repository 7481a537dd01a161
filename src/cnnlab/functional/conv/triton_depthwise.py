"""Depthwise convolution in Triton (``groups == in_channels``; GPU, optional dependency).

A depthwise filter mixes no channels, so there is no GEMM to feed tensor cores: each program
computes a ``BLOCK_M × BLOCK_C`` tile of the channels-last output with ``kH·kW`` multiply-adds
per element, reading input channel ``o // multiplier`` for output channel ``o``. The input
gradient gathers, per input element, the outputs whose windows cover it (no atomics); the weight
gradient reduces ``∂out · x`` over a slice of positions per program (one tap per program axis),
and the slices are summed afterwards. float32 accumulation for every dtype; CUDA tensors, or CPU
tensors under ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..backends import triton_available as available
from .base import ConvAlgorithm, ConvCall, ConvProducts, Geometry
from .depthwise import one_channel_per_group

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton is optional
    triton = None

__all__ = ["TRITON_DEPTHWISE"]

BLOCK_M, BLOCK_C = 64, 32

if triton is not None:

    @triton.jit
    def _forward_kernel(
        x_ptr, w_ptr, out_ptr, M, H, W, C, OH, OW, O, MULT,
        SY, SX, PY, PX, DY, DX,
        KH: tl.constexpr, KW: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
    ):  # fmt: skip
        offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_o = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        image = offs_m // (OH * OW)
        rest = offs_m % (OH * OW)
        oy = rest // OW
        ox = rest % OW
        channel_in = offs_o // MULT
        live_o = offs_o < O
        acc = tl.zeros((BLOCK_M, BLOCK_C), dtype=tl.float32)
        for i in tl.static_range(KH):
            for j in tl.static_range(KW):
                iy = oy * SY - PY + i * DY
                ix = ox * SX - PX + j * DX
                inside = (offs_m < M) & (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
                x = tl.load(
                    x_ptr + (((image * H + iy) * W + ix) * C)[:, None] + channel_in[None, :],
                    mask=inside[:, None] & live_o[None, :],
                    other=0.0,
                ).to(tl.float32)
                w = tl.load(w_ptr + offs_o * (KH * KW) + i * KW + j, mask=live_o, other=0.0).to(tl.float32)
                acc += x * w[None, :]
        out = out_ptr + offs_m[:, None] * O + offs_o[None, :]
        tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=(offs_m < M)[:, None] & live_o[None, :])

    @triton.jit
    def _input_grad_kernel(
        g_ptr, w_ptr, out_ptr, M, H, W, C, OH, OW, O, MULT,
        SY, SX, PY, PX, DY, DX,
        KH: tl.constexpr, KW: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
    ):  # fmt: skip
        """``∂x[n, y, x, c] = Σ_{k < MULT} Σ_{i, j} ∂out[n, (y + p − i·d)/s, (x + p − j·d)/s, c·MULT + k]
        · w[c·MULT + k, i, j]``, over the divisions that are exact and in range."""
        offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        image = offs_m // (H * W)
        rest = offs_m % (H * W)
        y = rest // W
        x = rest % W
        live_c = offs_c < C
        acc = tl.zeros((BLOCK_M, BLOCK_C), dtype=tl.float32)
        for k in range(0, MULT):
            channel_out = offs_c * MULT + k
            for i in tl.static_range(KH):
                for j in tl.static_range(KW):
                    ny = y + PY - i * DY
                    nx = x + PX - j * DX
                    oy = ny // SY
                    ox = nx // SX
                    hit = (offs_m < M) & (ny >= 0) & (nx >= 0) & (ny % SY == 0) & (nx % SX == 0)
                    hit = hit & (oy < OH) & (ox < OW)
                    g = tl.load(
                        g_ptr + (((image * OH + oy) * OW + ox) * O)[:, None] + channel_out[None, :],
                        mask=hit[:, None] & live_c[None, :],
                        other=0.0,
                    ).to(tl.float32)
                    w = tl.load(w_ptr + channel_out * (KH * KW) + i * KW + j, mask=live_c, other=0.0).to(tl.float32)
                    acc += g * w[None, :]
        out = out_ptr + offs_m[:, None] * C + offs_c[None, :]
        tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=(offs_m < M)[:, None] & live_c[None, :])

    @triton.jit
    def _weight_grad_kernel(
        x_ptr, g_ptr, out_ptr, M, H, W, C, OH, OW, O, MULT, ROWS_PER_SPLIT,
        SY, SX, PY, PX, DY, DX,
        KH: tl.constexpr, KW: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
    ):  # fmt: skip
        """Partial ``∂w[split, o, tap] = Σ_{m in split} ∂out[m, o] · x[pos(m, tap), o // MULT]``."""
        offs_o = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
        tap = tl.program_id(1)
        split = tl.program_id(2)
        i = tap // KW
        j = tap % KW
        live_o = offs_o < O
        channel_in = offs_o // MULT
        acc = tl.zeros((BLOCK_C,), dtype=tl.float32)
        first = split * ROWS_PER_SPLIT
        for m0 in range(first, first + ROWS_PER_SPLIT, BLOCK_M):
            offs_m = m0 + tl.arange(0, BLOCK_M)
            valid = (offs_m < M) & (offs_m < first + ROWS_PER_SPLIT)
            image = offs_m // (OH * OW)
            rest = offs_m % (OH * OW)
            iy = (rest // OW) * SY - PY + i * DY
            ix = (rest % OW) * SX - PX + j * DX
            inside = valid & (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
            g = tl.load(
                g_ptr + offs_m[:, None] * O + offs_o[None, :], mask=valid[:, None] & live_o[None, :], other=0.0
            ).to(tl.float32)
            x = tl.load(
                x_ptr + (((image * H + iy) * W + ix) * C)[:, None] + channel_in[None, :],
                mask=inside[:, None] & live_o[None, :],
                other=0.0,
            ).to(tl.float32)
            acc += tl.sum(g * x, axis=0)
        tl.store(out_ptr + (split * O + offs_o) * (KH * KW) + tap, acc, mask=live_o)


def _args(geometry: Geometry, padding) -> tuple[int, ...]:
    (sy, sx), (dy, dx) = geometry.stride, geometry.dilation
    return sy, sx, padding[0], padding[1], dy, dx


def _forward(x: Tensor, weight: Tensor, geometry: Geometry, padding, out_size) -> Tensor:
    n, h, w, c = x.shape
    out_channels = weight.shape[0]
    out = x.new_empty(n, *out_size, out_channels)
    m = n * out_size[0] * out_size[1]
    if m:
        grid = (triton.cdiv(m, BLOCK_M), triton.cdiv(out_channels, BLOCK_C))
        _forward_kernel[grid](
            x, weight.contiguous(), out, m, h, w, c, *out_size, out_channels, out_channels // c,
            *_args(geometry, padding), KH=geometry.kernel[0], KW=geometry.kernel[1], BLOCK_M=BLOCK_M, BLOCK_C=BLOCK_C,
        )  # fmt: skip
    return out


def _input_grad(grad: Tensor, weight: Tensor, geometry: Geometry, padding, input_size) -> Tensor:
    n, oh, ow, out_channels = grad.shape
    channels = geometry.groups
    out = grad.new_empty(n, *input_size, channels)
    m = n * input_size[0] * input_size[1]
    if m:
        grid = (triton.cdiv(m, BLOCK_M), triton.cdiv(channels, BLOCK_C))
        _input_grad_kernel[grid](
            grad, weight.contiguous(), out, m, *input_size, channels, oh, ow, out_channels, out_channels // channels,
            *_args(geometry, padding), KH=geometry.kernel[0], KW=geometry.kernel[1], BLOCK_M=BLOCK_M, BLOCK_C=BLOCK_C,
        )  # fmt: skip
    return out


def _weight_grad(x: Tensor, grad: Tensor, geometry: Geometry, weight_shape, padding) -> Tensor:
    n, h, w, c = x.shape
    _, oh, ow, out_channels = grad.shape
    kh, kw = geometry.kernel
    m = n * oh * ow
    splits = max(1, min(128, m // 2048))
    rows_per_split = triton.cdiv(max(m, 1), splits)
    partial = torch.zeros(splits, out_channels, kh * kw, device=x.device, dtype=torch.float32)
    if m:
        grid = (triton.cdiv(out_channels, BLOCK_C), kh * kw, splits)
        _weight_grad_kernel[grid](
            x, grad, partial, m, h, w, c, oh, ow, out_channels, out_channels // c, rows_per_split,
            *_args(geometry, padding), KH=kh, KW=kw, BLOCK_M=BLOCK_M, BLOCK_C=BLOCK_C,
        )  # fmt: skip
    return partial.sum(0).view(weight_shape).to(x.dtype)


def _depthwise_on_triton(call: ConvCall) -> str | None:
    if not available(call.input):
        return f"triton installed and a CUDA tensor, but got input on {call.input.device}"
    return one_channel_per_group(call)


TRITON_DEPTHWISE = ConvAlgorithm(
    "triton_depthwise",
    requires=_depthwise_on_triton,
    products=ConvProducts(_forward, _input_grad, _weight_grad),
)
