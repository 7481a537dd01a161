"""Sparse interactions and parameter sharing, counted: for every convolution and linear layer,
its parameters and multiply-adds next to a dense (fully connected) layer that maps the same input
volume to the same output volume.

A convolution with ``C_in → C_out`` channels and a ``k×k`` kernel has
``C_in/groups · C_out · k² (+ C_out)`` parameters and ``C_in/groups · C_out · k² · H_out · W_out``
multiply-adds; the dense layer has ``(C_in·H·W) · (C_out·H_out·W_out) (+ C_out·H_out·W_out)``
parameters, each used once. The ratio is what sparse connectivity and weight sharing save.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .receptive_field import config_paths

__all__ = ["LayerCost", "layer_costs"]

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.Linear)


@dataclass(frozen=True)
class LayerCost:
    path: str
    layer: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    parameters: int
    macs: int
    dense_parameters: int
    dense_macs: int

    @property
    def parameter_ratio(self) -> float:
        """Dense parameters per layer parameter."""
        return self.dense_parameters / max(self.parameters, 1)


def _is_weighted(module: nn.Module) -> bool:
    return isinstance(module, _WEIGHTED)  # cnnlab's layers subclass their torch twins


def layer_costs(model: nn.Module, input_shape: Sequence[int] = (3, 32, 32)) -> list[LayerCost]:
    """Costs of every convolution and linear layer of ``model`` on one ``input_shape`` image."""
    costs: list[LayerCost] = []
    paths = config_paths(model)

    def hook(module, inputs, output):
        x = inputs[0]
        in_shape, out_shape = tuple(x.shape[1:]), tuple(output.shape[1:])
        weight = module.weight
        bias = module.bias.numel() if getattr(module, "bias", None) is not None else 0
        in_volume, out_volume = x[0].numel(), output[0].numel()
        if isinstance(module, nn.Linear):
            macs = weight.numel()
        elif "Transpose" in type(module).__name__:
            macs = weight.numel() * x[0, 0].numel()  # every input position scatters the whole kernel
        else:
            macs = weight.numel() * output[0, 0].numel()  # the kernel is applied at every output position
        dense_bias = out_volume if bias else 0
        costs.append(
            LayerCost(
                paths[module],
                type(module).__name__,
                in_shape,
                out_shape,
                weight.numel() + bias,
                macs,
                in_volume * out_volume + dense_bias,
                in_volume * out_volume,
            )
        )

    handles = [m.register_forward_hook(hook) for m in model.modules() if _is_weighted(m)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return costs
