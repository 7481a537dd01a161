"""Swap every supported layer of a model for its cnnlab or torch twin, keeping its state.

What moves to the new layer is the old layer's state itself, not a copy: the same ``Parameter``
objects (so an optimizer built before the conversion still updates the model, and
``requires_grad`` stays as it was), buffers, training mode, hooks, and parametrizations
(``torch.nn.utils.parametrize``: ``weight_norm``, ``spectral_norm``, ``orthogonal``, …; the
older hook-based ``torch.nn.utils.weight_norm``/``spectral_norm`` move with the hooks);
``copy=True`` gives the new model copies instead, for A/B comparisons. What it cannot convert it
names in one ``UserWarning``: subclasses of a conv/pool class with their own ``forward``, torch
conv/pool layers without a cnnlab twin, ``forward`` methods that call ``torch.nn.functional``
conv/pool functions themselves (those calls run on cnnlab's arithmetic under
:func:`functional_mode`), and, towards torch, cnnlab layers torch.nn has no twin for.

``strict=True`` makes the conversion a guarantee or an error (:class:`ConversionError`, listing
what stays): towards cnnlab it runs the converted model once on ``example_inputs`` and fails if
torch dispatched any convolution or pooling op (whatever the source calls it: ``from
torch.nn.functional import max_pool2d``, an alias, a helper function), naming the module each ran
in; towards torch it fails if any module of cnnlab's is left.
"""

from __future__ import annotations

import functools
import inspect
import re
import warnings
from collections.abc import Sequence
from copy import deepcopy
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from . import functional
from .twins import EXTENSIONS, LayerPair, cnnlab_twin, torch_twin

__all__ = ["ConversionError", "TorchConvPoolOps", "convert", "functional_mode"]

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
    module: nn.Module,
    to: Literal["cnnlab", "torch"] = "cnnlab",
    inplace: bool = False,
    strict: bool = False,
    *,
    copy: bool = False,
    example_inputs: Sequence[Any] | None = None,
) -> nn.Module:
    """Return ``module`` with every layer listed in :func:`cnnlab.twins.layer_pairs` replaced by
    its counterpart, recursively, keeping parameters (the same objects), buffers, device, dtype,
    mode, hooks and parametrizations.

    Args:
        module: the model (or layer) to convert.
        to: ``"cnnlab"`` (torch.nn layers → cnnlab's) or ``"torch"`` (back, e.g. before
            ``torch.export`` for deployment: the exported graph then holds aten's conv/pool ops).
        inplace: convert ``module`` itself. With ``inplace=False`` the module tree is new but,
            unless ``copy``, its Parameters and buffers are ``module``'s own: an optimizer built on
            either model trains both.
        strict: raise :class:`ConversionError` instead of warning about what stays, and check by
            running the model (see the module docstring); towards cnnlab this needs ``example_inputs``.
        copy: (keyword-only) the new model gets copies of the Parameters, buffers and hooks, so
            the two models train independently (A/B comparisons); not with ``inplace``.
        example_inputs: (keyword-only) positional arguments of one forward, for ``strict``.

    Subclasses are swapped when they keep their base's ``forward`` (one with its own is left alone).

    Example:
        >>> import torchvision
        >>> model = convert(torchvision.models.resnet18(), to="cnnlab")
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # the same Parameters as before
        >>> twin = convert(model, to="torch", copy=True)  # an independent torch.nn model to compare with
    """
    if to not in ("cnnlab", "torch"):
        raise ValueError(f"convert: to must be 'cnnlab' or 'torch', but got to={to!r}")
    if copy and inplace:
        raise ValueError("convert: copy=True makes a new model; it cannot be combined with inplace=True")
    if strict and to == "cnnlab" and example_inputs is None:
        raise ValueError(
            "convert: strict=True checks the converted model by running it once; pass example_inputs=(x,), "
            "the positional arguments of one forward"
        )
    if copy:
        module = deepcopy(module)
    elif not inplace:  # a new module tree around the same Parameters and buffers
        shared = {id(t): t for t in (*module.parameters(), *module.buffers())}
        for sub in module.modules():
            # tensors kept as plain attributes (hook-based weight_norm's weight), and the hook
            # dictionaries, so the handles that registered hooks still remove them
            shared.update({id(t): t for t in vars(sub).values() if isinstance(t, torch.Tensor)})
            shared.update({id(hooks): hooks for hooks in (getattr(sub, name, None) for name in _HOOK_DICTS) if hooks})
        module = deepcopy(module, memo=shared)
    left: list[str] = []
    converted = _convert(module, to, "", left)
    if strict and to == "cnnlab" and not left:  # (what the source already shows is reported without a run)
        left += _torch_ops_run(converted, example_inputs)
    if to == "torch":  # what still needs cnnlab, where not reported already
        reported = {line.split(":")[0] for line in left}
        left += [
            f"{name or '(root)'}: {type(sub).__name__} is cnnlab's (torch.nn has no twin)"
            for name, sub in cnnlab_layers(converted)
            if (name or "(root)") not in reported
        ]
    if left:
        stays = "torch" if to == "cnnlab" else "cnnlab"
        message = f"convert: this conv/pool work stays on {stays}:\n  " + "\n  ".join(dict.fromkeys(left))
        if strict:
            raise ConversionError(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    return converted


class TorchConvPoolOps(TorchDispatchMode):
    """Records the aten ops dispatched inside the block (``seen``) and which of them are
    convolution or pooling ops (``conv_pool``, by name: aten's ``convolution``,
    ``mkldnn_convolution``, ``max_pool2d_with_indices``, ``_adaptive_avg_pool2d``, …)."""

    PATTERN = re.compile(r"conv(olution|_|\d)|pool", re.IGNORECASE)

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()
        self.conv_pool: list[tuple[str, str]] = []  # (op, the innermost module running) in order
        self.modules: list[str] = []  # the stack of running modules' paths, kept by the caller's hooks

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        self.seen.add(name)
        if self.PATTERN.search(name):
            self.conv_pool.append((name, self.modules[-1] if self.modules else "(outside any module)"))
        return func(*args, **(kwargs or {}))

    @property
    def forbidden(self) -> list[str]:
        """The convolution and pooling ops that ran, sorted."""
        return sorted({op for op, _ in self.conv_pool})


def _torch_ops_run(model: nn.Module, example_inputs: Sequence[Any]) -> list[str]:
    """Run ``model`` once under :class:`TorchConvPoolOps`: one line per module in which torch
    dispatched a convolution or pooling op."""
    recorder = TorchConvPoolOps()
    paths = {sub: name or "(root)" for name, sub in model.named_modules()}

    def enter(sub, args):
        recorder.modules.append(f"{paths[sub]}: {type(sub).__name__}")

    def leave(sub, args, output):
        recorder.modules.pop()

    handles = [sub.register_forward_pre_hook(enter) for sub in paths]
    handles += [sub.register_forward_hook(leave, always_call=True) for sub in paths]
    try:
        with torch.no_grad(), recorder:
            model(*example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    ops: dict[str, list[str]] = {}
    for op, where in recorder.conv_pool:
        ops.setdefault(where, []).append(op)
    return [f"{where} runs torch's {', '.join(dict.fromkeys(names))}" for where, names in ops.items()]


def cnnlab_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers of ``model`` whose class is cnnlab.nn's, outermost only (one per subtree)."""
    found: list[tuple[str, nn.Module]] = []
    for name, sub in model.named_modules():
        inside = any(outer == "" or name.startswith(f"{outer}.") for outer, _ in found)
        if type(sub).__module__.startswith("cnnlab.nn") and not inside:
            found.append((name, sub))
    return found


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
