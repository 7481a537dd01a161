"""Swap every supported layer of a model for its cnnlab or torch twin, keeping its state.

What moves to the new layer is the old layer's state itself, not a copy: the same ``Parameter``
objects (so an optimizer built before the conversion still updates the model, and
``requires_grad`` stays as it was), buffers, training mode, hooks, and parametrizations
(``torch.nn.utils.parametrize``: ``weight_norm``, ``spectral_norm``, ``orthogonal``, …; the
older hook-based ``torch.nn.utils.weight_norm``/``spectral_norm`` move with the hooks). What it
cannot convert it names in one ``UserWarning`` (or raises, with ``strict=True``): subclasses of a
conv/pool class with their own ``forward``, torch conv/pool
layers without a cnnlab twin, and ``forward`` methods that call ``torch.nn.functional`` conv/pool
functions themselves. Those calls run on cnnlab's arithmetic under :func:`functional_mode`.
"""

from __future__ import annotations

import copy
import functools
import inspect
import re
import warnings
from typing import Literal

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.overrides import TorchFunctionMode

from . import functional
from .twins import EXTENSIONS, LayerPair, cnnlab_twin, torch_twin

__all__ = ["ConversionError", "convert", "functional_mode"]

_TORCH_CONV_POOL = (
    nn.modules.conv._ConvNd,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._LPPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._MaxUnpoolNd,
    nn.FractionalMaxPool2d,
    nn.FractionalMaxPool3d,
)

# the hook dictionaries of nn.Module, shared (not copied) so existing hook handles still remove them
_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)

# a torch.nn.functional conv/pool function named in a forward's source, under any of its usual prefixes
_FUNCTIONAL_CALL = re.compile(
    r"\b(?:F|functional|torch)\.(conv[123]d|conv_transpose[123]d|(?:adaptive_)?(?:max|avg)_pool[123]d"
    r"|lp_pool[123]d|max_unpool[123]d|fractional_max_pool[23]d)\("
)


class ConversionError(RuntimeError):
    """Raised by ``convert(..., strict=True)`` when some conv/pool work would stay on torch."""


def _base_class(layer: nn.Module) -> type[nn.Module]:
    """The library class a layer computes as: parametrized layers are instances of a generated
    subclass, and a subclass that keeps its base's ``forward`` (torchvision's ``Conv3DSimple``
    only adds a static method) computes exactly as that base."""
    cls = type(layer)
    if parametrize.is_parametrized(layer):
        cls = cls.__bases__[0]
    library = next((c for c in cls.__mro__ if c.__module__.startswith(("torch.nn.modules", "cnnlab.nn"))), cls)
    same = all(getattr(cls, name, None) is getattr(library, name, None) for name in ("forward", "_conv_forward"))
    return library if same else cls


def _rebuild(layer: nn.Module, pair: LayerPair, to: str) -> nn.Module:
    """A new ``to``-side layer that takes over ``layer``'s parameters, buffers, hooks and parametrizations."""
    target = pair.cnnlab if to == "cnnlab" else pair.torch
    kwargs = {name: getattr(layer, name) for name in pair.arguments}
    if "bias" in kwargs:
        kwargs["bias"] = kwargs["bias"] is not None
    # (torchvision's layers take no device/dtype: their fresh parameters are replaced below anyway)
    accepts_factory = "device" in inspect.signature(target.__init__).parameters
    new = target(**kwargs, **(_factory_kwargs(layer) if accepts_factory else {}))
    if isinstance(layer, nn.modules.lazy.LazyModuleMixin) and layer.has_uninitialized_params():
        return new.train(layer.training)  # nothing to carry yet: its twin infers in_channels itself
    for name in list(new._parameters):  # the layer's own tensors replace the fresh ones
        del new._parameters[name]
    new._parameters.update(layer._parameters)
    new._buffers.update(layer._buffers)
    new._non_persistent_buffers_set = set(layer._non_persistent_buffers_set)
    for name, value in vars(layer).items():  # hook-based weight_norm keeps its weight as a plain attribute
        if isinstance(value, torch.Tensor) and name not in vars(new):
            setattr(new, name, value)
    for name in (*_HOOK_DICTS, "_is_full_backward_hook"):
        if hasattr(layer, name):
            setattr(new, name, getattr(layer, name))
    if parametrize.is_parametrized(layer):
        _move_parametrizations(layer, new)
    new.train(layer.training)
    return new


