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

__all__ = ["RunLogger", "confusion_matrix", "first_conv_weight"]


def confusion_matrix(predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """``(num_classes, num_classes)`` counts, rows = true class, columns = predicted class."""
    index = labels.to(torch.int64) * num_classes + predictions.to(torch.int64)
    return torch.bincount(index, minlength=num_classes**2).view(num_classes, num_classes)


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

    def text(self, tag: str, text: str) -> None:
        if self.writer:
            self.writer.add_text(tag, "    " + text.replace("\n", "\n    "))  # Markdown code block

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
        """Confusion-matrix figure and per-class accuracy scalars ``val_class/acc_<name>``."""
        if self.writer is None:
            return
        counts = matrix.float()
        per_class = counts.diag() / counts.sum(1).clamp(min=1)
        for name, accuracy in zip(class_names, per_class.tolist()):
            self.writer.add_scalar(f"val_class/acc_{name}", accuracy, step)
        figure, axis = plt.subplots(figsize=(6, 5))
        normalised = counts / counts.sum(1, keepdim=True).clamp(min=1)
        image = axis.imshow(normalised.numpy(), cmap="Blues", vmin=0, vmax=1)
        axis.set_xticks(range(len(class_names)), class_names, rotation=60, ha="right", fontsize=7)
        axis.set_yticks(range(len(class_names)), class_names, fontsize=7)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        figure.colorbar(image)
        figure.tight_layout()
        self.writer.add_figure("val/confusion_matrix", figure, step)

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
