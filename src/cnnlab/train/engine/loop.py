"""The training loop in stages: :func:`run` = set-up (:mod:`.setup`) → :func:`fit` (epochs of
:func:`train_epoch`, each closed by :func:`end_epoch`) → the final report (:mod:`.report`).
Callbacks (:mod:`.callbacks`) add stages without editing this file."""

from __future__ import annotations

import json
import logging
import signal
import time
from functools import partial
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from tqdm import tqdm

from ...analysis.tensorboard import log_analysis
from ...functional import native
from ...functional.conv.base import ConvCall
from ...functional.conv.dispatch import select_algorithm
from ..config import complete_config, validate_config
from ..overrides import JobInfo
from ..runs.checkpoint import save_checkpoint
from ..runs.record import RECORD_FILE, run_record
from ..runs.resume import load_run_checkpoint, resume_command
from ..runs.signals import SecondInterrupt, StopRequested
from .distributed import all_reduce_sum, close_distributed
from .report import analysis_images, config_text, counted, evaluate_checkpoint, finish, format_duration
from .setup import build_run
from .state import Run
from .steps import NonFiniteLossError, StepOutput

__all__ = ["NonFiniteLossError", "end_epoch", "fit", "run", "train_epoch"]

log = logging.getLogger("cnnlab")


def _count(run: Run, step: StepOutput, seconds: float) -> None:
    progress = run.progress
    if step.finite:
        loss = step.loss.item()
        progress.last_finite_loss = loss
        progress.running_loss += loss * len(step.labels)
        progress.running_seen += len(step.labels)
        if run.task == "classification":
            hard = step.labels.argmax(1) if step.labels.dim() == 2 else step.labels  # (MixUp/CutMix: the larger share)
            progress.running_correct += int((step.output.argmax(1) == hard).sum())
    else:
        progress.skipped_steps += 1
    images = len(step.labels) * run.world_size
    if progress.step == (run.resumed_at_step or 0):  # this process's first step: the warm-up
        progress.warmup_images += images
        progress.warmup_seconds += seconds
    progress.step += 1
    progress.batch += 1
    progress.train_images += images
    progress.train_seconds += seconds


def auto_would_pick(module: nn.Module, input: Tensor) -> str | None:
    """For a cnnlab convolution whose algorithm was chosen (not ``auto``): the algorithm ``auto``
    would run on ``input`` (its batched input) where that is another one, else None."""
    algorithm = getattr(module, "algorithm", None)
    if not isinstance(module, nn.modules.conv._ConvNd) or module.transposed or algorithm in (None, "auto"):
        return None
    padding = module.padding if isinstance(module.padding, tuple) else (0,) * (input.dim() - 2)
    call = ConvCall(input, module.weight, module.stride, padding, module.dilation, module.groups)
    choice = select_algorithm(call)
    return choice if choice != algorithm else None


