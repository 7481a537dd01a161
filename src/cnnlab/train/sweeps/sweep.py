"""Sweeps: job directories named by what was swept, and a summary table when the sweep ends.

``python train.py -m conv=standard,torch pool=max,avg trainer.max_epochs=3`` names its jobs
``0_conv=standard,pool=max`` ... (not by every override), because :func:`name_jobs_by_swept_keys`
adds the fixed overrides to ``hydra.job.config.override_dirname.exclude_keys``. After each job
:class:`SweepSummary` (a Hydra callback) writes ``summary.csv`` and ``summary.md`` into the sweep
directory: one row per job, mean ± std over seeds when ``seed`` was swept, and the jobs that
failed with their errors.

The same command run again with ``hydra.sweep.dir=`` that directory (value lists may be longer:
``seed=0,1`` then ``seed=0,1,2``) keeps the jobs that finished, runs the stopped and failed ones
again from their last checkpoints, and the new ones; the summary says which was which
(:func:`~cnnlab.train.runs.directories.note_earlier_jobs`, :func:`~cnnlab.train.runs.resume.finished_earlier`)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback as HydraCallback
from hydra.types import RunMode
from omegaconf import DictConfig

from ..overrides import ALWAYS_EXCLUDED, parse_overrides
from ..runs.directories import note_earlier_jobs
from .summary import write_summary

__all__ = ["SweepSummary", "name_jobs_by_swept_keys"]

log = logging.getLogger("cnnlab")
EXCLUDE_KEY = "hydra.job.config.override_dirname.exclude_keys"


def name_jobs_by_swept_keys(argv: list[str]) -> list[str]:
    """``argv`` with, for a multirun (``-m``), the fixed overrides excluded from the job names."""
    multirun = {"-m", "--multirun"} & set(argv[1:]) or any(a.startswith("hparams_search=") for a in argv[1:])
    if not multirun:
        return argv
    arguments = [a for a in argv[1:] if not a.startswith("-") and "=" in a]
    if any(a.split("=", 1)[0].lstrip("+") == EXCLUDE_KEY for a in arguments):
        return argv  # the user chose the names
    try:
        overrides = parse_overrides(arguments)
    except Exception:  # let Hydra report the malformed override
        return argv
    fixed = [o.key_or_group for o in overrides if not o.is_sweep_override() and not o.key_or_group.startswith("hydra")]
    excluded = list(dict.fromkeys([*ALWAYS_EXCLUDED, *fixed]))
    return [*argv, f"{EXCLUDE_KEY}=[{','.join(excluded)}]"]


class SweepSummary(HydraCallback):
    """Hydra callback (``configs/hydra/default.yaml``): the summary table of every job in the
    sweep directory, rewritten after each job (so it exists even when a failed job makes the
    sweeper raise at the end) and logged after the sweep."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        earlier = note_earlier_jobs(Path(config.hydra.sweep.dir))
        if earlier:
            states = Counter(earlier.values())
            log.info("%s already holds %s: finished ones are kept, the others run again (from their checkpoints)",
                     config.hydra.sweep.dir, ", ".join(f"{n} {state}" for state, n in states.items()))  # fmt: skip

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            write_summary(Path(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            table = write_summary(sweep_dir)
            if table:
                log.info("Sweep summary:\n\n%s\n\nWritten to %s/summary.{csv,md}; TensorBoard: tensorboard --logdir %s",
                         table, sweep_dir, sweep_dir)  # fmt: skip
