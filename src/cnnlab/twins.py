"""The one table pairing each cnnlab layer with its ``torch.nn`` twin.

Read by :func:`cnnlab.convert` and by the model factories (``conv=torch``, ``pool=torch_max``
build the twins listed here), so adding a layer pair here is all it takes for the rest of cnnlab
to swap it. Each entry names the constructor arguments that both classes store as attributes
under the same name.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from torch import nn

from . import nn as cnn

__all__ = ["EXTENSIONS", "LAYER_PAIRS", "LayerPair", "cnnlab_twin", "layer_class", "layer_pairs", "torch_twin"]

_CONV = (
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "groups",
    "bias",
    "padding_mode",
)
_CONV_TRANSPOSE = (*_CONV, "output_padding")
_MAX_POOL = ("kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode")
_AVG_POOL = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
_LP_POOL = ("norm_type", "kernel_size", "stride", "ceil_mode")
_UNPOOL = ("kernel_size", "stride", "padding")
_FRACTIONAL = ("kernel_size", "output_size", "output_ratio", "return_indices")
_LAZY = tuple(name for name in _CONV if name != "in_channels")
_DEFORM = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias")


@dataclass(frozen=True)
class LayerPair:
    """A cnnlab layer, its torch twin, and the constructor arguments they share."""

    cnnlab: type[nn.Module]
    torch: type[nn.Module]
    arguments: tuple[str, ...]


LAYER_PAIRS: tuple[LayerPair, ...] = (
    LayerPair(cnn.Conv1d, nn.Conv1d, _CONV),
    LayerPair(cnn.Conv2d, nn.Conv2d, _CONV),
    LayerPair(cnn.FFTConv2d, nn.Conv2d, _CONV),
    LayerPair(cnn.ConvTranspose1d, nn.ConvTranspose1d, _CONV_TRANSPOSE),
    LayerPair(cnn.ConvTranspose2d, nn.ConvTranspose2d, _CONV_TRANSPOSE),
    LayerPair(cnn.Conv3d, nn.Conv3d, _CONV),
    LayerPair(cnn.ConvTranspose3d, nn.ConvTranspose3d, _CONV_TRANSPOSE),
    LayerPair(cnn.MaxPool1d, nn.MaxPool1d, _MAX_POOL),
    LayerPair(cnn.MaxPool2d, nn.MaxPool2d, _MAX_POOL),
    LayerPair(cnn.MaxPool3d, nn.MaxPool3d, _MAX_POOL),
    LayerPair(cnn.MaxUnpool1d, nn.MaxUnpool1d, _UNPOOL),
    LayerPair(cnn.MaxUnpool2d, nn.MaxUnpool2d, _UNPOOL),
    LayerPair(cnn.MaxUnpool3d, nn.MaxUnpool3d, _UNPOOL),
    LayerPair(cnn.AvgPool1d, nn.AvgPool1d, _AVG_POOL),
    LayerPair(cnn.AvgPool2d, nn.AvgPool2d, (*_AVG_POOL, "divisor_override")),
    LayerPair(cnn.AvgPool3d, nn.AvgPool3d, (*_AVG_POOL, "divisor_override")),
    LayerPair(cnn.LPPool1d, nn.LPPool1d, _LP_POOL),
    LayerPair(cnn.LPPool2d, nn.LPPool2d, _LP_POOL),
    LayerPair(cnn.LPPool3d, nn.LPPool3d, _LP_POOL),
    LayerPair(cnn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool1d, ("output_size",)),
    LayerPair(cnn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool2d, ("output_size",)),
    LayerPair(cnn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool1d, ("output_size", "return_indices")),
    LayerPair(cnn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool2d, ("output_size", "return_indices")),
    LayerPair(cnn.AdaptiveAvgPool3d, nn.AdaptiveAvgPool3d, ("output_size",)),
    LayerPair(cnn.AdaptiveMaxPool3d, nn.AdaptiveMaxPool3d, ("output_size", "return_indices")),
    LayerPair(cnn.FractionalMaxPool2d, nn.FractionalMaxPool2d, _FRACTIONAL),
    LayerPair(cnn.FractionalMaxPool3d, nn.FractionalMaxPool3d, _FRACTIONAL),
    *(
        LayerPair(getattr(cnn, f"Lazy{name}"), getattr(nn, f"Lazy{name}"), _LAZY)
        for name in ("Conv1d", "Conv2d", "Conv3d")
    ),
    *(
        LayerPair(getattr(cnn, f"Lazy{name}"), getattr(nn, f"Lazy{name}"), (*_LAZY, "output_padding"))
        for name in ("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")
    ),
)


@functools.cache
def layer_pairs() -> tuple[LayerPair, ...]:
    """:data:`LAYER_PAIRS` and the torchvision layers that cnnlab twins, where torchvision is
    installed (it is optional). Looked up on first use, not at ``import cnnlab``: importing
    ``torchvision.ops`` costs a second there (it imports ``torch._dynamo``)."""
    try:
        from torchvision.ops import DeformConv2d
    except ImportError:
        return LAYER_PAIRS
    return (*LAYER_PAIRS, LayerPair(cnn.DeformConv2d, DeformConv2d, _DEFORM))


# cnnlab layers that are torch conv classes (isinstance checks and init loops reach them) but
# compute what torch's class cannot: no twin, so convert(to="torch") leaves them, and says so
EXTENSIONS: dict[type[nn.Module], str] = {cnn.StdConv2d: "weight standardisation"}


def torch_twin(cls: type[nn.Module]) -> LayerPair | None:
    """The pair whose cnnlab side is exactly ``cls`` (subclasses with other forwards are not twins)."""
    return next((pair for pair in layer_pairs() if pair.cnnlab is cls), None)


def cnnlab_twin(cls: type[nn.Module]) -> LayerPair | None:
    """The first pair whose torch side is exactly ``cls``."""
    return next((pair for pair in layer_pairs() if pair.torch is cls), None)


def layer_class(cls: type[nn.Module], backend: str) -> type[nn.Module]:
    """``cls`` (a cnnlab layer) for ``backend="cnnlab"``, its torch twin for ``backend="torch"``."""
    if backend == "cnnlab":
        return cls
    pair = torch_twin(cls)
    if pair is None:
        raise ValueError(f"{cls.__name__} has no torch twin in cnnlab.twins.layer_pairs()")
    return pair.torch
