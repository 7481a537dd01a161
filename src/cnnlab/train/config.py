"""Checks of a composed config that Hydra's schema does not make, with messages that name the key."""

from __future__ import annotations

from omegaconf import DictConfig

from ..models import CONV_KINDS, POOL_KINDS

__all__ = ["ConfigValueError", "validate_config"]


class ConfigValueError(ValueError):
    """A config value of the right type but not allowed; the message names the config key."""


def _require(condition: bool, key: str, value, allowed: str) -> None:
    if not condition:
        raise ConfigValueError(f"config key {key}: got {value!r}, expected {allowed}")


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigValueError` on the first invalid value."""
    trainer, data = cfg.trainer, cfg.data
    _require(data.name in ("cifar10", "synthetic"), "data.name", data.name, "'cifar10' or 'synthetic'")
    _require(_positive_int(data.batch_size), "data.batch_size", data.batch_size, "a positive int")
    _require(_positive_int(data.eval_batch_size), "data.eval_batch_size", data.eval_batch_size, "a positive int")
    _require(_positive_int(trainer.max_epochs), "trainer.max_epochs", trainer.max_epochs, "a positive int")
    _require(
        isinstance(trainer.max_steps, int) and (trainer.max_steps > 0 or trainer.max_steps == -1),
        "trainer.max_steps",
        trainer.max_steps,
        "a positive int, or -1 for no limit",
    )
    for key in ("limit_train_batches", "limit_val_batches"):
        value = trainer[key]
        _require(value is None or _positive_int(value), f"trainer.{key}", value, "null or a positive int")
    _require(trainer.device in ("auto", "cpu", "cuda"), "trainer.device", trainer.device, "'auto', 'cpu' or 'cuda'")
    _require(str(trainer.precision) in ("32", "bf16"), "trainer.precision", trainer.precision, "'32' or 'bf16'")
    for key in ("tta_flip", "channels_last"):
        _require(isinstance(trainer[key], bool), f"trainer.{key}", trainer[key], "true or false")
    _require(0 <= trainer.label_smoothing < 1, "trainer.label_smoothing", trainer.label_smoothing, "a float in [0, 1)")
    _require(cfg.conv.kind in CONV_KINDS, "conv.kind", cfg.conv.kind, f"one of {list(CONV_KINDS)}")
    _require(cfg.pool.kind in POOL_KINDS, "pool.kind", cfg.pool.kind, f"one of {list(POOL_KINDS)}")
    _require(
        cfg.model.task in ("classification", "reconstruction"),
        "model.task",
        cfg.model.task,
        "'classification' or 'reconstruction'",
    )
    _require(
        cfg.resume is None or isinstance(cfg.resume, str), "resume", cfg.resume, "null, 'auto' or a checkpoint path"
    )