def _factory_kwargs(layer: nn.Module) -> dict:
    tensor = next(layer.parameters(), None)
    return {} if tensor is None else {"device": tensor.device, "dtype": tensor.dtype}


def _move_parametrizations(layer: nn.Module, new: nn.Module) -> None:
    """Give ``new`` ``layer``'s parametrizations (the same ``ParametrizationList`` modules, holding
    the original Parameters), as ``register_parametrization`` would have set them up."""
    parametrize._inject_new_class(new)
    new.parametrizations = layer.parametrizations
    for name in layer.parametrizations:
        new._parameters.pop(name, None)
        parametrize._inject_property(new, name)


def _beyond_torch(layer: nn.Module) -> str | None:
    """What a cnnlab layer computes that torch.nn cannot (an extension layer of
    :data:`cnnlab.twins.EXTENSIONS`, ``padding='tf_same'``, a transposed convolution's non-zero
    ``padding_mode``); ``None`` if nothing."""
    if type(layer) in EXTENSIONS:
        return EXTENSIONS[type(layer)]
    if getattr(layer, "padding", None) == "tf_same":
        return "padding='tf_same'"
    if isinstance(layer, nn.modules.conv._ConvTransposeNd) and layer.padding_mode != "zeros":
        return f"padding_mode={layer.padding_mode!r}"
    return None


def _unconverted_reason(module: nn.Module, to: str) -> str | None:
    """Why a torch conv/pool module (going to cnnlab) stays on torch, or ``None`` if it is not one."""
    if (
        to != "cnnlab"
        or not isinstance(module, _TORCH_CONV_POOL)
        or _base_class(module).__module__.startswith("cnnlab")
    ):
        return None
    if cnnlab_twin(_base_class(module)) is None:
        torch_class = next(cls for cls in type(module).__mro__ if cls.__module__.startswith("torch.nn"))
        if type(module) is not torch_class:
            return f"{type(module).__name__} subclasses {torch_class.__name__} (only exact classes are swapped)"
        return f"{torch_class.__name__} has no cnnlab twin"
    return None


def _functional_calls(module: nn.Module) -> list[str]:
    """The torch.nn.functional conv/pool functions that the code of ``module``'s class calls by
    name (torchvision's models call them from ``forward`` or helpers such as ``_forward_impl``)."""
    cls = type(module)
    if cls.__module__.startswith(("torch.nn", "cnnlab")):
        return []
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return []
    return sorted(set(_FUNCTIONAL_CALL.findall(source)))


