"""Depthwise-separable convolution (MobileNet, Xception): a per-channel spatial filter followed by
a 1×1 channel mixer."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..functional._utils import IntOrTuple
from .conv import Conv2d

__all__ = ["DepthwiseSeparableConv2d"]


class DepthwiseSeparableConv2d(nn.Module):
    r"""Depthwise ``k×k`` convolution (``groups=in_channels``, ``depth_multiplier`` filters per
    channel), an optional norm and activation, then a pointwise ``1×1`` convolution.

    Parameters (with bias): ``C·m·k² + C·m`` (depthwise) ``+ C·m·C_out + C_out`` (pointwise),
    against ``C·C_out·k² + C_out`` for a full :class:`Conv2d` — about ``1/C_out + 1/k²`` of it
    when ``m = 1``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, bias, padding_mode:
            as :class:`cnnlab.nn.Conv2d`; spatial arguments apply to the depthwise step, ``bias``
            to both steps.
        depth_multiplier (int): depthwise filters per input channel. Default 1.
        norm_layer (callable | None): ``norm_layer(in_channels * depth_multiplier)`` builds the
            norm between the two steps, e.g. ``torch.nn.BatchNorm2d``. Default none.
        act_layer (callable | None): ``act_layer()`` builds the activation between the two steps,
            e.g. ``torch.nn.ReLU``. Default none.

    Children: ``depthwise``, ``norm``, ``act``, ``pointwise`` (``nn.Identity`` where absent).

    Shape:
        ``(N, C_in, H, W)`` or ``(C_in, H, W)`` → ``(N, C_out, H_out, W_out)``, ``H_out`` as for
        the depthwise :class:`Conv2d`.

    Example:
        >>> DepthwiseSeparableConv2d(32, 64, 3, padding=1)(torch.randn(2, 32, 16, 16)).shape
        torch.Size([2, 64, 16, 16])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: str | IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        depth_multiplier: int = 1,
        norm_layer: Callable[[int], nn.Module] | None = None,
        act_layer: Callable[[], nn.Module] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(depth_multiplier, int) or depth_multiplier <= 0:
            raise ValueError(
                f"DepthwiseSeparableConv2d: depth_multiplier must be a positive integer, "
                f"but got depth_multiplier={depth_multiplier!r}"
            )
        factory = {"device": device, "dtype": dtype}
        mid = in_channels * depth_multiplier
        self.depthwise = Conv2d(
            in_channels,
            mid,
            kernel_size,
            stride,
            padding,
            dilation,
            groups=in_channels,
            bias=bias,
            padding_mode=padding_mode,
            **factory,
        )
        self.norm = norm_layer(mid) if norm_layer is not None else nn.Identity()
        self.act = act_layer() if act_layer is not None else nn.Identity()
        self.pointwise = Conv2d(mid, out_channels, 1, bias=bias, **factory)
        if norm_layer is not None:
            self.norm.to(**factory)

    def forward(self, input: Tensor) -> Tensor:
        return self.pointwise(self.act(self.norm(self.depthwise(input))))
