"""The contract every convolution algorithm shares: geometry, channels-last layout helpers, the
three products of a convolution and the autograd Functions built from them, and the record each
algorithm module exports.

An algorithm receives a validated, batched ``(N, C, H, W)`` input with symmetric zero ``padding``
(other padding modes and the asymmetric ``'same'`` padding of even kernels are applied before
dispatch, in :mod:`.api`), and filters ``(O, C/G, kH, kW)``. Most algorithms compute on
channels-last data; they then give only their :class:`ConvProducts`, and
:class:`ChannelsLastConv2d` turns them into a convolution with its backward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from .._utils import conv_output_size
from ..backends import memory_format_of

__all__ = [
    "ChannelsLastConv2d",
    "ChannelsLastConvTranspose2d",
    "ConvAlgorithm",
    "ConvCall",
    "ConvProducts",
    "Geometry",
    "flipped_filters",
    "flipped_weight_matrix",
    "nhwc",
    "output_size",
    "recording",
    "to_nchw",
    "weight_matrix",
]


class Geometry(NamedTuple):
    """Everything but the tensors: ``kernel``, ``stride``, ``dilation`` (pairs) and ``groups``."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    @classmethod
    def of(cls, weight: Tensor, stride, dilation, groups: int) -> Geometry:
        """The geometry of filters ``weight (O, C/G, kH, kW)`` applied with these arguments."""
        return cls(tuple(weight.shape[2:]), tuple(stride), tuple(dilation), groups)


def output_size(input_size, geometry: Geometry, padding) -> tuple[int, ...]:
    """``floor((size + 2p − d(k − 1) − 1) / s) + 1`` per spatial dim."""
    return tuple(
        conv_output_size(size, k, s, (p, p), d)
        for size, k, s, p, d in zip(input_size, geometry.kernel, geometry.stride, padding, geometry.dilation)
    )


