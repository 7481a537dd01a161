"""cnnlab: convolution and pooling from first principles, CIFAR-10 experiments from YAML."""

from . import functional, nn
from .convert import ConversionError, convert, functional_mode

__all__ = ["ConversionError", "convert", "functional", "functional_mode", "nn"]
__version__ = "0.1.0"
