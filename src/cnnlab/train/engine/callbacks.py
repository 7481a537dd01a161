"""Stages added to training without editing the loop.

A callback is any object with some of the hooks of :class:`~.state.Callback`; runs configure them under
``callbacks:`` (``python train.py callbacks=ema``; each entry is instantiated with Hydra's
``_target_``). The loop calls every hook at its point, in config order; ``on_epoch_end`` may add
entries to the epoch's metrics (a key with a ``/`` becomes a TensorBoard scalar of that tag and a
column of ``metrics.json``'s history). ``state_dict``/``load_state_dict`` go into checkpoints, so a
resumed run continues the callback exactly.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from ...data import normalize
from ...errors import UserError
from .state import Callback, Run
from .steps import StepOutput

__all__ = ["Callback", "DiracInit", "Lookahead", "PatchWhitening", "WeightEMA"]


def _check_averaging(name: str, decay: float, every_n_steps: int) -> None:
    """The arguments every weight average takes: ``0 <= decay < 1``, ``every_n_steps >= 1``."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"{name}: decay must be in [0, 1), but got decay={decay}")
    if every_n_steps < 1:
        raise ValueError(f"{name}: every_n_steps must be >= 1, but got every_n_steps={every_n_steps}")


class WeightEMA(Callback):
    """An exponential moving average of the weights, ``w_ema ← decay·w_ema + (1 − decay)·w``
    after every ``every_n_steps`` optimiser steps (buffers such as BatchNorm statistics are
    copied), evaluated at each epoch end as ``val/ema_acc`` and ``val/ema_loss``. With
    ``decay=0.99`` the average spans about the last 100 updates."""

    def __init__(self, decay: float = 0.99, every_n_steps: int = 1) -> None:
        _check_averaging("WeightEMA", decay, every_n_steps)
        self.decay, self.every_n_steps = decay, every_n_steps
        self.average: torch.nn.Module | None = None
        self._pending: dict[str, Any] | None = None
        self._averaged_names: set[str] = set()

    def on_fit_start(self, run: Run) -> None:
        self.average = copy.deepcopy(run.model).eval().requires_grad_(False)
        self._averaged_names = {name for name, _ in self.average.named_parameters()}
        if self._pending:
            self.average.load_state_dict(self._pending)
            self._pending = None

    @torch.no_grad()
    def on_step_end(self, run: Run, step: StepOutput) -> None:
        if self.average is None or run.progress.step % self.every_n_steps:
            return
        averaged = self.average.state_dict()
        for name, value in run.model.state_dict().items():
            if name in self._averaged_names:
                averaged[name].lerp_(value, 1.0 - self.decay)
            else:
                averaged[name].copy_(value)

    def on_epoch_end(self, run: Run, metrics: dict[str, Any]) -> None:
        if self.average is None or "val/loss" not in metrics:  # (trainer.check_val_every_n_epoch)
            return
        result = run.evaluate(self.average)
        metrics["val/ema_loss"] = result["loss"]
        if result["acc"] is not None:
            metrics["val/ema_acc"] = result["acc"]

    def state_dict(self) -> dict[str, Any]:
        return {"average": self.average.state_dict()} if self.average is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = state.get("average")


def _convolutions(model: nn.Module) -> list[nn.Module]:
    """The model's 2-D convolutions, cnnlab's or torch's (a 4-D ``weight`` and ``groups``, not
    transposed), in order."""
    return [
        m
        for m in model.modules()
        if isinstance(getattr(m, "weight", None), Tensor) and m.weight.dim() == 4 and hasattr(m, "groups")
        and not getattr(m, "transposed", False)
    ]  # fmt: skip


