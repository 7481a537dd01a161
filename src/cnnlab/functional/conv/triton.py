"""Implicit-GEMM convolution in Triton (GPU; optional dependency).

No column matrix is ever written: each program computes a ``BLOCK_M × BLOCK_N`` tile of the
output ``(N·H_out·W_out, O)`` of one channel group, and gathers the matching receptive-field
slices of the channels-last input straight from memory inside its K loop (taps ``(i, j)`` outer,
channel blocks inner), accumulating in float32 with ``tl.dot``. Padding is a load mask.

One kernel serves three products through a ``TRANSPOSED`` switch on how an output position finds
its input position:

- convolution: ``y_in = y·s − p + i·d``;
- transposed convolution (and the input gradient of any convolution): ``y_in = (y + p − i·d) / s``
  where that division is exact and in range, reading the filters transposed.

The weight gradient is a second kernel: a ``BLOCK_N × BLOCK_K`` tile of ``∂W`` reduces over a
slice of the ``N·H_out·W_out`` positions; slices are summed afterwards (split-K).

float32 uses IEEE products (``input_precision="ieee"``), so results match cuDNN to float32
tolerance; bfloat16 and float16 accumulate in float32. Runs on CUDA tensors, or on CPU tensors
under Triton's interpreter (``TRITON_INTERPRET=1``), which is how CI checks the kernels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..backends import _INTERPRETED
from ..backends import triton_available as available
from .base import ConvAlgorithm, ConvCall, ConvProducts, Geometry

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton is optional
    triton = None

__all__ = ["TRITON"]

if triton is not None:
    _CONFIGS = [
        triton.Config({"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16}, num_warps=1),
        triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32}, num_warps=4, num_stages=3),
        triton.Config({"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 32}, num_warps=4, num_stages=3),
        triton.Config({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 32}, num_warps=8, num_stages=3),
        triton.Config({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 64}, num_warps=4, num_stages=4),
    ]
    # the interpreter runs every config it is given: one small tile keeps CPU checks quick
    _CONV_CONFIGS = _CONFIGS[:1] if _INTERPRETED else _CONFIGS[1:]

    @triton.autotune(configs=_CONV_CONFIGS, key=["M", "GROUP_OUT", "GROUP_IN", "KH", "KW"])
    @triton.jit
    def _conv_kernel(
        x_ptr, w_ptr, out_ptr,
        H, W, C, OH, OW, O, M,
        GROUP_IN, GROUP_OUT,
        SY, SX, PY, PX, DY, DX,
        KH: tl.constexpr, KW: tl.constexpr, TRANSPOSED: tl.constexpr, IEEE: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ):  # fmt: skip
        """``out[m, g·GO + o] = Σ_{i, j, c} x[pos(m, i, j), g·GI + c] · w[g, o, (i·KW + j)·GI + c]``
        with ``GI, GO = GROUP_IN, GROUP_OUT``."""
        pid_m = tl.program_id(0)
        pid_n = tl.program_id(1)
        group = tl.program_id(2)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        image = offs_m // (OH * OW)
        rest = offs_m % (OH * OW)
        oy = rest // OW
        ox = rest % OW
        row_length = KH * KW * GROUP_IN
        w_rows = w_ptr + group * GROUP_OUT * row_length + offs_n * row_length
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for i in tl.static_range(KH):
            for j in tl.static_range(KW):
                if TRANSPOSED:
                    ny = oy + PY - i * DY
                    nx = ox + PX - j * DX
                    iy = ny // SY
                    ix = nx // SX
                    inside = (ny >= 0) & (nx >= 0) & (ny % SY == 0) & (nx % SX == 0)
                else:
                    iy = oy * SY - PY + i * DY
                    ix = ox * SX - PX + j * DX
                    inside = (iy >= 0) & (ix >= 0)
                inside = inside & (iy < H) & (ix < W) & (offs_m < M)
                base = ((image * H + iy) * W + ix) * C + group * GROUP_IN
                for c0 in range(0, GROUP_IN, BLOCK_K):
                    offs_c = c0 + tl.arange(0, BLOCK_K)
                    a = tl.load(
                        x_ptr + base[:, None] + offs_c[None, :],
                        mask=inside[:, None] & (offs_c[None, :] < GROUP_IN),
                        other=0.0,
                    )
                    b = tl.load(
                        w_rows[None, :] + ((i * KW + j) * GROUP_IN + offs_c)[:, None],
                        mask=(offs_n[None, :] < GROUP_OUT) & (offs_c[:, None] < GROUP_IN),
                        other=0.0,
                    )
                    if IEEE:
                        acc += tl.dot(a, b, input_precision="ieee")
                    else:
                        acc += tl.dot(a, b)
        out = out_ptr + offs_m[:, None] * O + (group * GROUP_OUT + offs_n)[None, :]
        tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=(offs_m[:, None] < M) & (offs_n[None, :] < GROUP_OUT))

    @triton.autotune(configs=_CONV_CONFIGS, key=["M", "GROUP_OUT", "GROUP_IN", "KH", "KW"])
    @triton.jit
    def _weight_grad_kernel(
        x_ptr, g_ptr, out_ptr,
        H, W, C, OH, OW, O, M, ROWS_PER_SPLIT,
        GROUP_IN, GROUP_OUT,
        SY, SX, PY, PX, DY, DX,
        KH: tl.constexpr, KW: tl.constexpr, IEEE: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ):  # fmt: skip
        """Partial ``∂W[split, g, o, (i·KW + j)·GROUP_IN + c] = Σ_{m in split} ∂out[m, o] · x[pos(m, i, j), c]``;
        program axis 1 runs over (tap, channel block) pairs, axis 2 over (split, group)."""
        pid_n = tl.program_id(0)
        pid_k = tl.program_id(1)
        splits = tl.num_programs(2) // (O // GROUP_OUT)
        split = tl.program_id(2) % splits
        group = tl.program_id(2) // splits
        channel_blocks = tl.cdiv(GROUP_IN, BLOCK_K)
        tap = pid_k // channel_blocks
        i = tap // KW
        j = tap % KW
        offs_c = (pid_k % channel_blocks) * BLOCK_K + tl.arange(0, BLOCK_K)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
        first = split * ROWS_PER_SPLIT
        for m0 in range(first, first + ROWS_PER_SPLIT, BLOCK_M):
            offs_m = m0 + tl.arange(0, BLOCK_M)
            valid = (offs_m < M) & (offs_m < first + ROWS_PER_SPLIT)
            image = offs_m // (OH * OW)
            rest = offs_m % (OH * OW)
            iy = (rest // OW) * SY - PY + i * DY
            ix = (rest % OW) * SX - PX + j * DX
            inside = valid & (iy >= 0) & (ix >= 0) & (iy < H) & (ix < W)
            base = ((image * H + iy) * W + ix) * C + group * GROUP_IN
            g = tl.load(
                g_ptr + offs_m[None, :] * O + (group * GROUP_OUT + offs_n)[:, None],
                mask=valid[None, :] & (offs_n[:, None] < GROUP_OUT),
                other=0.0,
            )
            a = tl.load(
                x_ptr + base[:, None] + offs_c[None, :],
                mask=inside[:, None] & (offs_c[None, :] < GROUP_IN),
                other=0.0,
            )
            if IEEE:
                acc += tl.dot(g, a, input_precision="ieee")
            else:
                acc += tl.dot(g, a)
        row_length = KH * KW * GROUP_IN
        out = (
            out_ptr
            + (split * (O // GROUP_OUT) + group) * GROUP_OUT * row_length
            + offs_n[:, None] * row_length
            + (tap * GROUP_IN + offs_c)[None, :]
        )
        tl.store(out, acc, mask=(offs_n[:, None] < GROUP_OUT) & (offs_c[None, :] < GROUP_IN))


def _launch_conv(x: Tensor, wmat: Tensor, geometry: Geometry, padding, out_size, transposed: bool) -> Tensor:
    """``x (N, H, W, C)`` contiguous, ``wmat (G, O/G, kH·kW·C/G)`` → ``(N, H_out, W_out, O)``."""
    n, h, w, c = x.shape
    groups, group_out, _ = wmat.shape
    m = n * out_size[0] * out_size[1]
    out = x.new_empty(n, *out_size, groups * group_out)
    if m == 0:
        return out
    (kh, kw), (sy, sx), (dy, dx) = geometry.kernel, geometry.stride, geometry.dilation

    def grid(meta):
        return triton.cdiv(m, meta["BLOCK_M"]), triton.cdiv(group_out, meta["BLOCK_N"]), groups

    _conv_kernel[grid](
        x, wmat, out,
        h, w, c, out_size[0], out_size[1], groups * group_out, m,
        c // groups, group_out,
        sy, sx, padding[0], padding[1], dy, dx,
        KH=kh, KW=kw, TRANSPOSED=transposed, IEEE=x.dtype == torch.float32,
    )  # fmt: skip
    return out


def _weight_grad(x: Tensor, grad: Tensor, geometry: Geometry, weight_shape, padding) -> Tensor:
    """``∂W (O, C/G, kH, kW)`` from channels-last ``x (N, H, W, C)`` and ``∂out (N, H_out, W_out, O)``."""
    n, h, w, c = x.shape
    out_channels, group_in, kh, kw = weight_shape
    groups = geometry.groups
    group_out = out_channels // groups
    oh, ow = grad.shape[1:3]
    m = n * oh * ow
    splits = max(1, min(64, m // 4096))  # enough programs to fill the GPU when O·K is small
    rows_per_split = triton.cdiv(max(m, 1), splits)
    partial = torch.zeros(splits, groups, group_out, kh * kw * group_in, device=x.device, dtype=torch.float32)
    (sy, sx), (dy, dx) = geometry.stride, geometry.dilation
    if m:

        def grid(meta):
            return (
                triton.cdiv(group_out, meta["BLOCK_N"]),
                kh * kw * triton.cdiv(group_in, meta["BLOCK_K"]),
                splits * groups,
            )

        _weight_grad_kernel[grid](
            x, grad, partial,
            h, w, c, oh, ow, out_channels, m, rows_per_split,
            group_in, group_out,
            sy, sx, padding[0], padding[1], dy, dx,
            KH=kh, KW=kw, IEEE=x.dtype == torch.float32,
        )  # fmt: skip
    grad_weight = partial.sum(0).view(out_channels, kh, kw, group_in).permute(0, 3, 1, 2)
    return grad_weight.to(x.dtype).contiguous()


def _matrix(weight: Tensor, groups: int, transposed: bool) -> Tensor:
    """Filters ``(O, C/G, kH, kW)`` as the kernel's ``(G, rows, kH·kW·cols)`` matrix: rows are
    output channels (convolution) or input channels (``transposed``: reading ``W`` backwards)."""
    out_channels, group_in, kh, kw = weight.shape
    grouped = weight.view(groups, out_channels // groups, group_in, kh, kw)
    if transposed:
        return grouped.permute(0, 2, 3, 4, 1).reshape(groups, group_in, -1).contiguous()
    return grouped.permute(0, 1, 3, 4, 2).reshape(groups, out_channels // groups, -1).contiguous()


def _input_grad(grad: Tensor, weight: Tensor, geometry: Geometry, padding, input_size) -> Tensor:
    return _launch_conv(grad, _matrix(weight, geometry.groups, True), geometry, padding, input_size, transposed=True)


def _on_triton(call: ConvCall) -> str | None:
    if available(call.input):
        return None
    return (
        "triton installed and a CUDA tensor, but got "
        f"input on {call.input.device} (triton {'missing' if triton is None else 'present'})"
    )


TRITON = ConvAlgorithm(
    "triton",
    requires=_on_triton,
    products=ConvProducts(
        forward=lambda x, weight, geometry, padding, out_size: _launch_conv(
            x, _matrix(weight, geometry.groups, False), geometry, padding, out_size, transposed=False
        ),
        input_grad=_input_grad,
        weight_grad=_weight_grad,
    ),
    compiled=True,
)
