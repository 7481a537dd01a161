"""Max and average pooling kernels in Triton (GPU; optional dependency).

Each program computes ``BLOCK`` outputs of the flattened ``(N·C·H_out·W_out)`` result of a
contiguous ``(N, C, H, W)`` input, looping over the window taps (padding is a load mask):

- max: torch's rule exactly — scan taps in row-major order from ``-inf``, a tap wins if it is
  strictly greater or NaN, padding never wins (the first in-bounds tap is the fallback); the flat
  ``h·W + w`` index is stored, and backward scatters the gradient to it (``scatter_add``);
- average: the window sum divided by a per-row × per-column divisor computed by
  :mod:`cnnlab.functional.pool` (``count_include_pad``, ``ceil_mode``, ``divisor_override``);
  backward gathers, for every input position, the outputs whose windows cover it (no atomics).

Accumulation is in float32 for every dtype. Runs on CUDA tensors, or on CPU tensors under
``TRITON_INTERPRET=1`` (how CI checks them).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..backends import triton_available as available

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton is optional
    triton = None

__all__ = ["available", "avg_pool2d", "max_pool2d"]

BLOCK = 256

if triton is not None:

    @triton.jit
    def _max_pool_kernel(
        x_ptr, out_ptr, index_ptr, total,
        H, W, OH, OW, SY, SX, PY, PX, DY, DX,
        KH: tl.constexpr, KW: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        live = offs < total
        plane = offs // (OH * OW)
        rest = offs % (OH * OW)
        top = (rest // OW) * SY - PY
        left = (rest % OW) * SX - PX
        best = tl.full((BLOCK,), float("-inf"), tl.float32)
        index = tl.full((BLOCK,), -1, tl.int64)
        for i in tl.static_range(KH):
            for j in tl.static_range(KW):
                y = top + i * DY
                x = left + j * DX
                inside = live & (y >= 0) & (y < H) & (x >= 0) & (x < W)
                value = tl.load(x_ptr + (plane * H + y) * W + x, mask=inside, other=float("-inf")).to(tl.float32)
                # the first in-bounds tap seeds the scan; later ones win if greater, or NaN
                take = inside & ((value > best) | (value != value) | (index < 0))
                best = tl.where(take, value, best)
                index = tl.where(take, (y * W + x).to(tl.int64), index)
        tl.store(out_ptr + offs, best.to(out_ptr.dtype.element_ty), mask=live)
        tl.store(index_ptr + offs, index, mask=live)

    @triton.jit
    def _avg_pool_kernel(
        x_ptr, out_ptr, row_div_ptr, col_div_ptr, total,
        H, W, OH, OW, SY, SX, PY, PX,
        KH: tl.constexpr, KW: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        live = offs < total
        plane = offs // (OH * OW)
        rest = offs % (OH * OW)
        oy = rest // OW
        ox = rest % OW
        acc = tl.zeros((BLOCK,), tl.float32)
        for i in tl.static_range(KH):
            for j in tl.static_range(KW):
                y = oy * SY - PY + i
                x = ox * SX - PX + j
                inside = live & (y >= 0) & (y < H) & (x >= 0) & (x < W)
                acc += tl.load(x_ptr + (plane * H + y) * W + x, mask=inside, other=0.0).to(tl.float32)
        divisor = tl.load(row_div_ptr + oy, mask=live, other=1.0) * tl.load(col_div_ptr + ox, mask=live, other=1.0)
        tl.store(out_ptr + offs, (acc / divisor).to(out_ptr.dtype.element_ty), mask=live)

    @triton.jit
    def _avg_pool_backward_kernel(
        grad_ptr, out_ptr, row_div_ptr, col_div_ptr, total,
        H, W, OH, OW, SY, SX, PY, PX,
        KH: tl.constexpr, KW: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        """``∂x[y, x] = Σ_{(oy, ox) covering (y, x)} ∂out[oy, ox] / divisor[oy, ox]``, one input per lane."""
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        live = offs < total
        plane = offs // (H * W)
        rest = offs % (H * W)
        y = rest // W
        x = rest % W
        acc = tl.zeros((BLOCK,), tl.float32)
        for i in tl.static_range(KH):
            for j in tl.static_range(KW):
                ny = y + PY - i
                nx = x + PX - j
                oy = ny // SY
                ox = nx // SX
                hit = live & (ny >= 0) & (nx >= 0) & (ny % SY == 0) & (nx % SX == 0) & (oy < OH) & (ox < OW)
                g = tl.load(grad_ptr + (plane * OH + oy) * OW + ox, mask=hit, other=0.0).to(tl.float32)
                divisor = tl.load(row_div_ptr + oy, mask=hit, other=1.0) * tl.load(
                    col_div_ptr + ox, mask=hit, other=1.0
                )
                acc += g / divisor
        tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=live)


def _grid(total: int):
    return (triton.cdiv(max(total, 1), BLOCK),)


def max_pool2d(x: Tensor, k, s, p, d, o) -> tuple[Tensor, Tensor]:
    """Values and flat indices of max pooling over contiguous ``(N, C, H, W)`` (no autograd:
    :mod:`cnnlab.functional.pool` routes the gradient through the indices)."""
    x = x.contiguous()
    n, c, h, w = x.shape
    out = x.new_empty(n, c, *o)
    index = torch.empty(n, c, *o, dtype=torch.long, device=x.device)
    total = out.numel()
    if total:
        _max_pool_kernel[_grid(total)](
            x, out, index, total, h, w, o[0], o[1], s[0], s[1], p[0], p[1], d[0], d[1],
            KH=k[0], KW=k[1], BLOCK=BLOCK,
        )  # fmt: skip
    return out, index


class _AvgPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, k, s, p, o, row_divisor: Tensor, col_divisor: Tensor) -> Tensor:
        x = x.contiguous()
        n, c, h, w = x.shape
        out = x.new_empty(n, c, *o)
        total = out.numel()
        if total:
            _avg_pool_kernel[_grid(total)](
                x, out, row_divisor, col_divisor, total, h, w, o[0], o[1], s[0], s[1], p[0], p[1],
                KH=k[0], KW=k[1], BLOCK=BLOCK,
            )  # fmt: skip
        ctx.save_for_backward(row_divisor, col_divisor)
        ctx.geometry = (k, s, p, o, x.shape)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        row_divisor, col_divisor = ctx.saved_tensors
        k, s, p, o, shape = ctx.geometry
        grad = grad.contiguous()
        grad_input = grad.new_empty(shape)
        total = grad_input.numel()
        if total:
            _avg_pool_backward_kernel[_grid(total)](
                grad, grad_input, row_divisor, col_divisor, total, shape[2], shape[3], o[0], o[1], s[0], s[1],
                p[0], p[1], KH=k[0], KW=k[1], BLOCK=BLOCK,
            )  # fmt: skip
        return grad_input, None, None, None, None, None, None


def avg_pool2d(x: Tensor, k, s, p, o, row_divisor: Tensor, col_divisor: Tensor) -> Tensor:
    """Average pooling of ``(N, C, H, W)``; ``row_divisor (H_out,)`` × ``col_divisor (W_out,)``
    divides each window sum (float32)."""
    return _AvgPool2d.apply(x, k, s, p, o, row_divisor.float().contiguous(), col_divisor.float().contiguous())
