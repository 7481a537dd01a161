"""Convolution: the public functions (:mod:`.api`), the one dispatch that picks an algorithm
(:mod:`.dispatch`), the table of algorithms (:mod:`.algorithms`) and one module per algorithm,
sharing the contract in :mod:`.base`."""

from .api import (
    conv1d,
    conv2d,
    conv3d,
    conv_tbc,
    conv_transpose1d,
    conv_transpose2d,
    conv_transpose3d,
    fft_conv2d,
    standardize_weight,
    std_conv2d,
)
from .deformable import deform_conv2d

__all__ = [
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_tbc",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "deform_conv2d",
    "fft_conv2d",
    "standardize_weight",
    "std_conv2d",
]
