"""The one training loop, its checkpoints and its TensorBoard logging."""

from .loop import run

__all__ = ["run"]
