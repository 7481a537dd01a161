"""Resume and evaluation follow the run's own config, not whatever the command line composes.

A checkpoint holds the resolved config it was trained with. ``resume=...`` and
``trainer.eval_only=true ckpt_path=...`` take that config; from the command line they take only
*where and how* to run (:data:`RUNTIME_KEYS`: output paths, device, progress bar, data location,
and for evaluation the evaluation options). A command-line override that would change what the run
is (``trainer.max_epochs=10``, ``model=resnet``) is refused with the keys it changes, unless
``allow_config_change=true`` asks for it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ..errors import UserError

__all__ = ["RUNTIME_KEYS", "RunConfigMismatchError", "adopt_run_config", "config_leaves", "explicit_prefixes", "under"]

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
