"""Build a model from a readable YAML layer list, tracing shapes as it goes.

A model config holds ``layers``: a list whose items are a name (``relu``) or a one-key mapping
(``conv: {out_channels: 32, kernel_size: 3}``). Input sizes are inferred from the previous layer
by running one dummy input through each layer as it is built; the result is a shape table
(layer, output shape, parameters) and, for an impossible config, a :class:`ModelConfigError`
that names the layer's config path (``model.layers.3``, the form a command-line override takes) and what went wrong.

Layer types: ``conv``, ``upconv`` (transposed), ``pool``, ``global_pool``, ``bn``, ``relu``,
``gelu``, ``sigmoid``, ``tanh``, ``dropout``, ``flatten``, ``linear``, ``residual`` (a body of
layers plus an identity or 1×1-projection shortcut). ``conv`` and ``pool`` are filled from the
``conv=`` and ``pool=`` config groups (:mod:`cnnlab.models.factory`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UserError
from .factory import create_conv, create_conv_transpose, create_global_pool, create_pool

__all__ = ["LAYER_TYPES", "ModelConfigError", "Residual", "ShapeRow", "build_model", "format_shape_table"]


class ModelConfigError(UserError, ValueError):
    """An impossible model config; the message starts with the layer's config path."""


class Residual(nn.Module):
    """``out = body(x) + shortcut(x)``: identity, or a strided 1×1 projection when shapes change."""

    def __init__(self, body: nn.Module, shortcut: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.shortcut(x)


@dataclass(frozen=True)
class ShapeRow:
    path: str
    layer: str
    output_shape: tuple[int, ...]
    parameters: int


_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "identity": nn.Identity}
LAYER_TYPES = ("conv", "upconv", "pool", "global_pool", "bn", "dropout", "flatten", "linear", "residual", *_ACTIVATIONS)


def _split(item: Any, path: str) -> tuple[str, dict[str, Any]]:
    if isinstance(item, str):
        return item, {}
    if isinstance(item, Mapping) and len(item) == 1:
        ((name, args),) = item.items()
        if args is None:
            args = {}
        if not isinstance(args, Mapping) and name != "residual":
            raise ModelConfigError(f"{path}: the arguments of {name!r} must be a mapping, but got {args!r}")
        return str(name), dict(args) if isinstance(args, Mapping) else {"layers": args}
    raise ModelConfigError(f"{path}: a layer is a name or a one-key mapping like {{conv: {{...}}}}, but got {item!r}")


def _check_args(name: str, args: dict[str, Any], allowed: Sequence[str], path: str) -> None:
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise ModelConfigError(f"{path} ({name}): unknown argument(s) {unknown}; allowed: {sorted(allowed)}")


def _make_layer(name: str, args: dict[str, Any], shape: tuple[int, ...], conv_cfg, pool_cfg, path: str) -> nn.Module:
    channels = shape[0]
    if name == "conv":
        _check_args(
            name, args, ("out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias"), path
        )
        if "out_channels" not in args:
            raise ModelConfigError(f"{path} (conv): out_channels is required")
        groups = args.get("groups", 1)
        groups = channels if groups == "depthwise" else int(groups)
        return create_conv(
            conv_cfg,
            channels,
            int(args["out_channels"]),
            int(args.get("kernel_size", 3)),
            int(args.get("stride", 1)),
            args.get("padding"),
            int(args.get("dilation", 1)),
            groups,
            bool(args.get("bias", True)),
        )
    if name == "upconv":
        _check_args(name, args, ("out_channels", "kernel_size", "stride", "padding", "output_padding", "bias"), path)
        return create_conv_transpose(
            conv_cfg,
            channels,
            int(args["out_channels"]),
            int(args.get("kernel_size", 2)),
            int(args.get("stride", 2)),
            int(args.get("padding", 0)),
            int(args.get("output_padding", 0)),
            bool(args.get("bias", True)),
        )
    if name == "pool":
        _check_args(name, args, ("kernel_size", "stride", "padding"), path)
        return create_pool(
            pool_cfg, channels, int(args.get("kernel_size", 2)), args.get("stride"), int(args.get("padding", 0))
        )
    if name == "global_pool":
        _check_args(name, args, ("kind",), path)
        return create_global_pool(pool_cfg, args.get("kind", "avg"))
    if name == "bn":
        _check_args(name, args, ("momentum", "eps"), path)
        norm = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
        return norm(channels, momentum=args.get("momentum", 0.1), eps=args.get("eps", 1e-5))
    if name == "dropout":
        _check_args(name, args, ("p",), path)
        return nn.Dropout(float(args.get("p", 0.5)))
    if name == "flatten":
        _check_args(name, args, (), path)
        return nn.Flatten()
    if name == "linear":
        _check_args(name, args, ("out_features", "bias"), path)
        if len(shape) != 1:
            raise ModelConfigError(
                f"{path} (linear): needs a flat input, but the previous layer gives {shape}; add `- flatten`"
            )
        return nn.Linear(channels, int(args["out_features"]), bias=bool(args.get("bias", True)))
    if name in _ACTIVATIONS:
        _check_args(name, args, (), path)
        return _ACTIVATIONS[name]()
    raise ModelConfigError(f"{path}: unknown layer type {name!r}; known: {sorted(LAYER_TYPES)}")


