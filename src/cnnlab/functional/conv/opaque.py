"""cnnlab's eager convolution kernels as ``torch.library`` custom ops, for ``torch.compile``.

Inductor cannot see through the eager ``autograd.Function``s (chunked im2col, oneDNN's matmul
primitive), and the traceable form it can see through is slower: its float32 GEMM is MKL's, and it
materialises the column matrix of the whole batch (``docs/benchmarks.md``). So under
``torch.compile`` (and only there: ``torch.export``, ONNX, ``jit.trace`` and ``torch.func`` take the
traceable form, which they can record op by op) an algorithm whose record says ``compiled=True``
runs as three opaque custom ops, one per product, each with a fake (meta) implementation giving
its output's shape and memory format, and autograd formulas that call the other ops:

- ``cnnlab::correlate2d(x, w)`` → ``y``, with ``∂x = correlate2d_input_grad(∂y, w)`` and
  ``∂w = correlate2d_weight_grad(x, ∂y)``;
- ``cnnlab::correlate2d_input_grad(g, w)`` (the transposed convolution's forward) →
  ``∂g = correlate2d(∂out, w)``, ``∂w = correlate2d_weight_grad(∂out, g)``.

The names say "correlate" so no tool mistakes them for torch's convolution ops.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..backends import memory_format_of
from .algorithms import ALGORITHMS
from .base import ConvCall, Geometry, nhwc, output_size, to_nchw

__all__ = ["conv2d", "conv_transpose2d"]


def _format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


@torch.library.custom_op("cnnlab::correlate2d", mutates_args=())
def _correlate(
    x: Tensor,
    weight: Tensor,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    algorithm: str,
    channels_last: bool,
) -> Tensor:
    geometry = Geometry.of(weight, stride, dilation, groups)
    out_size = output_size(x.shape[2:], geometry, padding)
    with torch.no_grad():  # the products pick oneDNN only outside autograd recording
        out = ALGORITHMS[algorithm].products.forward(nhwc(x), weight, geometry, tuple(padding), out_size)
    return to_nchw(out, _format(channels_last))


@_correlate.register_fake
def _(x, weight, stride, padding, dilation, groups, algorithm, channels_last):
    out_size = output_size(x.shape[2:], Geometry.of(weight, stride, dilation, groups), padding)
    return x.new_empty(x.shape[0], weight.shape[0], *out_size).contiguous(memory_format=_format(channels_last))


@torch.library.custom_op("cnnlab::correlate2d_input_grad", mutates_args=())
def _input_grad(
    grad: Tensor,
    weight: Tensor,
    input_size: list[int],
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    algorithm: str,
    channels_last: bool,
) -> Tensor:
    geometry = Geometry.of(weight, stride, dilation, groups)
    with torch.no_grad():
        out = ALGORITHMS[algorithm].products.input_grad(nhwc(grad), weight, geometry, tuple(padding), tuple(input_size))
    return to_nchw(out, _format(channels_last))


@_input_grad.register_fake
def _(grad, weight, input_size, stride, padding, dilation, groups, algorithm, channels_last):
    channels = weight.shape[1] * groups
    return grad.new_empty(grad.shape[0], channels, *input_size).contiguous(memory_format=_format(channels_last))


@torch.library.custom_op("cnnlab::correlate2d_weight_grad", mutates_args=())
def _weight_grad(
    x: Tensor,
    grad: Tensor,
    weight_shape: list[int],
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    algorithm: str,
) -> Tensor:
    geometry = Geometry(tuple(weight_shape[2:]), tuple(stride), tuple(dilation), groups)
    with torch.no_grad():
        products = ALGORITHMS[algorithm].products
        return products.weight_grad(nhwc(x), nhwc(grad), geometry, tuple(weight_shape), tuple(padding))


@_weight_grad.register_fake
def _(x, grad, weight_shape, stride, padding, dilation, groups, algorithm):
    return x.new_empty(weight_shape)


def _save(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[0], inputs[1])
    ctx.arguments = inputs[2:]


def _correlate_backward(ctx, grad):
    x, weight = ctx.saved_tensors
    stride, padding, dilation, groups, algorithm, channels_last = ctx.arguments
    grad_x = grad_w = None
    if ctx.needs_input_grad[0]:
        grad_x = _input_grad(
            grad, weight, list(x.shape[2:]), stride, padding, dilation, groups, algorithm, channels_last
        )
    if ctx.needs_input_grad[1]:
        grad_w = _weight_grad(x, grad, list(weight.shape), stride, padding, dilation, groups, algorithm)
    return grad_x, grad_w, None, None, None, None, None, None


def _input_grad_backward(ctx, grad):
    g, weight = ctx.saved_tensors
    _, stride, padding, dilation, groups, algorithm, channels_last = ctx.arguments
    grad_g = grad_w = None
    if ctx.needs_input_grad[0]:
        grad_g = _correlate(grad, weight, stride, padding, dilation, groups, algorithm, channels_last)
    if ctx.needs_input_grad[1]:
        grad_w = _weight_grad(grad, g, list(weight.shape), stride, padding, dilation, groups, algorithm)
    return grad_g, grad_w, None, None, None, None, None, None, None


_correlate.register_autograd(_correlate_backward, setup_context=_save)
_input_grad.register_autograd(_input_grad_backward, setup_context=_save)


def conv2d(call: ConvCall, algorithm: str) -> Tensor:
    """The eager products of ``algorithm`` as one opaque op. The output's memory format is fixed
    here, at trace time, as an argument: inside a compiled graph the input may arrive with other
    strides than the fake tensor had."""
    input, weight, stride, padding, dilation, groups = call
    channels_last = memory_format_of(input) == torch.channels_last
    return _correlate(input, weight, list(stride), list(padding), list(dilation), groups, algorithm, channels_last)


def conv_transpose2d(input: Tensor, weight: Tensor, stride, padding, dilation, groups: int, out_size,
                     algorithm: str) -> Tensor:  # fmt: skip
    """The transposed convolution (the convolution's input gradient, of spatial size ``out_size``)
    as one opaque op."""
    channels_last = memory_format_of(input) == torch.channels_last
    return _input_grad(
        input, weight, list(out_size), list(stride), list(padding), list(dilation), groups, algorithm, channels_last
    )
