"""Checks of a composed config that Hydra's schema does not make, with messages that name the key:
values of the right type but out of range, and keys nobody reads (``+trainer.max_epoch=1``,
``+pool.sigm=0.5``, ``+optimizer.momentun=0.9``, a typo in an experiment file), which are refused
wherever they come from: the keys of ``conv``/``pool`` are those their ``kind`` reads (the
keyword-only arguments of its :class:`~cnnlab.models.LayerKind` record), those of ``optimizer``,
``scheduler`` and each callback the arguments their ``_target_`` takes."""

from __future__ import annotations

import difflib
import importlib
import inspect

from omegaconf import DictConfig, OmegaConf

from ..data import CIFAR10_CLASSES, POLICIES, class_indices
from ..errors import UserError
from ..models import CONVS, POOLS
from .options import TrainerOptions

__all__ = ["KNOWN_KEYS", "ConfigValueError", "complete_config", "known_keys", "validate_config"]


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
            "augment", "num_train", "num_test", "seed", "classes",
        }
    ),
    "data.augment": frozenset({"crop_padding", "flip", "policy", "cutout", "mixup", "cutmix"}),
    "model": frozenset({"name", "task", "layers", "width"}),
}  # fmt: skip
# Hydra's own keys of a node it instantiates.
_INSTANTIATE_KEYS = frozenset({"_target_", "_partial_", "_recursive_", "_convert_", "_args_"})


def require(condition: bool, key: str, value, allowed: str) -> None:
    if not condition:
        raise ConfigValueError(f"config key {key}: got {value!r}, expected {allowed}")


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


# optimizer.norm_bias_lr_scale: read by setup.build_optimizer, not passed to the optimizer
NORM_BIAS_LR_SCALE = "norm_bias_lr_scale"


def _select(cfg: DictConfig, section: str):
    node = cfg
    for part in filter(None, section.split(".")):
        node = node.get(part) if isinstance(node, DictConfig) else None
    return node


def _target_arguments(node: DictConfig, section: str, supplied: tuple[str, ...] = ()) -> frozenset[str] | None:
    """The keys a node Hydra instantiates may hold: its ``_target_``'s arguments less those the
    code ``supplied`` (None when the target takes ``**kwargs``)."""
    target = node.get("_target_")
    require(isinstance(target, str), f"{section}._target_", target, "the import path of a class or function")
    module, _, name = target.rpartition(".")
    try:
        signature = inspect.signature(getattr(importlib.import_module(module), name))
    except (ImportError, AttributeError, ValueError, TypeError) as error:  # (ValueError: no signature)
        raise ConfigValueError(f"config key {section}._target_: cannot use {target!r} ({error})") from None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return None
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return _INSTANTIATE_KEYS | {n for n, p in signature.parameters.items() if p.kind in named and n not in supplied}


def known_keys(cfg: DictConfig) -> dict[str, frozenset[str] | None]:
    """:data:`KNOWN_KEYS`, and the keys of the sections whose keys depend on the config: the
    ``conv``/``pool`` options of the chosen kinds, the arguments of the optimizer's, the scheduler's
    and each callback's ``_target_`` (None: any key)."""
    known: dict[str, frozenset[str] | None] = dict(KNOWN_KEYS)
    for group, kinds in (("conv", CONVS), ("pool", POOLS)):
        kind = OmegaConf.select(cfg, f"{group}.kind")
        if kind in kinds:  # (an unknown kind is refused by validate_config, naming the kinds)
            known[group] = frozenset({"kind", *kinds[kind].options})
    # (setup.build_run passes the parameters to the optimizer, the optimizer and step count to the scheduler)
    for section, supplied in (("optimizer", ("params",)), ("scheduler", ("optimizer", "total_steps"))):
        if isinstance(cfg.get(section), DictConfig):
            known[section] = _target_arguments(cfg[section], section, supplied)
    if known.get("optimizer") is not None:  # cnnlab's own key: the normalisation biases' group
        known["optimizer"] = known["optimizer"] | {NORM_BIAS_LR_SCALE}
    for name, node in (cfg.get("callbacks") or {}).items():
        if isinstance(node, DictConfig):
            known[f"callbacks.{name}"] = _target_arguments(node, f"callbacks.{name}")
    return known


