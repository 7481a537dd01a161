"""Build a model from a readable YAML layer list, tracing shapes as it goes.

A model config holds ``layers``: a list whose items are a name (``relu``) or a one-key mapping
(``conv: {out_channels: 32, kernel_size: 3}``). Input sizes are inferred from the previous layer
by running one dummy input through each layer as it is built; the result is a shape table
(layer, output shape, parameters) and, for an impossible config, a :class:`ModelConfigError`
that names the layer's config path (``model.layers.3``, the form a command-line override takes) and what went wrong.

Layer types: ``conv``, ``upconv`` (transposed), ``pool``, ``global_pool``, ``bn``, ``relu``,
``gelu``, ``sigmoid``, ``tanh``, ``dropout``, ``flatten``, ``linear``, ``residual`` (a body of
layers plus an identity or 1×1-projection shortcut; ``{layers: [...], pre: [...],
shortcut_norm: false}`` for pre-activation blocks), the blocks of :mod:`cnnlab.models.blocks`
(``basic``, ``bottleneck``, ``preact``, ``inverted_residual``: each expands to such a list) and
``stage`` (a block repeated ``times``, the first with the stage's ``stride``). ``conv`` and
``pool`` are filled from the ``conv=`` and ``pool=`` config groups
(:mod:`cnnlab.models.factory`). A model's ``width`` multiplies every convolution's
``out_channels`` (rounded to a multiple of 8, as MobileNet's width multiplier; ``conv: {width: false}`` keeps
that layer's count, e.g. one map per class); ``conv: {expand: 6}`` gives ``out_channels = 6 × in_channels``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UserError
from .blocks import BLOCKS, expand_block
from .factory import create_conv, create_conv_transpose, create_global_pool, create_pool

__all__ = [
    "LAYER_TYPES", "ModelConfigError", "Residual", "ShapeRow", "build_model", "format_shape_table", "model_layer_rows",
]  # fmt: skip


class ModelConfigError(UserError, ValueError):
    """An impossible model config; the message starts with the layer's config path."""


class Residual(nn.Module):
    """``out = body(pre(x)) + shortcut(x)``: ``shortcut`` is the identity, or a strided 1×1
    projection when shapes change, which reads ``pre(x)`` (a pre-activation block's shared
    BN → ReLU; ``pre`` is the identity otherwise)."""

    def __init__(self, body: nn.Module, shortcut: nn.Module, pre: nn.Module | None = None) -> None:
        super().__init__()
        self.pre = pre if pre is not None else nn.Identity()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        z = self.pre(x)
        return self.body(z) + (x if isinstance(self.shortcut, nn.Identity) else self.shortcut(z))


@dataclass(frozen=True)
class _Slots:
    """What fills a model's slots: the ``conv=`` and ``pool=`` groups and the width multiplier;
    ``paths`` collects the config path of every layer built."""

    conv: Mapping[str, Any]
    pool: Mapping[str, Any]
    width: float = 1.0
    paths: dict[nn.Module, str] = field(default_factory=dict)

    def channels(self, out_channels: Any) -> int:
        scaled = int(out_channels) * self.width
        return int(out_channels) if self.width == 1 else max(8, int(scaled + 4) // 8 * 8)


@dataclass(frozen=True)
class ShapeRow:
    path: str
    layer: str
    output_shape: tuple[int, ...]
    parameters: int


_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "identity": nn.Identity}
LAYER_TYPES = (
    "conv", "upconv", "pool", "global_pool", "bn", "dropout", "flatten", "linear", "residual", "stage",
    *BLOCKS, *_ACTIVATIONS,
)  # fmt: skip


def _split(item: Any, path: str) -> tuple[str, dict[str, Any]]:
    if isinstance(item, str):
        return item, {}
    if isinstance(item, Mapping) and len(item) == 1:
        ((name, args),) = item.items()
        if args is None:
            args = {}
        if not isinstance(args, Mapping) and name != "residual":
            raise ModelConfigError(f"{path}: the arguments of {name!r} must be a mapping, but got {args!r}")
        return str(name), dict(args) if isinstance(args, Mapping) else {"layers": list(args)}
    raise ModelConfigError(f"{path}: a layer is a name or a one-key mapping like {{conv: {{...}}}}, but got {item!r}")


def _check_args(name: str, args: dict[str, Any], allowed: Sequence[str], path: str) -> None:
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise ModelConfigError(f"{path} ({name}): unknown argument(s) {unknown}; allowed: {sorted(allowed)}")