def recording(*tensors: Tensor) -> bool:
    """Whether autograd records ops on ``tensors`` (grad mode on and one of them requires grad):
    where a product must be built from differentiable ops (double backward) instead of ``out=``
    writes or compiled kernels."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def nhwc(x: Tensor) -> Tensor:
    """``(N, C, *S)`` → contiguous ``(N, *S, C)`` (free for channels-last input)."""
    return x.movedim(1, -1).contiguous()


def to_nchw(out: Tensor, memory_format: torch.memory_format) -> Tensor:
    """``(N, *S, C)`` → ``(N, C, *S)`` stored in ``memory_format`` (a copy only for contiguous)."""
    return out.movedim(-1, 1).contiguous(memory_format=memory_format)


def weight_matrix(weight: Tensor, groups: int) -> Tensor:
    """Filters ``(O, C/G, kH, kW)`` → ``(G, O/G, kH·kW·C/G)``, taps outer and channels inner (the
    column order of channels-last im2col)."""
    return weight.permute(0, 2, 3, 1).reshape(groups, weight.shape[0] // groups, -1)


def flipped_filters(weight: Tensor, groups: int) -> Tensor:
    """The filters whose stride-1 correlation with ``∂out`` is ``∂x``: per group, transposed and
    rotated by 180°, ``W'[c, o, i, j] = W[o, c, kH-1-i, kW-1-j]``; ``(O, C/G, kH, kW)`` → ``(C, O/G, kH, kW)``."""
    out_channels, group_channels, kh, kw = weight.shape
    flipped = weight.view(groups, out_channels // groups, group_channels, kh, kw).transpose(1, 2).flip(3, 4)
    return flipped.reshape(groups * group_channels, out_channels // groups, kh, kw)


def flipped_weight_matrix(weight: Tensor, groups: int) -> Tensor:
    """``weight_matrix(flipped_filters(weight, groups), groups)`` written in one copy (tap by tap),
    not two: with 512 channels each copy is 9.4 MB of peak memory."""
    out_channels, group_channels, kh, kw = weight.shape
    grouped = weight.view(groups, out_channels // groups, group_channels, kh, kw).permute(0, 2, 3, 4, 1)
    out = weight.new_empty(groups, group_channels, kh, kw, out_channels // groups)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i, j] = grouped[:, :, kh - 1 - i, kw - 1 - j]
    return out.view(groups, group_channels, -1)


class ConvProducts(NamedTuple):
    """The three products of one convolution algorithm, all on channels-last tensors:

    - ``forward(x, weight, geometry, padding, out_size)`` → ``(N, H_out, W_out, O)``;
    - ``input_grad(grad, weight, geometry, padding, input_size)`` → ``(N, H, W, C)``;
    - ``weight_grad(x, grad, geometry, weight_shape, padding)`` → ``(O, C/G, kH, kW)``.

    :class:`ChannelsLastConv2d` and :class:`ChannelsLastConvTranspose2d` turn them into
    autograd Functions: the transposed convolution's forward is the input gradient and its
    backward the forward and the weight gradient with roles swapped.
    """

    forward: Callable[..., Tensor]
    input_grad: Callable[..., Tensor]
    weight_grad: Callable[..., Tensor]


class _ChannelsLastFunction(torch.autograd.Function):
    """What both Functions below keep for backward: input and filters, and the geometry."""

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        input, weight, stride, padding, dilation, groups = inputs[:6]
        ctx.save_for_backward(input, weight)
        ctx.geometry = Geometry.of(weight, stride, dilation, groups)
        ctx.padding, ctx.products = padding, inputs[-1]


def _saved(ctx, grad_out: Tensor) -> tuple:
    """What both Functions' backward reads: input, filters, geometry, padding, products, and the
    output gradient channels-last."""
    input, weight = ctx.saved_tensors
    return input, weight, ctx.geometry, ctx.padding, ctx.products, nhwc(grad_out)


class ChannelsLastConv2d(_ChannelsLastFunction):
    """A convolution from an algorithm's :class:`ConvProducts`. Keeps only input and filters for
    backward; output and input gradient come back in the input's memory format. The products run
    on autograd-recording ops under ``create_graph`` (``matmul_nt`` then uses ``torch.matmul``),
    so double backward works. Eager only (no vmap or jvp rule): under a tracer or ``torch.func``
    transform the traceable form runs instead (:mod:`cnnlab.functional._tracing`)."""

    @staticmethod
    def forward(input: Tensor, weight: Tensor, stride, padding, dilation, groups: int, products) -> Tensor:
        geometry = Geometry.of(weight, stride, dilation, groups)
        out = products.forward(nhwc(input), weight, geometry, padding, output_size(input.shape[2:], geometry, padding))
        return to_nchw(out, memory_format_of(input))

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        input, weight, geometry, padding, products, grad = _saved(ctx, grad_out)
        grad_input = grad_weight = None
        # weight gradient first: its channels-last input copy is gone before the input gradient's buffers exist
        if ctx.needs_input_grad[1]:
            grad_weight = products.weight_grad(nhwc(input), grad, geometry, weight.shape, padding)
        if ctx.needs_input_grad[0]:
            grad_input = products.input_grad(grad, weight, geometry, padding, tuple(input.shape[2:]))
            del grad
            grad_input = to_nchw(grad_input, memory_format_of(input))
        return grad_input, grad_weight, None, None, None, None, None


class ChannelsLastConvTranspose2d(_ChannelsLastFunction):
    """The adjoint of :class:`ChannelsLastConv2d` (a convolution from the output size back to the
    input size): forward is its input gradient; backward its forward and weight gradient."""

    @staticmethod
    def forward(input: Tensor, weight: Tensor, stride, padding, dilation, groups: int, out_size, products):
        geometry = Geometry.of(weight, stride, dilation, groups)
        out = products.input_grad(nhwc(input), weight, geometry, padding, out_size)
        return to_nchw(out, memory_format_of(input))

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        input, weight, geometry, padding, products, grad = _saved(ctx, grad_out)
        grad_input = grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = products.weight_grad(grad, nhwc(input), geometry, weight.shape, padding)
        if ctx.needs_input_grad[0]:
            grad_input = products.forward(grad, weight, geometry, padding, tuple(input.shape[2:]))
            del grad
            grad_input = to_nchw(grad_input, memory_format_of(input))
        return grad_input, grad_weight, None, None, None, None, None, None


class ConvCall(NamedTuple):
    """One 2-D (or 3-D) convolution as the dispatch sees it: a validated batched input, its
    filters, and pairs (triples) of ints for ``stride``, symmetric zero ``padding`` and ``dilation``."""

    input: Tensor
    weight: Tensor
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    @property
    def kernel(self) -> tuple[int, int]:
        return tuple(self.weight.shape[2:])

    @property
    def depthwise(self) -> bool:
        """One input channel per group, more than one group (``groups == in_channels > 1``)."""
        return self.groups > 1 and self.weight.shape[1] == 1 and self.input.shape[1] == self.groups

    @property
    def pointwise(self) -> bool:
        """An unpadded 1×1 filter."""
        return (*self.kernel, *self.padding) == (1, 1, 0, 0)


def _covers_everything(call: ConvCall) -> str | None:
    return None


@dataclass(frozen=True)
class ConvAlgorithm:
    """What one algorithm module exports; :mod:`.algorithms` lists them, :mod:`.dispatch` runs them.

    Attributes:
        name: the ``algorithm=`` name users pass.
        requires: ``requires(call)`` is ``None`` where the algorithm covers ``call``, else what it
            needs, completing "the 'name' algorithm needs …" (the dispatch raises ``ValueError``).
        products: channels-last products, run eagerly through :class:`ChannelsLastConv2d` (unless
            ``eager`` is given too) and as opaque custom ops under ``torch.compile``.
        eager: the eager convolution, for algorithms that are their own autograd Function (or
            that choose between it and their products): ``eager(input, weight, stride, padding,
            dilation, groups)``.
        traceable: the form computed under tracers and transforms, same signature as ``eager``;
            ``None`` means :func:`.traceable.conv` (slices, ``cat`` and ``matmul``).
        compiled: under ``torch.compile`` the products run as opaque ``cnnlab::`` custom ops
            (:mod:`.opaque`) instead of the traceable form.
        fuses_bias: ``eager`` takes the bias (or ``None``) as a seventh argument and adds it itself
            (inside a compiled kernel: no second pass over the output); others get it added after.
    """

    name: str
    requires: Callable[[ConvCall], str | None] = _covers_everything
    products: ConvProducts | None = None
    eager: Callable[..., Tensor] | None = None
    traceable: Callable[..., Tensor] | None = None
    compiled: bool = False
    fuses_bias: bool = False

    def __post_init__(self) -> None:
        if self.products is None and self.eager is None:
            raise TypeError(f"ConvAlgorithm {self.name!r} needs products=, eager= or both")
        if self.compiled and self.products is None:
            raise TypeError(f"ConvAlgorithm {self.name!r}: compiled=True needs products=")
