"""cnnlab: convolution and pooling from first principles, CIFAR-10 experiments from YAML."""

from . import functional, nn
from .convert import convert

__all__ = ["convert", "functional", "nn"]
__version__ = "0.1.0"
