"""Evaluation options of the training loop: test-time flip averaging and channels-last batches."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

from cnnlab.data.loader import TensorImageLoader
from cnnlab.train.engine.steps import evaluate
from cnnlab.train.options import TrainerOptions

DEFAULTS = Path(__file__).resolve().parents[2] / "configs" / "trainer" / "default.yaml"


class _LeftRight(nn.Module):
    """Logit 0 is the mean of the left half of the image, logit 1 of the right half: a model that
    is not mirror-symmetric, so averaging with the flipped image changes its output."""

    def forward(self, x):
        half = x.shape[-1] // 2
        return torch.stack([x[..., :half].mean((1, 2, 3)), x[..., half:].mean((1, 2, 3))], 1)


def _loader(images, labels, **kwargs):
    return TensorImageLoader(images, labels, 4, torch.zeros(3), torch.ones(3), **kwargs)


def _trainer(**overrides):
    """The default trainer options (configs/trainer/default.yaml) with ``overrides``."""
    return dataclasses.replace(TrainerOptions.from_config(OmegaConf.load(DEFAULTS)), **overrides)


def test_tta_flip_averages_the_logits_of_each_image_and_its_mirror():
    images = torch.zeros(4, 3, 4, 4, dtype=torch.uint8)
    images[..., :2] = 200  # bright left half: without TTA the model says class 0
    labels = torch.ones(4, dtype=torch.long)
    model, no_autocast = _LeftRight(), torch.autocast("cpu", enabled=False)
    plain = evaluate(model, _loader(images, labels), "classification", _trainer(), lambda: no_autocast, 2)
    flipped = evaluate(
        model, _loader(images, labels), "classification", _trainer(tta_flip=True), lambda: no_autocast, 2
    )
    assert plain["acc"] == 0.0
    # averaged with the mirror both logits are equal: loss is log 2 exactly, argmax picks class 0
    assert abs(flipped["loss"] - torch.log(torch.tensor(2.0)).item()) < 1e-6


def test_channels_last_batches():
    images = torch.randint(0, 255, (8, 3, 5, 6), dtype=torch.uint8)
    labels = torch.zeros(8, dtype=torch.long)
    batch, _ = next(iter(_loader(images, labels, channels_last=True)))
    assert batch.is_contiguous(memory_format=torch.channels_last) and not batch.is_contiguous()
    plain, _ = next(iter(_loader(images, labels)))
    assert plain.is_contiguous() and torch.equal(plain, batch)
