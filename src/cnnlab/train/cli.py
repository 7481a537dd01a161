"""What ``train.py`` runs inside ``@hydra.main``: the job's overrides from Hydra, the run, the
value a sweeper optimises, and user errors reported in one line (no traceback) with the run
directory they left empty removed."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ..errors import UserError
from .overrides import swept_overrides
from .report import JobInfo

__all__ = ["hydra_main"]

log = logging.getLogger("cnnlab")
# What a run directory holds before training writes anything of value: configs, the log, TensorBoard's config text.
_SETUP_ONLY = {".hydra", "train.log", "config.yaml", "tb"}


def _job_info() -> tuple[list[str], JobInfo]:
    hydra_cfg = HydraConfig.get()
    overrides = list(hydra_cfg.overrides.task)
    excluded = set(hydra_cfg.job.config.override_dirname.exclude_keys)
    experiment = hydra_cfg.runtime.choices.get("experiment")
    return overrides, JobInfo(swept=swept_overrides(overrides, excluded), experiment=experiment)


def _remove_if_empty(run_dir: Path) -> None:
    """A run that failed before it trained leaves nothing worth keeping: remove its directory."""
    if not run_dir.is_dir() or any(p.name not in _SETUP_ONLY for p in run_dir.iterdir()):
        return  # checkpoints or metrics: a real run (e.g. a refused resume of it) stays untouched
    for handler in logging.getLogger().handlers[:]:  # Hydra's file handler writes into the directory
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == run_dir.resolve():
            handler.close()
            logging.getLogger().removeHandler(handler)
    shutil.rmtree(run_dir, ignore_errors=True)


def hydra_main(cfg: DictConfig) -> float | None:
    """Run the job; return ``cfg.optimized_metric`` (for sweepers such as Optuna)."""
    from .loop import run

    overrides, job = _job_info()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        metrics = run(cfg, overrides, job)
    except UserError as error:
        print(f"Error: {error}", file=sys.stderr, flush=True)
        _remove_if_empty(run_dir)
        sys.exit(2)
    value = metrics.get(str(cfg.get("optimized_metric", "val_acc")))
    return float(value) if value is not None else None
