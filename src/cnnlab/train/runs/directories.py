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

from pathlib import Path

from omegaconf import OmegaConf

__all__ = ["config_subdir", "register_resolvers", "unique_directory"]

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
