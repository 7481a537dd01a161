"""Minibatches from whole-dataset tensors, with an explicit, checkpointable shuffle order."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from .augment import apply_policy, augment_batch, cutout, mix_batch, normalize

__all__ = ["TensorImageLoader"]


class TensorImageLoader:
    """Iterate ``(images, labels)`` float batches from uint8 tensors held in memory (or on the GPU).

    Args:
        images: ``(N, C, H, W)`` uint8. labels: ``(N,)`` int64.
        batch_size: images per batch. shuffle: a new permutation each epoch from ``seed + epoch``.
        drop_last: skip the last incomplete batch. augment: ``{"crop_padding": int, "flip": bool
        | "alternate", "policy": str, "cutout": int, "mixup": float, "cutmix": float}`` (each
        optional) or None; ``"alternate"`` (airbench) flips a random half of the images in
        even epochs and exactly the other half in odd ones, so every image is seen both ways in
        any two consecutive epochs; ``policy`` a torchvision policy (:data:`~.augment.POLICIES`),
        ``cutout`` a square's side, ``mixup``/``cutmix`` the Beta α (0: off), which make the labels
        soft targets ``(N, num_classes)`` (:mod:`.augment`). mean/std: per-channel normalisation.
        device: where batches are produced.
        rank, world_size, split: for distributed runs, ``split="batch"`` gives each rank its slice
        of every global batch (augmented as a whole first, so N processes see exactly the images
        one process would); ``split="dataset"`` gives each rank every world_size-th sample
        (evaluation).
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        mean: Tensor,
        std: Tensor,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        augment: dict | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
        limit_batches: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        split: str = "batch",
        channels_last: bool = False,
        num_classes: int = 10,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, but got batch_size={batch_size}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.augment = augment or {}
        self.seed = seed
        self.num_classes = num_classes
        self.mean, self.std = mean, std
        self.limit_batches = limit_batches
        self.rank, self.world_size, self.split = rank, world_size, split
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if split == "batch" and batch_size % world_size:
            raise ValueError(
                f"data.batch_size={batch_size} must be divisible by the number of processes ({world_size})"
            )
        self.epoch = 0
        # flip="alternate": one fixed random bit per image (from seed), inverted in odd epochs
        alternate = self.augment.get("flip") == "alternate"
        self._first_flips = (
            torch.rand(len(images), generator=torch.Generator().manual_seed(seed + 7_919)) < 0.5 if alternate else None
        )

    def __len__(self) -> int:
        n = len(self.images)
        if self.split == "dataset" and self.world_size > 1:
            n = len(range(self.rank, n, self.world_size))
        batches = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return min(batches, self.limit_batches) if self.limit_batches else batches

    def order(self, epoch: int) -> Tensor:
        """The sample order of ``epoch``: a function of ``seed`` and ``epoch`` only, so resuming repeats it."""
        if not self.shuffle:
            return torch.arange(len(self.images))
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(len(self.images), generator=generator)

    def iterate(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches of ``epoch`` from ``start_batch`` on (augmentation randomness also depends only on them)."""
        order = self.order(epoch).to(self.device)
        if self.split == "dataset" and self.world_size > 1:
            order = order[self.rank :: self.world_size]
        for index in range(start_batch, len(self)):
            chosen = order[index * self.batch_size : (index + 1) * self.batch_size]
            images, labels = self.images[chosen], self.labels[chosen]
            if self.augment:
                images, labels = self._augment(images, labels, chosen, epoch, index)
            else:
                images = normalize(images, self.mean, self.std)
            if self.split == "batch" and self.world_size > 1:
                local = self.batch_size // self.world_size
                mine = slice(self.rank * local, (self.rank + 1) * local)
                images, labels = images[mine], labels[mine]
            yield images.contiguous(memory_format=self.memory_format), labels

    def _augment(self, images: Tensor, labels: Tensor, chosen: Tensor, epoch: int, index: int):
        """Batch ``index`` of ``epoch`` augmented (its draws from a generator seeded by the seed, the
        epoch and the index) and normalised; soft labels with MixUp/CutMix."""
        augment = self.augment
        generator = torch.Generator().manual_seed((self.seed * 100_003 + epoch) * 1_000_003 + index)
        if self._first_flips is not None:
            flip = self._first_flips[chosen.cpu()] ^ bool(epoch % 2)
        else:
            flip = bool(augment.get("flip", False))
        images = augment_batch(images, int(augment.get("crop_padding", 0)), flip, generator)
        images = apply_policy(images, str(augment.get("policy", "none")), generator)
        images = cutout(normalize(images, self.mean, self.std), int(augment.get("cutout", 0)), generator)
        mixup, cutmix = float(augment.get("mixup", 0)), float(augment.get("cutmix", 0))
        if mixup > 0 or cutmix > 0:
            images, labels = mix_batch(images, labels, self.num_classes, mixup, cutmix, generator)
        return images, labels

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.iterate(self.epoch)
