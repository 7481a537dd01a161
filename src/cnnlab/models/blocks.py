"""The residual blocks of the standard CIFAR-10 architectures, as layer lists of the model
builder: a block is data (``conv``/``bn``/``relu``/``residual`` items), so its convolutions fill
the ``conv=`` slot like any other layer and its shortcut is the builder's (identity, or a strided
1×1 projection + BN when the body changes the shape).

==========================  ==================================================================
``basic``                   ResNet-18/34: ``relu(conv3×3(s) → BN → ReLU → conv3×3 → BN + shortcut)``
``bottleneck``              ResNet-50: 1×1 → 3×3(s) → 1×1 to ``expansion·out_channels`` (4), then ReLU
``preact``                  pre-activation ResNet: ``BN → ReLU`` shared by body and projection
                            (He et al. 2016b), no ReLU after the sum, projection without BN
``inverted_residual``       MobileNetV2: 1×1 to ``expansion·in_channels`` → depthwise 3×3(s) →
                            linear 1×1; a residual only at stride 1
==========================  ==================================================================

Each takes ``out_channels`` and ``stride`` (default 1); ``bottleneck`` and ``inverted_residual``
also ``expansion``. The layouts and defaults are kuangliu/pytorch-cifar's, whose parameter
counts ``tests/configs/test_architectures.py`` asserts.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["BLOCKS", "expand_block"]

Layers = list[Any]


def _conv(out_channels: int, kernel_size: int, stride: int = 1) -> dict[str, Any]:
    return {"conv": {"out_channels": out_channels, "kernel_size": kernel_size, "stride": stride, "bias": False}}


def _basic(out_channels: int, stride: int = 1) -> Layers:
    body = [_conv(out_channels, 3, stride), "bn", "relu", _conv(out_channels, 3), "bn"]
    return [{"residual": body}, "relu"]


def _bottleneck(out_channels: int, stride: int = 1, expansion: int = 4) -> Layers:
    body = [_conv(out_channels, 1), "bn", "relu", _conv(out_channels, 3, stride), "bn", "relu"]
    body += [{"conv": {"expand": expansion, "kernel_size": 1, "bias": False}}, "bn"]
    return [{"residual": body}, "relu"]


def _preact(out_channels: int, stride: int = 1) -> Layers:
    body = [_conv(out_channels, 3, stride), "bn", "relu", _conv(out_channels, 3)]
    return [{"residual": {"pre": ["bn", "relu"], "layers": body, "shortcut_norm": False}}]


def _inverted_residual(out_channels: int, stride: int = 1, expansion: int = 6) -> Layers:
    body = [{"conv": {"expand": expansion, "kernel_size": 1, "bias": False}}, "bn", "relu"]
    body += [{"conv": {"expand": 1, "kernel_size": 3, "stride": stride, "groups": "depthwise", "bias": False}}]
    body += ["bn", "relu", _conv(out_channels, 1), "bn"]
    return [{"residual": body}] if stride == 1 else body


BLOCKS: dict[str, Callable[..., Layers]] = {
    "basic": _basic,
    "bottleneck": _bottleneck,
    "preact": _preact,
    "inverted_residual": _inverted_residual,
}


def expand_block(name: str, args: dict[str, Any]) -> Layers:
    """The layer list of block ``name`` with ``args``; an unknown or missing argument raises ``ValueError``."""
    parameters = inspect.signature(BLOCKS[name]).parameters
    unknown = sorted(set(args) - set(parameters))
    if unknown:
        raise ValueError(f"unknown argument(s) {unknown}; allowed: {sorted(parameters)}")
    if "out_channels" not in args:
        raise ValueError("out_channels is required")
    return BLOCKS[name](**args)
