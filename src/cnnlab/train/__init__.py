"""The one training loop in stages (set-up, epochs of steps, evaluation, report), its
checkpoints, callbacks and TensorBoard logging, and sweep summaries."""

from .callbacks import Callback, WeightEMA
from .loop import run

__all__ = ["Callback", "WeightEMA", "run"]
