"""Receptive fields, analytically and empirically.

Analytic (Araujo et al. 2019, "Computing Receptive Fields of Convolutional Neural Networks"):
each layer with effective kernel ``k' = d(k−1)+1``, stride ``s`` and padding ``p`` maps the
receptive field size ``r``, the jump ``j`` (input pixels between adjacent outputs) and the centre
``c`` of the first output's field as

    r_out = r_in + (k' − 1)·j_in,    j_out = j_in·s,    c_out = c_in + ((k' − 1)/2 − p)·j_in.

A transposed convolution divides the jump by its stride; a residual block takes its body (the
longest path); adaptive and global pooling see the whole input.

Empirical: the gradient of one central output unit with respect to the input is non-zero exactly
on the pixels that unit depends on; its magnitude is the effective receptive field (Luo et al.
2016), which is concentrated in the centre of the analytic one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .. import nn as cnn
from ..models import Residual

__all__ = [
    "ReceptiveField",
    "config_path",
    "config_paths",
    "empirical_receptive_field",
    "layer_geometry",
    "receptive_fields",
    "unproductive_layers",
]


def config_path(module_name: str) -> str:
    """``named_modules`` name of a model → a config path, in the form an override takes:
    ``3.body.0`` → ``model.layers.3.residual.0`` (a residual block's body written as a list). For
    models not built from a config; :func:`config_paths` reads what the builder recorded."""
    parts = module_name.split(".") if module_name else []
    return "model" + "".join(f".layers.{part}" if index == 0 else "." + _CONFIG_NAMES.get(part, part)
                             for index, part in enumerate(parts))  # fmt: skip


_CONFIG_NAMES = {"body": "residual"}  # a module attribute → its key in the config


def config_paths(model: nn.Module) -> dict[nn.Module, str]:
    """The config path of every module of ``model`` (``model`` itself: ``"model"``): the path
    :func:`cnnlab.models.build_model` recorded for each layer it built (``model.layer_paths``; a
    stage's k-th block is ``model.layers.3[k]``), for a module inside one (a residual's shortcut)
    its nearest recorded parent's path and the rest of its name, and :func:`config_path` for
    models not built from a config."""
    recorded: dict[str, str] = getattr(model, "layer_paths", None) or {}
    paths = {}
    for name, module in model.named_modules():
        parts = name.split(".") if name else []
        cut = next((cut for cut in range(len(parts), 0, -1) if ".".join(parts[:cut]) in recorded), 0)
        if cut == 0:
            paths[module] = config_path(name)
        else:
            rest = "".join("." + _CONFIG_NAMES.get(part, part) for part in parts[cut:])
            paths[module] = recorded[".".join(parts[:cut])] + rest
    return paths


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field after one layer: ``size`` (pixels), ``jump`` and first centre ``start``."""

    path: str
    layer: str
    size: float
    jump: float
    start: float


# Layers whose output sees the whole input, whatever its size (adaptive pooling counts too).
GLOBAL_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, cnn.GlobalAvgPool2d, cnn.GlobalMaxPool2d)


def first(value) -> int:
    """The first spatial entry of an int-or-tuple layer argument."""
    return value if isinstance(value, int) else value[0]


def layer_geometry(module: nn.Module) -> tuple[int, int, int, int] | str | None:
    """``(kernel, stride, padding, dilation)`` along one spatial axis (the first), ``"global"``
    for layers that see the whole input, ``"transposed"`` handled by the caller, or None for
    pointwise layers (activations, norms, 1×1 channel maxout)."""
    if isinstance(module, (nn.Conv2d, nn.Conv1d)):  # cnnlab's layers subclass torch's
        padding = module.padding
        kernel, dilation = first(module.kernel_size), first(module.dilation)
        if isinstance(padding, str):
            padding = 0 if padding == "valid" else dilation * (kernel - 1) // 2
        return kernel, first(module.stride), first(padding), dilation
    if isinstance(module, nn.MaxPool2d):
        return (
            first(module.kernel_size),
            first(module.stride),
            first(module.padding),
            first(module.dilation),
        )
    if isinstance(module, (nn.AvgPool2d, cnn.DistanceWeightedPool2d)):
        return first(module.kernel_size), first(module.stride), first(module.padding), 1
    if isinstance(module, nn.LPPool2d):
        kernel = first(module.kernel_size)
        stride = kernel if module.stride is None else first(module.stride)
        return kernel, stride, 0, 1
    if isinstance(module, cnn.BlurPool2d):
        return module.filter_size, module.stride[0], (module.filter_size - 1) // 2, 1
    if isinstance(module, GLOBAL_POOLS):
        return "global"
    return None


