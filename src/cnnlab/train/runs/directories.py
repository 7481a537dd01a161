"""Run directories: two runs never share one; a resumed run keeps the command line that started it.

``${cnnlab.unique_dir:path}`` in a Hydra config (``configs/hydra/default.yaml``'s
``hydra.run.dir`` and ``hydra.sweep.dir``) is ``path``, or ``path_1``, ``path_2``, …: the first one
that this process creates. ``mkdir`` either creates a directory or fails, atomically, so two runs
(or two sweeps) started in the same second (same name, same ``${now:...}``) get two directories.
The answer is cached in the config, as ``${now:...}``'s is, so a sweep's jobs that a launcher
starts in other processes (submitit) get their sweep's directory, not one of their own.

``${cnnlab.config_subdir:output_dir}`` (``hydra.output_subdir``) is where Hydra saves a command's
``config.yaml``, ``hydra.yaml`` and ``overrides.yaml``: ``.hydra`` for the command that started the
run, ``.hydra/command_<n>`` for the n-th command in the same directory (a resume), so the command
line that started a run is never overwritten by the one that continued it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

__all__ = [
    "EARLIER_JOBS", "ERROR_FILE", "config_subdir", "earlier_jobs", "job_state", "job_subdir", "note_earlier_jobs",
    "register_resolvers", "unique_directory",
]  # fmt: skip

ERROR_FILE = "error.txt"  # what a sweep's failed job leaves in its directory (train/cli.py)
EARLIER_JOBS = "earlier_jobs.json"  # a sweep directory run again: its jobs' states when that command started

_CREATED: dict[str, str] = {}  # Hydra resolves the run directory more than once: one directory per path


def unique_directory(path: str) -> str:
    """Create ``path`` (or the first free ``path_<n>``) with its parents; the same answer for the
    same ``path`` for the rest of this process."""
    if path not in _CREATED:
        candidate, n = path, 0
        while True:
            try:
                Path(candidate).mkdir(parents=True)
                break
            except FileExistsError:
                n += 1
                candidate = f"{path}_{n}"
        _CREATED[path] = candidate
    return _CREATED[path]


def config_subdir(output_dir: str) -> str:
    """``.hydra`` where ``output_dir`` has no saved config yet, else ``.hydra/command_<n>``: the
    first ``n ≥ 2`` not taken."""
    saved = Path(output_dir) / ".hydra"
    if not (saved / "config.yaml").exists():
        return ".hydra"
    n = 2
    while (saved / f"command_{n}" / "config.yaml").exists():
        n += 1
    return f".hydra/command_{n}"


def register_resolvers() -> None:
    """Make ``${cnnlab.unique_dir:...}``, ``${cnnlab.config_subdir:...}`` and ``${cnnlab.job_subdir:...}``
    (a sweep's job directory, :func:`job_subdir`) known to OmegaConf
    (``train.py`` calls this before Hydra). All three are cached in the config: Hydra copies that cache
    into each sweep job's config (``OmegaConf.copy_cache``), it travels with the config to a
    launcher's job process, and the answer stays the same after Hydra has saved into it."""
    OmegaConf.register_new_resolver("cnnlab.unique_dir", unique_directory, replace=True, use_cache=True)
    OmegaConf.register_new_resolver("cnnlab.config_subdir", config_subdir, replace=True, use_cache=True)
    OmegaConf.register_new_resolver("cnnlab.job_subdir", job_subdir, replace=True, use_cache=True)


def job_state(job_dir: Path) -> str:
    """``finished`` (its ``metrics.json`` holds a training history), ``failed`` (an ``error.txt``),
    else ``stopped`` (killed, preempted, interrupted: its checkpoints, if any, say where)."""
    metrics = job_dir / "metrics.json"
    if metrics.is_file() and "history" in json.loads(metrics.read_text()):
        return "finished"
    return "failed" if (job_dir / ERROR_FILE).is_file() else "stopped"


def note_earlier_jobs(sweep_dir: Path) -> dict[str, str]:
    """At the start of a sweep: the jobs ``sweep_dir`` already holds (``<number>_<what was swept>``
    directories with a saved config) and their :func:`job_state`, kept in ``EARLIER_JOBS`` for the
    jobs (which a launcher may run in other processes) and the summary; {} for a new sweep."""
    marker = sweep_dir / EARLIER_JOBS
    jobs = (
        {
            p.name: job_state(p)
            for p in sorted(sweep_dir.iterdir())
            if re.match(r"\d+_", p.name) and (p / ".hydra").is_dir()
        }
        if sweep_dir.is_dir()
        else {}
    )
    if jobs:
        marker.write_text(json.dumps(jobs, indent=2))
    elif marker.exists():
        marker.unlink()
    return jobs


def earlier_jobs(sweep_dir: Path) -> dict[str, str]:
    """What :func:`note_earlier_jobs` found when this sweep's command started ({} for a new sweep)."""
    marker = sweep_dir / EARLIER_JOBS
    return json.loads(marker.read_text()) if marker.is_file() else {}


def job_subdir(sweep_dir: str, number: Any, swept: str) -> str:
    """A sweep job's directory (``hydra.sweep.subdir``): ``<number>_<swept>``, or, where the sweep
    directory already held a job that swept the same values when this command started, that job's
    directory (its number may differ: a longer value list renumbers the jobs), so that a sweep run
    again finds its jobs where they stopped."""
    for name in earlier_jobs(Path(sweep_dir)):
        if name.split("_", 1)[1] == str(swept):
            return name
    return f"{number}_{swept}"
