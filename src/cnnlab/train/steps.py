"""One optimiser step and one evaluation pass: the two units of work the loop repeats."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import TensorImageLoader
from .distributed import all_reduce_sum
from .tensorboard import confusion_matrix

if TYPE_CHECKING:
    from .state import Run

__all__ = ["NonFiniteLossError", "StepOutput", "compute_loss", "evaluate", "train_step"]


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradients became NaN/inf; the message gives the step and what to try."""


@dataclass
class StepOutput:
    """What a training step produced (for the loop's counters and for callbacks)."""

    loss: Tensor  # scalar, detached
    output: Tensor  # the model's output for the batch, detached
    labels: Tensor
    finite: bool  # loss and gradient norm finite (the optimiser stepped)


def compute_loss(task: str, output: Tensor, images: Tensor, labels: Tensor, trainer) -> Tensor:
    """Cross-entropy (with ``trainer.label_smoothing``, on logits times ``trainer.logit_scale``),
    or mean squared error for ``task="reconstruction"``."""
    if task == "reconstruction":
        return F.mse_loss(output.float(), images.float())
    return F.cross_entropy(output.float() * trainer.logit_scale, labels, label_smoothing=trainer.label_smoothing)


def _nonfinite_hint(run: Run, what: str) -> str:
    progress = run.progress
    return (
        f"{what} became non-finite at step {progress.step + 1} (epoch {progress.epoch + 1}, batch "
        f"{progress.batch + 1}); last finite loss {progress.last_finite_loss:.4f}. The last good checkpoint is "
        f"{run.last_checkpoint or 'none yet'}. Try a lower optimizer.lr, trainer.grad_clip_norm=1.0 or "
        f"trainer.precision=32, or set trainer.skip_nonfinite_steps=true to skip such steps."
    )


def train_step(run: Run, images: Tensor, labels: Tensor) -> StepOutput:
    """Forward, loss, backward, gradient clipping and the optimiser and schedule step for one
    batch. A non-finite loss or gradient norm raises :class:`NonFiniteLossError` with a hint, or
    with ``trainer.skip_nonfinite_steps`` skips the update."""
    trainer = run.cfg.trainer
    try:
        with run.autocast():
            output = run.step_model(images)
        loss = compute_loss(run.task, output, images, labels, trainer)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
    except torch.cuda.OutOfMemoryError as error:
        batch_size = int(run.cfg.data.batch_size)
        raise RuntimeError(
            f"CUDA out of memory at data.batch_size={batch_size}: try data.batch_size={max(1, batch_size // 2)} "
            f"(or trainer.precision=bf16)"
        ) from error
    grad_norm = nn.utils.clip_grad_norm_(run.model.parameters(), trainer.grad_clip_norm or math.inf)
    loss_finite = bool(torch.isfinite(loss))
    finite = loss_finite and bool(torch.isfinite(grad_norm))
    if finite:
        run.optimizer.step()
    elif trainer.skip_nonfinite_steps:
        run.optimizer.zero_grad(set_to_none=True)
    else:
        raise NonFiniteLossError(_nonfinite_hint(run, "the loss" if not loss_finite else "the gradient norm"))
    run.scheduler.step()
    return StepOutput(loss.detach(), output.detach(), labels, finite)


def tta_logits(model: nn.Module, images: Tensor, trainer) -> Tensor:
    """Test-time augmentation: ``trainer.tta_flip`` averages the logits of each image and its
    mirror; ``trainer.tta_translate`` (airbench's multi-crop TTA) gives them half the weight and
    the mean over the image shifted one pixel up-left and down-right (reflect padding) the other half."""

    def view(x: Tensor) -> Tensor:
        return (model(x).float() + model(x.flip(-1)).float()) / 2 if trainer.tta_flip else model(x).float()

    logits = view(images)
    if trainer.get("tta_translate", False):
        padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
        height, width = images.shape[-2:]
        shifted = (view(padded[..., :height, :width]) + view(padded[..., 2:, 2:])) / 2
        logits = (logits + shifted) / 2
    return logits


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: TensorImageLoader, task: str, trainer, autocast, num_classes: int
) -> dict[str, Any]:
    """``{"loss", "acc", "confusion"}`` over ``loader`` (this rank's shard), summed across ranks;
    ``acc`` is None for reconstruction; classification logits are :func:`tta_logits`'s."""
    was_training = model.training
    model.eval()
    device = loader.device
    loss_sum, correct, seen = 0.0, 0, 0
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=device)
    for images, labels in loader:
        with autocast():
            output = tta_logits(model, images, trainer) if task == "classification" else model(images)
        loss_sum += compute_loss(task, output, images, labels, trainer).item() * len(labels)
        seen += len(labels)
        if task == "classification":
            predicted = output.argmax(1)
            correct += int((predicted == labels).sum())
            confusion += confusion_matrix(predicted, labels, num_classes).to(confusion)
    model.train(was_training)
    loss_sum, correct, seen, confusion = all_reduce_sum(loss_sum, correct, seen, confusion, device=device)
    seen = max(float(seen), 1.0)
    accuracy = float(correct) / seen if task == "classification" else None
    return {"loss": float(loss_sum) / seen, "acc": accuracy, "confusion": confusion.cpu()}
