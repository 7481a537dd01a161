"""Run directories that two runs never share: ``${cnnlab.unique_dir:path}`` in a Hydra config
(``configs/hydra/default.yaml``'s ``hydra.run.dir``) is ``path``, or ``path_1``, ``path_2``, …: the
first one that this process creates. ``mkdir`` either creates a directory or fails, atomically, so
two runs started in the same second (same name, same ``${now:...}``) get two directories."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

__all__ = ["register_resolvers", "unique_directory"]

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


def register_resolvers() -> None:
    """Make ``${cnnlab.unique_dir:...}`` known to OmegaConf (``train.py`` calls this before Hydra)."""
    OmegaConf.register_new_resolver("cnnlab.unique_dir", unique_directory, replace=True)
