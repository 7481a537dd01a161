"""Layer factories for the model builder: what fills a model's ``conv`` and ``pool`` slots is
decided here, from the ``conv=`` and ``pool=`` config groups, and nowhere else.

``conv.kind`` and ``pool.kind`` name an entry of :data:`CONVS` and :data:`POOLS`; a new kind is one
entry there and one file in ``configs/conv/`` or ``configs/pool/``. The torch kinds (``conv=torch``,
``pool=torch_max``) build each layer's ``torch.nn`` twin, read from :mod:`cnnlab.twins`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from .. import nn as layers
from ..twins import layer_class

__all__ = ["CONVS", "CONV_KINDS", "CONV_OPTIONS", "POOLS", "POOL_KINDS", "POOL_OPTIONS", "create_conv",
           "create_conv_transpose", "create_global_pool", "create_pool"]  # fmt: skip

Config = Mapping[str, Any]


def _backend(cfg: Config) -> str:
    """``torch`` for the torch kinds (the reference twins), else ``cnnlab``."""
    return "torch" if str(cfg.get("kind", "")).startswith("torch") else "cnnlab"


def _conv2d(cfg: Config, *args, groups: int, bias: bool) -> nn.Module:
    return layers.Conv2d(*args, groups=groups, bias=bias, algorithm=cfg.get("algorithm", "auto"))


def _separable(cfg: Config, *args, groups: int, bias: bool) -> nn.Module:
    """DepthwiseSeparableConv2d for every k×k convolution (1×1 and grouped ones stay Conv2d)."""
    kernel_size = args[2]
    if kernel_size > 1 and groups == 1:
        return layers.DepthwiseSeparableConv2d(*args, bias=bias)
    return _conv2d(cfg, *args, groups=groups, bias=bias)


def _deformable(cfg: Config, *args, groups: int, bias: bool) -> nn.Module:
    """DeformableConv2d (offsets from a zero-initialised conv) for every k×k convolution; 1×1 ones stay Conv2d."""
    if args[2] > 1:
        return layers.DeformableConv2d(*args, groups=groups, bias=bias, offset_groups=int(cfg.get("offset_groups", 1)),
                                       modulated=bool(cfg.get("modulated", False)))  # fmt: skip
    return _conv2d(cfg, *args, groups=groups, bias=bias)


# conv.kind → (cfg, in, out, kernel, stride, padding, dilation, *, groups, bias) → layer
CONVS: dict[str, Callable[..., nn.Module]] = {
    "standard": _conv2d,
    "separable": _separable,
    "deformable": _deformable,
    "dilated": _conv2d,  # create_conv widens the dilation of k×k stride-1 convolutions
    "fft": lambda cfg, *args, groups, bias: layers.FFTConv2d(*args, groups=groups, bias=bias),
    "std": lambda cfg, *args, groups, bias: layers.StdConv2d(
        *args, groups=groups, bias=bias, eps=float(cfg.get("eps", 1e-6)), gain=bool(cfg.get("gain", False))
    ),
    "torch": lambda cfg, *args, groups, bias: layer_class(layers.Conv2d, "torch")(*args, groups=groups, bias=bias),
}
# conv.kind → the keys of the conv= group it reads besides `kind` (the config check refuses any other)
CONV_OPTIONS: dict[str, tuple[str, ...]] = {
    "standard": ("algorithm",),
    "separable": ("algorithm",),  # (its 1×1 and grouped convolutions)
    "deformable": ("algorithm", "offset_groups", "modulated"),
    "dilated": ("algorithm", "dilation"),
    "fft": (),
    "std": ("eps", "gain"),
    "torch": (),
}


def _lp(cfg: Config, channels: int, kernel_size: int, stride: int, padding: int) -> nn.Module:
    if padding:
        raise ValueError(f"pool.kind=lp has no padding (as torch.nn.LPPool2d), but the layer asks padding={padding}")
    return layers.LPPool2d(float(cfg.get("norm_type", 2)), kernel_size, stride)


def _gaussian(cfg: Config, channels: int, kernel_size: int, stride: int, padding: int) -> nn.Module:
    sigma, learnable = float(cfg.get("sigma", 1.0)), bool(cfg.get("learnable_sigma", False))
    return layers.DistanceWeightedPool2d(kernel_size, stride, padding, kind="gaussian", sigma=sigma,
                                         learnable_sigma=learnable)  # fmt: skip


def _maxout(cfg: Config, channels: int, kernel_size: int, stride: int, padding: int) -> nn.Module:
    """Separately parameterised 1×1 filters, max over each group of them, then max pooling."""
    pieces = int(cfg.get("pieces", 2))
    return nn.Sequential(
        layers.Conv2d(channels, channels * pieces, 1),
        layers.ChannelMaxPool(pieces),
        layers.MaxPool2d(kernel_size, stride, padding),
    )


# pool.kind → (cfg, channels, kernel, stride, padding) → layer
POOLS: dict[str, Callable[..., nn.Module]] = {
    "max": lambda cfg, channels, *args: layers.MaxPool2d(*args),
    "avg": lambda cfg, channels, *args: layers.AvgPool2d(*args),
    "lp": _lp,
    "gaussian": _gaussian,
    "blur": lambda cfg, channels, k, s, p: layers.MaxBlurPool2d(k, int(cfg.get("filter_size", 3)), s),
    "maxout": _maxout,
    "torch_max": lambda cfg, channels, *args: layer_class(layers.MaxPool2d, "torch")(*args),
}
# pool.kind → the keys of the pool= group it reads besides `kind`
POOL_OPTIONS: dict[str, tuple[str, ...]] = {
    "max": (),
    "avg": (),
    "lp": ("norm_type",),
    "gaussian": ("sigma", "learnable_sigma"),
    "blur": ("filter_size",),
    "maxout": ("pieces",),
    "torch_max": (),
}

CONV_KINDS = tuple(CONVS)
POOL_KINDS = tuple(POOLS)


def _kind(cfg: Config, table: Mapping[str, Any], group: str) -> str:
    kind = cfg.get("kind")
    if kind not in table:
        raise ValueError(f"{group}.kind must be one of {list(table)}, but got {group}.kind={kind!r}")
    return kind


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
    kind = _kind(cfg, CONVS, "conv")
    if kind == "dilated" and kernel_size > 1 and stride == 1:
        dilation = dilation * int(cfg.get("dilation", 2))
        padding = None
    if padding is None:
        padding = dilation * (kernel_size - 1) // 2
    return CONVS[kind](cfg, in_channels, out_channels, kernel_size, stride, padding, dilation, groups=groups, bias=bias)


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
    kind = _kind(cfg, POOLS, "pool")
    return POOLS[kind](cfg, channels, kernel_size, kernel_size if stride is None else stride, padding)


def create_global_pool(cfg: Config, kind: str = "avg") -> nn.Module:
    """Global average or max pooling to ``(N, C)``, from the pool backend (torch's: adaptive pooling
    to 1×1, then ``Flatten``)."""
    if kind not in ("avg", "max"):
        raise ValueError(f"global_pool kind must be 'avg' or 'max', but got kind={kind!r}")
    if _backend(cfg) == "torch":
        adaptive = layers.AdaptiveAvgPool2d if kind == "avg" else layers.AdaptiveMaxPool2d
        return nn.Sequential(layer_class(adaptive, "torch")(1), nn.Flatten())
    return layers.GlobalAvgPool2d(flatten=True) if kind == "avg" else layers.GlobalMaxPool2d(flatten=True)