class RunLength:
    """How long the rest of a run will take, from its own steps on this machine: said once the
    first ``MEASURED`` steps after the first (which pays the warm-up) are timed, and again after
    the first epoch this process trains. Where the first estimate is past ``LONG_MINUTES`` and some
    convolutions run an algorithm that ``auto`` would not pick for them (seen in the first step),
    a warning names them and what ``auto`` would run."""

    MEASURED = 3
    LONG_MINUTES = 15

    def __init__(self, run: Run) -> None:
        self.step_seconds: list[float] = []
        self.epoch_started = (run.progress.epoch, time.perf_counter())
        self.not_auto: dict[str, tuple[str, str]] = {}  # layer → (its algorithm, auto's)
        self.hooks = [  # (not under torch.compile: a hook removed after the first step would recompile)
            module.register_forward_pre_hook(partial(self._note, name))
            for name, module in run.model.named_modules()
            if getattr(module, "algorithm", "auto") != "auto" and not run.options.compile
        ]

    def _note(self, name: str, module: nn.Module, args: tuple) -> None:
        choice = auto_would_pick(module, args[0]) if args and isinstance(args[0], Tensor) else None
        if choice is not None:
            self.not_auto[name] = (module.algorithm, choice)

    def step_done(self, run: Run, seconds: float) -> None:
        self.step_seconds.append(seconds)
        for hook in self.hooks:  # the first step has shown every layer its input
            hook.remove()
        self.hooks = []
        if len(self.step_seconds) == 1 + self.MEASURED and run.main:
            per_step = sorted(self.step_seconds[1:])[self.MEASURED // 2]
            self._say(run, per_step, f"{per_step:.2f} s a step, the median of steps 2–{1 + self.MEASURED}")
            self._warn_if_long(run, per_step)

    def _warn_if_long(self, run: Run, per_step: float) -> None:
        left = per_step * (run.total_steps - run.progress.step)
        if left < self.LONG_MINUTES * 60 or not self.not_auto:
            return
        named = [f"{name} {ours} (auto: {auto})" for name, (ours, auto) in self.not_auto.items()]
        more = f", {len(named) - 3} more" if len(named) > 3 else ""
        log.warning(
            "A long run: about %s to go, and %s an algorithm that auto would not pick on this CPU: %s%s. "
            "conv=standard (algorithm auto) picks the fastest measured one per layer.",
            format_duration(left), counted(len(named), "convolution") + (" runs" if len(named) == 1 else " run"),
            "; ".join(named[:3]), more,
        )  # fmt: skip

    def epoch_done(self, run: Run) -> None:
        epoch, began = self.epoch_started
        if epoch is not None and run.progress.epoch == epoch + 1 and run.main:
            steps = max(len(self.step_seconds), 1)
            self._say(run, (time.perf_counter() - began) / steps, f"epoch {run.progress.epoch} measured")
            self.epoch_started = (None, 0.0)

    @staticmethod
    def _say(run: Run, per_step: float, how: str) -> None:
        remaining = run.total_steps - run.progress.step
        if remaining > 0:
            log.info(
                "About %s for the %s to go on this machine (%s; the end-of-run analysis comes on top)",
                format_duration(per_step * remaining), counted(remaining, "step"), how,
            )  # fmt: skip


def train_epoch(run: Run, stop: StopRequested, length: RunLength | None = None) -> None:
    """Steps from where the epoch stands to its end (or to ``trainer.max_steps``); per-step
    scalars ``train/step_loss`` and ``train/lr``; step checkpoints; a stop signal checkpoints and exits."""
    progress, options = run.progress, run.options
    bar = tqdm(
        run.train_loader.iterate(progress.epoch, start_batch=progress.batch),
        total=len(run.train_loader),
        initial=progress.batch,
        desc=f"epoch {progress.epoch + 1}/{run.max_epochs}",
        disable=not (options.progress_bar and run.main),
        leave=False,
    )
    epoch_start = time.perf_counter()
    for images, labels in bar:
        step_start = time.perf_counter()
        step = run.train_step(images, labels)
        _count(run, step, time.perf_counter() - step_start)
        if length is not None:
            length.step_done(run, time.perf_counter() - step_start)
        for callback in run.callbacks.values():
            callback.on_step_end(run, step)
        if not bar.disable:
            images_per_sec = progress.running_seen * run.world_size / max(time.perf_counter() - epoch_start, 1e-9)
            bar.set_postfix(
                loss=f"{step.loss.item():.3f}",
                acc=f"{progress.running_correct / max(progress.running_seen, 1):.3f}",
                img_s=f"{images_per_sec:.0f}",
            )
        if progress.step % options.log_every_n_steps == 0:
            run.logger.scalar("train/step_loss", step.loss.item(), progress.step)
            run.logger.scalar("train/lr", run.scheduler.get_last_lr()[0], progress.step)
        every = options.checkpoint_every_n_steps
        if (every and progress.step % every == 0) or stop.signal is not None:
            run.save_checkpoint()
        if stop.signal is not None:
            bar.close()
            if run.main:
                log.info(
                    "Stopped by signal at step %d: checkpoint %s. Continue with:\n  %s",
                    progress.step,
                    run.last_checkpoint,
                    resume_command(run.run_dir),
                )
            stop.hand_over()
        if progress.step >= run.total_steps:
            break
    bar.close()


def end_epoch(run: Run) -> None:
    """Evaluate (every ``trainer.check_val_every_n_epoch``-th epoch and after the last), log the
    epoch's scalars (``train/``, ``val/``), checkpoint, print one line."""
    progress, cfg, options = run.progress, run.cfg, run.options
    loss_sum, correct, seen = all_reduce_sum(
        progress.running_loss, progress.running_correct, progress.running_seen, device=run.device
    )
    seen = max(float(seen), 1.0)
    last = progress.step >= run.total_steps
    every = options.check_val_every_n_epoch
    evaluated = last or bool(every and (progress.epoch + 1) % every == 0)
    # trainer.tta_final_only: the test-time views in the last evaluation only (airbench94's recipe)
    result = run.evaluate(tta=not options.tta_final_only or last) if evaluated else None
    progress.epoch += 1
    progress.start_epoch()
    metrics: dict[str, Any] = {"train/loss": float(loss_sum) / seen}
    classifier = run.task == "classification"
    if classifier:
        metrics["train/acc"] = float(correct) / seen
    metrics["train/images_per_sec"] = progress.images_per_sec
    improved = False
    if result is not None:
        run.last_eval = result
        score = result["acc"] if classifier else -result["loss"]
        improved = score > progress.best_val_acc
        if improved:
            progress.best_val_acc, progress.best_epoch = score, progress.epoch
        metrics["val/loss"] = result["loss"]
        if classifier:
            metrics["val/acc"] = result["acc"]
            metrics["val/best_acc"] = progress.best_val_acc
    for callback in run.callbacks.values():
        callback.on_epoch_end(run, metrics)
    for tag, value in metrics.items():
        run.logger.scalar(tag, value, progress.step)
    progress.history.append({"epoch": progress.epoch, **{tag.replace("/", "_"): v for tag, v in metrics.items()}})
    run.save_checkpoint()
    if improved and run.main:
        save_checkpoint(run.snapshot(), run.run_dir / "checkpoints" / "best.pt")
    if run.main:
        shown = {tag: value for tag, value in metrics.items() if tag not in ("train/images_per_sec", "val/best_acc")}
        numbers = " ".join(f"{tag.replace('/', '_')} {value:.4f}" for tag, value in shown.items())
        log.info("epoch %d/%d: %s | %.0f img/s", progress.epoch, run.max_epochs, numbers, progress.images_per_sec)
    every = cfg.logger.analysis_every_n_epochs
    if run.main and cfg.logger.analysis and every and progress.epoch % every == 0 and not run.finished:
        classifier = run.task == "classification"
        log_analysis(run.logger, run.model, run.input_shape, analysis_images(run), classifier, progress.step)


def fit(run: Run) -> None:
    """Epochs until ``trainer.max_epochs`` or ``trainer.max_steps``; SIGINT/SIGTERM/SIGUSR1/SIGUSR2
    stop after the current step with a checkpoint (:mod:`..runs.signals`)."""
    for callback in run.callbacks.values():
        callback.on_fit_start(run)
    length = RunLength(run)
    with StopRequested() as stop:
        try:
            while not run.finished:
                train_epoch(run, stop, length)
                end_epoch(run)
                length.epoch_done(run)
        except SecondInterrupt:
            if run.main:
                where = (
                    f"The last checkpoint is {run.last_checkpoint}; continue from it with:\n"
                    f"  {resume_command(run.run_dir)}"
                    if run.last_checkpoint
                    else "No checkpoint was written yet (the first comes at the end of epoch 1)."
                )
                log.info(
                    "\nSecond Ctrl-C: stopped at once in step %d, not checkpointed. %s", run.progress.step + 1, where
                )
            raise SystemExit(128 + signal.SIGINT) from None


def run(cfg: DictConfig, job: JobInfo | None = None) -> dict[str, Any]:
    """Train (or with ``trainer.eval_only`` evaluate) the configured model; returns the metrics
    written to ``metrics.json``. ``job`` is the command line (its overrides tell an asked-for
    change of a resumed run from a default; what a sweep varied labels the run)."""
    started = time.perf_counter()
    job = job or JobInfo()
    validate_config(cfg)
    complete_config(cfg)
    cfg, saved, saved_path = load_run_checkpoint(cfg, job.overrides)
    deterministic = torch.are_deterministic_algorithms_enabled()
    run = build_run(cfg, saved, saved_path, job)  # trainer.deterministic switches torch's global mode on
    try:
        if run.main:
            run.record = run_record(cfg.seed, run.run_dir)
            (run.run_dir / RECORD_FILE).write_text(json.dumps(run.record, indent=2))
            log.info("%s", run.shape_table)
            if run.device.type == "cpu":
                log.info("%s", native.describe())
            if run.options.precision == "auto":
                log.info(
                    "trainer.precision=auto: %s on %s",
                    "bf16 autocast" if run.precision == "bf16" else "float32",
                    run.device,
                )
            if saved is not None and not run.options.eval_only:
                p = run.progress
                log.info("Resumed from %s at epoch %d, batch %d, step %d", saved_path, p.epoch, p.batch, p.step)
        run.logger.text("config", config_text(run), run.progress.step)  # (a resumed run: where it took over)
        run.logger.text("model/shape_table", run.shape_table, run.progress.step)
        if run.options.eval_only:
            return evaluate_checkpoint(run, saved, saved_path)
        fit(run)
        return finish(run, started)
    finally:  # TensorBoard's writer thread is done before a failed run's directory is removed
        run.logger.close()
        torch.use_deterministic_algorithms(deterministic)
        close_distributed()