def _walk(
    module: nn.Module,
    names: dict[nn.Module, str],
    size: float,
    jump: float,
    start: float,
    image: int,
    rows: list[ReceptiveField],
) -> tuple[float, float, float]:
    """Propagate ``(size, jump, start)`` through ``module``, appending a row per spatial layer."""
    path = names[module]
    if isinstance(module, Residual):
        size, jump, start = _walk(module.body, names, size, jump, start, image, rows)
        rows.append(ReceptiveField(path, "residual (sum)", size, jump, start))
        return size, jump, start
    if isinstance(module, cnn.DepthwiseSeparableConv2d):
        return _walk(module.depthwise, names, size, jump, start, image, rows)
    if isinstance(module, cnn.MaxBlurPool2d):
        k = first(module.kernel_size)
        size, jump = size + (k - 1) * jump, jump
        start = start + (k - 1) / 2 * jump
        f, s = module.filter_size, module.stride[0]
        size, start, jump = size + (f - 1) * jump, start + ((f - 1) / 2 - (f - 1) // 2) * jump, jump * s
        rows.append(ReceptiveField(path, type(module).__name__, size, jump, start))
        return size, jump, start
    if isinstance(module, nn.ConvTranspose2d):
        k, s = first(module.kernel_size), first(module.stride)
        d, p = first(module.dilation), first(module.padding)
        effective = d * (k - 1) + 1
        new_jump = jump / s
        # an output reads the inputs whose scattered kernels reach it: ceil(k'/s) of them
        size = size + (-(-effective // s) - 1) * jump
        start = start + (p - (effective - 1) / 2) * new_jump  # centre moves by the cropped padding
        rows.append(ReceptiveField(path, type(module).__name__, size, new_jump, start))
        return size, new_jump, start
    children = list(module.named_children())
    if children:
        for _, child in children:
            size, jump, start = _walk(child, names, size, jump, start, image, rows)
        return size, jump, start
    geometry = layer_geometry(module)
    if geometry == "global":
        size, start = max(size, float(image)), (image - 1) / 2
    elif geometry is not None:
        k, s, p, d = geometry
        effective = d * (k - 1) + 1
        size, start, jump = size + (effective - 1) * jump, start + ((effective - 1) / 2 - p) * jump, jump * s
    else:
        return size, jump, start  # pointwise: nothing changes, no row
    rows.append(ReceptiveField(path, type(module).__name__, size, jump, start))
    return size, jump, start


def receptive_fields(model: nn.Module, image_size: int = 32) -> list[ReceptiveField]:
    """Analytic receptive field after every spatial layer of ``model`` (first spatial axis), with
    the layers' config paths."""
    rows: list[ReceptiveField] = []
    _walk(model, config_paths(model), 1.0, 1.0, 0.0, image_size, rows)
    return rows


def unproductive_layers(rows: Sequence[ReceptiveField], image_size: int) -> list[str]:
    """Paths of the spatial layers that are unproductive at this input size (Richter et al. 2021,
    "Receptive Field Analysis"): the receptive field of their *input* already spans the whole
    ``image_size`` image, so their kernels can only mix features that each see everything (and
    the padding), adding no context. Global pooling and residual sums are not counted."""
    unproductive, before = [], 1.0
    for row in rows:
        if before >= image_size and row.layer != "residual (sum)" and not _is_global(row.layer):
            unproductive.append(row.path)
        before = row.size
    return unproductive


def _is_global(layer: str) -> bool:
    return layer.startswith(("Global", "Adaptive"))


def empirical_receptive_field(
    model: nn.Module, input_shape: Sequence[int] = (3, 32, 32), trials: int = 8, seed: int = 0
) -> tuple[int, Tensor]:
    """Height of the input region that the central output unit of ``model``'s output feature map
    depends on, and its effective-receptive-field heat map ``(H, W)`` (mean |∂out/∂x|, max 1).

    The union of the non-zero gradients over ``trials`` random inputs is taken, since a max or a
    ReLU passes the gradient through only part of its window for any one input.
    """
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    heat = torch.zeros(tuple(input_shape[1:]))
    try:
        for _ in range(trials):
            x = torch.randn(1, *input_shape, generator=generator).requires_grad_(True)
            out = model(x)
            if out.dim() != 4:
                raise ValueError(
                    f"empirical_receptive_field needs a spatial output (N, C, H, W), got {tuple(out.shape)}"
                )
            out[0, :, out.shape[2] // 2, out.shape[3] // 2].sum().backward()
            heat += x.grad[0].abs().sum(0)
    finally:
        model.train(was_training)
    rows = torch.nonzero(heat.sum(1) > 0).flatten()
    height = int(rows.max() - rows.min() + 1) if len(rows) else 0
    return height, heat / heat.max().clamp(min=1e-12)
