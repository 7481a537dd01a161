"""Deformable convolution (Dai et al. 2017, DCNv1; with ``mask``, Zhu et al. 2019, DCNv2), with
``torchvision.ops.deform_conv2d``'s signature and numbers, from tensor primitives.

Every tap of every output samples the input at a learned fractional offset from its grid point,

    y(p) = Σ_taps w_tap · m_tap(p) · x(p·s − pad + tap·d + Δ_tap(p)),

where ``x(·)`` at a fractional point is the bilinear interpolation of its four neighbours (zero
outside the image: torchvision's rule, a point beyond one pixel outside reads 0). The samples are
gathered (four ``gather`` calls per call, one per corner) into a column matrix
``(N, G, C/G·k_h·k_w, H_out·W_out)``, which one matrix product per group turns into the output.
Autograd differentiates the gathers and the interpolation weights, which gives the gradients of
input, offset, mask, weight and bias (the offsets' through the bilinear weights, as
torchvision's kernels do).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._tracing import fx_leaf
from .._utils import IntOrTuple, conv_output_size, ntuple

__all__ = ["deform_conv2d"]


def _check(input: Tensor, offset: Tensor, weight: Tensor, mask: Tensor | None, out_size) -> tuple[int, int]:
    """torchvision's checks (``RuntimeError``); returns ``(groups, offset_groups)``."""
    n, channels = input.shape[:2]
    out_channels, group_channels, kh, kw = weight.shape
    taps = kh * kw
    if input.dim() != 4 or offset.dim() != 4 or weight.dim() != 4:
        raise RuntimeError(
            f"deform_conv2d: input, offset and weight must be 4-D, but got input of size {list(input.shape)}, "
            f"offset of size {list(offset.shape)} and weight of size {list(weight.shape)}"
        )
    if group_channels == 0 or channels % group_channels:
        raise RuntimeError(
            f"deform_conv2d: the input's {channels} channels must be a multiple of the weight's {group_channels} "
            "channels per group"
        )
    groups = channels // group_channels
    if out_channels % groups:
        raise RuntimeError(f"deform_conv2d: out_channels={out_channels} must be divisible by groups={groups}")
    if offset.shape[1] == 0 or offset.shape[1] % (2 * taps) or channels % (offset.shape[1] // (2 * taps)):
        raise RuntimeError(
            f"deform_conv2d: offset must have 2·offset_groups·kH·kW = a multiple of {2 * taps} channels, "
            f"offset_groups dividing the {channels} input channels, but got offset of size {list(offset.shape)}"
        )
    offset_groups = offset.shape[1] // (2 * taps)
    expected = (n, 2 * offset_groups * taps, *out_size)
    if tuple(offset.shape) != expected:
        raise RuntimeError(f"deform_conv2d: offset must be of size {list(expected)}, but got {list(offset.shape)}")
    if mask is not None and tuple(mask.shape) != (n, offset_groups * taps, *out_size):
        raise RuntimeError(
            f"deform_conv2d: mask must be of size {[n, offset_groups * taps, *out_size]}, but got {list(mask.shape)}"
        )
    return groups, offset_groups


def _bilinear_columns(x: Tensor, y_pos: Tensor, x_pos: Tensor) -> Tensor:
    """Bilinear samples of ``x (N, OG, C', H, W)`` at points ``(N, OG, P)`` → ``(N, OG, C', P)``,
    zero where a corner lies outside the image and for points at or beyond one pixel outside it
    (torchvision's ``bilinear_interpolate``)."""
    n, og, cpg, height, width = x.shape
    flat = x.reshape(n, og, cpg, height * width)
    inside = (y_pos > -1) & (y_pos < height) & (x_pos > -1) & (x_pos < width)
    y0, x0 = torch.floor(y_pos), torch.floor(x_pos)
    ly, lx = y_pos - y0, x_pos - x0
    y0, x0 = y0.long(), x0.long()
    out = None
    for dy, dx, weight in ((0, 0, (1 - ly) * (1 - lx)), (0, 1, (1 - ly) * lx), (1, 0, ly * (1 - lx)), (1, 1, ly * lx)):
        yy, xx = y0 + dy, x0 + dx
        valid = inside & (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
        index = (yy.clamp(0, height - 1) * width + xx.clamp(0, width - 1)).unsqueeze(2).expand(n, og, cpg, -1)
        term = flat.gather(3, index) * (weight * valid).unsqueeze(2)
        out = term if out is None else out + term
    return out


@fx_leaf
def deform_conv2d(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrTuple = (1, 1),
    padding: IntOrTuple = (0, 0),
    dilation: IntOrTuple = (1, 1),
    mask: Tensor | None = None,
) -> Tensor:
    """Deformable 2-D convolution (Dai et al., 2017; DCNv2 with ``mask``, Zhu et al., 2019),
    ``torchvision.ops.deform_conv2d``'s arguments and results: every tap reads the input at its
    regular position plus a learned, fractional offset, bilinearly interpolated (zeros outside),
    optionally scaled by a mask,
    ``out[n, o, y, x] = bias[o] + Σ_{c, i, j} W[o, c, i, j] · m · input[n, c, y·s − p + i·d + Δy, x·s − p + j·d + Δx]``.

    Args:
        input: ``(N, C, H, W)``.
        offset: ``(N, 2·offset_groups·kH·kW, H_out, W_out)``, per offset group and tap (row-major)
            the pair ``(Δy, Δx)``; input channels split into ``offset_groups`` consecutive groups.
        weight: ``(O, C/groups, kH, kW)``; ``groups`` is read from the channel counts.
        bias: ``(O,)`` or ``None``.
        stride, padding, dilation: as :func:`conv2d`'s (ints or pairs).
        mask: ``(N, offset_groups·kH·kW, H_out, W_out)`` modulation (DCNv2), or ``None`` (DCNv1).

    Shape:
        ``(N, O, H_out, W_out)``, ``H_out = floor((H + 2p − d(kH − 1) − 1)/s) + 1``.

    Example:
        >>> x, w = torch.randn(1, 4, 8, 8), torch.randn(6, 4, 3, 3)
        >>> offset = torch.zeros(1, 2 * 9, 6, 6)  # no offsets: the regular convolution
        >>> torch.allclose(deform_conv2d(x, offset, w), cnnlab.functional.conv2d(x, w), atol=1e-5)
        True
    """
    stride, padding, dilation = (ntuple(v, 2, name) for v, name in ((stride, "stride"), (padding, "padding"),
                                                                    (dilation, "dilation")))  # fmt: skip
    kh, kw = weight.shape[2:] if weight.dim() == 4 else (0, 0)
    out_size = tuple(conv_output_size(*g) for g in zip(input.shape[2:], (kh, kw), stride, [(p, p) for p in padding],
                                                        dilation))  # fmt: skip
    groups, offset_groups = _check(input, offset, weight, mask, out_size)
    n, channels, height, width = input.shape
    out_channels = weight.shape[0]
    taps, (oh, ow) = kh * kw, out_size
    # sampling points (N, OG, K, OH·OW): the grid point of each tap plus its offset
    grid_y = (torch.arange(oh, device=input.device) * stride[0] - padding[0]).view(1, oh, 1)
    grid_x = (torch.arange(ow, device=input.device) * stride[1] - padding[1]).view(1, 1, ow)
    tap_y = (torch.arange(kh, device=input.device) * dilation[0]).repeat_interleave(kw).view(taps, 1, 1)
    tap_x = (torch.arange(kw, device=input.device) * dilation[1]).repeat(kh).view(taps, 1, 1)
    pairs = offset.reshape(n, offset_groups, taps, 2, oh, ow)
    y_pos = ((grid_y + tap_y).to(offset.dtype) + pairs[:, :, :, 0]).reshape(n, offset_groups, taps * oh * ow)
    x_pos = ((grid_x + tap_x).to(offset.dtype) + pairs[:, :, :, 1]).reshape(n, offset_groups, taps * oh * ow)
    x = input.reshape(n, offset_groups, channels // offset_groups, height, width)
    columns = _bilinear_columns(x, y_pos, x_pos)  # (N, OG, C/OG, K·L)
    if mask is not None:
        columns = columns * mask.reshape(n, offset_groups, 1, taps * oh * ow)
    # (N, C, K, L) → per group (N, G, C/G·K, L), times the filters (G, O/G, C/G·K)
    columns = columns.reshape(n, groups, (channels // groups) * taps, oh * ow)
    filters = weight.reshape(groups, out_channels // groups, -1)
    out = torch.matmul(filters, columns).reshape(n, out_channels, oh, ow)
    return out if bias is None else out + bias.view(1, -1, 1, 1)
