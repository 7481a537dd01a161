"""Resuming a run, in one place: which checkpoint a command continues, with which config, and
the errors and advice about it.

- ``resume=auto`` continues the run in ``hydra.run.dir`` from its newest checkpoint; where that
  directory holds none it is an error (:class:`NothingToResumeError`, naming the directory, what it
  holds and the runs beside it), raised before Hydra writes anything there (:mod:`.start_checks`).
  ``resume=if_exists`` starts a new run instead: what a job that may be requeued (Slurm) asks for
  on its first start. ``resume=PATH`` continues from that checkpoint file.
- Resume and evaluation (``trainer.eval_only=true ckpt_path=...``) follow the run's own config, not
  whatever the command line composes: a checkpoint holds the resolved config it was trained with,
  and from the command line they take only *where and how* to run (:data:`RUNTIME_KEYS`: output
  paths, device, progress bar, data location, and for evaluation the evaluation options). A
  command-line override that would change what the run is (``trainer.max_epochs=10``,
  ``model=resnet``) is refused with the keys it changes, unless ``allow_config_change=true`` asks
  for it.
- What a stopped run prints to continue it: :func:`resume_command`.

- A sweep run again in its own directory keeps the jobs that had finished and runs the others
  again, from their checkpoints where they have one (:func:`finished_earlier`; the jobs find their
  directories by what they swept, :func:`~.directories.job_subdir`).

Restoring the counters, weights and random state from the checkpoint is the run's own
(:meth:`cnnlab.train.engine.state.Run.restore`)."""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ...errors import UserError
from ..config import validate_config
from .checkpoint import CheckpointManager, load_checkpoint
from .directories import ERROR_FILE, earlier_jobs

__all__ = [
    "RUNTIME_KEYS", "NothingToResumeError", "RunConfigMismatchError", "adopt_run_config", "config_leaves",
    "explicit_prefixes", "finished_earlier", "has_checkpoint", "load_run_checkpoint", "nothing_to_resume",
    "resume_command", "under",
]  # fmt: skip

log = logging.getLogger("cnnlab")

# Keys the command line decides for a resumed or evaluated run: where it writes, what it runs on.
RUNTIME_KEYS = (
    "resume",
    "ckpt_path",
    "allow_config_change",
    "optimized_metric",
    "paths",
    "logger",
    "name",
    "tags",
    "data.root",
    "data.download",
    "trainer.eval_only",
    "trainer.device",
    "trainer.progress_bar",
    "trainer.log_every_n_steps",
    "trainer.checkpoint_every_n_steps",
    "trainer.keep_last_k",
)
# ... and, for trainer.eval_only=true, how to evaluate.
EVALUATION_KEYS = (
    "data.eval_batch_size",
    "trainer.limit_val_batches",
    "trainer.tta_flip",
    "trainer.tta_translate",
    "trainer.precision",
    "trainer.channels_last",
    "trainer.compile",
)
# Config groups marked `@package _global_`: an override of them may change any key.
GLOBAL_GROUPS = ("experiment", "debug", "hparams_search")


class RunConfigMismatchError(UserError, ValueError):
    """The command line asks a resumed or evaluated run to change what it is."""


def explicit_prefixes(overrides: Iterable[str]) -> list[str]:
    """The config paths command-line overrides set: ``model=resnet`` → ``model``,
    ``+trainer.x=1`` → ``trainer.x``, ``experiment=...`` → ``""`` (everything)."""
    prefixes = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~").split("@", 1)[0]
        if key.startswith("hydra.") or key.startswith("hydra/"):
            continue
        prefixes.append("" if key in GLOBAL_GROUPS else key.replace("/", "."))
    return prefixes


