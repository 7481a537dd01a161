"""cnnlab layers: drop-in replacements for ``torch.nn`` convolution and pooling modules."""

from .conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d, FFTConv2d
from .pool import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AdaptiveMaxPool1d,
    AdaptiveMaxPool2d,
    AvgPool1d,
    AvgPool2d,
    BlurPool2d,
    ChannelMaxPool,
    DistanceWeightedPool2d,
    GlobalAvgPool2d,
    GlobalMaxPool2d,
    LPPool1d,
    LPPool2d,
    MaxBlurPool2d,
    MaxPool1d,
    MaxPool2d,
    MaxUnpool2d,
)
from .separable import DepthwiseSeparableConv2d

__all__ = [
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "AvgPool1d",
    "AvgPool2d",
    "BlurPool2d",
    "ChannelMaxPool",
    "Conv1d",
    "Conv2d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "DepthwiseSeparableConv2d",
    "DistanceWeightedPool2d",
    "FFTConv2d",
    "GlobalAvgPool2d",
    "GlobalMaxPool2d",
    "LPPool1d",
    "LPPool2d",
    "MaxBlurPool2d",
    "MaxPool1d",
    "MaxPool2d",
    "MaxUnpool2d",
]
