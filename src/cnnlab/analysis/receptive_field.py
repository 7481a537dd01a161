"""Receptive fields, analytically and empirically.

Analytic (Araujo et al. 2019, "Computing Receptive Fields of Convolutional Neural Networks"):
each layer with effective kernel ``k' = d(k−1)+1``, stride ``s`` and padding ``p`` maps the
receptive field size ``r``, the jump ``j`` (input pixels between adjacent outputs) and the centre
``c`` of the first output's field as

    r_out = r_in + (k' − 1)·j_in,    j_out = j_in·s,    c_out = c_in + ((k' − 1)/2 − p)·j_in.

A transposed convolution divides the jump by its stride; where branches join (a residual sum) the
widest field goes on; adaptive and global pooling see the whole input. Each layer answers its own
geometry (:mod:`cnnlab.nn.geometry`); the module graph of any model comes from ``torch.fx``.

Empirical: the gradient of one central output unit with respect to the input is non-zero exactly
on the pixels that unit depends on; its magnitude is the effective receptive field (Luo et al.
2016), which is concentrated in the centre of the analytic one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn

from ..nn.geometry import NotAnalysed, Window, geometry_of
from .invariance import layer_output, pooling_layer

__all__ = [
    "ReceptiveField",
    "config_path",
    "config_paths",
    "empirical_receptive_field",
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
    """Receptive field after one layer: ``size`` (pixels), ``jump`` and first centre ``start``;
    ``entering``: the size of the field that reached the layer; ``note``: what the numbers leave
    out, or why the layer was not analysed."""

    path: str
    layer: str
    size: float
    jump: float
    start: float
    entering: float = 0.0
    note: str = ""


def first(value) -> int:
    """The first spatial entry of an int-or-tuple layer argument."""
    return value if isinstance(value, int) else value[0]


class _LayerTracer(fx.Tracer):
    """Traces through containers and stops at every module that answers its geometry."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return geometry_of(module) is not None


# functions that act on windows of positions when a forward calls them directly
_SPATIAL_FUNCTIONS = re.compile(r"conv|pool|interpolate|upsample|pad|fold|grid_sample|pixel_(un)?shuffle|roll")


def _through(window: Window, size: float, jump: float, start: float) -> tuple[float, float, float]:
    """One window along the first axis: ``(size, jump, start)`` of the field after it."""
    k, s, p = window.effective[0], window.stride[0], window.padding[0]
    if window.transposed:  # an output reads the inputs whose scattered kernels reach it: ceil(k'/s) of them
        new_jump = jump / s
        return size + (-(-k // s) - 1) * jump, new_jump, start + (p - (k - 1) / 2) * new_jump
    return size + (k - 1) * jump, jump * s, start + ((k - 1) / 2 - p) * jump


def _trace(model: nn.Module) -> fx.Graph:
    try:
        return _LayerTracer().trace(model)
    except Exception as error:  # fx raises many types; the analysis needs the graph
        raise TypeError(
            f"receptive_fields: torch.fx cannot trace {type(model).__name__}'s forward ({error}); the analyses "
            "follow the module graph that a symbolic trace records"
        ) from error


def receptive_fields(model: nn.Module, image_size: int = 32) -> list[ReceptiveField]:
    """Analytic receptive field after every spatial layer of any ``model`` (first spatial axis),
    with the layers' config paths. The module graph comes from a ``torch.fx`` trace, each layer
    answering its geometry (:func:`cnnlab.nn.geometry.geometry_of`); where branches join (a
    residual sum, a concatenation) the widest field goes on. A layer that cannot answer gets a
    row that says so and passes its field on unchanged."""
    if geometry_of(model) is not None:  # a single layer
        model = nn.Sequential(model)
    names = config_paths(model)
    fields: dict[fx.Node, tuple[float, float, float]] = {}
    rows: list[ReceptiveField] = []
    for node in _trace(model).nodes:
        if node.op == "placeholder":
            fields[node] = (1.0, 1.0, 0.0)
            continue
        entering = [fields[n] for n in node.all_input_nodes if n in fields]
        if node.op == "output" or not entering:
            continue
        size, jump, start = field = max(entering)
        if node.op == "call_module":
            module = model.get_submodule(node.target)
            geometry, path, label = geometry_of(module), names[module], type(module).__name__
        else:
            name = getattr(node.target, "__name__", str(node.target))
            stack = node.meta.get("nn_module_stack") or {"": None}
            path = names[model.get_submodule(next(reversed(stack)).split("@")[0])]
            if len(entering) > 1:
                fields[node] = field
                rows.append(ReceptiveField(path, "residual (sum)" if name in ("add", "iadd") else f"{name} (join)",
                                           size, jump, start, size))  # fmt: skip
                continue
            if not _SPATIAL_FUNCTIONS.search(name):
                fields[node] = field
                continue
            geometry, label = NotAnalysed(f"{name}() called in a forward: wrap it in a layer"), name
        if geometry == "pointwise":
            fields[node] = field
            continue
        note = ""
        if geometry == "global":
            size, start = max(size, float(image_size)), (image_size - 1) / 2
        elif isinstance(geometry, NotAnalysed):
            note = f"not analysed: {geometry.reason}"
        else:
            for window in geometry:
                size, jump, start = _through(window, size, jump, start)
            note = "; ".join(window.note for window in geometry if window.note)
        fields[node] = (size, jump, start)
        rows.append(ReceptiveField(path, label, size, jump, start, field[0], note))
    return rows


def unproductive_layers(rows: Sequence[ReceptiveField], image_size: int) -> list[str]:
    """Paths of the spatial layers that are unproductive at this input size (Richter et al. 2021,
    "Receptive Field Analysis"): the receptive field of their *input* already spans the whole
    ``image_size`` image, so their kernels can only mix features that each see everything (and
    the padding), adding no context. Global pooling, joins and layers not analysed are not counted."""
    return [
        row.path
        for row in rows
        if row.entering >= image_size and row.layer != "residual (sum)" and not row.layer.endswith("(join)")
        and not _is_global(row.layer) and not row.note.startswith("not analysed")
    ]  # fmt: skip


def _is_global(layer: str) -> bool:
    return layer.startswith(("Global", "Adaptive"))


def empirical_receptive_field(
    model: nn.Module, input_shape: Sequence[int] = (3, 32, 32), trials: int = 8, seed: int = 0
) -> tuple[int, Tensor]:
    """Height of the input region that the central unit of ``model``'s last feature map depends
    on, and its effective-receptive-field heat map ``(H, W)`` (mean |∂out/∂x|, max 1). The last
    feature map: the input of the model's global pooling (or flatten), else its output.

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
            out = layer_output(model, x, pooling_layer(model), "input")
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
