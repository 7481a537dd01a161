"""A procedurally generated, learnable 10-class image dataset: no files, same format as CIFAR-10.

Class ``c`` is an oriented sinusoidal grating (orientation and frequency set by ``c``) in a
class-specific colour, at a random phase and position jitter, plus noise. Translations do not
change the class, so it exercises exactly what convolutions and pooling are good at.
"""

from __future__ import annotations

import math

import torch

__all__ = ["make_synthetic"]


def make_synthetic(
    num_train: int = 2048,
    num_test: int = 512,
    image_size: int = 32,
    num_classes: int = 10,
    seed: int = 0,
    noise: float = 0.25,
) -> dict[str, torch.Tensor]:
    """Return the same dict as :func:`cnnlab.data.load_cifar10` (uint8 images, int64 labels)."""
    generator = torch.Generator().manual_seed(seed)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, num_classes, (n,), generator=generator)
        angle = labels.float() * math.pi / num_classes
        frequency = 2 * math.pi * (2 + (labels % 3).float()) / image_size
        phase = torch.rand(n, generator=generator) * 2 * math.pi
        grid = torch.arange(image_size, dtype=torch.float32)
        y, x = grid[:, None], grid[None, :]
        coordinate = torch.cos(angle)[:, None, None] * x + torch.sin(angle)[:, None, None] * y
        pattern = torch.sin(frequency[:, None, None] * coordinate + phase[:, None, None])  # (n, H, W)
        hue = labels.float() / num_classes * 2 * math.pi
        colour = torch.stack([torch.cos(hue), torch.cos(hue + 2.1), torch.cos(hue + 4.2)], 1) * 0.3 + 0.5
        images = 0.5 + 0.35 * pattern[:, None] * colour[:, :, None, None]
        images = images + noise * torch.randn(images.shape, generator=generator) * 0.5
        return (images.clamp(0, 1) * 255).round().to(torch.uint8), labels

    train_images, train_labels = split(num_train)
    test_images, test_labels = split(num_test)
    return {
        "train_images": train_images,
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
    }
