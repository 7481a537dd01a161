"""Deformable convolution layers (torchvision's ``DeformConv2d``, and a self-contained block that
learns its own offsets), on :func:`cnnlab.functional.deform_conv2d`."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from .. import functional
from ..functional._utils import IntOrTuple
from .conv import Conv2d, _check_arguments
from .geometry import Window, window

__all__ = ["DeformConv2d", "DeformableConv2d"]


class DeformConv2d(nn.Module):
    r"""Deformable 2-D convolution (DCNv1, and DCNv2 with a ``mask``): ``torchvision.ops.DeformConv2d``'s
    constructor, parameter names and initialisation, so state dicts move both ways and
    :func:`cnnlab.convert` swaps the two classes. torch.nn has no deformable convolution
    (pytorch/pytorch#2260); each tap samples the input at a learned fractional offset,

    .. math:: y(p) = \sum_k w_k \, m_k(p) \, x(p \cdot s - \text{pad} + k \cdot d + \Delta_k(p))

    with bilinear interpolation between pixels (:func:`cnnlab.functional.deform_conv2d`).
    ``forward(input, offset, mask=None)``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias: as
            :class:`Conv2d`'s (ints or pairs).
        device, dtype: of the parameters.

    Shape:
        ``input (N, C_in, H, W)``, ``offset (N, 2·G_off·kH·kW, H_out, W_out)`` (``(Δy, Δx)`` per offset
        group and tap), ``mask (N, G_off·kH·kW, H_out, W_out)`` → ``(N, C_out, H_out, W_out)``.

    Example:
        >>> layer = DeformConv2d(4, 8, 3, padding=1)
        >>> x, offset = torch.randn(2, 4, 10, 10), torch.randn(2, 2 * 9, 10, 10)
        >>> layer(x, offset).shape
        torch.Size([2, 8, 10, 10])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        # the convolutions' own checks (groups, channels, kernel/stride/dilation, padding)
        _check_arguments(type(self).__name__, 2, False, in_channels, out_channels, kernel_size, stride, padding,
                         dilation, 0, groups, "zeros")  # fmt: skip
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torchvision's, which is torch.nn.Conv2d's (called here, not copied): Kaiming-uniform
        weight, bias uniform in ±1/√fan_in."""
        nn.Conv2d.reset_parameters(self)  # type: ignore[arg-type]  (reads only .weight and .bias)

    def forward(self, input: Tensor, offset: Tensor, mask: Tensor | None = None) -> Tensor:
        return functional.deform_conv2d(
            input, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, mask
        )

    def window_geometry(self) -> tuple[Window]:
        return window(self.kernel_size, self.stride, self.padding, self.dilation, 2,
                      note="the regular grid: sampling positions move with offsets learned per position")  # fmt: skip

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        text += f", padding={self.padding}" if self.padding != (0, 0) else ""
        text += f", dilation={self.dilation}" if self.dilation != (1, 1) else ""
        text += f", groups={self.groups}" if self.groups != 1 else ""
        return text + (", bias=False" if self.bias is None else "")


class DeformableConv2d(nn.Module):
    """A drop-in for ``Conv2d(in, out, k, stride, padding, dilation, groups, bias)`` that learns
    where to look: an ``offset`` convolution (same kernel, stride, padding and dilation,
    zero-initialised as in the DCN papers, so the layer starts as the plain convolution) predicts
    the offsets (and with ``modulated=True`` a sigmoid mask, DCNv2) for a :class:`DeformConv2d`.
    What ``conv=deformable`` builds for every k×k convolution of a model.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias: as
            :class:`Conv2d`'s.
        offset_groups: (keyword-only) input channels sharing one set of offsets. Default 1.
        modulated: (keyword-only) also learn a mask (DCNv2). Default False.

    Shape:
        ``(N, C_in, H, W)`` → ``(N, C_out, H_out, W_out)`` as :class:`Conv2d`'s.

    Example:
        >>> layer = DeformableConv2d(4, 8, 3, padding=1)
        >>> x = torch.randn(2, 4, 10, 10)
        >>> from cnnlab.nn import Conv2d
        >>> reference = Conv2d(4, 8, 3, padding=1)
        >>> _ = reference.load_state_dict(layer.conv.state_dict())
        >>> torch.allclose(layer(x), reference(x), atol=1e-5)  # zero offsets at initialisation
        True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        offset_groups: int = 1,
        modulated: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(offset_groups, int) or offset_groups <= 0 or in_channels % offset_groups:
            raise ValueError(
                f"DeformableConv2d: offset_groups must be a positive divisor of in_channels={in_channels}, "
                f"but got offset_groups={offset_groups!r}"
            )
        self.conv = DeformConv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        taps = self.conv.kernel_size[0] * self.conv.kernel_size[1]
        self.offset_groups, self.modulated = offset_groups, modulated
        self.offset = Conv2d(in_channels, (3 if modulated else 2) * offset_groups * taps, kernel_size, stride, padding,
                             dilation)  # fmt: skip
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def forward(self, input: Tensor) -> Tensor:
        predicted = self.offset(input)
        if not self.modulated:
            return self.conv(input, predicted)
        split = 2 * predicted.shape[1] // 3
        return self.conv(input, predicted[:, :split], torch.sigmoid(predicted[:, split:]))
