"""How a layer's outputs read its input: the one question every analysis asks a layer.

A cnnlab layer that torch lacks answers it itself, with a ``window_geometry()`` method; torch's
own layers (and cnnlab's, which subclass them) are answered here from their attributes, so a
``torch.nn`` twin or a converted torchvision model is measured the same way. :func:`geometry_of`
asks a module and returns one of:

- a tuple of :class:`Window` (applied in order: a max pool then a blur is two windows);
- ``"global"``: every output sees the whole input (global and adaptive pooling);
- ``"pointwise"``: each output position reads only its own input position (activations,
  normalisation, dropout, 1×1 channel maxima, flatten and linear heads);
- :class:`NotAnalysed` with the reason: a leaf module that does not say (a layer of yours:
  give it a ``window_geometry()`` method); analyses show it as a named row, never as pointwise;
- ``None``: a container, whose children (traced in the order the forward calls them) answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

__all__ = ["Geometry", "NotAnalysed", "Window", "geometry_of"]


@dataclass(frozen=True)
class Window:
    """One sliding window along each spatial axis (first axis first): ``kernel`` taps ``dilation``
    apart, windows ``stride`` apart (a mean stride for pseudo-random ones), ``padding`` cells
    before the first. ``transposed``: the adjoint, each input spreading over a window of outputs
    (the stride divides the output spacing). ``note``: what the numbers leave out (e.g. offsets
    learned per position)."""

    kernel: tuple[int, ...]
    stride: tuple[float, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    transposed: bool = False
    note: str = ""

    @property
    def effective(self) -> tuple[int, ...]:
        """``d·(k − 1) + 1`` per axis: the span one window covers."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))


@dataclass(frozen=True)
class NotAnalysed:
    """A layer the analyses cannot follow, and why."""

    reason: str


Geometry = tuple[Window, ...] | Literal["global", "pointwise"] | NotAnalysed


def _axes(value, dims: int) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims


def window(kernel, stride, padding, dilation, dims: int, **extra) -> tuple[Window]:
    """One :class:`Window` from int-or-tuple layer arguments (``stride=None``: the kernel)."""
    kernel = _axes(kernel, dims)
    stride = kernel if stride is None else _axes(stride, dims)
    return (Window(kernel, stride, _axes(padding, dims), _axes(dilation, dims), **extra),)


def _conv(module: nn.modules.conv._ConvNd) -> tuple[Window]:
    dims, padding = len(module.kernel_size), module.padding
    if isinstance(padding, str):  # 'valid', or 'same' (and cnnlab's 'tf_same'): the size kept at stride 1
        reach = [d * (k - 1) // 2 for k, d in zip(module.kernel_size, module.dilation)]
        padding = tuple(0 if padding == "valid" else r for r in reach)
    transposed = isinstance(module, nn.modules.conv._ConvTransposeNd)
    return window(module.kernel_size, module.stride, padding, module.dilation, dims, transposed=transposed)


def _dims(module: nn.Module) -> int:
    return int(type(module).__name__[-2])  # MaxPool2d → 2


def _pool(module: nn.Module) -> tuple[Window]:
    padding = getattr(module, "padding", 0)
    return window(module.kernel_size, module.stride, padding, getattr(module, "dilation", 1), _dims(module))


def _fractional(module: nn.Module) -> tuple[Window]:
    ratio = module.output_ratio
    stride = 1 / ratio if isinstance(ratio, float) else tuple(1 / r for r in ratio) if ratio else None
    note = "pseudo-random window starts" + ("" if stride else ", spacing set by output_size")
    return window(module.kernel_size, stride or 1, 0, 1, _dims(module), note=note)


# torch's layer classes (and cnnlab's, which subclass them) → their geometry, first match wins
_TORCH_RULES: tuple = (
    ((nn.modules.conv._ConvNd,), _conv),
    ((nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d), _pool),
    ((nn.LPPool1d, nn.LPPool2d, nn.LPPool3d), _pool),
    ((nn.FractionalMaxPool2d, nn.FractionalMaxPool3d), _fractional),
    ((nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd), lambda module: "global"),
    ((nn.modules.pooling._MaxUnpoolNd,), lambda module: NotAnalysed("unpooling places values where indices say")),
)
# torch's modules whose every class acts position by position
_POINTWISE_MODULES = {f"torch.nn.modules.{name}" for name in (
    "activation", "batchnorm", "instancenorm", "normalization", "dropout", "linear", "flatten")}  # fmt: skip


def geometry_of(module: nn.Module) -> Geometry | None:
    """What ``module`` answers (see the module docstring); ``None`` for a container."""
    answer = getattr(module, "window_geometry", None)
    if callable(answer):
        return answer()
    for classes, rule in _TORCH_RULES:
        if isinstance(module, classes):
            return rule(module)
    if type(module).__module__ in _POINTWISE_MODULES or (isinstance(module, nn.Sequential) and not len(module)):
        return "pointwise"  # (an empty Sequential is the identity)
    if next(module.children(), None) is None:
        return NotAnalysed(f"{type(module).__name__} does not say how its outputs read its input "
                           "(give it a window_geometry() method: cnnlab.nn.geometry)")  # fmt: skip
    return None
