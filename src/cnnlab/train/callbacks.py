"""Stages added to training without editing the loop.

A callback is any object with some of the hooks of :class:`Callback`; runs configure them under
``callbacks:`` (``python train.py callbacks=ema``; each entry is instantiated with Hydra's
``_target_``). The loop calls every hook at its point, in config order; ``on_epoch_end`` may add
entries to the epoch's metrics (a key with a ``/`` becomes a TensorBoard scalar of that tag and a
column of ``metrics.json``'s history). ``state_dict``/``load_state_dict`` go into checkpoints, so a
resumed run continues the callback exactly.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .state import Run
    from .steps import StepOutput

__all__ = ["Callback", "WeightEMA"]


class Callback:
    """Hooks the loop calls; each does nothing unless overridden."""

    def on_fit_start(self, run: Run) -> None:
        """After set-up and any resume, before the first step."""

    def on_step_end(self, run: Run, step: StepOutput) -> None:
        """After each optimiser step (``run.progress.step`` already counts it)."""

    def on_epoch_end(self, run: Run, metrics: dict[str, Any]) -> None:
        """After the epoch's evaluation; add ``metrics["<group>/<name>"] = value`` to log more."""

    def on_fit_end(self, run: Run, metrics: dict[str, Any]) -> None:
        """After the last epoch, before ``metrics.json`` is written (may add entries to it)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (called before :meth:`on_fit_start`)."""


class WeightEMA(Callback):
    """An exponential moving average of the weights, ``w_ema ← decay·w_ema + (1 − decay)·w``
    after every ``every_n_steps`` optimiser steps (buffers such as BatchNorm statistics are
    copied), evaluated at each epoch end as ``val/ema_acc`` and ``val/ema_loss``. With
    ``decay=0.99`` the average spans about the last 100 updates."""

    def __init__(self, decay: float = 0.99, every_n_steps: int = 1) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"WeightEMA: decay must be in [0, 1), but got decay={decay}")
        if every_n_steps < 1:
            raise ValueError(f"WeightEMA: every_n_steps must be >= 1, but got every_n_steps={every_n_steps}")
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
        from .steps import evaluate

        if self.average is None:
            return
        result = evaluate(self.average, run.val_loader, run.task, run.cfg.trainer, run.autocast, run.num_classes)
        metrics["val/ema_loss"] = result["loss"]
        if result["acc"] is not None:
            metrics["val/ema_acc"] = result["acc"]

    def state_dict(self) -> dict[str, Any]:
        return {"average": self.average.state_dict()} if self.average is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = state.get("average")
