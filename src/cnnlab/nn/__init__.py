"""cnnlab layers: drop-in replacements for ``torch.nn`` convolution and pooling modules."""

from .conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d, FFTConv2d
from .separable import DepthwiseSeparableConv2d

__all__ = [
    "Conv1d",
    "Conv2d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "DepthwiseSeparableConv2d",
    "FFTConv2d",
]
