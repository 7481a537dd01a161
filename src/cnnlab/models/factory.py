"""Layer factories for the model builder: what fills a model's ``conv`` and ``pool`` slots is
decided here, from the ``conv=`` and ``pool=`` config groups, and nowhere else.

``conv.kind``: ``standard`` (cnnlab Conv2d), ``separable`` (DepthwiseSeparableConv2d for every
k×k conv), ``dilated`` (k×k stride-1 convs get ``conv.dilation``), ``fft`` (FFTConv2d) or
``torch`` (torch.nn layers: the reference twin).
``pool.kind``: ``max``, ``avg``, ``lp`` (``norm_type``), ``gaussian`` (``sigma``), ``blur``
(MaxBlurPool2d, ``filter_size``), ``maxout`` (``pieces`` 1×1 filters per channel, max over them,
then max pooling) or ``torch_max`` (torch.nn.MaxPool2d).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from .. import nn as layers

__all__ = ["CONV_KINDS", "POOL_KINDS", "create_conv", "create_conv_transpose", "create_global_pool", "create_pool"]

CONV_KINDS = ("standard", "separable", "dilated", "fft", "torch")
POOL_KINDS = ("max", "avg", "lp", "gaussian", "blur", "maxout", "torch_max")


def _kind(cfg: Mapping[str, Any], allowed: tuple[str, ...], group: str) -> str:
    kind = cfg.get("kind")
    if kind not in allowed:
        raise ValueError(f"{group}.kind must be one of {list(allowed)}, but got {group}.kind={kind!r}")
    return kind


def _is_torch(cfg: Mapping[str, Any]) -> bool:
    return str(cfg.get("kind", "")).startswith("torch")


def create_conv(
    cfg: Mapping[str, Any],
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
    kind = _kind(cfg, CONV_KINDS, "conv")
    if kind == "dilated" and kernel_size > 1 and stride == 1:
        dilation = dilation * int(cfg.get("dilation", 2))
        padding = None
    if padding is None:
        padding = dilation * (kernel_size - 1) // 2
    args = (in_channels, out_channels, kernel_size, stride, padding, dilation)
    if kind == "torch":
        return nn.Conv2d(*args, groups=groups, bias=bias)  # torch-backend
    if kind == "fft":
        return layers.FFTConv2d(*args, groups=groups, bias=bias)
    if kind == "separable" and kernel_size > 1 and groups == 1:
        return layers.DepthwiseSeparableConv2d(*args, bias=bias)
    return layers.Conv2d(*args, groups=groups, bias=bias, algorithm=cfg.get("algorithm", "auto"))


def create_conv_transpose(
    cfg: Mapping[str, Any],
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int,
    padding: int = 0,
    output_padding: int = 0,
    bias: bool = True,
) -> nn.Module:
    """A transposed convolution (decoder upsampling) from the conv backend."""
    cls = nn.ConvTranspose2d if _is_torch(cfg) else layers.ConvTranspose2d
    return cls(in_channels, out_channels, kernel_size, stride, padding, output_padding, bias=bias)


def create_pool(
    cfg: Mapping[str, Any], channels: int, kernel_size: int = 2, stride: int | None = None, padding: int = 0
) -> nn.Module:
    """A spatial pooling layer for a model's pool slot."""
    kind = _kind(cfg, POOL_KINDS, "pool")
    stride = kernel_size if stride is None else stride
    if kind == "torch_max":
        return nn.MaxPool2d(kernel_size, stride, padding)  # torch-backend
    if kind == "max":
        return layers.MaxPool2d(kernel_size, stride, padding)
    if kind == "avg":
        return layers.AvgPool2d(kernel_size, stride, padding)
    if kind == "lp":
        if padding:
            raise ValueError(
                f"pool.kind=lp has no padding (as torch.nn.LPPool2d), but the layer asks padding={padding}"
            )
        return layers.LPPool2d(float(cfg.get("norm_type", 2)), kernel_size, stride)
    if kind == "gaussian":
        return layers.DistanceWeightedPool2d(
            kernel_size,
            stride,
            padding,
            kind="gaussian",
            sigma=float(cfg.get("sigma", 1.0)),
            learnable_sigma=bool(cfg.get("learnable_sigma", False)),
        )
    if kind == "blur":
        return layers.MaxBlurPool2d(kernel_size, int(cfg.get("filter_size", 3)), stride)
    # maxout: separately parameterised 1×1 filters, max over each group of them, then max pooling
    pieces = int(cfg.get("pieces", 2))
    return nn.Sequential(
        layers.Conv2d(channels, channels * pieces, 1),
        layers.ChannelMaxPool(pieces),
        layers.MaxPool2d(kernel_size, stride, padding),
    )


def create_global_pool(cfg: Mapping[str, Any], kind: str = "avg") -> nn.Module:
    """Global average or max pooling to ``(N, C)``, from the pool backend."""
    if kind not in ("avg", "max"):
        raise ValueError(f"global_pool kind must be 'avg' or 'max', but got kind={kind!r}")
    if _is_torch(cfg):
        pool = nn.AdaptiveAvgPool2d(1) if kind == "avg" else nn.AdaptiveMaxPool2d(1)  # torch-backend
        return nn.Sequential(pool, nn.Flatten())
    return layers.GlobalAvgPool2d(flatten=True) if kind == "avg" else layers.GlobalMaxPool2d(flatten=True)
