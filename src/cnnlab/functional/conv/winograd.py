"""Winograd F(2×2, 3×3) convolution for 3×3, stride-1, dilation-1 filters.

Each 2×2 block of outputs needs a 4×4 tile of input. In the transformed domain the tile's
convolution with a 3×3 filter is an element-wise product (Lavin & Gray, 2015):

    Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A

with ``Bᵀ = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]]``, ``G = [[1,0,0],[½,½,½],[½,-½,½],[0,0,1]]``
and ``Aᵀ = [[1,1,1,0],[0,1,-1,-1]]``. Summed over channels, the 16 element-wise products become
16 GEMMs ``(tiles, C) · (C, O)``: 16 multiplies per 4 outputs instead of 36, 2.25× fewer
flops than im2col, paid for with the transforms (additions only) on channels-last data.

Backward: the input gradient of a stride-1 3×3 convolution is another one (the gradient
correlated with the flipped, transposed filters), so it runs through Winograd too; the weight
gradient is the GEMM algorithm's.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import ConvAlgorithm, ConvCall, ConvProducts, Geometry, flipped_filters
from .gemm import input_grad_nhwc, weight_grad_nhwc
from .matmul import matmul_nt

__all__ = ["WINOGRAD", "winograd_nhwc"]

_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))


def _b_transpose(d: Tensor, out: Tensor | None) -> Tensor:
    """``Bᵀ`` applied along dim 0 (length 4) of ``d``; written into ``out`` when given (saves a
    pass; ``out=`` ops do not record autograd, so double backward passes ``None``)."""
    terms = ((torch.sub, 0, 2), (torch.add, 1, 2), (torch.sub, 2, 1), (torch.sub, 1, 3))
    if out is None:
        return torch.stack([op(d[a], d[b]) for op, a, b in terms])
    for row, (op, a, b) in enumerate(terms):
        op(d[a], d[b], out=out[row])
    return out


def _input_transform(tiles: Tensor) -> Tensor:
    """``Bᵀ d B`` for tiles ``(N, Th, Tw, 4, 4, C)`` → ``(16, N·Th·Tw, C)``, ordered ``(column, row)``."""
    n, th, tw, _, _, c = tiles.shape
    recording = torch.is_grad_enabled() and tiles.requires_grad
    rows = _b_transpose(tiles.movedim(3, 0), None if recording else tiles.new_empty(4, n, th, tw, 4, c))
    both = _b_transpose(rows.movedim(4, 0), None if recording else tiles.new_empty(4, 4, n, th, tw, c))
    return both.reshape(16, n * th * tw, c)


def _filter_transform(weight: Tensor) -> Tensor:
    """``G g Gᵀ`` for filters ``(O, C, 3, 3)`` → ``(16, O, C)``, ordered ``(column, row)``."""
    g = torch.tensor(_G, dtype=weight.dtype, device=weight.device)
    return torch.einsum("ai,ocij,bj->baoc", g, weight, g).reshape(16, *weight.shape[:2])


def _output_transform(products: list[Tensor], n: int, th: int, tw: int) -> Tensor:
    """``Aᵀ M A`` for the 16 products ``(N·Th·Tw, O)`` (``(column, row)`` order) → ``(N, 2·Th, 2·Tw, O)``."""
    m = [products[a::4] for a in range(4)]  # m[row][column]
    rows = [[m[0][b] + m[1][b] + m[2][b] for b in range(4)], [m[1][b] - m[2][b] - m[3][b] for b in range(4)]]
    out = products[0].new_empty(n, th, 2, tw, 2, products[0].shape[1])
    for r, row in enumerate(rows):
        out[:, :, r, :, 0] = (row[0] + row[1] + row[2]).view(n, th, tw, -1)
        out[:, :, r, :, 1] = (row[1] - row[2] - row[3]).view(n, th, tw, -1)
    return out.view(n, 2 * th, 2 * tw, -1)


def _pad_nhwc(x: Tensor, pads: tuple[tuple[int, int], tuple[int, int]]) -> Tensor:
    """Zero-pad ``(N, H, W, C)`` by ``((top, bottom), (left, right))`` into a contiguous copy."""
    (top, bottom), (left, right) = pads
    n, h, w, c = x.shape
    out = x.new_zeros(n, h + top + bottom, w + left + right, c)
    out[:, top : top + h, left : left + w] = x
    return out


def winograd_nhwc(x: Tensor, weight: Tensor, padding: tuple[int, int], groups: int) -> Tensor:
    """``(N, H, W, C)`` * ``(O, C/G, 3, 3)``, zero padding ``padding``, stride 1 → ``(N, H_out, W_out, O)``."""
    n, h, w, c = x.shape
    out_channels, group_channels = weight.shape[:2]
    group_out = out_channels // groups
    out_size = (h + 2 * padding[0] - 2, w + 2 * padding[1] - 2)
    th, tw = (out_size[0] + 1) // 2, (out_size[1] + 1) // 2
    # pad so that the output is a whole number of 2×2 blocks; the extra row/column is cropped
    padded = _pad_nhwc(x, tuple((p, p + s % 2) for p, s in zip(padding, out_size)))
    sn, sh, sw, sc = padded.stride()
    tiles = padded.as_strided((n, th, tw, 4, 4, c), (sn, 2 * sh, 2 * sw, sh, sw, sc))
    v = _input_transform(tiles)
    u = _filter_transform(weight)
    out = x.new_empty(n, 2 * th, 2 * tw, out_channels)
    for g in range(groups):
        channels = slice(g * group_channels, (g + 1) * group_channels)
        outputs = slice(g * group_out, (g + 1) * group_out)
        products = [matmul_nt(v[k][:, channels], u[k][outputs]) for k in range(16)]
        out[..., outputs] = _output_transform(products, n, th, tw)
    return out[:, : out_size[0], : out_size[1]]


def _input_grad(grad: Tensor, weight: Tensor, geometry: Geometry, padding, input_size) -> Tensor:
    """The input gradient is the stride-1 3×3 correlation of ∂out, padded by 2 − p, with the
    flipped filters: Winograd again (GEMM's when p > 2 would need a crop)."""
    if max(padding) <= 2:
        return winograd_nhwc(
            grad, flipped_filters(weight, geometry.groups), tuple(2 - p for p in padding), geometry.groups
        )
    return input_grad_nhwc(grad, weight, geometry, padding, input_size)


def _three_by_three(call: ConvCall) -> str | None:
    if call.kernel == (3, 3) and call.stride == (1, 1) and call.dilation == (1, 1):
        return None
    return (
        f"a 3×3 kernel with stride=(1, 1) and dilation=(1, 1), but got kernel_size={call.kernel}, "
        f"stride={call.stride}, dilation={call.dilation}"
    )


WINOGRAD = ConvAlgorithm(
    "winograd",
    requires=_three_by_three,
    products=ConvProducts(
        forward=lambda x, weight, geometry, padding, out_size: winograd_nhwc(x, weight, padding, geometry.groups),
        input_grad=_input_grad,
        weight_grad=weight_grad_nhwc,
    ),
)
