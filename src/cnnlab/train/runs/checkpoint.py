"""Checkpoints written atomically and loaded with ``weights_only=True``.

A checkpoint holds only tensors and built-in types (state dicts, RNG states as tensors, counters),
so it loads without unpickling arbitrary objects.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import UserError

__all__ = [
    "CheckpointManager",
    "CheckpointNotFoundError",
    "CheckpointWriteError",
    "capture_rng",
    "load_checkpoint",
    "restore_rng",
    "save_checkpoint",
]


class CheckpointNotFoundError(UserError, FileNotFoundError):
    """``ckpt_path=`` or ``resume=`` names a file that does not exist."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, read-only directory); the previous one is intact."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same directory, flushed and
    fsynced, then renamed over ``path``. A crash leaves either the old file or the new one."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise CheckpointWriteError(
            error.errno,
            f"could not write checkpoint {path}: {error.strerror or error}. The previous checkpoint "
            f"is intact; free disk space or point hydra.run.dir at a writable directory",
        ) from error
    except BaseException:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary objects); a damaged file raises
    ``RuntimeError`` naming it."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # truncated zip, bad pickle opcode, refused global
        raise RuntimeError(f"checkpoint {path} is damaged or not a cnnlab checkpoint: {error}") from error


def capture_rng() -> dict[str, Any]:
    """torch, numpy and python RNG states as tensors / built-ins (``weights_only``-loadable)."""
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "python": {"version": python_state[0], "state": list(python_state[1]), "gauss": python_state[2]},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointManager:
    """Step checkpoints ``step-00000123.pt`` in one directory, the newest ``keep_last_k`` kept, and
    ``last.pt`` always a complete copy of the newest (a hard link swapped in atomically)."""

    def __init__(self, directory: str | os.PathLike, keep_last_k: int = 2) -> None:
        self.directory = Path(directory)
        self.keep_last_k = max(1, keep_last_k)

    def step_files(self) -> list[Path]:
        """Step checkpoints, newest first."""
        return sorted(self.directory.glob("step-*.pt"), reverse=True)

    def save(self, state: dict[str, Any], step: int) -> Path:
        path = save_checkpoint(state, self.directory / f"step-{step:08d}.pt")
        link = self.directory / ".last.pt.link"
        link.unlink(missing_ok=True)
        try:
            os.link(path, link)
            os.replace(link, self.directory / "last.pt")
        except OSError:  # no hard links on this filesystem: write a second copy
            save_checkpoint(state, self.directory / "last.pt")
        for old in self.step_files()[self.keep_last_k :]:
            old.unlink(missing_ok=True)
        return path

    def load_latest(self, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], Path] | None:
        """The newest checkpoint that loads, falling back past damaged ones (each reported by name)."""
        candidates = [self.directory / "last.pt", *self.step_files()]
        for path in candidates:
            if not path.is_file():
                continue
            try:
                return load_checkpoint(path, map_location), path
            except RuntimeError as error:
                print(f"WARNING: {error}; falling back to the previous checkpoint", flush=True)
        return None
