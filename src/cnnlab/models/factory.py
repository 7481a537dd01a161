"""Layer factories for the model builder: what fills a model's ``conv`` and ``pool`` slots is
decided here, from the ``conv=`` and ``pool=`` config groups, and nowhere else.

``conv.kind`` and ``pool.kind`` name a :class:`LayerKind` record of :data:`CONVS` and :data:`POOLS`,
whose keyword-only arguments are the options its YAML file sets; a new kind is one entry there and
one file in ``configs/conv/`` or ``configs/pool/``. The torch kinds (``conv=torch``,
``pool=torch_max``) build each layer's ``torch.nn`` twin, read from :mod:`cnnlab.twins`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from .. import nn as layers
from ..twins import layer_class

__all__ = ["CONVS", "POOLS", "LayerKind", "create_conv", "create_conv_transpose", "create_global_pool", "create_pool"]

Config = Mapping[str, Any]


@dataclass(frozen=True)
class LayerKind:
    """One kind of layer for a model's conv or pool slot: ``build(*slot, **options)``, the slot's
    arguments positional (conv: in, out, kernel, stride, padding, dilation, groups, bias; pool:
    channels, kernel, stride, padding) and its options keyword-only: the keys its YAML file in
    ``configs/conv/`` or ``configs/pool/`` may set besides ``kind`` (the config check refuses any
    other, naming these)."""

    build: Callable[..., nn.Module]

    @property
    def options(self) -> tuple[str, ...]:
        parameters = inspect.signature(self.build).parameters.values()
        return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


def _conv2d(*args, algorithm: str = "auto") -> nn.Module:
    *shape, groups, bias = args
    return layers.Conv2d(*shape, groups=groups, bias=bias, algorithm=algorithm)


def _separable(*args, algorithm: str = "auto") -> nn.Module:
    """DepthwiseSeparableConv2d for every k×k convolution (1×1 and grouped ones stay Conv2d)."""
    *shape, groups, bias = args
    if shape[2] > 1 and groups == 1:
        return layers.DepthwiseSeparableConv2d(*shape, bias=bias)
    return _conv2d(*args, algorithm=algorithm)


def _deformable(*args, algorithm: str = "auto", offset_groups: int = 1, modulated: bool = False) -> nn.Module:
    """DeformableConv2d (offsets from a zero-initialised conv) for every k×k convolution; 1×1 ones stay Conv2d."""
    *shape, groups, bias = args
    if shape[2] > 1:
        return layers.DeformableConv2d(*shape, groups=groups, bias=bias, offset_groups=int(offset_groups),
                                       modulated=bool(modulated))  # fmt: skip
    return _conv2d(*args, algorithm=algorithm)


def _dilated(in_channels, out_channels, kernel, stride, padding, slot_dilation, groups, bias, *,
             algorithm: str = "auto", dilation: int = 2) -> nn.Module:  # fmt: skip
    """Conv2d with the dilation of every k×k stride-1 convolution multiplied by ``dilation`` (its
    padding widened to keep the size)."""
    if kernel > 1 and stride == 1:
        slot_dilation *= int(dilation)
        padding = slot_dilation * (kernel - 1) // 2
    return _conv2d(in_channels, out_channels, kernel, stride, padding, slot_dilation, groups, bias, algorithm=algorithm)


def _fft(*args) -> nn.Module:
    *shape, groups, bias = args
    return layers.FFTConv2d(*shape, groups=groups, bias=bias)


def _std(*args, eps: float = 1e-6, gain: bool = False) -> nn.Module:
    *shape, groups, bias = args
    return layers.StdConv2d(*shape, groups=groups, bias=bias, eps=float(eps), gain=bool(gain))


def _torch_conv(*args) -> nn.Module:
    *shape, groups, bias = args
    return layer_class(layers.Conv2d, "torch")(*shape, groups=groups, bias=bias)


# conv.kind → its record; a new kind is one entry here and one file in configs/conv/
CONVS: dict[str, LayerKind] = {
    "standard": LayerKind(_conv2d),
    "separable": LayerKind(_separable),
    "deformable": LayerKind(_deformable),
    "dilated": LayerKind(_dilated),
    "fft": LayerKind(_fft),
    "std": LayerKind(_std),
    "torch": LayerKind(_torch_conv),
}


def _lp(channels: int, kernel_size: int, stride: int, padding: int, *, norm_type: float = 2.0) -> nn.Module:
    if padding:
        raise ValueError(f"pool.kind=lp has no padding (as torch.nn.LPPool2d), but the layer asks padding={padding}")
    return layers.LPPool2d(float(norm_type), kernel_size, stride)


def _gaussian(channels: int, kernel_size: int, stride: int, padding: int, *, sigma: float = 1.0,
              learnable_sigma: bool = False) -> nn.Module:  # fmt: skip
    return layers.DistanceWeightedPool2d(kernel_size, stride, padding, kind="gaussian", sigma=float(sigma),
                                         learnable_sigma=bool(learnable_sigma))  # fmt: skip


def _blur(channels: int, kernel_size: int, stride: int, padding: int, *, filter_size: int = 3) -> nn.Module:
    return layers.MaxBlurPool2d(kernel_size, int(filter_size), stride)


def _maxout(channels: int, kernel_size: int, stride: int, padding: int, *, pieces: int = 2) -> nn.Module:
    """Separately parameterised 1×1 filters, max over each group of them, then max pooling."""
    return nn.Sequential(
        layers.Conv2d(channels, channels * int(pieces), 1),
        layers.ChannelMaxPool(int(pieces)),
        layers.MaxPool2d(kernel_size, stride, padding),
    )


# pool.kind → its record; a new kind is one entry here and one file in configs/pool/
POOLS: dict[str, LayerKind] = {
    "max": LayerKind(lambda channels, *args: layers.MaxPool2d(*args)),
    "avg": LayerKind(lambda channels, *args: layers.AvgPool2d(*args)),
    "lp": LayerKind(_lp),
    "gaussian": LayerKind(_gaussian),
    "blur": LayerKind(_blur),
    "maxout": LayerKind(_maxout),
    "torch_max": LayerKind(lambda channels, *args: layer_class(layers.MaxPool2d, "torch")(*args)),
}


def _backend(cfg: Config) -> str:
    """``torch`` for the torch kinds (the reference twins), else ``cnnlab``."""
    return "torch" if str(cfg.get("kind", "")).startswith("torch") else "cnnlab"


def _built(cfg: Config, table: Mapping[str, LayerKind], group: str, *slot) -> nn.Module:
    kind = cfg.get("kind")
    if kind not in table:
        raise ValueError(f"{group}.kind must be one of {list(table)}, but got {group}.kind={kind!r}")
    return table[kind].build(*slot, **{key: value for key, value in cfg.items() if key != "kind"})


def create_conv(
    cfg: Config,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    padding: int | str | None = None,
    dilation: int = 1,
    groups: int = 1,
    bias: bool = True,
) -> nn.Module:
    """A convolution for a model's conv slot. ``padding=None`` keeps the size at stride 1
    (``dilation·(k−1)/2`` on each side, odd kernels)."""
    if padding is None:
        padding = dilation * (kernel_size - 1) // 2
    return _built(cfg, CONVS, "conv", in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)


def create_conv_transpose(
    cfg: Config,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int,
    padding: int = 0,
    output_padding: int = 0,
    bias: bool = True,
) -> nn.Module:
    """A transposed convolution (decoder upsampling) from the conv backend."""
    cls = layer_class(layers.ConvTranspose2d, _backend(cfg))
    return cls(in_channels, out_channels, kernel_size, stride, padding, output_padding, bias=bias)


def create_pool(
    cfg: Config, channels: int, kernel_size: int = 2, stride: int | None = None, padding: int = 0
) -> nn.Module:
    """A spatial pooling layer for a model's pool slot."""
    return _built(cfg, POOLS, "pool", channels, kernel_size, kernel_size if stride is None else stride, padding)


def create_global_pool(cfg: Config, kind: str = "avg") -> nn.Module:
    """Global average or max pooling to ``(N, C)``, from the pool backend (torch's: adaptive pooling
    to 1×1, then ``Flatten``)."""
    if kind not in ("avg", "max"):
        raise ValueError(f"global_pool kind must be 'avg' or 'max', but got kind={kind!r}")
    if _backend(cfg) == "torch":
        adaptive = layers.AdaptiveAvgPool2d if kind == "avg" else layers.AdaptiveMaxPool2d
        return nn.Sequential(layer_class(adaptive, "torch")(1), nn.Flatten())
    return layers.GlobalAvgPool2d(flatten=True) if kind == "avg" else layers.GlobalMaxPool2d(flatten=True)