def _trace(module: nn.Module, x: Tensor, path: str, name: str) -> Tensor:
    try:
        with torch.no_grad():
            module.eval()
            y = module(x)
    except (RuntimeError, ValueError) as error:
        raise ModelConfigError(f"{path} ({name}): cannot take input of shape {tuple(x.shape[1:])}: {error}") from error
    if y.dim() >= 3 and any(size == 0 for size in y.shape[2:]):
        raise ModelConfigError(f"{path} ({name}): spatial size reaches 0 (output shape {tuple(y.shape[1:])})")
    return y


def _build(items: Sequence[Any], x: Tensor, conv_cfg, pool_cfg, prefix: str, rows: list[ShapeRow]):
    layers: list[nn.Module] = []
    for index, item in enumerate(items):
        path = f"{prefix}.{index}"  # an override path: model.layers.0.conv.out_channels=48
        name, args = _split(item, path)
        if name == "residual":
            _check_args(name, args, ("layers",), path)
            # the override path of the body: `residual: [...]` (a list) or `residual: {layers: [...]}`
            body_path = f"{path}.residual" if isinstance(item["residual"], Sequence) else f"{path}.residual.layers"
            body, y = _build(args.get("layers") or [], x, conv_cfg, pool_cfg, body_path, rows)
            shortcut: nn.Module = nn.Identity()
            if y.shape != x.shape:
                if y.dim() != 4 or x.shape[2] % y.shape[2] or x.shape[3] % y.shape[3]:
                    raise ModelConfigError(
                        f"{path} (residual): body maps {tuple(x.shape[1:])} to {tuple(y.shape[1:])}, "
                        "which no 1×1 strided projection can match"
                    )
                stride = x.shape[2] // y.shape[2]
                shortcut = nn.Sequential(
                    create_conv(conv_cfg, x.shape[1], y.shape[1], 1, stride, 0, bias=False), nn.BatchNorm2d(y.shape[1])
                )
            layer: nn.Module = Residual(nn.Sequential(*body), shortcut)
        else:
            try:
                layer = _make_layer(name, args, tuple(x.shape[1:]), conv_cfg, pool_cfg, path)
            except ModelConfigError:
                raise
            except (RuntimeError, ValueError, TypeError, KeyError) as error:
                raise ModelConfigError(f"{path} ({name}): {error}") from error
        y = _trace(layer, x, path, name)
        rows.append(
            ShapeRow(
                path,
                name if name != "residual" else "residual (sum)",
                tuple(y.shape[1:]),
                sum(p.numel() for p in layer.parameters()),
            )
        )
        layers.append(layer)
        x = y
    return layers, x


def build_model(
    model_cfg: Mapping[str, Any],
    conv_cfg: Mapping[str, Any],
    pool_cfg: Mapping[str, Any],
    input_shape: Sequence[int] = (3, 32, 32),
    prefix: str = "model.layers",
) -> tuple[nn.Sequential, list[ShapeRow]]:
    """Build ``model_cfg['layers']`` into an ``nn.Sequential`` (train mode) and its shape table."""
    items = model_cfg.get("layers")
    if not items:
        raise ModelConfigError(f"{prefix}: a model needs a non-empty `layers` list")
    rows: list[ShapeRow] = []
    dummy = torch.zeros(2, *input_shape)
    layers, _ = _build(items, dummy, conv_cfg, pool_cfg, prefix, rows)
    model = nn.Sequential(*layers)
    model.train()
    return model, rows


def format_shape_table(rows: Sequence[ShapeRow], input_shape: Sequence[int]) -> str:
    """The shape table as aligned text: config path, layer, output shape, parameters."""
    lines = [
        f"{'layer':<28} {'type':<18} {'output shape':<18} {'params':>10}",
        f"{'input':<28} {'':<18} {tuple(input_shape)!s:<18} {'':>10}",
    ]
    for row in rows:
        lines.append(f"{row.path:<28} {row.layer:<18} {row.output_shape!s:<18} {row.parameters:>10,}")
    total = sum(row.parameters for row in rows if row.path.split(".layers.", 1)[-1].isdigit())  # top-level layers
    lines.append(f"{'total':<28} {'':<18} {'':<18} {total:>10,}")
    return "\n".join(lines)
