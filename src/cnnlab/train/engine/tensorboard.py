"""TensorBoard logging of a run: scalars, the resolved config, images and figures, and hparams
written into the run's own event directory so the HParams tab compares a whole multirun."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: figures are rendered to TensorBoard only
import matplotlib.pyplot as plt
import torch
from tensorboard.plugins.hparams import plugin_data_pb2
from torch import Tensor, nn
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams
from torch.utils.tensorboard.summary import text as text_summary

__all__ = ["RunLogger", "class_accuracy", "class_accuracy_figure", "confusion_figure", "confusion_matrix",
           "first_conv_weight"]  # fmt: skip

CARD_DPI = 80  # figures are drawn at about the pixel size of a TensorBoard image card


def confusion_matrix(predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """``(num_classes, num_classes)`` counts, rows = true class, columns = predicted class."""
    index = labels.to(torch.int64) * num_classes + predictions.to(torch.int64)
    return torch.bincount(index, minlength=num_classes**2).view(num_classes, num_classes)


def class_accuracy(counts: Tensor) -> Tensor:
    """Per-class accuracy from a confusion matrix (rows: true class): ``diag / row sums``."""
    return counts.diag() / counts.sum(1).clamp(min=1)


def confusion_figure(counts: Tensor, class_names: list[str]):
    """The confusion matrix with each cell's count written in it, shaded by its share of the row."""
    n = len(class_names)
    figure, axis = plt.subplots(figsize=(5, 4.6), dpi=CARD_DPI)
    shares = counts / counts.sum(1, keepdim=True).clamp(min=1)
    axis.imshow(shares.numpy(), cmap="Blues", vmin=0, vmax=1)
    for row in range(n):
        for col in range(n):
            axis.text(col, row, f"{counts[row, col]:.0f}", ha="center", va="center", fontsize=8 if n <= 10 else 6,
                      color="white" if shares[row, col] > 0.5 else "black")  # fmt: skip
    axis.set_xticks(range(n), class_names, rotation=45, ha="right", fontsize=9)
    axis.set_yticks(range(n), class_names, fontsize=9)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"confusion matrix ({counts.sum():.0f} test images)", fontsize=10)
    figure.tight_layout()
    return figure


def class_accuracy_figure(counts: Tensor, class_names: list[str]):
    """Per-class accuracy as horizontal bars with their values, the overall accuracy as a line."""
    accuracy = class_accuracy(counts)
    figure, axis = plt.subplots(figsize=(5, 0.3 * len(class_names) + 1.2), dpi=CARD_DPI)
    positions = range(len(class_names))
    axis.barh(positions, accuracy.numpy(), color="tab:blue")
    for position, value in zip(positions, accuracy.tolist()):
        axis.text(min(value + 0.01, 0.9), position, f"{value:.3f}", va="center", fontsize=9)
    overall = float(counts.diag().sum() / counts.sum().clamp(min=1))
    axis.axvline(overall, color="black", linestyle="--", linewidth=1)
    axis.set_yticks(positions, class_names, fontsize=9)
    axis.invert_yaxis()
    axis.set_xlim(0, 1)
    axis.set_xlabel("accuracy")
    axis.set_title(f"accuracy per class (dashed: all classes, {overall:.3f})", fontsize=10)
    figure.tight_layout()
    return figure


def first_conv_weight(model: nn.Module) -> Tensor | None:
    """The weight of the first layer with a 4-D weight (the first convolution), or None."""
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, Tensor) and weight.dim() == 4:
            return weight.detach()
    return None


class RunLogger:
    """Thin wrapper over ``SummaryWriter(run_dir)``; a no-op when disabled. The events sit in the
    run directory itself, so TensorBoard names each run by its directory (``3_conv=separable,...``),
    not ``.../tb``."""

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.writer = SummaryWriter(log_dir=str(run_dir)) if enabled else None

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer:
            self.writer.add_scalar(tag, value, step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        """``text`` as a Markdown code block under ``tag`` itself (``add_text`` would name it
        ``tag/text_summary``), at ``step`` (a report of the trained model: its last step)."""
        if self.writer:
            summary = text_summary(tag, "    " + text.replace("\n", "\n    "))
            summary.value[0].tag = tag
            self.writer.file_writer.add_summary(summary, step)

    def images(self, tag: str, images: Tensor, step: int) -> None:
        """``images (N, C, H, W)`` in [0, 1] as one grid."""
        if self.writer:
            self.writer.add_images(tag, images.clamp(0, 1), step)

    def filters(self, tag: str, weight: Tensor | None, step: int) -> None:
        """First-layer filters, each rescaled to [0, 1]; RGB when they read 3 channels."""
        if self.writer is None or weight is None:
            return
        w = weight.float().cpu()
        if w.shape[1] != 3:
            w = w[:, :1]
        low = w.amin((1, 2, 3), keepdim=True)
        high = w.amax((1, 2, 3), keepdim=True)
        self.writer.add_images(tag, (w - low) / (high - low + 1e-8), step)

    def confusion(self, matrix: Tensor, class_names: list[str], step: int) -> None:
        """The confusion matrix (``val/confusion_matrix``: counts in the cells, shaded by the share
        of the true class) and the per-class accuracy as one bar chart (``val/class_accuracy``),
        drawn at the size TensorBoard shows an image card (~400 px), so they read without zooming."""
        if self.writer is None:
            return
        counts = matrix.float()
        self.writer.add_figure("val/confusion_matrix", confusion_figure(counts, class_names), step)
        self.writer.add_figure("val/class_accuracy", class_accuracy_figure(counts, class_names), step)

    def hparams(self, params: dict, metric_tags: list[str], differs: Iterable[str] = ()) -> None:
        """HParams entry in this run's own directory (``add_hparams`` would open a subdirectory).
        Its metric columns are the *last values* of the named scalars, in this order. TensorBoard's
        hparams plugin serves the columns marked ``differs`` first, then the rest by name, and
        shows the first five: ``differs`` names the columns a sweep varied."""
        if self.writer is None:
            return
        experiment, *sessions = hparams(params, dict.fromkeys(metric_tags, 0.0))
        value = experiment.value[0]
        data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
        varied = set(differs)
        for info in data.experiment.hparam_infos:
            info.differs = info.name in varied
        value.metadata.plugin_data.content = data.SerializeToString()
        for summary in (experiment, *sessions):
            self.writer.file_writer.add_summary(summary)

    def close(self) -> None:
        if self.writer:
            self.writer.close()
