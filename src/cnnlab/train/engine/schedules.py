"""Learning-rate schedules as ``LambdaLR`` factories, built with the run's total step count."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["constant", "cosine", "warmup_linear_decay", "warmup_warmdown"]


def warmup_linear_decay(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.2) -> LambdaLR:
    """Linear warm-up from 0 over ``warmup_fraction·total_steps`` steps, then linear decay to 0."""
    if not 0 <= warmup_fraction < 1:
        raise ValueError(f"scheduler.warmup_fraction must be in [0, 1), but got {warmup_fraction}")
    warmup = max(1, int(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return LambdaLR(optimizer, factor)


def warmup_warmdown(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_fraction: float = 0.23,
    start_factor: float = 0.2,
    end_factor: float = 0.07,
) -> LambdaLR:
    """airbench94's schedule (``get_lr`` of its ``legacy/airbench94.py``): over the first
    ``w = int(warmup_fraction·total_steps)`` steps the factor goes linearly from ``start_factor``
    to 1, ``start + (1 − start)·step/w``; then linearly to ``end_factor`` at the last step,
    ``1 + (end − 1)·(step − w)/(total_steps − w)``."""
    if not 0 <= warmup_fraction < 1:
        raise ValueError(f"scheduler.warmup_fraction must be in [0, 1), but got {warmup_fraction}")
    warmup = int(warmup_fraction * total_steps)
    warmdown = max(1, total_steps - warmup)

    def factor(step: int) -> float:
        if step < warmup:
            return start_factor + (1.0 - start_factor) * step / warmup
        return 1.0 + (end_factor - 1.0) * (step - warmup) / warmdown

    return LambdaLR(optimizer, factor)


def constant(optimizer: torch.optim.Optimizer, total_steps: int) -> LambdaLR:
    """The optimiser's learning rate throughout."""
    return LambdaLR(optimizer, lambda step: 1.0)


def cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.0) -> LambdaLR:
    """Optional linear warm-up, then cosine annealing to 0 over the remaining steps
    (``CosineAnnealingLR`` with ``T_max`` = the run's length, stepped per optimiser step)."""
    if not 0 <= warmup_fraction < 1:
        raise ValueError(f"scheduler.warmup_fraction must be in [0, 1), but got {warmup_fraction}")
    warmup = int(warmup_fraction * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total_steps - warmup))))

    return LambdaLR(optimizer, factor)
