"""What ``train.py`` runs inside ``@hydra.main``: the job's overrides from Hydra, the run, the
value a sweeper optimises, and user errors reported in one line (no traceback). A single run
exits with status 2 and its empty run directory removed; a sweep's job keeps its directory with
the error in ``error.txt`` and raises :class:`JobFailed` to Hydra, whose launcher then runs the
other jobs (and a sweeper such as Optuna records the trial as failed)."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig

from ..errors import UserError
from .overrides import JobInfo, swept_overrides
from .runs.directories import ERROR_FILE
from .runs.record import PATCH_FILE, RECORD_FILE
from .runs.resume import finished_earlier

__all__ = ["JobFailed", "hydra_main"]

log = logging.getLogger("cnnlab")
# What a run directory holds before training writes anything of value: configs, the log, TensorBoard's config text.
_SETUP_ONLY = {".hydra", "train.log", "config.yaml", RECORD_FILE, PATCH_FILE}
_EVENTS = "events.out.tfevents."  # (TensorBoard's event files)


def _job_info() -> JobInfo:
    hydra_cfg = HydraConfig.get()
    overrides = list(hydra_cfg.overrides.task)
    excluded = set(hydra_cfg.job.config.override_dirname.exclude_keys)
    experiment = hydra_cfg.runtime.choices.get("experiment")
    return JobInfo(overrides, swept_overrides(overrides, excluded), experiment)


def _remove_if_empty(run_dir: Path) -> None:
    """A run that failed before it trained leaves nothing worth keeping: remove its directory."""
    if not run_dir.is_dir() or any(
        p.name not in _SETUP_ONLY and not p.name.startswith(_EVENTS) for p in run_dir.iterdir()
    ):
        return  # checkpoints or metrics: a real run (e.g. a refused resume of it) stays untouched
    for handler in logging.getLogger().handlers[:]:  # Hydra's file handler writes into the directory
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == run_dir.resolve():
            handler.close()
            logging.getLogger().removeHandler(handler)
    shutil.rmtree(run_dir, ignore_errors=True)


class JobFailed(CompactHydraException):
    """A sweep's job failed (its error is in its directory's ``error.txt``); Hydra prints only this
    message, and the sweep's exit status is 1."""


def hydra_main(cfg: DictConfig) -> float | None:
    """Run the job; return ``cfg.optimized_metric`` (for sweepers such as Optuna)."""
    from .engine.loop import run

    job = _job_info()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    earlier = finished_earlier(cfg, run_dir) if in_sweep else None
    try:
        metrics = earlier or run(cfg, job)
    except UserError as error:
        print(f"Error: {error}", file=sys.stderr, flush=True)
        if in_sweep:
            (run_dir / ERROR_FILE).write_text(f"{error}\n")
            raise JobFailed(
                f"job {run_dir.name} failed: {error}\n(the sweep's other jobs ran; {run_dir.parent / 'summary.md'} "
                "lists every job)"
            ) from None
        _remove_if_empty(run_dir)
        sys.exit(2)
    except Exception as error:  # a crash: the traceback as always, and the sweep's summary lists it
        if in_sweep:
            (run_dir / ERROR_FILE).write_text(f"{type(error).__name__}: {error}\n")
        raise
    value = metrics.get(str(cfg.get("optimized_metric", "val_acc")))
    return float(value) if value is not None else None
