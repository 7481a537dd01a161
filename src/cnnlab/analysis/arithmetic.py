"""Convolution arithmetic, measured from the layer itself and drawn as Dumoulin & Visin's pictures.

Which input cells feed each output cell is found by probing the layer, never from a formula: a
copy of the layer (every weight 1, every bias 0) runs on a batch of unit impulses, one per input
cell, and output cell ``o`` depends on input cell ``u`` where impulse ``u`` changes it. For a
convolution the change counts the kernel taps that join ``u`` to ``o``, so for a transposed
convolution the taps landing on each output pixel sum to the overlap map behind checkerboard
artifacts (Odena et al., 2016): even when the kernel size is divisible by the stride, uneven
otherwise. The same probe serves every variant: dilated, strided, ``'same'``/``'tf_same'``,
transposed with ``output_padding``, pooling, fractional max pooling's pseudo-random windows.

The pictures: per output cell, the input grid (its padding dotted, the zero padding a window
reads in light blue) with the measured footprint, and the output grid filling cell by cell, as an
animated GIF and as one still of all frames; the output-size formula with the layer's numbers
filled in.
"""

from __future__ import annotations

import copy
import inspect
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .. import nn as cnn
from ..nn.geometry import geometry_of
from .receptive_field import first

__all__ = [
    "Footprint",
    "arithmetic_stills",
    "build_layer",
    "draw_frames",
    "draw_overlap",
    "format_footprint",
    "measure_footprint",
    "output_size_formula",
    "probe_size",
    "write_pictures",
]

# ``kind=`` of ``python -m cnnlab.analyze arithmetic``: the cnnlab layer it builds (1 channel in and out)
KINDS = {
    "conv": cnn.Conv2d,
    "conv_transpose": cnn.ConvTranspose2d,
    "max_pool": cnn.MaxPool2d,
    "avg_pool": cnn.AvgPool2d,
    "lp_pool": cnn.LPPool2d,
    "fractional_max_pool": cnn.FractionalMaxPool2d,
    "adaptive_avg_pool": cnn.AdaptiveAvgPool2d,
    "adaptive_max_pool": cnn.AdaptiveMaxPool2d,
    "blur_pool": cnn.BlurPool2d,
    "distance_weighted_pool": cnn.DistanceWeightedPool2d,
}
_CONVOLUTIONS = (nn.Conv2d, nn.ConvTranspose2d)  # cnnlab's subclass torch's


def _drawn(module: nn.Module) -> bool:
    """Whether a model's pictures show ``module``: a 2-D layer that slides windows (or adaptive
    pooling) over one input, by its own answer (:func:`cnnlab.nn.geometry.geometry_of`)."""
    geometry = geometry_of(module)
    if geometry == "global":
        return hasattr(module, "output_size")  # adaptive pooling (global pooling has one cell)
    takes = [p for p in inspect.signature(module.forward).parameters.values() if p.default is p.empty]
    return isinstance(geometry, tuple) and all(len(w.kernel) == 2 for w in geometry) and len(takes) == 1


# the attributes that decide a layer's footprint (channels and groups do not)
_GEOMETRY = (
    "kernel_size", "stride", "padding", "dilation", "output_padding", "output_size", "output_ratio", "ceil_mode"
)  # fmt: skip


def build_layer(kind: str, **arguments) -> nn.Module:
    """The cnnlab layer of ``kind`` (a key of :data:`KINDS`) with one input and output channel
    where it has channels, e.g. ``build_layer("conv", kernel_size=3, stride=2, padding=1)``."""
    if kind not in KINDS:
        raise ValueError(f"arithmetic: kind={kind!r} is not one of {sorted(KINDS)}")
    layer_class = KINDS[kind]
    if issubclass(layer_class, _CONVOLUTIONS):
        arguments = {"in_channels": 1, "out_channels": 1, **arguments}
    if layer_class is cnn.FractionalMaxPool2d and "output_size" not in arguments and "output_ratio" not in arguments:
        arguments = {"output_ratio": 0.5, **arguments}
    return layer_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in arguments.items()})


