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

from .receptive_field import GLOBAL_POOLS

__all__ = ["classification_consistency", "feature_change", "feature_extractor"]


def feature_extractor(model: nn.Sequential) -> nn.Sequential:
    """The layers of ``model`` up to and including its global/adaptive pooling (or flatten)."""
    pools = (*GLOBAL_POOLS, nn.Flatten)
    for index, layer in enumerate(model):
        if isinstance(layer, pools) or (isinstance(layer, nn.Sequential) and any(isinstance(m, pools) for m in layer)):
            return model[: index + 1]
    return model


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
def feature_change(model: nn.Sequential, images: Tensor, shift: int = 1) -> float:
    """Mean relative change of the pooled features under a ``shift``-pixel horizontal roll."""
    features = feature_extractor(model)
    was_training = features.training
    features.eval()
    try:
        base = features(images).flatten(1)
        moved = features(torch.roll(images, shift, -1)).flatten(1)
    finally:
        features.train(was_training)
    return float(((moved - base).norm(dim=1) / base.norm(dim=1).clamp(min=1e-12)).mean())
