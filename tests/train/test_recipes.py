"""The reusable training options of the airbench94 and kuangliu recipes, each against its
definition: patch whitening decorrelates patches, Dirac init passes the input through, lookahead
follows its update rule, alternating flips show each image both ways, multi-crop TTA weighs its
views as stated, the cosine schedule anneals to 0."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab import nn as cnn
from cnnlab.data import TensorImageLoader
from cnnlab.train.callbacks import DiracInit, Lookahead, PatchWhitening
from cnnlab.train.schedules import cosine
from cnnlab.train.steps import tta_logits


def fake_run(model: nn.Module, images: torch.Tensor | None = None, step: int = 0, total_steps: int = 10):
    """What the callbacks read of a :class:`cnnlab.train.state.Run`."""
    return SimpleNamespace(
        model=model,
        train_loader=SimpleNamespace(images=images),
        mean=torch.tensor([0.5, 0.4, 0.3]),
        std=torch.tensor([0.2, 0.25, 0.3]),
        progress=SimpleNamespace(step=step),
        total_steps=total_steps,
    )


def correlated_images(n: int = 64) -> torch.Tensor:
    """uint8 images whose neighbouring pixels and channels are strongly correlated (like photos)."""
    torch.manual_seed(0)
    smooth = F.avg_pool2d(torch.rand(n, 1, 36, 36), 5, 1)  # reference smoothing, test data only
    colour = torch.tensor([1.0, 0.8, 0.6]).view(1, 3, 1, 1)
    return ((smooth * colour + 0.05 * torch.rand(n, 3, 32, 32)) * 255).clamp(0, 255).to(torch.uint8)


def test_patch_whitening_decorrelates_the_training_patches():
    images = correlated_images()
    model = nn.Sequential(cnn.Conv2d(3, 24, 2, padding=0), nn.GELU())
    callback = PatchWhitening(num_images=64, eps=5e-4)
    run = fake_run(model, images)
    callback.on_fit_start(run)
    conv = model[0]
    assert not conv.weight.requires_grad and conv.bias.requires_grad
    torch.testing.assert_close(conv.weight[12:], -conv.weight[:12])
    x = (images.double() / 255 - run.mean.double().view(1, 3, 1, 1)) / run.std.double().view(1, 3, 1, 1)
    with torch.no_grad():
        out = (conv(x.float()) - conv.bias.view(1, -1, 1, 1))[:, :12].double()
    features = out.permute(0, 2, 3, 1).reshape(-1, 12)
    second_moment = features.T @ features / len(features)
    # the patches' own second-moment matrix: the output's is diag(λ/(λ + eps)), largest first
    patches = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
    eigenvalues = torch.linalg.eigvalsh(patches.T @ patches / len(patches)).flip(0)
    torch.testing.assert_close(second_moment, torch.diag(eigenvalues / (eigenvalues + 5e-4)), atol=1e-4, rtol=1e-4)


def test_patch_whitening_names_a_first_layer_of_the_wrong_width():
    model = nn.Sequential(cnn.Conv2d(3, 16, 2, padding=0))
    with pytest.raises(Exception, match=r"PatchWhitening: the first convolution needs 2·C·k² = 24 filters"):
        PatchWhitening().on_fit_start(fake_run(model, correlated_images(4)))


def test_dirac_init_makes_later_convolutions_pass_their_input_through():
    torch.manual_seed(0)
    model = nn.Sequential(cnn.Conv2d(3, 8, 3, padding=1), cnn.Conv2d(8, 16, 3, padding=1, bias=False))
    stem = model[0].weight.detach().clone()
    DiracInit().on_fit_start(fake_run(model))
    x = torch.randn(2, 8, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(model[1](x)[:, :8], x)
    torch.testing.assert_close(model[0].weight, stem)  # the first conv reads the image: untouched


def test_lookahead_follows_its_update_rule():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    callback = Lookahead(decay=0.9, every_n_steps=2, power=1.0)
    run = fake_run(model, step=0, total_steps=4)
    callback.on_fit_start(run)  # slow = 1
    with torch.no_grad():
        model.weight.fill_(3.0)
    run.progress.step = 1
    callback.on_step_end(run, None)  # not a multiple of 2: nothing
    assert model.weight[0, 0].item() == 3.0
    run.progress.step = 2  # d = 0.9² · (2/4) = 0.405: slow = 1 + (1 − d)(3 − 1)
    callback.on_step_end(run, None)
    expected = 1 + (1 - 0.405) * 2
    assert model.weight[0, 0].item() == pytest.approx(expected)
    assert callback.slow["weight"][0, 0].item() == pytest.approx(expected)
    restored = Lookahead(decay=0.9, every_n_steps=2, power=1.0)
    restored.load_state_dict(callback.state_dict())
    restored.on_fit_start(run)
    assert restored.slow["weight"][0, 0].item() == pytest.approx(expected)


def test_alternating_flips_show_each_image_both_ways_in_two_epochs():
    n = 40
    images = torch.arange(n * 3 * 4 * 4, dtype=torch.float32).view(n, 3, 4, 4).remainder(251).to(torch.uint8)
    loader = TensorImageLoader(images, torch.arange(n), 8, torch.zeros(3), torch.ones(3), shuffle=True,
                               augment={"crop_padding": 0, "flip": "alternate"}, seed=3)  # fmt: skip

    def flipped(epoch: int) -> torch.Tensor:
        seen = torch.zeros(n, dtype=torch.bool)
        for batch, labels in loader.iterate(epoch):
            original = images[labels].float() / 255
            seen[labels] = ~torch.isclose(batch, original).flatten(1).all(1)
            assert torch.isclose(batch[seen[labels]], original[seen[labels]].flip(-1)).all()
        return seen

    epochs = [flipped(e) for e in range(3)]
    assert 0.25 * n < epochs[0].sum() < 0.75 * n
    assert torch.equal(epochs[1], ~epochs[0]) and torch.equal(epochs[2], epochs[0])


def test_multi_crop_tta_weighs_its_views():
    def model(x):
        return x.flatten(1)[:, :10] * 3 + x.flatten(1)[:, -10:]

    x = torch.randn(2, 3, 8, 8)
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    up, down = padded[..., :8, :8], padded[..., 2:, 2:]
    views = [(x, 1 / 4), (x.flip(-1), 1 / 4), (up, 1 / 8), (up.flip(-1), 1 / 8), (down, 1 / 8), (down.flip(-1), 1 / 8)]
    expected = sum(weight * model(view) for view, weight in views)
    torch.testing.assert_close(tta_logits(model, x, flip=True, translate=True), expected)
    torch.testing.assert_close(tta_logits(model, x, flip=False, translate=False), model(x))


def test_cosine_schedule_anneals_to_zero_after_its_warm_up():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    factor = cosine(optimizer, total_steps=110, warmup_fraction=10 / 110).lr_lambdas[0]
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0) and factor(60) == pytest.approx(0.5) and factor(110) == pytest.approx(0.0)
