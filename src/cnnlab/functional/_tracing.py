"""When cnnlab's layers take their traceable form, and how ``torch.fx`` sees them.

cnnlab's eager kernels are hand-written ``autograd.Function``s: oneDNN's matmul primitive on
column chunks sized by the batch, in-place strided adds, per-tap loops. They are fast, but a
tracer or a function transform cannot see through them (the primitive has no inductor lowering
without frozen weights, no batching rule, no forward-mode derivative, no ONNX symbolic). So
whenever something other than plain eager execution is watching, every conv and pool op computes
the same result through its *traceable form*: a few differentiable ``torch`` primitives
(``F.pad``, strided slices, ``cat``, ``matmul``, ``gather``, reductions, ``torch.fft``)
with no Python decision on tensor values, which autograd, functorch, inductor, ``torch.export``,
the ONNX exporters and the meta/fake kernels all understand op by op.

"Watching" is decided from the tracer's state and the tensors' kind, never from their values:
``torch.compile``/``torch.export`` (dynamo), ``torch.jit.trace``, the ``torch.func`` transforms
(``vmap``, ``grad``, ``jvp``, ``jacrev``, …), and fake or meta tensors (shape inference).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor
from torch._subclasses.fake_tensor import is_fake

__all__ = ["KernelConv", "fx_leaf", "is_compiling_graph", "is_tracing", "recorded_grads"]

F = TypeVar("F", bound=Callable)


def _functorch_active() -> bool:
    """A ``torch.func`` transform (vmap, grad, jvp, jacrev, functionalize) is running."""
    return torch._C._functorch.peek_interpreter_stack() is not None


def is_tracing(*tensors: Tensor) -> bool:
    """``True`` when the traceable form must be used (see the module docstring)."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or _functorch_active():
        return True
    return any(t.device.type == "meta" or is_fake(t) for t in tensors if isinstance(t, Tensor))


def is_compiling_graph() -> bool:
    """``torch.compile`` is capturing a graph for a backend (not ``torch.export``, which must record
    portable ops): opaque custom ops may stand in for the eager kernels there
    (:mod:`cnnlab.functional.conv.opaque`). Those ops have no vmap rule, so a ``torch.func``
    transform traced inside ``torch.compile`` is not supported (dynamo answers functorch's
    interpreter query as if a transform were always active, so it cannot be asked)."""
    return torch.compiler.is_compiling() and not torch.compiler.is_exporting()


def fx_leaf(fn: F) -> F:
    """Record calls of ``fn`` as one ``call_function`` node under ``torch.fx.symbolic_trace``.

    ``torch.fx.wrap`` does the same only for calls by a module-global name; cnnlab's layers call
    ``functional.conv2d`` as an attribute, and users may too. A functional op validates its
    arguments against the input's shape in Python, which a ``Proxy`` cannot answer, so it is a
    leaf of the fx graph, as ``torch.nn.functional.conv2d`` is.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        proxy = next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.fx.Proxy)), None)
        if proxy is not None:
            return proxy.tracer.create_proxy("call_function", wrapper, args, kwargs)
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def recorded_grads(forward: Callable, inputs: tuple[Tensor, ...], grad: Tensor, wanted) -> tuple[Tensor | None, ...]:
    """The gradients of ``forward(*inputs)`` for ``grad`` (``None`` where not ``wanted``), recorded
    by autograd: the backward of a compiled kernel under ``create_graph=True`` (double backward),
    ``forward`` being its traceable form."""
    out = forward(*inputs)
    needed = [t for t, want in zip(inputs, wanted) if want]
    grads = iter(torch.autograd.grad(out, needed, grad, create_graph=True))
    return tuple(next(grads) if want else None for want in wanted)


class KernelConv(torch.autograd.Function):
    """A convolution over compiled kernels, ``forward(input, weight, *arguments)``: keeps ``input``
    and ``weight`` for the backward and the other arguments as ``ctx.arguments``; its backward
    under ``create_graph`` is :func:`recorded_grads` of its traceable form."""

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        input, weight, *ctx.arguments = inputs
        ctx.save_for_backward(input, weight)
