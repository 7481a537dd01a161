"""Shift invariance of a whole model, measured as in Zhang 2019 ("Making Convolutional Networks
Shift-Invariant Again"):

- classification consistency: the probability that two random shifts of the same image get the
  same top-1 class;
- feature change: the mean relative change ``‖g(shift₁(x)) − g(x)‖ / ‖g(x)‖`` of the pooled
  features ``g`` (the input of the classifier) under a one-pixel shift.

Shifts are circular (``torch.roll``), so no content enters or leaves the image.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..nn.geometry import geometry_of

__all__ = ["classification_consistency", "feature_change", "layer_output", "pooling_layer"]


def pooling_layer(model: nn.Module) -> nn.Module | None:
    """The first layer of ``model`` whose outputs see the whole input (global or adaptive pooling),
    or a flatten: where its features stop being a map. None when it has none."""
    return next((m for m in model.modules() if geometry_of(m) == "global" or isinstance(m, nn.Flatten)), None)


def layer_output(model: nn.Module, x: Tensor, layer: nn.Module | None, which: str = "output") -> Tensor:
    """What ``layer`` (a module of ``model``) takes (``which="input"``) or gives while ``model``
    runs on ``x``; ``model``'s output when ``layer`` is None or not called."""
    seen: list[Tensor] = []
    handle = None if layer is None else layer.register_forward_hook(
        lambda module, args, output: seen.append(args[0] if which == "input" else output)
    )  # fmt: skip
    try:
        out = model(x)
    finally:
        if handle is not None:
            handle.remove()
    return seen[0] if seen else out


@torch.no_grad()
def classification_consistency(model: nn.Module, images: Tensor, max_shift: int = 8, seed: int = 0) -> float:
    """P(top-1 class of two random circular shifts, each in [−max_shift, max_shift]², agree)."""
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        offsets = torch.randint(-max_shift, max_shift + 1, (2, len(images), 2), generator=generator)
        predictions = []
        for shift in offsets:
            shifted = torch.stack(
                [torch.roll(img, (int(dy), int(dx)), (-2, -1)) for img, (dy, dx) in zip(images, shift)]
            )
            predictions.append(model(shifted).argmax(1))
    finally:
        model.train(was_training)
    return float((predictions[0] == predictions[1]).float().mean())


@torch.no_grad()
def feature_change(model: nn.Module, images: Tensor, shift: int = 1) -> float:
    """Mean relative change of the pooled features (the output of :func:`pooling_layer`) under a
    ``shift``-pixel horizontal roll."""
    pool = pooling_layer(model)
    was_training = model.training
    model.eval()
    try:
        base = layer_output(model, images, pool).flatten(1)
        moved = layer_output(model, torch.roll(images, shift, -1), pool).flatten(1)
    finally:
        model.train(was_training)
    return float(((moved - base).norm(dim=1) / base.norm(dim=1).clamp(min=1e-12)).mean())
