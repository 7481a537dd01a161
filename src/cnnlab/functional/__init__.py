"""cnnlab's math: convolution and pooling as pure functions with ``torch.nn.functional``'s
signatures, built from tensor primitives only."""

from .conv import conv1d, conv2d, conv_transpose1d, conv_transpose2d, fft_conv2d

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "fft_conv2d"]
