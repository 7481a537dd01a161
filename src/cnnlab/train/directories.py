"""Run directories: two runs never share one, and a resume finds one with a checkpoint.

``${cnnlab.unique_dir:path}`` in a Hydra config (``configs/hydra/default.yaml``'s
``hydra.run.dir`` and ``hydra.sweep.dir``) is ``path``, or ``path_1``, ``path_2``, …: the first one
that this process creates. ``mkdir`` either creates a directory or fails, atomically, so two runs
(or two sweeps) started in the same second (same name, same ``${now:...}``) get two directories.
The answer is cached in the config, as ``${now:...}``'s is, so a sweep's jobs that a launcher
starts in other processes (submitit) get their sweep's directory, not one of their own.

``${cnnlab.config_subdir:output_dir}`` (``hydra.output_subdir``) is where Hydra saves a command's
``config.yaml``, ``hydra.yaml`` and ``overrides.yaml``: ``.hydra`` for the command that started the
run, ``.hydra/command_<n>`` for the n-th command in the same directory (a resume), so the command
line that started a run is never overwritten by the one that continued it.

``resume=auto`` continues the run in ``hydra.run.dir``; where that directory holds no checkpoint it
is an error (:class:`NothingToResumeError`, naming the directory, what it holds and the runs beside
it), raised before Hydra writes anything there (:mod:`.start_checks`). ``resume=if_exists`` starts
a new run instead: what a job that may be requeued (Slurm) asks for on its first start."""

from __future__ import annotations

import difflib
from pathlib import Path

from omegaconf import OmegaConf

from ..errors import UserError

__all__ = [
    "NothingToResumeError", "config_subdir", "has_checkpoint", "nothing_to_resume", "register_resolvers",
    "unique_directory",
]  # fmt: skip

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
    """Make ``${cnnlab.unique_dir:...}`` and ``${cnnlab.config_subdir:...}`` known to OmegaConf
    (``train.py`` calls this before Hydra). Both are cached in the config: Hydra copies that cache
    into each sweep job's config (``OmegaConf.copy_cache``), it travels with the config to a
    launcher's job process, and the answer stays the same after Hydra has saved into it."""
    OmegaConf.register_new_resolver("cnnlab.unique_dir", unique_directory, replace=True, use_cache=True)
    OmegaConf.register_new_resolver("cnnlab.config_subdir", config_subdir, replace=True, use_cache=True)


class NothingToResumeError(UserError, FileNotFoundError):
    """``resume=auto`` where the run directory holds no checkpoint."""


def has_checkpoint(run_dir: Path) -> bool:
    """Whether ``run_dir/checkpoints`` holds ``last.pt`` or a step checkpoint."""
    directory = run_dir / "checkpoints"
    return (directory / "last.pt").is_file() or any(directory.glob("step-*.pt"))


def nothing_to_resume(run_dir: Path) -> NothingToResumeError:
    """The error for ``resume=auto`` in ``run_dir``: what the directory holds, the runs beside it
    that hold a checkpoint (nearest name first), and what to do instead."""
    if not run_dir.is_dir():
        holds = "it does not exist"
    elif not any(run_dir.iterdir()):
        holds = "a new, empty directory (resume=auto continues the run whose directory hydra.run.dir names)"
    else:
        entries = sorted(p.name + ("/" if p.is_dir() else "") for p in run_dir.iterdir())
        holds = f"it holds {', '.join(entries)} but no checkpoint"
    beside = (
        [p for p in run_dir.parent.glob("*") if p != run_dir and p.is_dir() and has_checkpoint(p)]
        if run_dir.parent.is_dir()
        else []
    )
    nearest = difflib.get_close_matches(run_dir.name, [p.name for p in beside], n=3, cutoff=0.0)
    runs = (
        f" Runs beside it with a checkpoint: {', '.join(str(run_dir.parent / n) for n in nearest)}." if nearest else ""
    )
    return NothingToResumeError(
        f"resume=auto: nothing to resume in {run_dir}: {holds}.{runs} Give the run's directory as "
        f"hydra.run.dir=..., start a new run without resume=auto, or use resume=if_exists to start one "
        f"when there is nothing to resume."
    )
