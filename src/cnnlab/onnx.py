"""ONNX export that keeps ONNX's own operators for cnnlab's layers.

``torch.onnx.export`` of a cnnlab model records each layer's traceable form (strided slices,
``matmul``, reductions: :mod:`cnnlab.functional._tracing`): correct, but a resnet18 becomes 512
nodes without one ``Conv``, runs about 3× slower in onnxruntime, and leaves nothing for BatchNorm
folding, quantisers or TensorRT-style compilers to find. :func:`export` translates first: every
layer with a twin (:func:`cnnlab.twins.layer_pairs`) is exported as the twin, whose
ONNX form is the standard operator (``Conv``, ``ConvTranspose``, ``MaxPool``, ``AveragePool``,
``LpPool``, ``GlobalAveragePool``, ``MaxUnpool``, …) with the same weights, so the graph is the one
the ``torch.nn`` model would give. What ONNX has no operator for (``BlurPool2d``,
``DistanceWeightedPool2d``, ``padding="tf_same"``, a transposed convolution's non-zero
``padding_mode``, calls of :mod:`cnnlab.functional` in a ``forward``) keeps its traceable
decomposition, and the warning of :func:`cnnlab.convert` names it.

Example:
    >>> import cnnlab.onnx
    >>> from cnnlab.nn import Conv2d
    >>> model = Conv2d(3, 8, 3)
    >>> program = cnnlab.onnx.export(model.eval(), (torch.randn(1, 3, 16, 16),), verbose=False)
    >>> sorted({node.op_type for node in program.model_proto.graph.node})
    ['Conv']
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .convert import cnnlab_layers, convert

__all__ = ["export"]


def export(model: nn.Module, args: Sequence[Any], f: Any = None, **kwargs: Any) -> Any:
    """``torch.onnx.export(model, args, f, **kwargs)`` with cnnlab's layers exported as ONNX's
    standard operators (see the module docstring). ``model`` itself is not changed: the export
    runs on a converted view of it that shares its Parameters. Returns what ``torch.onnx.export``
    returns (an ``ONNXProgram`` with the default dynamo exporter).

    Args:
        model: a model holding cnnlab layers (or any ``nn.Module``).
        args: the positional inputs of one forward, as for ``torch.onnx.export``.
        f: file name or file-like object to write the model to (``None``: only return it).
        **kwargs: passed on to ``torch.onnx.export`` (``dynamic_shapes``, ``input_names``, …).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="convert: this conv/pool work stays on cnnlab")
        standard = convert(model, to="torch")
    kept = [f"{name or '(root)'}: {type(layer).__name__}" for name, layer in cnnlab_layers(standard)]
    if kept:
        warnings.warn(
            "cnnlab.onnx.export: no ONNX operator for these layers; they are exported as their traceable "
            "decomposition:\n  " + "\n  ".join(kept),
            UserWarning,
            stacklevel=2,
        )
    return torch.onnx.export(standard, tuple(args), f, **kwargs)
