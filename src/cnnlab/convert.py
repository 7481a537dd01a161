"""Swap every supported layer of a model for its cnnlab or torch twin, keeping the weights."""

from __future__ import annotations

import copy
from typing import Literal

from torch import nn

from .backend import LayerPair, cnnlab_twin, torch_twin

__all__ = ["convert"]


def _rebuild(layer: nn.Module, pair: LayerPair, to: str) -> nn.Module:
    target = pair.cnnlab if to == "cnnlab" else pair.torch
    kwargs = {name: getattr(layer, name) for name in pair.arguments}
    if "bias" in kwargs:
        kwargs["bias"] = kwargs["bias"] is not None
    tensor = next(layer.parameters(), None)
    if tensor is not None:
        kwargs.update(device=tensor.device, dtype=tensor.dtype)
    new = target(**kwargs)
    new.load_state_dict(layer.state_dict())
    new.train(layer.training)
    return new


def convert(module: nn.Module, to: Literal["cnnlab", "torch"] = "cnnlab", inplace: bool = False) -> nn.Module:
    """Return ``module`` with every layer listed in :data:`cnnlab.backend.LAYER_PAIRS` replaced by
    its counterpart, recursively, with the same arguments, weights, device, dtype and mode.

    Only exact classes are swapped (a subclass with its own ``forward`` is left alone).

    Example:
        >>> import torchvision
        >>> model = convert(torchvision.models.resnet18(), to="cnnlab")
    """
    if to not in ("cnnlab", "torch"):
        raise ValueError(f"convert: to must be 'cnnlab' or 'torch', but got to={to!r}")
    find = cnnlab_twin if to == "cnnlab" else torch_twin
    pair = find(type(module))
    if pair is not None:
        return _rebuild(module, pair, to)
    if not inplace:
        module = copy.deepcopy(module)
    for name, child in module.named_children():
        setattr(module, name, convert(child, to, inplace=True))
    return module