def convert(
    module: nn.Module, to: Literal["cnnlab", "torch"] = "cnnlab", inplace: bool = False, strict: bool = False
) -> nn.Module:
    """Return ``module`` with every layer listed in :data:`cnnlab.twins.LAYER_PAIRS` replaced by
    its counterpart, recursively, keeping parameters (the same objects), buffers, device, dtype,
    mode, hooks and parametrizations.

    Subclasses are swapped when they keep their base's ``forward`` (one with its own is left alone). What stays
    on torch is reported in one ``UserWarning``, or raised as :class:`ConversionError` with
    ``strict=True``. With ``inplace=False`` the modules are new but the Parameters and buffers are
    ``module``'s own, so an optimizer built on either model trains both (``copy.deepcopy`` the
    model first for an independent one).

    Example:
        >>> import torchvision
        >>> model = convert(torchvision.models.resnet18(), to="cnnlab")
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # the same Parameters as before
    """
    if to not in ("cnnlab", "torch"):
        raise ValueError(f"convert: to must be 'cnnlab' or 'torch', but got to={to!r}")
    if not inplace:  # a new module tree around the same Parameters and buffers
        shared = {id(t): t for t in (*module.parameters(), *module.buffers())}
        for sub in module.modules():
            # tensors kept as plain attributes (hook-based weight_norm's weight), and the hook
            # dictionaries, so the handles that registered hooks still remove them
            shared.update({id(t): t for t in vars(sub).values() if isinstance(t, torch.Tensor)})
            shared.update({id(hooks): hooks for hooks in (getattr(sub, name, None) for name in _HOOK_DICTS) if hooks})
        module = copy.deepcopy(module, memo=shared)
    left: list[str] = []
    converted = _convert(module, to, "", left)
    if left:
        stays = "torch" if to == "cnnlab" else "cnnlab"
        message = f"convert: this conv/pool work stays on {stays}:\n  " + "\n  ".join(left)
        if strict:
            raise ConversionError(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    return converted


def _convert(module: nn.Module, to: str, path: str, left: list[str]) -> nn.Module:
    find = cnnlab_twin if to == "cnnlab" else torch_twin
    pair = find(_base_class(module))
    where = path or "(root)"
    extension = _beyond_torch(module) if to == "torch" else None
    if extension is not None:
        left.append(f"{where}: {type(module).__name__} uses {extension}, which torch.nn lacks")
        return module
    if pair is not None:
        return _rebuild(module, pair, to)
    reason = _unconverted_reason(module, to)
    if reason is not None:
        left.append(f"{where}: {reason}")
    if to == "cnnlab":
        calls = _functional_calls(module)
        if calls:
            left.append(
                f"{where}: {type(module).__name__} calls torch.nn.functional "
                f"{', '.join(calls)} itself; run it under cnnlab.functional_mode()"
            )
    for name, child in module.named_children():
        setattr(module, name, _convert(child, to, f"{path}.{name}" if path else name, left))
    return module


_ALL_DIMS_OPS = ("conv", "conv_transpose", "max_pool", "avg_pool", "lp_pool", "adaptive_avg_pool", "adaptive_max_pool",
                 "max_unpool")  # fmt: skip


def _routes() -> dict:
    """torch's conv/pool functions (as ``__torch_function__`` sees them) → cnnlab's."""
    F = torch.nn.functional
    routes = {}
    for name in (
        *(f"{op}{n}d" for n in (1, 2, 3) for op in _ALL_DIMS_OPS),
        "fractional_max_pool2d",
        "fractional_max_pool3d",
        "conv_tbc",
    ):
        ours = getattr(functional, name)
        for theirs in (getattr(F, name, None), getattr(torch, name, None), getattr(torch._C._nn, name, None)):
            if theirs is not None:
                routes[theirs] = ours
    # torch.nn.functional's max_pool*d, adaptive_max_pool*d and fractional_max_pool*d dispatch on
    # return_indices to these two
    with_indices = [f"{op}{n}d" for n in (1, 2, 3) for op in ("max_pool", "adaptive_max_pool")]
    for name in (*with_indices, "fractional_max_pool2d", "fractional_max_pool3d"):
        ours = getattr(functional, name)
        routes[getattr(F, f"_{name}")] = ours
        routes[getattr(F, f"{name}_with_indices")] = functools.partial(ours, return_indices=True)
    return routes


class functional_mode(TorchFunctionMode):  # noqa: N801 - used as a context manager, like torch.no_grad
    """Route calls of ``torch.nn.functional`` conv/pool functions (and ``torch.nn`` conv/pool
    layers, which call them) to cnnlab's, for code that calls them itself::

        model = cnnlab.convert(torchvision.models.inception_v3(init_weights=False), to="cnnlab")
        with cnnlab.functional_mode():
            logits = model(images)  # the max pooling Inception's forward calls itself runs on cnnlab too
    """

    _table: dict | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if functional_mode._table is None:
            functional_mode._table = _routes()
        route = functional_mode._table.get(func, func)
        return route(*args, **(kwargs or {}))
