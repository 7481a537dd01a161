"""Batched augmentation on tensors, on the training device: no per-image Python work (except a
torchvision policy, which transforms image by image), so two CPU cores are not the bottleneck.
Every random draw comes from the ``generator`` passed in, so a batch's augmentation is a function of
the seed, the epoch and the batch index, and a resumed run repeats it exactly.

In the order the loader applies them: :func:`augment_batch` (random crop, flip) and
:func:`apply_policy` on uint8 images, then on normalised images :func:`cutout` and
:func:`mix_batch` (MixUp / CutMix with soft targets)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["POLICIES", "apply_policy", "augment_batch", "cutout", "mix_batch", "normalize"]

POLICIES = ("none", "trivialaugment", "randaugment", "autoaugment")


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


def apply_policy(images: Tensor, policy: str, generator: torch.Generator) -> Tensor:
    """``torchvision.transforms.v2``'s ``TrivialAugmentWide``, ``RandAugment`` or ``AutoAugment``
    (CIFAR-10 policy) on each uint8 ``(N, 3, H, W)`` image with its own draws (a v2 transform given
    the whole batch would apply one draw to all). torchvision draws from torch's global generator:
    it is seeded from ``generator`` inside ``fork_rng``, so the global state is left as it was."""
    if policy == "none":
        return images
    from torchvision.transforms import v2

    transforms = {"trivialaugment": v2.TrivialAugmentWide, "randaugment": v2.RandAugment,
                  "autoaugment": lambda: v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)}  # fmt: skip
    transform = transforms[policy]()
    seed = int(torch.randint(2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.stack([transform(image) for image in images])


def _boxes(n: int, height: int, width: int, box_h: Tensor, box_w: Tensor, generator: torch.Generator, device):
    """``(N, 1, H, W)`` masks of one box per image, ``box_h × box_w`` centred uniformly in the
    image and clipped at its border (DeVries & Taylor's cutout, Yun et al.'s CutMix)."""
    cy = torch.randint(0, height, (n,), generator=generator)
    cx = torch.randint(0, width, (n,), generator=generator)
    top, left = cy - box_h // 2, cx - box_w // 2
    rows = torch.arange(height)[None, :, None]
    cols = torch.arange(width)[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < (top + box_h)[:, None, None])) & (
        (cols >= left[:, None, None]) & (cols < (left + box_w)[:, None, None])
    )
    return inside[:, None].to(device)


def cutout(images: Tensor, size: int, generator: torch.Generator) -> Tensor:
    """A ``size × size`` square per image set to 0 (normalised images: the mean colour), centred
    anywhere in the image and clipped at its border (DeVries & Taylor 2017; Page's ResNet-9 recipe
    uses 8×8, airbench96 12×12)."""
    if size <= 0:
        return images
    n, _, height, width = images.shape
    side = torch.full((n,), size)
    return images.masked_fill(_boxes(n, height, width, side, side, generator, images.device), 0)


def mix_batch(
    images: Tensor, labels: Tensor, num_classes: int, mixup: float, cutmix: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """MixUp (Zhang et al. 2018: ``λ·x + (1−λ)·x[perm]``) or CutMix (Yun et al. 2019: a box of
    ``x[perm]`` pasted in, ``λ`` = the share of the image left) with ``λ ~ Beta(α, α)`` per batch;
    with both α > 0 each batch takes one of them with probability 1/2 (timm's ``switch_prob``).
    Returns the images and soft targets ``λ·onehot(y) + (1−λ)·onehot(y[perm])`` ``(N, num_classes)``
    (label smoothing then applies to them in the loss)."""
    n, _, height, width = images.shape
    use_cutmix = cutmix > 0 and (mixup <= 0 or bool(torch.rand(1, generator=generator) < 0.5))
    alpha = cutmix if use_cutmix else mixup
    # Beta(α, α) from numpy, seeded from `generator` (torch.distributions draws from the global generator)
    lam = float(np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator))).beta(alpha, alpha))
    perm = torch.randperm(n, generator=generator).to(images.device)
    if use_cutmix:
        cut = math.sqrt(1 - lam)
        box_h, box_w = torch.full((1,), int(height * cut)), torch.full((1,), int(width * cut))
        box = _boxes(1, height, width, box_h, box_w, generator, images.device)
        images = torch.where(box, images[perm], images)
        lam = 1 - float(box.sum()) / (height * width)  # the share actually kept (the box is clipped)
    else:
        images = lam * images + (1 - lam) * images[perm]
    onehot = F.one_hot(labels, num_classes).to(images.dtype if images.is_floating_point() else torch.float32)
    return images, lam * onehot + (1 - lam) * onehot[perm]
