"""Batched augmentation on tensors, on the training device: no per-image Python work, so two CPU
cores are not the bottleneck."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["augment_batch", "normalize"]


def normalize(images: Tensor, mean: Tensor, std: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """uint8 ``(N, 3, H, W)`` → float ``(x/255 − mean)/std`` with per-channel ``mean``/``std``."""
    x = images.to(dtype).div_(255)
    return (x - mean.view(1, -1, 1, 1).to(x)) / std.view(1, -1, 1, 1).to(x)


def augment_batch(images: Tensor, pad: int, flip: bool | Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Random crop with ``pad`` pixels of reflect padding and horizontal flip, per image, for a
    whole batch at once: pad, then gather each image's crop with one index computation.
    ``flip``: True flips each image with probability 1/2; a bool ``(N,)`` mask flips the chosen ones."""
    n, _, height, width = images.shape
    out = images
    if pad > 0:
        padded = F.pad(images.float(), [pad, pad, pad, pad], mode="reflect").to(images.dtype)
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device="cpu").to(images.device)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device="cpu").to(images.device)
        rows = (dy[:, None] + torch.arange(height, device=images.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(width, device=images.device))[:, None, None, :]
        batch = torch.arange(n, device=images.device)[:, None, None, None]
        channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
        out = padded[batch, channel, rows, cols]
    if isinstance(flip, Tensor) or flip:
        mask = flip if isinstance(flip, Tensor) else torch.rand(n, generator=generator, device="cpu") < 0.5
        out = torch.where(mask.to(images.device)[:, None, None, None], out.flip(-1), out)
    return out
