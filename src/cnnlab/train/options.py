"""The ``trainer:`` section of a config as one typed, frozen object, built once at set-up.

Every key's default is the one in ``configs/trainer/default.yaml``; nothing below repeats it.
The training loop and the inner step read these plain values, never the config.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from omegaconf import DictConfig, OmegaConf

__all__ = ["TrainerOptions"]


@dataclass(frozen=True)
class TrainerOptions:
    """``cfg.trainer`` after :func:`cnnlab.train.config.validate_config` (see the YAML for each key)."""

    max_epochs: float  # a fraction ends the run within the last epoch (airbench94: 9.9)
    max_steps: int  # -1: no limit
    limit_train_batches: int | None
    limit_val_batches: int | None
    overfit_batches: int | None
    device: str  # auto | cpu | cuda
    precision: str  # "32" | "bf16" | "auto" (resolved per device in Run.precision)
    compile: bool
    deterministic: bool
    label_smoothing: float
    tta_flip: bool
    tta_translate: bool
    tta_final_only: bool
    check_val_every_n_epoch: int | None  # (Lightning's name) epochs between evaluations; the last is always evaluated
    channels_last: bool
    logit_scale: float
    grad_clip_norm: float | None
    eval_only: bool
    progress_bar: bool
    log_every_n_steps: int
    checkpoint_every_n_steps: int | None
    keep_last_k: int
    skip_nonfinite_steps: bool
    accumulate_grad_batches: int  # micro-batches per optimiser step (data.batch_size stays the step's batch)

    @classmethod
    def config_keys(cls) -> frozenset[str]:
        """The keys ``trainer:`` may hold."""
        return frozenset(f.name for f in fields(cls))

    @classmethod
    def from_config(cls, trainer: DictConfig) -> TrainerOptions:
        values = OmegaConf.to_container(trainer, resolve=True)
        values["precision"] = str(values["precision"])  # YAML reads "32" and 32 alike
        return cls(**{name: values[name] for name in cls.config_keys()})