class PatchWhitening(Callback):
    """airbench's frozen patch-whitening first layer: before the first step of a new run, the
    first convolution (``2·C·k²`` filters of ``k×k``) gets the eigenvectors ``v_i`` of the
    covariance of the ``k×k`` patches of the first ``num_images`` training images (normalised, not
    augmented), each scaled by ``1/sqrt(λ_i + eps)``, and their negatives; its weight is then
    frozen. A convolution by these filters decorrelates the patch dimensions: its output has unit
    variance along each principal direction. Its bias learns for the first ``bias_epochs`` epochs
    (``None``: throughout), then freezes (airbench94: 3).
    """

    def __init__(self, num_images: int = 5000, eps: float = 5e-4, bias_epochs: int | None = None) -> None:
        if bias_epochs is not None and (not isinstance(bias_epochs, int) or bias_epochs < 0):
            raise UserError(
                f"PatchWhitening: bias_epochs must be null or an int >= 0, but got bias_epochs={bias_epochs!r}"
            )
        self.num_images, self.eps, self.bias_epochs = num_images, eps, bias_epochs

    def _train_bias(self, run: Run) -> None:
        """The bias learns in epochs ``0 … bias_epochs − 1`` (its gradient is ``None`` after that:
        SGD then leaves it and its momentum alone)."""
        bias = _convolutions(run.model)[0].bias
        if bias is not None and self.bias_epochs is not None:
            bias.requires_grad_(run.progress.epoch < self.bias_epochs)

    def on_epoch_end(self, run: Run, metrics: dict[str, Any]) -> None:
        self._train_bias(run)  # (progress.epoch already counts the epoch just ended)

    @torch.no_grad()
    def on_fit_start(self, run: Run) -> None:
        self._train_bias(run)
        conv = _convolutions(run.model)[0]
        weight = conv.weight
        out_channels, channels, kh, kw = weight.shape
        dims = channels * kh * kw
        if out_channels != 2 * dims or conv.groups != 1:
            raise UserError(
                f"PatchWhitening: the first convolution needs 2·C·k² = {2 * dims} filters ({channels} channels, "
                f"{kh}×{kw}) and groups=1, but has out_channels={out_channels}, groups={conv.groups}"
            )
        weight.requires_grad_(False)
        if run.progress.step > 0:
            return  # resumed: the frozen weights come from the checkpoint
        images = run.train_loader.images[: self.num_images]
        x = normalize(images, run.mean.to(images.device), run.std.to(images.device), torch.float64)
        patches = x.unfold(2, kh, 1).unfold(3, kw, 1)  # (N, C, H', W', kh, kw)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, dims)
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        filters = (eigenvectors.T / (eigenvalues + self.eps).sqrt()[:, None]).flip(0).reshape(dims, channels, kh, kw)
        weight.copy_(torch.cat([filters, -filters]).to(weight))


class DiracInit(Callback):
    """airbench's identity initialisation: before the first step of a new run, the first
    ``in_channels`` filters of every ``groups=1`` convolution with an odd kernel and at least as
    many outputs as inputs (except the first, which reads the image) become Dirac deltas, so the
    layer starts out passing its input through (``torch.nn.init.dirac_``); the other filters keep
    their random initialisation."""

    def on_fit_start(self, run: Run) -> None:
        if run.progress.step > 0:
            return
        for conv in _convolutions(run.model)[1:]:
            out_channels, in_channels, kh, kw = conv.weight.shape
            if conv.groups == 1 and kh % 2 and kw % 2 and out_channels >= in_channels:
                with torch.no_grad():
                    nn.init.dirac_(conv.weight[:in_channels])


class Lookahead(Callback):
    """hlb-cifar10/airbench's lookahead: every ``every_n_steps`` steps the slow weights move
    towards the model's, ``slow ← slow + (1 − d)·(model − slow)``, and the model is reset to them,
    with ``d = decay^every_n_steps · (step / total_steps)^power`` growing from 0 (no averaging
    early on) to ``decay^every_n_steps`` at the end. BatchNorm statistics are averaged too. With
    ``final_copy`` the model ends as the slow weights (airbench94's last update, ``d = 1``)."""

    def __init__(
        self, decay: float = 0.95, every_n_steps: int = 5, power: float = 3.0, final_copy: bool = False
    ) -> None:
        _check_averaging("Lookahead", decay, every_n_steps)
        self.decay, self.every_n_steps, self.power, self.final_copy = decay, every_n_steps, power, final_copy
        self.slow: dict[str, Tensor] | None = None

    def on_fit_start(self, run: Run) -> None:
        if self.slow is None:
            self.slow = {k: v.detach().clone() for k, v in run.model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def on_step_end(self, run: Run, step: StepOutput) -> None:
        last = self.final_copy and run.progress.step >= run.total_steps
        if self.slow is None or (run.progress.step % self.every_n_steps and not last):
            return
        d = 1.0 if last else self.decay**self.every_n_steps * (run.progress.step / run.total_steps) ** self.power
        state = run.model.state_dict()
        for name, slow in self.slow.items():
            slow.lerp_(state[name], 1.0 - d)
            state[name].copy_(slow)

    def state_dict(self) -> dict[str, Any]:
        return {"slow": self.slow} if self.slow is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.slow = state.get("slow")
