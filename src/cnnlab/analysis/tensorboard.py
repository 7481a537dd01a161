"""Log a model's analysis to TensorBoard: tables as text (``analysis/report``); as images
(``visuals/``, a group TensorBoard's Time Series lists after the ``train``/``val`` curves, where
an ``analysis/`` image group would sort before them and push the ``val`` curves shut) each distinct
convolution/pooling geometry at work (``visuals/arithmetic/<layer>``, transposed convolutions'
overlap maps under ``visuals/overlap/``: :mod:`.arithmetic`), receptive-field growth, the effective
receptive field and feature maps of one image; the numbers go to ``metrics.json``."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator
from torch import Tensor, nn

from .arithmetic import arithmetic_stills
from .receptive_field import config_paths
from .report import analyze, format_report, report_metrics

__all__ = ["feature_maps", "log_analysis"]


@torch.no_grad()
def feature_maps(model: nn.Module, image: Tensor, layers: int = 2, channels: int = 16) -> list[tuple[str, Tensor]]:
    """The first ``channels`` feature maps after each of the first ``layers`` convolutions the
    forward runs, for one image ``(C, H, W)``, each map rescaled to [0, 1]: ``[(config path,
    (channels, 1, H', W'))]`` (the paths the shape table and the arithmetic pictures use)."""
    paths = config_paths(model)
    seen: list[tuple[str, Tensor]] = []

    def keep(module: nn.Module, args, out: Tensor) -> None:
        if len(seen) < layers:
            seen.append((paths[module], out[0, :channels]))

    convolutions = [m for m in model.modules() if any(p.dim() >= 4 for p in m.parameters(recurse=False))]
    handles = [m.register_forward_hook(keep) for m in convolutions]
    try:
        model(image[None])
    finally:
        for handle in handles:
            handle.remove()
    maps = []
    for name, out in seen:
        low, high = out.amin((1, 2), keepdim=True), out.amax((1, 2), keepdim=True)
        maps.append((name, ((out - low) / (high - low + 1e-8))[:, None]))
    return maps


def log_analysis(
    logger, model: nn.Module, input_shape: Sequence[int], images: Tensor, classifier: bool, step: int
) -> dict[str, float]:
    """Analyse a CPU float copy of ``model`` on ``images`` and log it through ``logger``
    (a :class:`cnnlab.train.engine.tensorboard.RunLogger`); returns the numbers."""
    model = copy.deepcopy(model).cpu().float().eval()
    images = images.cpu().float()
    report = analyze(model, input_shape, images, classifier)
    metrics = report_metrics(report)  # numbers for metrics.json; one-point charts would crowd the Scalars tab
    logger.text("analysis/report", format_report(report), step)
    if logger.writer is None:
        return metrics
    figure, axis = plt.subplots(figsize=(6, 3.5))
    sizes = [row.size for row in report.receptive_fields]
    axis.plot(range(1, len(sizes) + 1), sizes, marker="o")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers and pixels are counted, not measured
    axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("spatial layer")
    axis.set_ylabel("receptive field (pixels)")
    axis.set_title("receptive field growth")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    logger.writer.add_figure("visuals/receptive_field_growth", figure, step)
    if report.erf is not None:
        logger.writer.add_figure(
            "visuals/effective_receptive_field", _erf_figure(report.erf, report.empirical_size), step
        )
    for name, maps in feature_maps(model, images[0]):
        logger.writer.add_figure(f"visuals/feature_maps/{name}", _maps_figure(maps, name), step)
    for path, pictures in arithmetic_stills(model).items():
        for group, picture in zip(("arithmetic", "overlap"), pictures):
            logger.writer.add_image(f"visuals/{group}/{path}", np.asarray(picture), step, dataformats="HWC")
    return metrics


def _erf_figure(erf: Tensor, size: int | None):
    """The effective receptive field (|∂ centre output / ∂ input|, normalised) with pixel axes."""
    figure, axis = plt.subplots(figsize=(4, 3.6), dpi=80)
    image = axis.imshow(erf.numpy(), cmap="viridis")
    axis.set_title(f"effective receptive field ({size} px wide)" if size else "effective receptive field", fontsize=10)
    axis.set_xlabel("input column (pixels)")
    axis.set_ylabel("input row (pixels)")
    figure.colorbar(image, label="|gradient|, normalised")
    figure.tight_layout()
    return figure


def _maps_figure(maps: Tensor, name: str):
    """Feature maps ``(channels, 1, H, W)`` as a grid, each titled by its channel."""
    columns = 8
    rows = -(-len(maps) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 0.8, rows * 0.9 + 0.4), dpi=80, squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index < len(maps):
            axis.imshow(maps[index, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            axis.set_title(f"ch {index}", fontsize=7)
    figure.suptitle(f"feature maps after {name} (first {len(maps)} channels of one test image)", fontsize=9)
    figure.tight_layout()
    return figure
