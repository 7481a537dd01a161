"""cnnlab: convolution and pooling from first principles, CIFAR-10 experiments from YAML."""

from . import functional, nn, onnx
from .convert import ConversionError, convert, functional_mode

__all__ = ["ConversionError", "convert", "functional", "functional_mode", "nn", "onnx"]
__version__ = "0.1.0"
