"""Translation equivariance of each convolution, measured:

    error(f, t) = ‖f(shift_t(x)) − shift_{t/s}(f(x))‖ / ‖f(x)‖

for shifts ``t`` of 1–4 pixels (``s`` the layer's stride; the output is shifted by ``t // s``).
With circular padding the shift is a roll and the error is ~0 (parameter sharing makes the
convolution commute with translation). With zero padding, the border sees the padding, so only
the interior (away from the border by the shift plus the kernel reach) is compared. A stride
that does not divide the shift breaks equivariance: the error is large.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .receptive_field import config_paths, first

__all__ = ["EquivarianceError", "conv_equivariance", "equivariance_error"]


@dataclass(frozen=True)
class EquivarianceError:
    path: str
    padding_mode: str
    stride: int
    shift: int
    error: float


def equivariance_error(layer: nn.Module, x: Tensor, shift: int) -> float:
    """Relative error of ``layer`` commuting with a horizontal shift of ``shift`` pixels."""
    stride = first(layer.stride)
    circular = getattr(layer, "padding_mode", "zeros") == "circular"
    with torch.no_grad():
        out = layer(x)
        shifted_out = layer(torch.roll(x, shift, dims=-1))
        expected = torch.roll(out, shift // stride, dims=-1)
    if not circular:
        kernel = first(layer.kernel_size)
        dilation = first(layer.dilation)
        reach = dilation * (kernel - 1) // 2
        # output columns whose windows see neither the wrapped-around columns nor the padding
        left, right = -(-(shift + reach) // stride), -(-reach // stride) + 1
        if out.shape[-1] <= left + right:
            return float("nan")
        shifted_out, expected, out = (t[..., left : out.shape[-1] - right] for t in (shifted_out, expected, out))
    return float((shifted_out - expected).norm() / out.norm().clamp(min=1e-12))


def conv_equivariance(
    model: nn.Module, input_shape: Sequence[int] = (3, 32, 32), shifts: Sequence[int] = (1, 2, 3, 4), seed: int = 0
) -> list[EquivarianceError]:
    """Equivariance error of every 2-D convolution in ``model``, on random inputs of the shape
    that layer sees inside the model."""

    convs = {m: path for m, path in config_paths(model).items() if isinstance(m, nn.Conv2d)}
    inputs: dict[nn.Module, Tensor] = {}

    def record(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:  # returns None: output kept
        inputs.setdefault(module, args[0].detach())

    handles = [m.register_forward_hook(record) for m in convs]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(seed)))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    generator = torch.Generator().manual_seed(seed + 1)
    results = []
    for layer, path in convs.items():
        if layer not in inputs:
            continue
        x = torch.randn(inputs[layer].shape, generator=generator)
        stride = first(layer.stride)
        for shift in shifts:
            results.append(
                EquivarianceError(
                    path,
                    getattr(layer, "padding_mode", "zeros"),
                    stride,
                    shift,
                    equivariance_error(layer, x, shift),
                )
            )
    return results
