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
from cnnlab.train.engine.callbacks import DiracInit, Lookahead, PatchWhitening
from cnnlab.train.engine.schedules import cosine, warmup_warmdown
from cnnlab.train.engine.steps import tta_logits


def fake_run(model: nn.Module, images: torch.Tensor | None = None, step: int = 0, total_steps: int = 10):
    """What the callbacks read of a :class:`cnnlab.train.engine.state.Run`."""
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


# airbench94's recipe (issue 33): each option against airbench's own definition (legacy/airbench94.py)


def test_warmup_warmdown_is_airbenchs_get_lr():
    def get_lr(step, total_train_steps):  # airbench94's, as written there
        warmup_steps = int(total_train_steps * 0.23)
        warmdown_steps = total_train_steps - warmup_steps
        if step < warmup_steps:
            frac = step / warmup_steps
            return 0.2 * (1 - frac) + 1.0 * frac
        frac = (step - warmup_steps) / warmdown_steps
        return 1.0 * (1 - frac) + 0.07 * frac

    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.5)
    factor = warmup_warmdown(optimizer, total_steps=476).lr_lambdas[0]  # airbench94: ceil(9.9 · 48) steps
    assert [factor(s) for s in range(477)] == pytest.approx([get_lr(s, 476) for s in range(477)], abs=1e-12)
    assert factor(0) == pytest.approx(0.2) and factor(109) == pytest.approx(1.0) and factor(476) == pytest.approx(0.07)


def test_norm_bias_lr_scale_gives_batchnorm_biases_64x_the_rate_and_the_same_absolute_decay():
    from omegaconf import OmegaConf

    from cnnlab.train.engine.setup import build_optimizer

    model = nn.Sequential(cnn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.GroupNorm(2, 8), nn.Linear(8, 2))
    config = OmegaConf.create(
        {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 1.5, "momentum": 0.85, "nesterov": True,
         "weight_decay": 1.3305e-3, "norm_bias_lr_scale": 64}
    )  # fmt: skip
    optimizer = build_optimizer(config, model)
    others, biases = optimizer.param_groups
    assert {id(p) for p in biases["params"]} == {id(model[1].bias), id(model[2].bias)}
    assert len(others["params"]) + len(biases["params"]) == len(list(model.parameters()))
    assert biases["lr"] == 96.0 and others["lr"] == 1.5
    # airbench: lr_biases = 64·lr with weight_decay = wd/lr_biases, so lr · weight_decay is one number
    assert biases["lr"] * biases["weight_decay"] == pytest.approx(others["lr"] * others["weight_decay"])
    assert biases["momentum"] == others["momentum"] == 0.85 and biases["nesterov"]


def test_whitening_bias_learns_for_its_epochs_then_freezes():
    model = nn.Sequential(cnn.Conv2d(3, 24, 2, padding=0), nn.GELU())
    callback = PatchWhitening(num_images=16, bias_epochs=3)
    run = fake_run(model, correlated_images(16))
    run.progress.epoch = 0
    callback.on_fit_start(run)
    learns = []
    for epoch in range(1, 6):
        learns.append(model[0].bias.requires_grad)
        run.progress.epoch = epoch  # end_epoch counts the epoch, then the callbacks run
        callback.on_epoch_end(run, {})
    assert learns == [True, True, True, False, False] and not model[0].weight.requires_grad
    run.progress.epoch, run.progress.step = 4, 10  # resumed after epoch 4: still frozen
    resumed = nn.Sequential(cnn.Conv2d(3, 24, 2, padding=0))  # its weights would come from the checkpoint
    resumed_run = fake_run(resumed, correlated_images(16), step=10)
    resumed_run.progress = run.progress
    PatchWhitening(bias_epochs=3).on_fit_start(resumed_run)
    assert not resumed[0].bias.requires_grad


def test_lookahead_final_copy_ends_on_the_slow_weights():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    callback = Lookahead(decay=0.95, every_n_steps=5, power=3.0, final_copy=True)
    run = fake_run(model, step=0, total_steps=7)
    callback.on_fit_start(run)
    for step in range(1, 8):
        with torch.no_grad():
            model.weight.add_(1.0)  # an optimiser step
        run.progress.step = step
        callback.on_step_end(run, None)
    # step 5 averaged (d = 0.95⁵·(5/7)³), then steps 6 and 7 moved the model, then the last step (7, not a
    # multiple of 5) copies the slow weights back: airbench's lookahead_state.update(model, decay=1.0)
    d = 0.95**5 * (5 / 7) ** 3
    slow = 1 + (1 - d) * (6 - 1)
    assert model.weight[0, 0].item() == pytest.approx(slow) == callback.slow["weight"][0, 0].item()


