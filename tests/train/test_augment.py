"""The augmentations every CIFAR codebase has (issue 29): cutout, a torchvision policy, MixUp and
CutMix, each drawn from the batch's own generator (so a resumed run repeats it), and gradient
accumulation that trains a batch in micro-batches with the batch's own update."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from cnnlab.data import TensorImageLoader
from cnnlab.data.augment import apply_policy, cutout, mix_batch
from cnnlab.train.engine.steps import train_step
from cnnlab.train.options import TrainerOptions
from tests.configs import CONFIGS


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_cutout_zeroes_one_clipped_square_per_image():
    images = torch.ones(64, 3, 16, 16)
    out = cutout(images, 6, _generator())
    for image in out:
        zero = image[0] == 0
        assert torch.equal(zero, (image == 0).all(0))  # the same square in every channel
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        assert 1 <= len(rows) <= 6 and 1 <= len(cols) <= 6  # clipped at the border, never more than 6×6
        assert zero.sum() == len(rows) * len(cols)  # a rectangle: rows × cols, nothing else
        assert rows.diff().eq(1).all() and cols.diff().eq(1).all()
    assert (out == 0).flatten(1).any(1).all()  # every image has one
    assert (out == 0).all(1).flatten(1).sum(1).float().mean() > 20  # most squares are not clipped much
    torch.testing.assert_close(cutout(images, 6, _generator()), out, rtol=0, atol=0)  # the generator decides


def test_mixup_targets_are_the_mixing_weights():
    """With distinct one-hot labels, MixUp's images are exactly the targets times the images."""
    n = 10
    images, labels = torch.randn(n, 3, 8, 8), torch.arange(n)
    mixed, targets = mix_batch(images, labels, n, mixup=0.8, cutmix=0.0, generator=_generator(1))
    torch.testing.assert_close(targets.sum(1), torch.ones(n))
    torch.testing.assert_close(mixed.flatten(1), targets @ images.flatten(1))
    assert ((targets > 0).sum(1) <= 2).all() and not torch.equal(mixed, images)


def test_cutmix_targets_are_the_shares_of_pixels():
    """With constant images (image i holds i), the share of pixels still holding i is the target's weight."""
    n = 10
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 16, 16).clone()
    mixed, targets = mix_batch(images, torch.arange(n), n, mixup=0.0, cutmix=1.0, generator=_generator(2))
    for i in range(n):
        for j in targets[i].nonzero().flatten().tolist():
            share = (mixed[i, 0] == j).float().mean()
            torch.testing.assert_close(share, targets[i, j])
    torch.testing.assert_close(targets.sum(1), torch.ones(n))


def test_policy_draws_per_image_from_the_batch_generator_and_leaves_torch_rng_alone():
    pytest.importorskip("torchvision")
    images = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8).expand(32, 3, 32, 32).contiguous()
    state = torch.get_rng_state()
    out = apply_policy(images, "trivialaugment", _generator(3))
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is untouched
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert len({bytes(image.flatten().numpy()) for image in out}) > 8  # each image its own operation
    assert torch.equal(apply_policy(images, "trivialaugment", _generator(3)), out)
    assert torch.equal(apply_policy(images, "none", _generator(3)), images)


def test_a_resumed_loader_repeats_each_augmented_batch():
    """Batches from ``start_batch`` (a resume) equal those of the whole epoch: every draw of crop,
    flip, policy, cutout, MixUp and CutMix comes from the batch's own generator."""
    pytest.importorskip("torchvision")
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    augment = {"crop_padding": 4, "flip": True, "policy": "randaugment", "cutout": 8, "mixup": 0.8, "cutmix": 1.0}
    loader = TensorImageLoader(images, torch.arange(64) % 10, 16, torch.zeros(3), torch.ones(3), shuffle=True,
                               augment=augment, seed=5)  # fmt: skip
    whole, resumed = list(loader.iterate(1)), list(loader.iterate(1, start_batch=2))
    for (x, y), (rx, ry) in zip(whole[2:], resumed, strict=True):
        assert torch.equal(x, rx) and torch.equal(y, ry)
    assert whole[0][1].shape == (16, 10)  # soft targets
    torch.testing.assert_close(whole[0][1].sum(1), torch.ones(16))


def test_accumulated_micro_batches_make_the_batchs_update():
    """A model without BatchNorm: 3 steps with the batch in 4 micro-batches (sizes 5, 5, 5, 3)
    give the weights 3 whole-batch steps give."""
    defaults = TrainerOptions.from_config(OmegaConf.load(CONFIGS / "trainer" / "default.yaml"))
    images, labels = torch.randn(18, 3, 8, 8), torch.randint(0, 10, (18,))

    def trained(k: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        options = dataclasses.replace(defaults, accumulate_grad_batches=k, label_smoothing=0.1)
        for _ in range(3):
            step = train_step(model, model.parameters(), optimizer, scheduler, images, labels, "classification",
                              options, contextlib.nullcontext)  # fmt: skip
        assert step.output.shape == (18, 10)
        return model.state_dict()

    whole, accumulated = trained(1), trained(4)
    for name in whole:
        torch.testing.assert_close(accumulated[name], whole[name], rtol=1e-5, atol=1e-6)


def test_hparams_show_the_options_a_run_sets_and_not_those_it_leaves_off():
    """Set in a config (an experiment file, not the command line): the option gets its short column."""
    from types import SimpleNamespace

    from cnnlab.train.engine.report import hparams_of
    from cnnlab.train.overrides import JobInfo
    from tests.configs import compose_cfg

    cfg = compose_cfg("data.augment.cutout=8", "trainer.accumulate_grad_batches=2")
    params = hparams_of(SimpleNamespace(cfg=cfg, job=JobInfo(), progress=SimpleNamespace(epoch=1)))
    assert params["cutout"] == "8" and params["accumulate_grad_batches"] == "2"  # (ints as text: not 8.000)
    assert not {"mixup", "cutmix", "policy", "classes"} & set(params)
