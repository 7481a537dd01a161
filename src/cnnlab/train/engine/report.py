"""The end of a run: ``metrics.json``, the trained model's analysis, images, TensorBoard's HParams
entry (what was swept first, val_acc first), and a console summary that says where everything is."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from torch import nn

from ...analysis.tensorboard import log_analysis
from ...errors import UserError
from .setup import class_names
from .state import Run
from .tensorboard import class_accuracy, first_conv_weight

__all__ = ["config_text", "evaluate_checkpoint", "finish", "format_duration", "hparams_of"]

log = logging.getLogger("cnnlab")

# HParams columns after the swept keys: name → config key.
STANDARD_HPARAMS = {
    "precision": "trainer.precision",
    "model": "model.name",
    "conv": "conv.kind",
    "pool": "pool.kind",
    "seed": "seed",
    "batch_size": "data.batch_size",
    "lr": "optimizer.lr",
    "weight_decay": "optimizer.weight_decay",
}  # (and "epochs": how many the run trained)
# ... and, where a run sets them (not their "off" value), these: name → (config key, off).
OPTIONAL_HPARAMS = {
    "classes": ("data.classes", None),
    "policy": ("data.augment.policy", "none"),
    "cutout": ("data.augment.cutout", 0),
    "mixup": ("data.augment.mixup", 0),
    "cutmix": ("data.augment.cutmix", 0),
    "accumulate_grad_batches": ("trainer.accumulate_grad_batches", 1),
}
# Group overrides (pool=avg) name the config key that says which option was chosen.
GROUP_KEYS = {"model": "model.name", "conv": "conv.kind", "pool": "pool.kind"}


def counted(number: int, noun: str) -> str:
    """``1 step``, ``6 steps``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{seconds:.1f} s"


def _hparam_value(value: Any) -> bool | float | str:
    """A column value: an int as text (TensorBoard shows every number as a float, ``64.000``), a
    list as its text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, (bool, float, str)) else str(value)


def hparams_of(run: Run) -> dict[str, bool | float | str]:
    """HParams columns in the order TensorBoard shows them (its first five are visible by
    default): what the sweep varied, then the experiment, then the standard ones."""
    job = run.job
    params: dict[str, bool | float | str] = {}
    covered = set()
    for key, value in job.swept:
        params[key] = _hparam_value(value)
        covered.add(GROUP_KEYS.get(key, key))
    params["experiment"] = job.experiment or "none"
    optional = {
        name: key for name, (key, off) in OPTIONAL_HPARAMS.items() if OmegaConf.select(run.cfg, key, default=off) != off
    }
    for name, key in {**STANDARD_HPARAMS, **optional}.items():
        value = OmegaConf.select(run.cfg, key, default=None)
        if key not in covered and name not in params and value is not None:
            params[name] = _hparam_value(value)
    params["epochs"] = str(run.progress.epoch)
    return params


def config_text(run: Run) -> str:
    """The resolved config as TensorBoard's Text tab shows it: first the command line (every
    override, the fixed ones of a sweep and the experiment included), what a sweep varied, and the
    model's slots, then the YAML."""
    cfg, job = run.cfg, run.job
    lines = [f"# command line: {' '.join(job.overrides) or '(the defaults)'}"]
    if job.experiment:
        lines.append(f"# experiment={job.experiment}: configs/experiment/{job.experiment}.yaml, then the rest")
    swept = " ".join(f"{key}={value}" for key, value in job.swept)
    if swept and len(job.swept) < len(job.overrides):  # a sweep: what varied between its jobs
        lines.append(f"# varied in this sweep: {swept}")
    lines.append(f"# model={cfg.model.name} conv={cfg.conv.kind} pool={cfg.pool.kind}")
    return "\n".join(lines) + "\n" + OmegaConf.to_yaml(cfg, resolve=True)


def _log_images(run: Run) -> None:
    cfg, logger, step = run.cfg, run.logger, run.progress.step
    sample, _ = next(run.train_loader.iterate(0))
    logger.images("train/samples", sample[:32].cpu() * run.std.view(1, -1, 1, 1) + run.mean.view(1, -1, 1, 1), step)
    logger.filters("weights/first_layer_filters", first_conv_weight(run.model), step)
    if run.task == "classification" and run.last_eval is not None:
        names = class_names(cfg.data)
        logger.confusion(run.last_eval["confusion"], names, step)