def config_leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"model.layers.0.conv.out_channels": 32, ...}``: every leaf by its override path."""
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(config_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    if not out and prefix:
        out[prefix] = node  # an empty dict or list is a value too
    return out


def _describe(prefix: str, keys: list[str], then: dict[str, Any], now: dict[str, Any]) -> str:
    """One line per override: the key's two values, or for a group (``model=vgg``) its name and
    how many keys differ."""
    if len(keys) == 1:
        key = keys[0]
        was, asked = then.get(key, "<absent>"), now.get(key, "<absent>")
        return f"  {key}: the run has {was!r}, the command line asks for {asked!r}"
    names = [f"{prefix}.{n}" for n in ("name", "kind") if f"{prefix}.{n}" in then or f"{prefix}.{n}" in now]
    which = (
        f" ({names[0]}: the run has {then.get(names[0])!r}, the command line {now.get(names[0])!r})" if names else ""
    )
    return f"  {prefix or 'experiment'}: {len(keys)} keys differ{which}, e.g. {', '.join(keys[:3])}"


def short_keys(keys: list[str], depth: int = 2) -> list[str]:
    """``data.mean.0``, ``data.mean.1`` → ``data.mean``: keys cut to ``depth`` parts, deduplicated."""
    return list(dict.fromkeys(".".join(key.split(".")[:depth]) for key in keys))


def under(key: str, prefixes: Sequence[str]) -> bool:
    return any(p == "" or key == p or key.startswith(p + ".") for p in prefixes)


def adopt_run_config(
    current: DictConfig,
    saved: DictConfig,
    overrides: Sequence[str],
    *,
    evaluation: bool,
    source: str,
) -> tuple[DictConfig, list[str]]:
    """The config a resumed (``evaluation=False``) or evaluated run uses, and the keys taken from
    ``saved`` (the run's config, from ``source``) that differ from ``current`` (composed from the
    command line, whose explicit ``overrides`` are given).

    Raises :class:`RunConfigMismatchError` when an explicit override changes a key of the run and
    ``current.allow_config_change`` is false."""
    runtime = RUNTIME_KEYS + (EVALUATION_KEYS if evaluation else ())
    now = config_leaves(OmegaConf.to_container(current, resolve=True))
    then = config_leaves(OmegaConf.to_container(saved, resolve=True))
    differing = sorted(
        key for key in now.keys() | then.keys() if not under(key, runtime) and now.get(key) != then.get(key)
    )
    asked = explicit_prefixes(overrides)
    changed = [key for key in differing if under(key, asked)]
    if changed and not current.get("allow_config_change", False):
        what = "evaluation of" if evaluation else "resuming"
        lines = "\n".join(_describe(prefix, [k for k in changed if under(k, [prefix])], then, now)
                          for prefix in dict.fromkeys(p for k in changed for p in asked if under(k, [p])))  # fmt: skip
        raise RunConfigMismatchError(
            f"{what} a run uses its own config ({source}); the command line would change:\n{lines}\n"
            f"Drop these overrides to continue the run as it was, or add allow_config_change=true to apply them."
        )
    if changed and "" in asked:  # allowed, and a global group (experiment=...) changed: the command line's config
        return OmegaConf.create(OmegaConf.to_container(current, resolve=True)), []
    result = OmegaConf.create(OmegaConf.to_container(saved, resolve=True))
    missing = object()
    for key in [*runtime, *(asked if changed else [])]:
        value = OmegaConf.select(current, key, default=missing)
        if value is missing:
            continue
        if isinstance(value, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(value, resolve=True)
        OmegaConf.update(result, key, value, merge=False, force_add=True)
    taken = [key for key in differing if not (changed and under(key, asked))]
    return result, taken


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


def load_run_checkpoint(cfg: DictConfig, overrides: Sequence[str]) -> tuple[DictConfig, dict | None, Path | None]:
    """For ``resume=...`` or ``trainer.eval_only=true``: the checkpoint, and the config the run
    continues with (its own: :func:`adopt_run_config`)."""
    evaluation = bool(cfg.trainer.eval_only)
    if evaluation:
        path = Path(cfg.ckpt_path)
        saved = load_checkpoint(path)
    elif cfg.resume in ("auto", "if_exists"):
        run_dir = Path(cfg.paths.output_dir)
        found = CheckpointManager(run_dir / "checkpoints").load_latest()
        if found is None and cfg.resume == "auto":
            raise nothing_to_resume(run_dir)
        if found is None:
            return cfg, None, None
        saved, path = found
    elif cfg.resume:
        path = Path(cfg.resume)
        saved = load_checkpoint(path)
    else:
        return cfg, None, None
    if "config" not in saved:
        return cfg, saved, path
    cfg, taken = adopt_run_config(
        cfg, OmegaConf.create(saved["config"]), overrides, evaluation=evaluation, source=str(path)
    )
    validate_config(cfg)
    if taken:
        keys = short_keys(taken)
        shown = ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")
        log.info("Using the run's own config from %s (it differs from the command line's defaults in %s)", path, shown)
    return cfg, saved, path


def resume_command(run_dir: Path) -> str:
    """The command that continues the run in ``run_dir``."""
    return f"python train.py resume=auto hydra.run.dir={run_dir}"


def finished_earlier(cfg: DictConfig, job_dir: Path) -> dict[str, Any] | None:
    """A sweep run again in its own directory (the same ``-m`` command with ``hydra.sweep.dir=``
    that directory, its value lists possibly longer): a job that had finished is kept, not run
    again (its ``metrics.json`` is returned); one that stopped or failed runs again, from its last
    checkpoint where it has one (``resume=if_exists``; a failed job's ``error.txt`` is removed). A
    job new to the directory returns None and runs as any."""
    state = earlier_jobs(job_dir.parent).get(job_dir.name)
    if state == "finished":
        log.info("Job %s had finished in this sweep directory: kept, not run again", job_dir.name)
        return json.loads((job_dir / "metrics.json").read_text())
    if state is not None:
        (job_dir / ERROR_FILE).unlink(missing_ok=True)
        if not cfg.get("resume"):
            cfg.resume = "if_exists"
        log.info("Job %s had %s in this sweep directory: running it again%s", job_dir.name, state,
                 ", from its last checkpoint" if has_checkpoint(job_dir) else "")  # fmt: skip
    return None
