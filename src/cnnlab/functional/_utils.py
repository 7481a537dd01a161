"""Shape arithmetic shared by convolution, pooling, the shape table and receptive-field code.

Everything that turns user arguments (``int``, tuples, ``'same'``/``'valid'``) into normalised
per-dimension tuples, and every output-size formula, lives here once.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "PADDING_MODES",
    "IntOrTuple",
    "check_floating",
    "check_input_rank",
    "check_non_negative",
    "check_positive",
    "conv_output_size",
    "conv_transpose_output_size",
    "ntuple",
    "output_size_unpadded",
    "pad_input",
    "pool_output_size",
    "resolve_padding",
    "same_padding",
    "tap_ranges",
    "window_taps",
]

IntOrTuple = int | Sequence[int]
"""A size argument: one int for every spatial dim, or one per dim (torch's ``_size_any_t``)."""

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
PADDING_STRINGS = ("same", "valid", "tf_same")  # torch's two, and TensorFlow's SAME (any stride)


def ntuple(value: int | Sequence[int], n: int, name: str = "argument") -> tuple[int, ...]:
    """Return ``value`` as an ``n``-tuple of ints (an int is repeated, a sequence must have ``n``)."""
    if isinstance(value, (int, torch.SymInt)) and not isinstance(value, bool):
        return (int(value),) * n
    if isinstance(value, Sequence) and not isinstance(value, str):
        items = tuple(value)
        if len(items) == 1:
            items = items * n
        if len(items) != n or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            raise ValueError(f"{name} must be an int or a tuple of {n} ints, but got {name}={value!r}")
        return items
    raise TypeError(f"{name} must be an int or a tuple of {n} ints, but got {name}={value!r}")


def check_positive(name: str, values: tuple[int, ...], layer: str = "") -> None:
    """Raise ``RuntimeError`` (torch's type for these) unless every entry is > 0."""
    if any(v <= 0 for v in values):
        prefix = f"{layer}: " if layer else ""
        raise RuntimeError(f"{prefix}{name} must be greater than zero, but got {name}={values}")


def check_non_negative(name: str, values: tuple[int, ...], layer: str = "") -> None:
    """Raise ``RuntimeError`` (torch's type for negative padding) unless every entry is >= 0."""
    if any(v < 0 for v in values):
        prefix = f"{layer}: " if layer else ""
        raise RuntimeError(f"{prefix}negative {name} is not supported, but got {name}={values}")


def same_padding(kernel_size: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Per-dimension ``(left, right)`` padding for ``padding='same'``, as torch computes it.

    The total ``dilation * (kernel_size - 1)`` is split with the extra pixel (even kernels) on the
    right/bottom side.
    """
    pads = []
    for k, d in zip(kernel_size, dilation):
        total = d * (k - 1)
        left = total // 2
        pads.append((left, total - left))
    return tuple(pads)


def tf_same_padding(size, kernel: int, stride: int, dilation: int = 1):
    """TensorFlow's ``SAME`` padding of one dim: ``ceil(size / stride)`` outputs from a total
    padding of ``max((ceil(size/s) − 1)·s + (k − 1)·d + 1 − size, 0)``, the odd pixel on the
    right/bottom. Returns ``(left, right)``; symbolic sizes (``torch.export`` with a dynamic dim)
    stay symbolic, with no guard on their value."""
    out = (size + stride - 1) // stride
    total = (out - 1) * stride + (kernel - 1) * dilation + 1 - size
    if (kernel - 1) * dilation + 1 < stride:  # else (out − 1)·s ≥ size − s makes the total ≥ 0 already
        # (torch.jit.trace records sizes as tensors, torch.export as SymInts: neither takes Python's max)
        total = total.clamp(min=0) if isinstance(total, Tensor) else torch.sym_max(total, 0)
    return total // 2, total - total // 2


def resolve_padding(
    padding: str | int | Sequence[int],
    kernel_size: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    input_size: Sequence[int] | None = None,
) -> tuple[tuple[int, int], ...]:
    """Normalise ``padding`` to per-dimension ``(left, right)`` pairs (``'tf_same'`` needs the
    ``input_size``; without it, only the string is checked and ``((0, 0),)`` pairs come back).

    Raises ``ValueError`` for an unknown string or ``'same'`` with stride > 1 (torch's checks).
    """
    n = len(kernel_size)
    if isinstance(padding, str):
        if padding not in PADDING_STRINGS:
            raise ValueError(f"Invalid padding string {padding!r}, should be one of {set(PADDING_STRINGS)}")
        if padding == "valid" or (padding == "tf_same" and input_size is None):
            return ((0, 0),) * n
        if padding == "tf_same":
            return tuple(tf_same_padding(*args) for args in zip(input_size, kernel_size, stride, dilation))
        if any(s != 1 for s in stride):
            raise ValueError(f"padding='same' is not supported for strided convolutions, but got stride={stride}")
        return same_padding(kernel_size, dilation)
    return tuple((p, p) for p in ntuple(padding, n, "padding"))


def conv_output_size(size: int, kernel: int, stride: int, pad: tuple[int, int], dilation: int) -> int:
    """``floor((size + pad_l + pad_r - dilation * (kernel - 1) - 1) / stride) + 1``.

    Computed as one floor division (``+ stride`` inside it): a symbolic size then stays a single
    ``FloorDiv`` that ``n · size`` keeps factored, so a tracer can prove ``size | n · size`` when a
    reshape splits it off (a trailing ``+ 1`` gets multiplied out, and the proof fails)."""
    return (size + pad[0] + pad[1] - dilation * (kernel - 1) - 1 + stride) // stride


def output_size_unpadded(
    size: Sequence[int], kernel_size: Sequence[int], stride: Sequence[int], dilation: Sequence[int]
) -> tuple[int, ...]:
    """:func:`conv_output_size` per dimension for an input that is already padded."""
    return tuple(conv_output_size(n, k, s, (0, 0), d) for n, k, s, d in zip(size, kernel_size, stride, dilation))


def conv_transpose_output_size(
    size: int, kernel: int, stride: int, padding: int, output_padding: int, dilation: int
) -> int:
    """``(size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1``."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def pool_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool) -> int:
    """torch's pooling output size, including the ``ceil_mode`` rule that the last window must
    start inside the input or the left padding (never entirely in the right padding): with
    ``padding ≤ kernel/2`` that rule is a minimum with ``ceil((size + padding) / stride)``, so a
    symbolic size needs no branch."""
    effective = dilation * (kernel - 1) + 1
    numerator = size + 2 * padding - effective + stride
    if not ceil_mode:
        return numerator // stride
    out, starts = (numerator + stride - 1) // stride, (size + padding + stride - 1) // stride
    if isinstance(out, Tensor):  # torch.jit.trace records sizes as tensors
        return torch.minimum(out, starts)
    return min(out, starts) if isinstance(out, int) else torch.sym_min(out, starts)


def check_input_rank(input: Tensor, spatial_dims: int, op: str) -> bool:
    """Check that ``input`` is unbatched ``(C, *spatial)`` or batched ``(N, C, *spatial)``.

    Returns ``True`` if the input is batched. Raises ``RuntimeError`` with torch's wording.
    """
    if input.dim() == spatial_dims + 2:
        return True
    if input.dim() == spatial_dims + 1:
        return False
    raise RuntimeError(
        f"Expected {spatial_dims + 1}D (unbatched) or {spatial_dims + 2}D (batched) input to {op}, "
        f"but got input of size: {list(input.shape)}"
    )


def check_floating(input: Tensor, weight: Tensor, op: str) -> None:
    """Input and weight must share a dtype and device (torch raises ``RuntimeError``)."""
    if input.dtype != weight.dtype:
        raise RuntimeError(f"{op}: input type ({input.dtype}) and weight type ({weight.dtype}) should be the same")
    if input.device != weight.device:
        raise RuntimeError(
            f"{op}: input and weight should be on the same device, but got input on "
            f"{input.device} and weight on {weight.device}"
        )


def pad_input(input: Tensor, pads: tuple[tuple[int, int], ...], mode: str = "zeros", skip_zero: bool = True) -> Tensor:
    """Pad the trailing ``len(pads)`` dimensions by ``(left, right)`` each with ``F.pad``.

    ``mode`` is a ``padding_mode`` (``zeros``, ``reflect``, ``replicate``, ``circular``). Returns
    ``input`` itself when all pads are zero (``skip_zero``; pads that depend on a symbolic size
    are not tested, so no tracer guards on them).
    """
    if skip_zero and all(p == (0, 0) for p in pads):
        return input
    flat: list[int] = []
    for left, right in reversed(pads):
        flat.extend((left, right))
    torch_mode = "constant" if mode == "zeros" else mode
    return torch.nn.functional.pad(input, flat, mode=torch_mode)


def _pad_dim(x: Tensor, dim: int, before: int, after: int) -> Tensor:
    """Zeros on both sides of one dim."""
    flat = [0, 0] * (x.dim() - 1 - dim) + [before, after]
    return torch.nn.functional.pad(x, flat)


def unpad_adjoint(x: Tensor, pads: tuple[tuple[int, int], ...], mode: str) -> Tensor:
    """The adjoint of :func:`pad_input`: each padded position's value is added to the input
    position it was copied from (``zeros``: dropped), ``(…, S + l + r)`` → ``(…, S)`` per padded
    dim, so ⟨pad(x), y⟩ = ⟨x, unpad_adjoint(y)⟩. From slices, flips, sums and zero pads only
    (every exporter records them; a scatter-add did not survive the TorchScript ONNX export):

    - ``circular``: the left border adds onto the last ``l`` positions, the right onto the first ``r``;
    - ``replicate``: each border's sum adds onto its edge position;
    - ``reflect``: each border, reversed, adds onto the positions it mirrored (1…l and S−1−r…S−2).
    """
    dims = len(pads)
    for axis, (left, right) in enumerate(pads):
        dim = x.dim() - dims + axis
        size = x.shape[dim] - left - right
        out = x.narrow(dim, left, size)
        if mode == "zeros":
            x = out
            continue
        head, tail = x.narrow(dim, 0, left), x.narrow(dim, left + size, right)
        if mode == "circular":
            out = out + _pad_dim(head, dim, size - left, 0) + _pad_dim(tail, dim, 0, size - right)
        elif mode == "replicate":
            out = out + _pad_dim(head.sum(dim, keepdim=True), dim, 0, size - 1)
            out = out + _pad_dim(tail.sum(dim, keepdim=True), dim, size - 1, 0)
        else:  # reflect
            out = out + _pad_dim(head.flip(dim), dim, 1, size - 1 - left)
            out = out + _pad_dim(tail.flip(dim), dim, size - 1 - right, 1)
        x = out
    return x


def window_taps(
    x: Tensor,
    first_axis: int,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    out: Sequence,
    value: float = 0.0,
) -> list[Tensor]:
    """The ``prod(kernel)`` views of ``x`` that the window taps read, in row-major tap order: tap
    ``j`` along spatial axis ``i`` (``first_axis + i``) reads ``x[o·s − p + j·d]`` for ``o < out``,
    positions outside ``x`` reading ``value``. Each view has ``out`` in the spatial axes and ``x``'s
    other axes as they are.

    Each axis is padded by ``p`` on the left and padded (or, symbolically, cropped) on the right to
    ``s·M`` with ``M = out + ⌊d(k−1)/s⌋``, which holds every position read, so that every strided
    slice ``[j·d : j·d + s(out−1) + 1 : s]`` ends inside it by a constant margin: a tracer with a
    symbolic size has nothing to prove (slices of the ``p``-padded input alone made
    ``torch.export`` guard on sizes, keeping them static)."""
    flat: list = []
    for axis, (k, s, p, d, o) in enumerate(zip(kernel, stride, padding, dilation, out)):
        right = s * (o + d * (k - 1) // s) - x.shape[first_axis + axis] - p
        # (a symbolic size keeps its crop: a maximum would hide the constant margin from the tracer)
        flat = [p, right if isinstance(right, torch.SymInt) else max(right, 0 * right), *flat]
    if any(not isinstance(side, int) or side for side in flat):
        x = torch.nn.functional.pad(x, [0, 0] * (x.dim() - first_axis - len(kernel)) + flat, value=value)
    taps = []
    for tap in itertools.product(*[range(k) for k in kernel]):
        window = [slice(j * d, j * d + s * (o - 1) + 1, s) for j, s, d, o in zip(tap, stride, dilation, out)]
        taps.append(x[(*[slice(None)] * first_axis, *window)])
    return taps


def tap_ranges(
    size: int, kernel: int, stride: int, padding: int, out: int, dilation: int = 1, skip_empty: bool = True
) -> list[tuple[int, int, int]]:
    """For each window tap ``j``: the outputs ``[lo, hi)`` whose tap is inside the input, and the
    input index read by output ``lo`` (``lo·stride − padding + j·dilation``). Taps that read only
    padding are skipped (or, with ``skip_empty=False``, listed as ``(0, 0, 0)``), so no padded
    copy is ever needed. ``padding`` may be negative (a crop)."""
    ranges = []
    for j in range(kernel):
        offset = j * dilation - padding
        lo = max(0, -(offset // stride))  # ceil(-offset / stride)
        hi = min(out, (size - 1 - offset) // stride + 1)
        if lo < hi:
            ranges.append((lo, hi, lo * stride + offset))
        elif not skip_empty:
            ranges.append((0, 0, 0))
    return ranges