def finish(run: Run, started: float) -> dict[str, Any]:
    """Write ``metrics.json`` and the final TensorBoard entries; print the summary. The last
    epoch's evaluation is the final one (the test set is not evaluated twice). ``started``: the
    ``time.perf_counter()`` at which the run began; ``run_wall_s`` is everything since, the
    analysis, images and checkpoints included, and ``run_parts_s`` splits it."""
    progress, cfg = run.progress, run.cfg
    if run.last_eval is None:  # resumed a run that had already finished
        run.last_eval = run.evaluate()
    final = run.last_eval
    classifier = final["acc"] is not None
    history = progress.history
    metrics: dict[str, Any] = {
        "train_loss": history[-1]["train_loss"] if history else math.nan,
        "val_loss": final["loss"],
        "val_acc": final["acc"],
        "val_images": final.get("images"),  # how many validation images the figures above are over
        "best_val_acc": progress.best_val_acc if classifier else None,
        "best_epoch": progress.best_epoch,
        "epochs": progress.epoch,
        "steps": progress.step,
        "skipped_steps": progress.skipped_steps,
        "images_per_sec": progress.images_per_sec,
        "wall_s": progress.train_seconds,
        "run_wall_s": None,  # (below: everything up to the summary)
        "run_parts_s": None,
        "world_size": run.world_size,
        "job": run.job.state_dict(),  # the command line that started the run (kept across resumes)
        "record": run.record,  # what exactly ran (this process: a resumed run's own)
        "val_class_acc": (
            dict(zip(class_names(cfg.data), class_accuracy(final["confusion"].float()).tolist()))
            if classifier
            else None
        ),
        "history": history,
    }
    for callback in run.callbacks.values():
        callback.on_fit_end(run, metrics)
    if not run.main:
        metrics["run_wall_s"] = time.perf_counter() - started
        return metrics
    analysing = 0.0
    if cfg.logger.analysis:
        log.info("Analysing the trained model (receptive fields, parameter sharing, equivariance, invariance) ...")
        began = time.perf_counter()
        metrics["analysis"] = log_analysis(
            run.logger, run.model, run.input_shape, analysis_images(run), classifier, progress.step
        )
        analysing = time.perf_counter() - began
    if cfg.logger.log_images:
        _log_images(run)
    # HParams metric columns: the last value of these per-epoch scalars, val_acc first.
    tags = ["val/acc", "val/best_acc", "val/loss", "train/loss", "train/images_per_sec"]
    extra = [key.replace("_", "/", 1) for key in history[-1] if key.startswith("val_ema")] if history else []
    swept = [name for name, _ in run.job.swept]  # (TensorBoard shows the columns marked `differs` first)
    run.logger.hparams(hparams_of(run), [t for t in tags + extra if classifier or "acc" not in t], differs=swept)
    run.logger.close()
    wall = time.perf_counter() - started
    training = progress.train_seconds if run.resumed_at_step is None else math.nan  # (a resumed run's spans both)
    metrics["run_wall_s"] = wall
    metrics["run_parts_s"] = {"training": training, "analysis": analysing, "other": wall - training - analysing}
    (run.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    _print_summary(run, metrics)
    return metrics


def analysis_images(run: Run):
    """The first ``logger.analysis_images`` test images, normalised, for the invariance measures."""
    return next(iter(run.val_loader))[0][: int(run.cfg.logger.analysis_images)]


def shortened_run_notes(run: Run, metrics: dict[str, Any]) -> list[str]:
    """What makes the numbers of a shortened run (``limit_train_batches``, ``max_steps``,
    ``overfit_batches``) unlike a real run's: the schedule spans only its steps; and, only where
    its evaluation shows it (``val_loss`` over twice ``train_loss``), that BatchNorm's running
    statistics, which evaluation uses, still hold a share ``(1 − momentum)^steps`` of their initial
    mean 0 / variance 1."""
    options, steps = run.options, run.progress.step
    limits = {key: getattr(options, key) for key in ("limit_train_batches", "overfit_batches")}
    limits["max_steps"] = options.max_steps if options.max_steps > 0 else None
    shortened = ", ".join(f"trainer.{key}={value}" for key, value in limits.items() if value)
    if not shortened:
        return []
    notes = [f"A shortened run ({shortened}): {counted(steps, 'step')}, the learning-rate schedule spans them; "
             "such runs check code, their numbers do not measure a model."]  # fmt: skip
    momenta = [m.momentum for m in run.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.momentum]
    val_loss, train_loss = metrics.get("val_loss"), metrics.get("train_loss")
    far_off = val_loss is not None and train_loss is not None and val_loss > 2 * train_loss  # (NaN: not far off)
    if momenta and far_off and (1 - min(momenta)) ** steps > 0.05:
        kept, momentum = (1 - min(momenta)) ** steps, min(momenta)
        needed = math.ceil(math.log(0.05) / math.log(1 - momentum))
        notes.append(f"val_loss {val_loss:.4g} against train_loss {train_loss:.4g}: BatchNorm's running statistics "
                     f"(momentum {momentum:g}), which evaluation uses, still hold {kept:.0%} of their initial mean 0 / "
                     f"variance 1 after {counted(steps, 'step')}; {needed} steps bring it under 5%.")  # fmt: skip
    return notes


def _print_summary(run: Run, metrics: dict[str, Any]) -> None:
    progress = run.progress
    this_process = f"{format_duration(metrics['run_wall_s'])} in all"
    if metrics["run_parts_s"]["analysis"]:
        this_process += (
            f", {format_duration(metrics['run_parts_s']['analysis'])} of it analysing the trained model "
            "(logger.analysis=false skips that)"
        )
    if run.resumed_at_step is not None:  # training time counts the whole run; wall time only this process
        this_process = (
            f"resumed at step {run.resumed_at_step}: this process ran {format_duration(metrics['run_wall_s'])}"
        )
    lines = [
        f"Finished: {counted(progress.epoch, 'epoch')}, {counted(progress.step, 'step')}, "
        f"{format_duration(progress.train_seconds)} of training at {progress.images_per_sec:.0f} images/s "
        f"({this_process})",
    ]
    if metrics["val_acc"] is not None:
        lines.append(
            f"val_acc {metrics['val_acc']:.4f} (best {metrics['best_val_acc']:.4f} at epoch {progress.best_epoch}), "
            f"val_loss {metrics['val_loss']:.4f}"
        )
    else:
        lines.append(f"val_loss {metrics['val_loss']:.4f}")
    lines += shortened_run_notes(run, metrics)
    lines.append(f"run directory: {run.run_dir}")
    if run.logger.writer is not None:  # (logger=none writes no events)
        lines.append(f"TensorBoard:   tensorboard --logdir {run.run_dir}")
    log.info("%s", "\n".join(lines))


def load_model_weights(run: Run, state_dict: dict[str, Any], path: Path) -> None:
    """Load a checkpoint's weights; a model that does not fit them raises one short
    :class:`~cnnlab.errors.UserError` instead of a wall of ``size mismatch`` lines."""
    own = run.model.state_dict()
    missing = sorted(own.keys() - state_dict.keys())
    unexpected = sorted(state_dict.keys() - own.keys())
    mismatched = sorted(k for k in own.keys() & state_dict.keys() if own[k].shape != state_dict[k].shape)
    if missing or unexpected or mismatched:
        parts = [
            f"{len(names)} {what} (first: {names[0]})"
            for names, what in ((missing, "missing"), (unexpected, "unexpected"), (mismatched, "of another shape"))
            if names
        ]
        raise UserError(
            f"checkpoint {path} does not fit model={run.cfg.model.name} (conv={run.cfg.conv.kind}, "
            f"pool={run.cfg.pool.kind}): tensors {', '.join(parts)}. Without allow_config_change=true the run's own "
            f"model is used."
        )
    run.model.load_state_dict(state_dict)


def evaluate_checkpoint(run: Run, saved: dict[str, Any], path: Path) -> dict[str, Any]:
    """``trainer.eval_only=true``: the checkpoint's model on the validation set."""
    load_model_weights(run, saved["model"], path)
    result = run.evaluate()
    metrics = {"val_loss": result["loss"], "val_acc": result["acc"], "ckpt_path": str(path)}
    if run.main:
        (run.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        accuracy = f" val_acc {result['acc']:.4f}" if result["acc"] is not None else ""
        log.info(
            "eval of %s: val_loss %.4f%s\nwritten to %s", path, result["loss"], accuracy, run.run_dir / "metrics.json"
        )
    return metrics
