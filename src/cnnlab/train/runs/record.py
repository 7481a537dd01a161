"""What exactly ran: the record every run keeps (``run_record.json`` in its directory, and in its
checkpoints and ``metrics.json``): the code (git commit, and the uncommitted changes as
``uncommitted.patch`` beside it, when run from a checkout), the versions, the machine (CPU model,
instruction sets, threads, GPU), which compiled kernels ran, the seed and the exact command.
:func:`differences` says in what two or more runs' records differ, for the summary and ``compare``."""

from __future__ import annotations

import platform
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from ...functional import native

__all__ = ["PATCH_FILE", "RECORD_FILE", "differences", "run_record"]

RECORD_FILE = "run_record.json"
PATCH_FILE = "uncommitted.patch"
CHECKOUT = Path(__file__).resolve().parents[3]  # the repository root when cnnlab runs from a checkout


def _git(*arguments: str) -> str | None:
    try:
        out = subprocess.run(["git", *arguments], cwd=CHECKOUT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):  # no git on this machine
        return None
    return out.stdout if out.returncode == 0 else None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def run_record(seed: Any, run_dir: Path | None = None) -> dict[str, Any]:
    """This process's record; with ``run_dir``, the uncommitted changes go to ``PATCH_FILE`` there."""
    commit = _git("rev-parse", "HEAD") if (CHECKOUT / ".git").exists() else None
    patch = _git("diff", "HEAD") if commit else None
    if patch and run_dir is not None:
        (run_dir / PATCH_FILE).write_text(patch)
    cuda = torch.cuda.is_available()
    return {
        "git_commit": commit.strip() if commit else None,  # None: not run from a git checkout
        "uncommitted_changes": bool(patch),
        "cnnlab": _version("cnnlab"),
        "torch": str(torch.__version__),  # (a TorchVersion: not loadable with weights_only)
        "torchvision": _version("torchvision"),
        "python": platform.python_version(),
        "cpu": native.cpu_model(),
        "instruction_sets": list(native.instruction_sets()),
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "compiled_kernels": native.describe(),
        "seed": seed,
        "command": " ".join(sys.argv),
    }


# what may differ between runs of one comparison without making their numbers incomparable
_EXPECTED_TO_DIFFER = ("seed", "command", "uncommitted_changes")


def differences(records: Sequence[dict[str, Any] | None]) -> dict[str, list[Any]]:
    """``{key: [the distinct values]}`` of the record keys in which the runs differ (the seed and
    the command left out: a sweep varies them); runs without a record are skipped."""
    known = [r for r in records if r]
    found: dict[str, list[Any]] = {}
    for key in dict.fromkeys(k for r in known for k in r if k not in _EXPECTED_TO_DIFFER):
        distinct: list[Any] = []
        for record in known:
            if record.get(key) not in distinct:
                distinct.append(record.get(key))
        if len(distinct) > 1:
            found[key] = distinct
    return found
