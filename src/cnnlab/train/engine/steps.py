"""One optimiser step and one evaluation pass: the two units of work the loop repeats, on plain
values (model, optimiser, batch, :class:`~.options.TrainerOptions`); :class:`~.state.Run` calls them."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...data import TensorImageLoader
from ..options import TrainerOptions
from .distributed import all_reduce_sum
from .tensorboard import confusion_matrix

__all__ = ["NonFiniteLossError", "StepOutput", "compute_loss", "evaluate", "train_step", "tta_logits"]


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradients became NaN/inf; the message gives the step and what to try
    (:meth:`cnnlab.train.engine.state.Run.train_step` adds where and what to try to what went wrong)."""


@dataclass
class StepOutput:
    """What a training step produced (for the loop's counters and for callbacks)."""

    loss: Tensor  # scalar, detached
    output: Tensor  # the model's output for the batch, detached
    labels: Tensor
    finite: bool  # loss and gradient norm finite (the optimiser stepped)


def compute_loss(task: str, output: Tensor, images: Tensor, labels: Tensor, options: TrainerOptions) -> Tensor:
    """Cross-entropy (with ``label_smoothing``, on logits times ``logit_scale``), or mean squared
    error for ``task="reconstruction"``."""
    if task == "reconstruction":
        return F.mse_loss(output.float(), images.float())
    return F.cross_entropy(output.float() * options.logit_scale, labels, label_smoothing=options.label_smoothing)


def train_step(
    model: nn.Module,
    parameters: Iterable[Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    images: Tensor,
    labels: Tensor,
    task: str,
    options: TrainerOptions,
    autocast: Callable[[], AbstractContextManager],
) -> StepOutput:
    """Forward, loss, backward, gradient clipping (``grad_clip_norm``) and the optimiser and
    schedule step for one batch. With ``accumulate_grad_batches=k`` the batch goes through the
    model in k micro-batches whose losses, weighted by their share of the batch, add up to the
    batch's mean loss, and whose gradients accumulate before the one update (so a batch that does
    not fit in memory trains with its full size; BatchNorm sees the micro-batches). The update is
    made only where the loss and the gradient norm are finite; otherwise the gradients are dropped
    with ``skip_nonfinite_steps`` (the caller raises :class:`NonFiniteLossError` without it)."""
    optimizer.zero_grad(set_to_none=True)
    parts = list(zip(images.chunk(options.accumulate_grad_batches), labels.chunk(options.accumulate_grad_batches)))
    outputs, losses = [], []
    for index, (part, part_labels) in enumerate(parts):
        last = index == len(parts) - 1  # DistributedDataParallel reduces the gradients once, after the last
        with contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync():
            with autocast():
                output = model(part)
            part_loss = compute_loss(task, output, part, part_labels, options) * (len(part) / len(images))
            part_loss.backward()
        outputs.append(output.detach())
        losses.append(part_loss.detach())
    output, loss = torch.cat(outputs), torch.stack(losses).sum()
    grad_norm = nn.utils.clip_grad_norm_(parameters, options.grad_clip_norm or math.inf)
    loss_finite = bool(torch.isfinite(loss))
    finite = loss_finite and bool(torch.isfinite(grad_norm))
    if finite:
        optimizer.step()
    elif options.skip_nonfinite_steps:
        optimizer.zero_grad(set_to_none=True)
    else:
        raise NonFiniteLossError("the loss" if not loss_finite else "the gradient norm")
    scheduler.step()
    return StepOutput(loss, output, labels, finite)


def tta_logits(model: nn.Module, images: Tensor, flip: bool, translate: bool) -> Tensor:
    """Test-time augmentation: ``flip`` averages the logits of each image and its mirror;
    ``translate`` (airbench's multi-crop TTA) gives them half the weight and the mean over the
    image shifted one pixel up-left and down-right (reflect padding) the other half."""

    def view(x: Tensor) -> Tensor:
        return (model(x).float() + model(x.flip(-1)).float()) / 2 if flip else model(x).float()

    logits = view(images)
    if translate:
        padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
        height, width = images.shape[-2:]
        shifted = (view(padded[..., :height, :width]) + view(padded[..., 2:, 2:])) / 2
        logits = (logits + shifted) / 2
    return logits


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: TensorImageLoader,
    task: str,
    options: TrainerOptions,
    autocast: Callable[[], AbstractContextManager],
    num_classes: int,
    tta: bool = True,
) -> dict[str, Any]:
    """``{"loss", "acc", "confusion"}`` over ``loader`` (this rank's shard), summed across ranks;
    ``acc`` is None for reconstruction; classification logits are :func:`tta_logits`'s (the views
    ``trainer.tta_*`` asks for, or the plain image with ``tta=False``)."""
    was_training = model.training
    model.eval()
    device = loader.device
    loss_sum, correct, seen = 0.0, 0, 0
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=device)
    for images, labels in loader:
        with autocast():
            if task == "classification":
                output = tta_logits(model, images, tta and options.tta_flip, tta and options.tta_translate)
            else:
                output = model(images)
        loss_sum += compute_loss(task, output, images, labels, options).item() * len(labels)
        seen += len(labels)
        if task == "classification":
            predicted = output.argmax(1)
            correct += int((predicted == labels).sum())
            confusion += confusion_matrix(predicted, labels, num_classes).to(confusion)
    model.train(was_training)
    loss_sum, correct, seen, confusion = all_reduce_sum(loss_sum, correct, seen, confusion, device=device)
    images = int(seen)
    seen = max(float(seen), 1.0)
    accuracy = float(correct) / seen if task == "classification" else None
    return {"loss": float(loss_sum) / seen, "acc": accuracy, "confusion": confusion.cpu(), "images": images}
