"""Checks of a composed config that Hydra's schema does not make, with messages that name the key:
values of the right type but out of range, and keys nobody reads (``+trainer.max_epoch=1``, a typo
in an experiment file), which are refused wherever they come from."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from omegaconf import DictConfig

from ..errors import UserError
from ..models import CONV_KINDS, POOL_KINDS
from .options import TrainerOptions

__all__ = ["KNOWN_KEYS", "ConfigValueError", "validate_config"]


class ConfigValueError(UserError, ValueError):
    """A config value or key that is not allowed; the message names the config key."""


# The keys each section may hold (what cnnlab reads); tests/e2e check them against configs/.
KNOWN_KEYS: dict[str, frozenset[str]] = {
    "": frozenset(
        {
            "data", "model", "conv", "pool", "optimizer", "scheduler", "trainer", "logger", "paths", "callbacks",
            "seed", "name", "tags", "resume", "ckpt_path", "allow_config_change", "optimized_metric",
        }
    ),
    "trainer": TrainerOptions.config_keys(),
    "logger": frozenset({"enabled", "log_images", "analysis", "analysis_every_n_epochs", "analysis_images"}),
    "paths": frozenset({"root_dir", "data_dir", "output_dir"}),
    "data": frozenset(
        {
            "name", "root", "download", "batch_size", "eval_batch_size", "num_classes", "image_shape", "mean", "std",
            "augment", "num_train", "num_test", "seed",
        }
    ),
    "data.augment": frozenset({"crop_padding", "flip"}),
}  # fmt: skip


def require(condition: bool, key: str, value, allowed: str) -> None:
    if not condition:
        raise ConfigValueError(f"config key {key}: got {value!r}, expected {allowed}")


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _select(cfg: DictConfig, section: str):
    node = cfg
    for part in filter(None, section.split(".")):
        node = node.get(part) if isinstance(node, DictConfig) else None
    return node


def check_known_keys(cfg: DictConfig, known: dict[str, Iterable[str]] = KNOWN_KEYS) -> None:
    """Refuse a key no part of cnnlab reads, naming it, the nearest known key and the known ones."""
    for section, allowed in known.items():
        node = _select(cfg, section)
        if not isinstance(node, DictConfig):
            continue
        for key in node:
            if key not in allowed:
                path = f"{section}.{key}" if section else key
                near = difflib.get_close_matches(str(key), list(allowed), n=1)
                hint = f"; did you mean {section + '.' if section else ''}{near[0]}?" if near else ""
                raise ConfigValueError(
                    f"config key {path}: unknown key (nothing reads it){hint} Known keys"
                    f"{' of ' + section if section else ''}: {sorted(allowed)}"
                )


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigValueError` on the first unknown key or invalid value."""
    check_known_keys(cfg)
    trainer, data = cfg.trainer, cfg.data
    require(data.name in ("cifar10", "synthetic"), "data.name", data.name, "'cifar10' or 'synthetic'")
    require(_positive_int(data.batch_size), "data.batch_size", data.batch_size, "a positive int")
    require(_positive_int(data.eval_batch_size), "data.eval_batch_size", data.eval_batch_size, "a positive int")
    require(_positive_int(trainer.max_epochs), "trainer.max_epochs", trainer.max_epochs, "a positive int")
    require(
        isinstance(trainer.max_steps, int) and (trainer.max_steps > 0 or trainer.max_steps == -1),
        "trainer.max_steps",
        trainer.max_steps,
        "a positive int, or -1 for no limit",
    )
    for key in ("limit_train_batches", "limit_val_batches", "overfit_batches"):
        value = trainer[key]
        require(value is None or _positive_int(value), f"trainer.{key}", value, "null or a positive int")
    require(trainer.device in ("auto", "cpu", "cuda"), "trainer.device", trainer.device, "'auto', 'cpu' or 'cuda'")
    require(
        str(trainer.precision) in ("32", "bf16", "auto"),
        "trainer.precision",
        trainer.precision,
        "'32', 'bf16' or 'auto'",
    )
    for key in ("tta_flip", "tta_translate", "channels_last", "eval_only", "compile", "deterministic"):
        require(isinstance(trainer[key], bool), f"trainer.{key}", trainer[key], "true or false")
    flip = (data.get("augment") or {}).get("flip", False)
    require(isinstance(flip, bool) or flip == "alternate", "data.augment.flip", flip, "true, false or 'alternate'")
    require(0 <= trainer.label_smoothing < 1, "trainer.label_smoothing", trainer.label_smoothing, "a float in [0, 1)")
    require(cfg.conv.kind in CONV_KINDS, "conv.kind", cfg.conv.kind, f"one of {list(CONV_KINDS)}")
    require(cfg.pool.kind in POOL_KINDS, "pool.kind", cfg.pool.kind, f"one of {list(POOL_KINDS)}")
    require(
        cfg.model.task in ("classification", "reconstruction"),
        "model.task",
        cfg.model.task,
        "'classification' or 'reconstruction'",
    )
    require(
        cfg.resume is None or isinstance(cfg.resume, str), "resume", cfg.resume, "null, 'auto' or a checkpoint path"
    )
    require(
        not trainer.eval_only or bool(cfg.ckpt_path),
        "ckpt_path",
        cfg.ckpt_path,
        "a checkpoint file with trainer.eval_only=true",
    )
    metrics = ("val_acc", "best_val_acc", "val_loss", "train_loss")
    require(cfg.optimized_metric in metrics, "optimized_metric", cfg.optimized_metric, f"one of {list(metrics)}")