def check_known_keys(cfg: DictConfig) -> None:
    """Refuse a key no part of cnnlab reads, naming it, the nearest known key and the known ones."""
    for section, allowed in known_keys(cfg).items():
        node = _select(cfg, section)
        if not isinstance(node, DictConfig) or allowed is None:
            continue
        for key in node:
            if key not in allowed:
                path = f"{section}.{key}" if section else key
                shown = sorted(k for k in allowed if k not in _INSTANTIATE_KEYS)
                near = difflib.get_close_matches(str(key), shown, n=1) or [k for k in shown if k.startswith(str(key))]
                hint = f"; did you mean {section + '.' if section else ''}{near[0]}?" if near else "."
                raise ConfigValueError(
                    f"config key {path}: unknown key (nothing reads it){hint} Known keys"
                    f"{' of ' + section if section else ''}: {shown}"
                )


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigValueError` on the first unknown key or invalid value."""
    check_known_keys(cfg)
    trainer, data = cfg.trainer, cfg.data
    require(data.name in ("cifar10", "synthetic"), "data.name", data.name, "'cifar10' or 'synthetic'")
    require(_positive_int(data.batch_size), "data.batch_size", data.batch_size, "a positive int")
    require(_positive_int(data.eval_batch_size), "data.eval_batch_size", data.eval_batch_size, "a positive int")
    require(
        isinstance(trainer.max_epochs, (int, float))
        and not isinstance(trainer.max_epochs, bool)
        and trainer.max_epochs > 0,
        "trainer.max_epochs",
        trainer.max_epochs,
        "a positive number (a fraction such as 9.9 stops within the last epoch)",
    )
    require(
        isinstance(trainer.max_steps, int) and (trainer.max_steps > 0 or trainer.max_steps == -1),
        "trainer.max_steps",
        trainer.max_steps,
        "a positive int, or -1 for no limit",
    )
    k = trainer.accumulate_grad_batches
    require(_positive_int(k) and k <= data.batch_size, "trainer.accumulate_grad_batches", k,
            f"a positive int up to data.batch_size ({data.batch_size}): the micro-batches of each batch")  # fmt: skip
    every = trainer.check_val_every_n_epoch
    require(every is None or _positive_int(every), "trainer.check_val_every_n_epoch", every, "null or a positive int")
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
    for key in (
        "tta_flip",
        "tta_translate",
        "tta_final_only",
        "channels_last",
        "eval_only",
        "compile",
        "deterministic",
    ):
        require(isinstance(trainer[key], bool), f"trainer.{key}", trainer[key], "true or false")
    _check_classes(data)
    augment = data.get("augment") or {}
    flip = augment.get("flip", False)
    require(isinstance(flip, bool) or flip == "alternate", "data.augment.flip", flip, "true, false or 'alternate'")
    policy = augment.get("policy", "none")
    require(policy in POLICIES, "data.augment.policy", policy, f"one of {list(POLICIES)}")
    cutout = augment.get("cutout", 0)
    require(_positive_int(cutout) or cutout == 0, "data.augment.cutout", cutout, "0 or a positive int (pixels)")
    for key in ("mixup", "cutmix"):
        alpha = augment.get(key, 0)
        require(isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and alpha >= 0,
                f"data.augment.{key}", alpha, "a Beta α ≥ 0 (0: off)")  # fmt: skip
        require(alpha == 0 or cfg.model.task == "classification", f"data.augment.{key}", alpha,
                "0 for a reconstruction model (it mixes class labels)")  # fmt: skip
    require(0 <= trainer.label_smoothing < 1, "trainer.label_smoothing", trainer.label_smoothing, "a float in [0, 1)")
    require(cfg.conv.kind in CONVS, "conv.kind", cfg.conv.kind, f"one of {list(CONVS)}")
    require(cfg.pool.kind in POOLS, "pool.kind", cfg.pool.kind, f"one of {list(POOLS)}")
    require(
        cfg.model.task in ("classification", "reconstruction"),
        "model.task",
        cfg.model.task,
        "'classification' or 'reconstruction'",
    )
    require(
        cfg.resume is None or isinstance(cfg.resume, str),
        "resume",
        cfg.resume,
        "null, 'auto', 'if_exists' or a checkpoint path",
    )
    require(
        not trainer.eval_only or bool(cfg.ckpt_path),
        "ckpt_path",
        cfg.ckpt_path,
        "a checkpoint file with trainer.eval_only=true",
    )
    metrics = ("val_acc", "best_val_acc", "val_loss", "train_loss")
    require(cfg.optimized_metric in metrics, "optimized_metric", cfg.optimized_metric, f"one of {list(metrics)}")


def _check_classes(data: DictConfig) -> None:
    """``data.classes`` (CIFAR-10 only) names known, distinct classes; ``data.num_classes`` is the
    dataset's count (CIFAR-10: 10) or, with ``data.classes``, their number."""
    classes = data.get("classes")
    if classes is None:
        if data.name == "cifar10":
            require(data.num_classes == len(CIFAR10_CLASSES), "data.num_classes", data.num_classes,
                    f"{len(CIFAR10_CLASSES)} for CIFAR-10; to train on some of its classes give them as "
                    "data.classes=[cat,dog,...] (names or indices)")  # fmt: skip
        return
    require(data.name == "cifar10", "data.classes", classes, "null with data=synthetic (set data.num_classes)")
    try:
        count = len(class_indices(list(classes), CIFAR10_CLASSES))
    except (TypeError, ValueError) as error:
        raise ConfigValueError(f"config key data.classes: {error}") from None
    require(data.num_classes in (count, len(CIFAR10_CLASSES)), "data.num_classes", data.num_classes,
            f"{count}, the number of data.classes (it follows them: leave it out)")  # fmt: skip


def complete_config(cfg: DictConfig) -> None:
    """What follows from other keys, after :func:`validate_config`: ``data.num_classes`` becomes
    the number of ``data.classes`` (the models' heads read it: ``out_features: ${data.num_classes}``)."""
    if cfg.data.get("classes") is not None:
        cfg.data.num_classes = len(cfg.data.classes)