@dataclass(frozen=True)
class Footprint:
    """What one probe of a layer measured, for an ``H × W`` input.

    ``taps[i, j, u, v]``: how many kernel taps join input cell ``(u, v)`` to output cell
    ``(i, j)`` (convolutions), or 1 where the output's window holds the input cell (pooling);
    shape ``(H_out, W_out, H, W)``. ``padding``: ``(top, bottom, left, right)`` cells drawn
    around the input; ``counts_taps``: whether ``taps`` counts taps (a convolution's weights)."""

    layer: str
    taps: Tensor
    padding: tuple[int, int, int, int]
    counts_taps: bool
    transposed: bool
    kernel_stride: tuple[int, int] = (0, 1)  # a transposed convolution's (k, s) along the height, for its rule
    interior: tuple[slice, slice] = (slice(None), slice(None))  # output pixels that every tap can reach
    window: Tensor | None = None  # (H_out, W_out, H + top + bottom, W + left + right): padding cells included

    @property
    def input_size(self) -> tuple[int, int]:
        return int(self.taps.shape[2]), int(self.taps.shape[3])

    @property
    def output_size(self) -> tuple[int, int]:
        return int(self.taps.shape[0]), int(self.taps.shape[1])

    @property
    def overlap(self) -> Tensor:
        """``(H_out, W_out)``: the kernel taps landing on each output pixel (all input cells)."""
        return self.taps.sum((2, 3))


def _input_channels(layer: nn.Module) -> int:
    for name in ("in_channels", "channels"):
        if isinstance(getattr(layer, name, None), int):
            return int(getattr(layer, name))
    return 1