def test_fractional_epochs_stop_within_the_last_epoch_and_tta_runs_once_at_the_end(tmp_path, monkeypatch):
    """``trainer.max_epochs=1.5`` trains ceil(1.5 · steps per epoch) steps (airbench94: 9.9 epochs =
    476 steps of 48), and ``trainer.tta_final_only`` evaluates the epochs plain and the last time
    with the test-time views."""
    import cnnlab.train.engine.loop as loop
    import cnnlab.train.engine.state as state
    from tests.configs import compose_cfg

    views = []
    evaluate = state.evaluate
    monkeypatch.setattr(state, "evaluate", lambda *a, **k: views.append(a[-1]) or evaluate(*a, **k))
    overrides = ["data=synthetic", "model=simple", "logger.analysis=false", "trainer.progress_bar=false",
                 "trainer.limit_train_batches=4", "trainer.limit_val_batches=2", "trainer.max_epochs=1.5",
                 "trainer.tta_flip=true", "trainer.tta_final_only=true", f"paths.output_dir={tmp_path}"]  # fmt: skip
    metrics = loop.run(compose_cfg(*overrides))
    assert metrics["steps"] == 6 and metrics["epochs"] == 2  # ceil(1.5 · 4)
    assert views == [False, True]  # epoch 1 plain, the end (mid-epoch 2) with TTA


@pytest.mark.parametrize(("every", "evaluated"), [(2, [2, 4, 5]), ("null", [5])])
def test_check_val_every_n_epoch_evaluates_those_epochs_and_the_last(tmp_path, monkeypatch, every, evaluated):
    """``trainer.check_val_every_n_epoch=N`` evaluates after epochs N, 2N, … and the last (Lightning's
    key); ``null`` after the last only (cpu94: evaluation off the critical path)."""
    import cnnlab.train.engine.loop as loop
    import cnnlab.train.engine.state as state
    from tests.configs import compose_cfg

    calls = []
    evaluate = state.evaluate
    monkeypatch.setattr(state, "evaluate", lambda *a, **k: calls.append(a) or evaluate(*a, **k))
    overrides = ["data=synthetic", "model=simple", "logger.analysis=false", "trainer.progress_bar=false",
                 "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.max_epochs=5",
                 f"trainer.check_val_every_n_epoch={every}", f"paths.output_dir={tmp_path}"]  # fmt: skip
    metrics = loop.run(compose_cfg(*overrides))
    assert len(calls) == len(evaluated)
    assert [h["epoch"] for h in metrics["history"] if "val_acc" in h] == evaluated
    assert all("train_loss" in h for h in metrics["history"]) and metrics["val_acc"] is not None
    assert metrics["best_epoch"] in evaluated


def test_check_val_every_n_epoch_must_be_positive():
    from cnnlab.train.config import ConfigValueError, validate_config
    from tests.configs import compose_cfg

    with pytest.raises(ConfigValueError, match=r"trainer\.check_val_every_n_epoch.*0.*null or a positive int"):
        validate_config(compose_cfg("trainer.check_val_every_n_epoch=0"))


def test_cpu94_is_airbench94_muons_recipe():
    """The rates of airbench94_muon.py (summed loss, batch 2000) on cnnlab's mean loss, and its head
    (std-1 weights, logits ÷ 256) as torch's initialisation with logits × s and rate × s²·256²."""
    from tests.configs import compose_cfg

    cfg = compose_cfg("experiment=cpu94")
    batch = cfg.data.batch_size
    assert batch == 2000 and cfg.trainer.max_epochs == 8 and cfg.callbacks.get("lookahead") is None
    assert cfg.optimizer.vector_lr == pytest.approx(0.053 * batch)
    sigma = (1 / 16) / 3**0.5  # std of U(−1/√256, 1/√256): torch's Linear(256, ·) weights
    s = cfg.trainer.logit_scale
    assert s == pytest.approx(1 / (256 * sigma), rel=1e-5)
    assert cfg.optimizer.matrix_lr == pytest.approx(0.67 * batch / (256 * s) ** 2, rel=1e-4)
    assert cfg.optimizer.weight_decay == pytest.approx(2e-6 * batch)
