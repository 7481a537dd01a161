"""The ``depthwise`` convolution algorithm (``groups == in_channels``): the record that selects
:mod:`cnnlab.functional.depthwise`'s compute (the compiled kernels on the CPU, the tap loop
elsewhere). On CUDA the dispatch runs :mod:`.triton_depthwise` instead.
"""

from __future__ import annotations

from torch import Tensor

from ..depthwise import depthwise_conv2d
from .base import ConvAlgorithm, ConvCall

__all__ = ["DEPTHWISE", "one_channel_per_group"]


def _conv2d(input: Tensor, weight: Tensor, stride, padding, dilation, groups: int, bias: Tensor | None) -> Tensor:
    return depthwise_conv2d(input, weight, stride, padding, dilation, bias)


def one_channel_per_group(call: ConvCall) -> str | None:
    """``None`` where every group holds one input channel, else what depthwise kernels need."""
    if call.weight.shape[1] == 1 and call.groups == call.input.shape[1]:
        return None
    return f"groups == in_channels, but got groups={call.groups}, in_channels={call.input.shape[1]}"


DEPTHWISE = ConvAlgorithm("depthwise", requires=one_channel_per_group, eager=_conv2d, fuses_bias=True)
