"""Where a training step's work and time go: each top-level layer's FLOPs and its measured
forward and backward time on the input the layers before it produce.

FLOPs per image, forward: ``2 · multiply-adds`` of the convolutions and linear layers inside the
layer (:func:`cnnlab.analysis.sparsity.layer_costs`), a pool's output elements times its window,
one per output element for the rest (activations, normalisation). Times are the fastest of
``repeats`` runs, in training mode, on a copy of the model.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..nn.geometry import geometry_of
from .receptive_field import config_paths
from .sparsity import LayerCost, layer_costs

__all__ = ["LayerProfile", "format_profile_summary", "profile_layers"]


@dataclass(frozen=True)
class LayerProfile:
    """One top-level layer: ``flops`` per image (forward), ``forward_ms``/``backward_ms`` per batch."""

    path: str
    flops: int
    forward_ms: float
    backward_ms: float


def _timed(run, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def _other_flops(layer: nn.Module, inputs: torch.Tensor, output: torch.Tensor) -> int:
    """Per image: a pool's output elements times its window (a global pool's input elements), one
    per output element for any other layer."""
    geometry = geometry_of(layer)
    if geometry == "global":
        return inputs[0].numel()
    if isinstance(geometry, tuple):
        return output[0].numel() * sum(math.prod(window.kernel) for window in geometry)
    return output[0].numel()


def profile_layers(
    model: nn.Sequential,
    input_shape: Sequence[int] = (3, 32, 32),
    batch_size: int = 32,
    repeats: int = 2,
    costs: Sequence[LayerCost] | None = None,
) -> list[LayerProfile]:
    """FLOPs and forward/backward milliseconds of each of ``model``'s top-level layers for a batch
    of ``batch_size`` random ``input_shape`` images (see the module's docstring); ``costs``: the
    model's :func:`~cnnlab.analysis.sparsity.layer_costs` where already computed."""
    model = copy.deepcopy(model).train()
    paths = config_paths(model)
    tops = [paths[layer] for layer in model]  # model.layers.<i>, a stage's model.layers.<i>[k]
    macs: dict[str, int] = {}
    for cost in costs if costs is not None else layer_costs(model, input_shape):
        top = next(top for top in tops if cost.path == top or cost.path.startswith(f"{top}."))
        macs[top] = macs.get(top, 0) + cost.macs
    x = torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(0))
    profiles = []
    for path, layer in zip(tops, model):
        inputs = x.detach().requires_grad_(True)
        forward_ms = _timed(lambda layer=layer, inputs=inputs: layer(inputs), repeats)
        output = layer(inputs)
        gradient = torch.ones_like(output)
        backward_ms = _timed(lambda out=output, grad=gradient: out.backward(grad, retain_graph=True), repeats)
        flops = 2 * macs[path] if path in macs else _other_flops(layer, inputs, output)
        profiles.append(LayerProfile(path, flops, forward_ms, backward_ms))
        x = output.detach()
    return profiles


def format_profile_summary(profiles: Sequence[LayerProfile], batch_size: int, names: Sequence[str]) -> str:
    """One paragraph: the step's total FLOPs and time, and the layers (``names``, one per
    profile) that take most of it."""
    total_ms = sum(p.forward_ms + p.backward_ms for p in profiles)
    total_flops = sum(p.flops for p in profiles)
    ranked = sorted(zip(profiles, names), key=lambda pair: pair[0].forward_ms + pair[0].backward_ms, reverse=True)
    shares = ", ".join(f"{name} {(p.forward_ms + p.backward_ms) / total_ms:.0%}" for p, name in ranked[:3])
    return (
        f"forward {total_flops / 1e6:,.1f} MFLOPs per image; one forward + backward of a batch of {batch_size}: "
        f"{total_ms:.1f} ms on this CPU, most of it in {shares}"
    )