def _make_layer(name: str, args: dict[str, Any], shape: tuple[int, ...], slots: _Slots, path: str) -> nn.Module:
    channels, conv_cfg, pool_cfg = shape[0], slots.conv, slots.pool
    if name == "conv":
        _check_args(
            name,
            args,
            ("out_channels", "expand", "kernel_size", "stride", "padding", "dilation", "groups", "bias", "width"),
            path,
        )
        if ("out_channels" in args) == ("expand" in args):
            raise ModelConfigError(
                f"{path} (conv): give out_channels, or expand (out_channels = expand × in_channels), not "
                + ("both" if "expand" in args else "neither")
            )
        groups = args.get("groups", 1)
        groups = channels if groups == "depthwise" else int(groups)
        if "expand" in args:
            out_channels = channels * args["expand"]
        else:  # `width: false`: a count the width multiplier must not change (allconv's class maps)
            out_channels = slots.channels(args["out_channels"]) if args.get("width", True) else args["out_channels"]
        return create_conv(
            conv_cfg,
            channels,
            int(out_channels),
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
            slots.channels(args["out_channels"]),
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
        _check_args(name, args, ("momentum", "eps", "learn_scale"), path)
        norm = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
        layer = norm(channels, momentum=args.get("momentum", 0.1), eps=args.get("eps", 1e-5))
        layer.weight.requires_grad_(bool(args.get("learn_scale", True)))  # airbench: scale fixed at 1
        return layer
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


def _label(name: str, layer: nn.Module) -> str:
    """The shape table's type: the config's layer name, and for the slots the conv=/pool= groups
    fill, which layer they got (``conv: DepthwiseSeparableConv2d``; ``conv: torch Conv2d`` for the twin)."""
    if name == "residual":
        return "residual (sum)"
    if name not in ("conv", "upconv", "pool", "global_pool"):
        return name
    chosen = layer[-1] if isinstance(layer, nn.Sequential) else layer  # (maxout: 1×1 conv, max, pool)
    backend = "torch " if type(chosen).__module__.startswith("torch.") else ""
    return f"{name}: {backend}{type(chosen).__name__}"


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


def _residual(args: dict[str, Any], item: Any, x: Tensor, slots: _Slots, path: str, rows: list[ShapeRow]):
    _check_args("residual", args, ("layers", "pre", "shortcut_norm"), path)
    # the override path of the body: `residual: [...]` (a list) or `residual: {layers: [...]}`
    listed = isinstance(item, Mapping) and isinstance(item["residual"], Sequence)
    body_path = f"{path}.residual" if listed else f"{path}.residual.layers"
    pre, z = _build(args.get("pre") or [], x, slots, f"{path}.residual.pre", rows)
    body, y = _build(args.get("layers") or [], z, slots, body_path, rows)
    shortcut: nn.Module = nn.Identity()
    if y.shape != x.shape:
        if y.dim() != 4 or x.shape[2] % y.shape[2] or x.shape[3] % y.shape[3]:
            raise ModelConfigError(
                f"{path} (residual): body maps {tuple(x.shape[1:])} to {tuple(y.shape[1:])}, "
                "which no 1×1 strided projection can match"
            )
        stride = x.shape[2] // y.shape[2]
        projection = create_conv(slots.conv, x.shape[1], y.shape[1], 1, stride, 0, bias=False)
        norm = [nn.BatchNorm2d(y.shape[1])] if args.get("shortcut_norm", True) else []
        shortcut = nn.Sequential(projection, *norm)
    return Residual(nn.Sequential(*body), shortcut, nn.Sequential(*pre) if pre else None)


def _blocks(name: str, args: dict[str, Any], path: str) -> list[tuple[str, str, dict[str, Any]]]:
    """``(block type, shape-table label, block args)`` of a block item, or of each block of a stage."""
    if name != "stage":
        return [(name, name, args)]
    args = dict(args)
    block, times = args.pop("block", None), args.pop("times", 1)
    if block not in BLOCKS:
        raise ModelConfigError(f"{path} (stage): block must be one of {sorted(BLOCKS)}, but got block={block!r}")
    if not isinstance(times, int) or times < 1:
        raise ModelConfigError(f"{path} (stage): times must be a positive int, but got times={times!r}")
    first = args.get("stride", 1)
    return [(block, f"{block} {i + 1}/{times}", {**args, "stride": first if i == 0 else 1}) for i in range(times)]


def _build(items: Sequence[Any], x: Tensor, slots: _Slots, prefix: str, rows: list[ShapeRow], single: bool = False):
    """``single``: ``items`` is one item that stands for ``prefix`` itself (a block that expands to one layer)."""
    layers: list[nn.Module] = []
    for index, item in enumerate(items):
        path = prefix if single else f"{prefix}.{index}"  # an override path: model.layers.0.conv.out_channels=48
        name, args = _split(item, path)
        if name == "stage" or name in BLOCKS:
            # a block is a layer list of its own; the table shows one row per block, at the item's path
            # (a stage's k-th block is model.layers.3[k] where the table's path cannot tell them apart)
            for k, (block, label, block_args) in enumerate(_blocks(name, args, path)):
                block_path = f"{path}[{k}]" if name == "stage" else path
                try:
                    expanded = expand_block(block, block_args)
                except (TypeError, ValueError) as error:
                    raise ModelConfigError(f"{path} ({name}): {error}") from error
                modules, y = _build(expanded, x, slots, block_path, [], single=len(expanded) == 1)
                layer = modules[0] if len(modules) == 1 else nn.Sequential(*modules)
                rows.append(ShapeRow(path, label, tuple(y.shape[1:]), sum(p.numel() for p in layer.parameters())))
                layers.append(layer)
                slots.paths[layer] = block_path
                x = y
            continue
        if name == "residual":
            layer: nn.Module = _residual(args, item, x, slots, path, rows)
        else:
            try:
                layer = _make_layer(name, args, tuple(x.shape[1:]), slots, path)
            except ModelConfigError:
                raise
            except (RuntimeError, ValueError, TypeError, KeyError) as error:
                raise ModelConfigError(f"{path} ({name}): {error}") from error
        y = _trace(layer, x, path, name)
        rows.append(ShapeRow(path, _label(name, layer), tuple(y.shape[1:]), sum(p.numel() for p in layer.parameters())))
        layers.append(layer)
        slots.paths[layer] = path
        x = y
    return layers, x


def build_model(
    model_cfg: Mapping[str, Any],
    conv_cfg: Mapping[str, Any],
    pool_cfg: Mapping[str, Any],
    input_shape: Sequence[int] = (3, 32, 32),
    prefix: str = "model.layers",
) -> tuple[nn.Sequential, list[ShapeRow]]:
    """Build ``model_cfg['layers']`` into an ``nn.Sequential`` (train mode) and its shape table.
    The model's ``layer_paths`` (``named_modules`` name → config path of each layer built) is what
    :func:`cnnlab.analysis.receptive_field.config_paths` labels the analyses with."""
    items = model_cfg.get("layers")
    if not items:
        raise ModelConfigError(f"{prefix}: a model needs a non-empty `layers` list")
    width = model_cfg.get("width", 1.0)
    if not isinstance(width, (int, float)) or isinstance(width, bool) or width <= 0:
        raise ModelConfigError(f"model.width: the width multiplier must be a positive number, but got {width!r}")
    rows: list[ShapeRow] = []
    dummy = torch.zeros(2, *input_shape)
    slots = _Slots(conv_cfg, pool_cfg, float(width))
    layers, _ = _build(items, dummy, slots, prefix, rows)
    model = nn.Sequential(*layers)
    model.layer_paths = {name: slots.paths[m] for name, m in model.named_modules() if m in slots.paths}
    model.train()
    return model, rows


def model_layer_rows(rows: Sequence[ShapeRow]) -> list[ShapeRow]:
    """The rows of the built model's own layers, one per module of its ``nn.Sequential`` and in
    its order (a stage's blocks each have one; the rows inside a residual body are left out)."""
    return [row for row in rows if row.path.split(".layers.", 1)[-1].isdigit()]


def format_shape_table(rows: Sequence[ShapeRow], input_shape: Sequence[int], profile: Sequence | None = None) -> str:
    """The shape table as aligned text: config path, layer, output shape, parameters; with a
    ``profile`` (one :class:`cnnlab.analysis.profile.LayerProfile` per module of the built model,
    see :func:`model_layer_rows`) also each layer's forward MFLOPs per image and its measured
    forward/backward milliseconds per batch (rows inside a residual body stay blank: the block's
    row holds them)."""
    layer_rows = model_layer_rows(rows)
    if profile is not None and len(profile) != len(layer_rows):
        raise ValueError(f"profile: got {len(profile)} entries for the model's {len(layer_rows)} layers; "
                         "one per module of the built model is needed")  # fmt: skip
    timed = {id(row): p for row, p in zip(layer_rows, profile or ())}
    extra = f" {'MFLOPs':>9} {'fwd ms':>8} {'bwd ms':>8}" if timed else ""
    lines = [
        f"{'layer':<28} {'type':<34} {'output shape':<18} {'params':>10}{extra}",
        f"{'input':<28} {'':<34} {tuple(input_shape)!s:<18} {'':>10}",
    ]
    for row in rows:
        line = f"{row.path:<28} {row.layer:<34} {row.output_shape!s:<18} {row.parameters:>10,}"
        if id(row) in timed:
            p = timed[id(row)]
            line += f" {p.flops / 1e6:>9.2f} {p.forward_ms:>8.2f} {p.backward_ms:>8.2f}"
        lines.append(line)
    total = sum(row.parameters for row in layer_rows)
    totals = ""
    if timed:
        flops, forward_ms, backward_ms = (sum(getattr(p, key) for p in timed.values())
                                          for key in ("flops", "forward_ms", "backward_ms"))  # fmt: skip
        totals = f" {flops / 1e6:>9.2f} {forward_ms:>8.2f} {backward_ms:>8.2f}"
    lines.append(f"{'total':<28} {'':<34} {'':<18} {total:>10,}{totals}")
    return "\n".join(lines)
