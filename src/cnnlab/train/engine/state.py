"""What a run is made of (:class:`Run`: model, optimiser, data, logger, ...), how far it got
(:class:`Progress`: the counters a checkpoint saves so that a resumed run continues exactly), and
the hooks it calls (:class:`Callback`)."""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from ...data import TensorImageLoader
from ..options import TrainerOptions
from ..overrides import JobInfo
from ..runs.checkpoint import CheckpointManager, capture_rng, restore_rng
from .steps import NonFiniteLossError, StepOutput, evaluate, train_step
from .tensorboard import RunLogger

__all__ = ["Callback", "Progress", "Run"]


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


@dataclass
class Progress:
    """Counters of a run; plain numbers and lists, saved in every checkpoint as ``state``."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # batches done in the current epoch
    step: int = 0  # optimiser steps done (skipped non-finite steps included)
    best_val_acc: float = -math.inf  # best score so far: val_acc, or -val_loss without accuracy
    best_epoch: int = 0
    train_images: int = 0
    train_seconds: float = 0.0
    warmup_images: int = 0  # of the first step of each process (which pays the warm-up): left out of images/s
    warmup_seconds: float = 0.0
    running_loss: float = 0.0  # sums over the current epoch
    running_correct: int = 0
    running_seen: int = 0
    skipped_steps: int = 0
    last_finite_loss: float = math.nan
    history: list[dict[str, Any]] = field(default_factory=list)  # one dict of metrics per epoch

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            if hasattr(self, key):
                setattr(self, key, value)

    def start_epoch(self) -> None:
        self.batch, self.running_loss, self.running_correct, self.running_seen = 0, 0.0, 0, 0

    @property
    def images_per_sec(self) -> float:
        """Training images per second after the warm-up: without each process's first step (where
        there are other steps)."""
        if self.train_images > self.warmup_images:
            return (self.train_images - self.warmup_images) / max(self.train_seconds - self.warmup_seconds, 1e-9)
        return self.train_images / max(self.train_seconds, 1e-9)


@dataclass
class Run:
    """Everything :func:`cnnlab.train.engine.setup.build_run` builds from a config, passed to each stage."""

    cfg: DictConfig
    options: TrainerOptions  # cfg.trainer, typed
    run_dir: Path
    device: torch.device
    precision: str  # "32" or "bf16": trainer.precision with "auto" resolved for this device
    rank: int
    world_size: int
    model: nn.Module  # the plain model (state dicts, evaluation, analysis)
    step_model: nn.Module  # what the training step calls: the model, DDP-wrapped and/or compiled
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_loader: TensorImageLoader
    val_loader: TensorImageLoader
    logger: RunLogger
    checkpoints: CheckpointManager
    callbacks: dict[str, Callback]  # by their name under `callbacks:` in the config
    shape_table: str
    input_shape: tuple[int, ...]
    mean: torch.Tensor
    std: torch.Tensor
    total_steps: int
    max_epochs: int
    progress: Progress = field(default_factory=Progress)
    last_checkpoint: Path | None = None
    last_eval: dict[str, Any] | None = None  # the newest evaluation: loss, acc, confusion
    job: JobInfo = field(default_factory=JobInfo)  # the command line that started the run
    record: dict[str, Any] = field(default_factory=dict)  # what exactly ran (train.record)
    resumed_at_step: int | None = None  # where this process took over a checkpointed run

    @property
    def main(self) -> bool:
        """Rank 0: the process that prints and writes."""
        return self.rank == 0

    @property
    def task(self) -> str:
        return self.cfg.model.task

    @property
    def num_classes(self) -> int:
        return int(self.cfg.data.num_classes)

    @property
    def finished(self) -> bool:
        return self.progress.epoch >= self.max_epochs or self.progress.step >= self.total_steps

    def autocast(self) -> contextlib.AbstractContextManager:
        enabled = self.precision == "bf16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def train_step(self, images: Tensor, labels: Tensor) -> StepOutput:
        """One optimiser step on a batch (:func:`~.steps.train_step`); a CUDA out-of-memory error or a
        non-finite loss becomes a message that says what to try."""
        try:
            return train_step(self.step_model, self.model.parameters(), self.optimizer, self.scheduler, images,
                              labels, self.task, self.options, self.autocast)  # fmt: skip
        except torch.cuda.OutOfMemoryError as error:
            batch_size = int(self.cfg.data.batch_size)
            raise RuntimeError(
                f"CUDA out of memory at data.batch_size={batch_size}: try data.batch_size={max(1, batch_size // 2)} "
                f"(or trainer.precision=bf16)"
            ) from error
        except NonFiniteLossError as error:
            progress = self.progress
            raise NonFiniteLossError(
                f"{error} became non-finite at step {progress.step + 1} (epoch {progress.epoch + 1}, batch "
                f"{progress.batch + 1}); last finite loss {progress.last_finite_loss:.4f}. The last good checkpoint "
                f"is {self.last_checkpoint or 'none yet'}. Try a lower optimizer.lr, trainer.grad_clip_norm=1.0 or "
                f"trainer.precision=32, or set trainer.skip_nonfinite_steps=true to skip such steps."
            ) from None

    def evaluate(self, model: nn.Module | None = None, tta: bool = True) -> dict[str, Any]:
        """``{"loss", "acc", "confusion", "images"}`` of ``model`` (default: the run's) on the validation set,
        with the ``trainer.tta_*`` views unless ``tta=False``."""
        model = self.model if model is None else model
        return evaluate(model, self.val_loader, self.task, self.options, self.autocast, self.num_classes, tta)

    def snapshot(self) -> dict[str, Any]:
        """What a checkpoint holds: tensors and built-in types only (``weights_only``-loadable)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": capture_rng(),
            "state": self.progress.state_dict(),
            "callbacks": {name: c.state_dict() for name, c in self.callbacks.items()},
            "config": OmegaConf.to_yaml(self.cfg, resolve=True),
            "job": self.job.state_dict(),
            "record": self.record,
        }

    def restore(self, saved: dict[str, Any]) -> None:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        restore_rng(saved["rng"])
        self.progress.load_state_dict(saved["state"])
        for name, callback in self.callbacks.items():
            callback.load_state_dict(saved.get("callbacks", {}).get(name, {}))
        if "job" in saved:
            self.job = JobInfo.from_state_dict(saved["job"])
        self.resumed_at_step = self.progress.step

    def save_checkpoint(self) -> None:
        """``checkpoints/step-N.pt`` and ``last.pt`` (rank 0 only)."""
        if self.main:
            self.last_checkpoint = self.checkpoints.save(self.snapshot(), self.progress.step)