def _display_padding(layer: nn.Module, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The zero/−∞ cells around the input a direct convolution or pool reads, for the drawing."""
    if isinstance(layer, nn.ConvTranspose2d) or not hasattr(layer, "padding"):
        return (0, 0, 0, 0)
    padding = layer.padding
    kernel = _pair(getattr(layer, "kernel_size", 1))
    dilation = _pair(getattr(layer, "dilation", 1))
    stride = _pair(getattr(layer, "stride", 1) or kernel)
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding in ("same", "tf_same"):
        totals = []
        for n, k, s, d in zip(size, kernel, stride, dilation):
            reach = d * (k - 1) + 1
            total = d * (k - 1) if padding == "same" else max((math.ceil(n / s) - 1) * s + reach - n, 0)
            totals.append((total // 2, total - total // 2))
        return (*totals[0], *totals[1])
    ph, pw = _pair(padding)
    return (ph, ph, pw, pw)


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[-1]))


def _padded_window(layer: nn.Module, size: tuple[int, int], padding: tuple[int, int, int, int], taps: Tensor):
    """The whole window of each output, the zero padding it reads included: the same probe on a
    copy of ``layer`` without padding, over an input grown by the padding (so its cells are real);
    None where that does not reproduce the layer's output grid (reflect/circular padding, a
    ceil-mode window past the padding)."""
    top, bottom, left, right = padding
    if not any(padding) or getattr(layer, "padding_mode", "zeros") != "zeros":
        return None
    unpadded = copy.deepcopy(layer)
    unpadded.padding = 0 if isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)) else (0, 0)
    try:
        window = _probe(unpadded, (size[0] + top + bottom, size[1] + left + right), seed=0)
    except (RuntimeError, ValueError):
        return None
    real = window[:, :, top : top + size[0], left : left + size[1]]
    return window if window.shape[:2] == taps.shape[:2] and torch.equal(real.gt(0), taps.gt(0)) else None


@torch.no_grad()
def _probe(layer: nn.Module, size: tuple[int, int], seed: int) -> Tensor:
    """``(H_out, W_out, H, W)`` taps of ``layer`` (see :func:`measure_footprint`)."""
    height, width = size
    probe = copy.deepcopy(layer).float().eval()
    for name, parameter in probe.named_parameters():
        parameter.fill_(0.0 if name.endswith("bias") else 1.0)
    channels = _input_channels(probe)
    impulses = torch.zeros(height * width, channels, height, width)
    impulses[torch.arange(height * width), 0, torch.arange(height).repeat_interleave(width),
             torch.arange(width).repeat(height)] = 1.0  # fmt: skip
    if isinstance(probe, nn.FractionalMaxPool2d):  # one draw of the pseudo-random windows for every probe
        draw = torch.rand(1, channels, 2, generator=torch.Generator().manual_seed(seed))
        probe._random_samples = draw.expand(height * width + 1, -1, -1)
        baseline = probe(torch.cat([torch.zeros(1, channels, height, width), impulses]))
        changed = baseline[1:] - baseline[:1]
    else:
        changed = probe(impulses) - probe(torch.zeros(1, channels, height, width))
    changed = changed[:, 0]  # output channel 0 reads input channel 0 (groups, depthwise too)
    taps = changed.round() if isinstance(probe, _CONVOLUTIONS) else (changed.abs() > 1e-6).float()
    return taps.to(torch.int64).reshape(height, width, *changed.shape[-2:]).permute(2, 3, 0, 1).contiguous()


def measure_footprint(layer: nn.Module, size: int | tuple[int, int] = 5, seed: int = 0) -> Footprint:
    """Probe ``layer`` with one unit impulse per cell of an ``H × W`` input (channel 0) and read
    which output cells each one changes (see the module's docstring); the layer is copied, with
    every weight set to 1 and every bias to 0, so no tap cancels or hides another. For a layer
    with zero padding, ``window`` also holds the padding cells each output's window covers.

    Shape: ``taps``: ``(H_out, W_out, H, W)``.
    """
    size = _pair(size)
    taps = _probe(layer, size, seed)
    transposed = isinstance(layer, nn.ConvTranspose2d)
    padding = _display_padding(layer, size)
    return Footprint(
        layer=_title(layer),
        taps=taps,
        padding=padding,
        counts_taps=isinstance(layer, _CONVOLUTIONS),
        transposed=transposed,
        kernel_stride=(first(layer.kernel_size), first(layer.stride)) if transposed else (0, 1),
        interior=_interior(layer, size) if transposed else (slice(None), slice(None)),
        window=None if transposed else _padded_window(layer, size, padding, taps),
    )


def _interior(layer: nn.ConvTranspose2d, size: tuple[int, int]) -> tuple[slice, slice]:
    """Output pixels ``o`` of a transposed convolution whose every tap ``t`` would come from an
    input cell ``u = (o + p − t·d)/s`` inside ``[0, n)``: ``d(k − 1) − p ≤ o ≤ (n − 1)s − p``."""
    bounds = []
    for n, k, s, d, p in zip(size, _pair(layer.kernel_size), _pair(layer.stride), _pair(layer.dilation),
                             _pair(layer.padding)):  # fmt: skip
        bounds.append(slice(max(d * (k - 1) - p, 0), max((n - 1) * s - p + 1, 0)))
    return bounds[0], bounds[1]


def output_size_formula(layer: nn.Module, size: int) -> str:
    """The textbook output size along one axis with ``layer``'s numbers filled in, e.g.
    ``out = ⌊(in + 2p − d(k − 1) − 1)/s⌋ + 1 = ⌊(7 + 2·1 − 2·(3 − 1) − 1)/2⌋ + 1 = 3``."""
    k = first(getattr(layer, "kernel_size", 1))
    s = first(getattr(layer, "stride", None) or k)
    d = first(getattr(layer, "dilation", 1))
    if isinstance(layer, nn.ConvTranspose2d):
        p, a = first(layer.padding), first(layer.output_padding)
        out = (size - 1) * s - 2 * p + d * (k - 1) + a + 1
        return (f"out = (in − 1)·s − 2p + d·(k − 1) + output_padding + 1 = ({size} − 1)·{s} − 2·{p} + "
                f"{d}·({k} − 1) + {a} + 1 = {out}")  # fmt: skip
    if isinstance(layer, cnn.BlurPool2d):  # reflect padding of f − 1 cells in all
        out = (size - 1) // s + 1
        return f"out = ⌊(in − 1)/s⌋ + 1 = ⌊({size} − 1)/{s}⌋ + 1 = {out} (reflect padding: filter − 1 cells)"
    if isinstance(layer, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return f"out = output_size = {first(layer.output_size)} (windows ⌊i·in/out⌋ … ⌈(i + 1)·in/out⌉)"
    if isinstance(layer, nn.FractionalMaxPool2d):
        if layer.output_size is not None:
            return f"out = output_size = {first(layer.output_size)} (pseudo-random window starts)"
        ratio = layer.output_ratio[0] if isinstance(layer.output_ratio, tuple) else layer.output_ratio
        return f"out = ⌊in · output_ratio⌋ = ⌊{size} · {ratio:g}⌋ = {int(size * ratio)} (pseudo-random window starts)"
    padding = getattr(layer, "padding", 0)
    if padding == "tf_same":
        return f"out = ⌈in / s⌉ = ⌈{size} / {s}⌉ = {math.ceil(size / s)} (TensorFlow's SAME pads what that needs)"
    if padding == "same":
        return f"out = in = {size} ('same': {d * (k - 1)} padding cells in all, split before/after)"
    p = 0 if padding == "valid" else first(padding)
    ceil_mode = bool(getattr(layer, "ceil_mode", False))
    left, right = ("⌈", "⌉") if ceil_mode else ("⌊", "⌋")
    span = size + 2 * p - d * (k - 1) - 1
    out = (math.ceil(span / s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:  # torch's rule: the last window starts inside the input
        out -= 1
    dilation = f" − {d}·({k} − 1)" if d != 1 else f" − ({k} − 1)"
    filled = f"{left}({size} + 2·{p}{dilation} − 1)/{s}{right} + 1"
    return f"out = {left}(in + 2p − d·(k − 1) − 1)/s{right} + 1 = {filled} = {out}"


def format_footprint(footprint: Footprint, formula: str) -> str:
    """Text for the terminal: sizes, the formula, and for a transposed convolution its overlap
    map with the rule it shows."""
    (h, w), (ho, wo) = footprint.input_size, footprint.output_size
    lines = [footprint.layer, f"input {h}×{w} → output {ho}×{wo} (measured)", formula]
    per_output = footprint.taps.flatten(2).gt(0).sum(-1)
    lines.append(f"input cells per output cell: {int(per_output.min())}–{int(per_output.max())} (measured)")
    if footprint.transposed:
        overlap = footprint.overlap
        lines += ["", "kernel taps landing on each output pixel (the overlap behind checkerboard artifacts):"]
        lines += [" ".join(f"{int(v):>2}" for v in row) for row in overlap]
        lines.append(f"min {int(overlap.min())}, max {int(overlap.max())}{_overlap_rule(footprint)}")
    return "\n".join(lines)


def _overlap_rule(footprint: Footprint) -> str:
    """What the interior of the overlap map shows, and the rule behind it."""
    interior = footprint.overlap[footprint.interior]
    k, s = footprint.kernel_stride
    divisible = "" if not k else f" (kernel size {k} {'' if k % s == 0 else 'not '}divisible by the stride {s})"
    if interior.numel() == 0:
        return f"; no interior pixel at this input size{divisible}"
    if bool((interior == interior.min()).all()):
        return f"; the interior is even at {int(interior.min())}: no checkerboard{divisible}"
    return f"; the interior alternates {int(interior.min())}–{int(interior.max())}: a checkerboard{divisible}"


# ---------------------------------------------------------------------------------------------
# Drawing (Pillow): cell grids in the style of vdumoulin/conv_arithmetic
# ---------------------------------------------------------------------------------------------

_CELL = 26
_GAP = 40
_COLOURS = {
    "input": (236, 241, 247),
    "padding": (255, 255, 255),
    "reads_padding": (170, 196, 230),
    "footprint": (52, 107, 178),
    "output": (236, 241, 247),
    "done": (132, 190, 170),
    "current": (26, 120, 92),
    "line": (70, 70, 70),
    "text": (20, 20, 20),
}


def _font(size: int):
    from matplotlib import font_manager
    from PIL import ImageFont

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


def _grid(draw, origin: tuple[int, int], colours: list[list], dashed: bool = False) -> None:
    """Cells of ``_CELL`` pixels from ``origin``, ``colours[r][c]`` each (None: not drawn); dashed
    outlines for the padding."""
    x0, y0 = origin
    for r, row in enumerate(colours):
        for c, colour in enumerate(row):
            if colour is None:
                continue
            box = (x0 + c * _CELL, y0 + r * _CELL, x0 + (c + 1) * _CELL - 2, y0 + (r + 1) * _CELL - 2)
            draw.rectangle(box, fill=colour, outline=None if dashed else _COLOURS["line"])
            if dashed:  # the padding: a dotted outline
                for x in range(box[0], box[2], 4):
                    draw.point([(x, box[1]), (x, box[3])], fill=_COLOURS["line"])
                for y in range(box[1], box[3], 4):
                    draw.point([(box[0], y), (box[2], y)], fill=_COLOURS["line"])


def _canvas(title: str, subtitle: str, width: int, height: int):
    """A white image with the title and subtitle drawn; returns it and its drawing context."""
    from PIL import Image, ImageDraw

    font = _font(12)
    image = Image.new("RGB", (max(width, int(font.getlength(title)) + _GAP), height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((_GAP // 2, 6), title, fill=_COLOURS["text"], font=font)
    draw.text((_GAP // 2, 24), subtitle, fill=_COLOURS["text"], font=_font(10))
    return image, draw


_HEADER = 44  # pixels above the grids: title and subtitle


def draw_frames(footprint: Footprint, title: str) -> list:
    """One Pillow image per output cell (row-major): the padded input with the cells that feed
    that output (tap counts written where more than one tap lands), and the output filled so far."""
    (h, w), (ho, wo) = footprint.input_size, footprint.output_size
    top, bottom, left, right = footprint.padding
    rows_in, cols_in = h + top + bottom, w + left + right
    width = 2 * _GAP + (cols_in + wo) * _CELL + _GAP
    height = _HEADER + max(rows_in, ho) * _CELL + _GAP
    small = _font(10)
    inside = [[top <= r < top + h and left <= c < left + w for c in range(cols_in)] for r in range(rows_in)]
    out_origin = (_GAP + cols_in * _CELL + _GAP, _HEADER)
    frames = []
    for index in range(ho * wo):
        i, j = divmod(index, wo)
        note = " (light blue: the zero padding)" if footprint.window is not None else ""
        image, draw = _canvas(title, f"output ({i}, {j}) reads the blue input cells{note}", width, height)
        taps = footprint.taps[i, j]
        window = footprint.window[i, j] if footprint.window is not None else None
        padding = [[None if inside[r][c] else _COLOURS["reads_padding"] if window is not None and window[r, c] > 0
                    else _COLOURS["padding"] for c in range(cols_in)] for r in range(rows_in)]  # fmt: skip
        _grid(draw, (_GAP, _HEADER), padding, dashed=True)
        cells = [[_COLOURS["footprint"] if taps[r, c] > 0 else _COLOURS["input"] for c in range(w)] for r in range(h)]
        _grid(draw, (_GAP + left * _CELL, _HEADER + top * _CELL), cells)
        if footprint.counts_taps:
            for r, c in taps.gt(1).nonzero().tolist():
                x, y = _GAP + (left + c) * _CELL + 8, _HEADER + (top + r) * _CELL + 5
                draw.text((x, y), str(int(taps[r, c])), fill="white", font=small)
        done = [[_COLOURS["current"] if r * wo + c == index else _COLOURS["done"] if r * wo + c < index
                 else _COLOURS["output"] for c in range(wo)] for r in range(ho)]  # fmt: skip
        _grid(draw, out_origin, done)
        frames.append(image)
    return frames


def draw_overlap(footprint: Footprint, title: str):
    """The output grid shaded by how many kernel taps land on each pixel, the count written in it."""
    overlap = footprint.overlap
    ho, wo = overlap.shape
    low, high = int(overlap.min()), int(overlap.max())
    image, draw = _canvas(title, f"kernel taps per output pixel: {low}–{high}", 2 * _GAP + wo * _CELL,
                          _HEADER + ho * _CELL + _GAP)  # fmt: skip
    share = (overlap - low).float() / max(high - low, 1)
    base, dark = _COLOURS["input"], _COLOURS["footprint"]
    shades = [[tuple(int(b + (d - b) * float(t)) for b, d in zip(base, dark)) for t in row] for row in share]
    _grid(draw, (_GAP, _HEADER), shades)
    small = _font(10)
    for r in range(ho):
        for c in range(wo):
            colour = "white" if share[r, c] > 0.5 else _COLOURS["text"]
            draw.text((_GAP + c * _CELL + 8, _HEADER + r * _CELL + 5), str(int(overlap[r, c])), fill=colour, font=small)
    return image


def _still(frames: list, columns: int):
    """All frames on one sheet, ``columns`` to a row."""
    from PIL import Image

    width, height = frames[0].size
    rows = -(-len(frames) // columns)
    sheet = Image.new("RGB", (columns * width, rows * height), "white")
    for index, frame in enumerate(frames):
        sheet.paste(frame, ((index % columns) * width, (index // columns) * height))
    return sheet


def probe_size(layer: nn.Module) -> int:
    """An input just big enough to show ``layer`` at work: 3 for a transposed convolution (its
    output grows), else at least 5 and a window's reach plus a stride."""
    if isinstance(layer, nn.ConvTranspose2d):
        return 3
    kernel = first(getattr(layer, "kernel_size", 1))
    dilation = first(getattr(layer, "dilation", 1))
    stride = first(getattr(layer, "stride", None) or kernel)
    return max(5, dilation * (kernel - 1) + 1 + stride)


def _title(layer: nn.Module) -> str:
    text = repr(layer)
    if text.endswith("()") and hasattr(layer, "kernel_size"):  # (FractionalMaxPool2d's repr is bare)
        shown = {key: getattr(layer, key, None) for key in ("kernel_size", "output_size", "output_ratio")}
        text = f"{type(layer).__name__}(" + ", ".join(f"{k}={v}" for k, v in shown.items() if v is not None) + ")"
    return text if len(text) < 90 else type(layer).__name__


def arithmetic_stills(model: nn.Module) -> dict[str, list]:
    """For each distinct convolution/pooling geometry among ``model``'s layers (the first layer
    of each, by config path): its still (all frames) and, for a transposed convolution, its
    overlap map, as Pillow images: ``{path: [still, (overlap)]}``."""
    from .receptive_field import config_paths

    pictures: dict[str, list] = {}
    seen: set[str] = set()
    for module, path in config_paths(model).items():
        if not _drawn(module):
            continue
        key = type(module).__name__ + "".join(str(getattr(module, a, None)) for a in _GEOMETRY)
        if key in seen:
            continue
        seen.add(key)
        footprint = measure_footprint(module, probe_size(module))
        frames = draw_frames(footprint, footprint.layer)
        pictures[path] = [_still(frames, footprint.output_size[1])]
        if footprint.transposed:
            pictures[path].append(draw_overlap(footprint, footprint.layer))
    return pictures


def write_pictures(
    layer: nn.Module, out: Path, size: int | None = None, name: str = "arithmetic"
) -> tuple[str, list[Path]]:
    """Measure ``layer`` on a ``size × size`` input (default :func:`probe_size`) and write
    ``{name}.gif`` (one frame per output cell), ``{name}.png`` (all frames) and, for a transposed
    convolution, ``{name}_overlap.png`` into ``out``; returns the text report and the files."""
    size = probe_size(layer) if size is None else size
    footprint = measure_footprint(layer, size)
    if footprint.taps.numel() == 0:
        raise ValueError(f"{footprint.layer} has no output for a {size}×{size} input; give a larger size=")
    formula = output_size_formula(layer, size)
    frames = draw_frames(footprint, footprint.layer)
    out.mkdir(parents=True, exist_ok=True)
    gif, png = out / f"{name}.gif", out / f"{name}.png"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=600, loop=0, optimize=True)
    _still(frames, footprint.output_size[1]).save(png, optimize=True)
    files = [gif, png]
    if footprint.transposed:
        overlap = out / f"{name}_overlap.png"
        draw_overlap(footprint, footprint.layer).save(overlap, optimize=True)
        files.append(overlap)
    return format_footprint(footprint, formula), files
