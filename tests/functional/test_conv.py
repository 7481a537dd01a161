"""Convolution against torch over a grid of arguments, hypothesis properties, gradcheck and
the circular-shift equivariance that parameter sharing buys."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.modules.utils import _pair

import cnnlab.functional as CF
from cnnlab import nn as cnn
from cnnlab.functional import native
from cnnlab.functional.backends import memory_format_of
from cnnlab.functional.conv.base import ConvCall
from cnnlab.functional.conv.dispatch import select_algorithm
from tests.conftest import assert_close, compare_forward_backward, twin

ALGORITHMS = ["gemm", "direct", "shift", "winograd", "pointwise", "fft", "traceable", "triton", "auto"]
CPU_ALGORITHMS = [name for name in ALGORITHMS if name != "triton" and (name != "direct" or native.available())]


def supports(algorithm: str, layer: cnn.Conv2d) -> bool:
    """Whether ``algorithm`` covers the layer's geometry (the rest must raise a clear ValueError)."""
    kernel, stride, dilation = layer.kernel_size, layer.stride, layer.dilation
    if algorithm == "shift":
        return stride == (1, 1)
    if algorithm == "winograd":
        return kernel == (3, 3) and stride == (1, 1) and dilation == (1, 1)
    if algorithm == "triton":  # CUDA only (CPU under TRITON_INTERPRET): tests/functional/test_triton_kernels.py
        return False
    if algorithm == "direct":  # cnnlab's compiled kernels: float32 CPU tensors, where they were built
        return native.available() and layer.weight.dtype == torch.float32
    if algorithm == "pointwise":  # padding other than zeros is applied before the algorithm runs
        zero_padding = isinstance(layer.padding, str) or not any(layer.padding)
        return kernel == (1, 1) and (zero_padding or layer.padding_mode != "zeros")
    return True


def compare_algorithm(reference, ours, x, algorithm, **kwargs):
    """``ours`` with ``algorithm`` agrees with torch, or refuses a geometry it does not cover."""
    ours.algorithm = algorithm
    if supports(algorithm, ours):
        compare_forward_backward(reference, ours, x, **kwargs)
    else:
        with pytest.raises(ValueError, match=f"the '{algorithm}' algorithm needs"):
            ours(x)


def conv2d_grid():
    for kernel, stride, padding, dilation, groups in itertools.product(
        [1, 3, (2, 3)], [1, 2, (2, 1)], [0, 1, (2, 0), "same", "valid"], [1, 2, (1, 3)], [1, 2]
    ):
        if padding == "same" and stride != 1:
            continue
        yield kernel, stride, padding, dilation, groups


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation", "groups"), list(conv2d_grid()))
def test_conv2d_matches_torch(kernel, stride, padding, dilation, groups, algorithm):
    reference, ours = twin(nn.Conv2d, cnn.Conv2d, 4, 6, kernel, stride, padding, dilation, groups)
    compare_algorithm(reference, ours, torch.randn(2, 4, 11, 12), algorithm)


@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation", "groups"), list(conv2d_grid()))
def test_gemm_input_gradient_by_col2im_matches_torch(kernel, stride, padding, dilation, groups):
    """With more than twice as many outputs as inputs, gemm's stride-1 input gradient is col2im
    instead of the flipped convolution (the grid above, 4 → 6 channels, takes the flipped one)."""
    reference, ours = twin(nn.Conv2d, cnn.Conv2d, 4, 12, kernel, stride, padding, dilation, groups)
    compare_algorithm(reference, ours, torch.randn(2, 4, 11, 12), "gemm")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize(("kernel", "padding", "dilation"), [(3, 1, 1), (4, "same", 1), (3, "same", 2), ((2, 5), 2, 1)])
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_padding_modes_match_torch(padding_mode, kernel, padding, dilation, bias, algorithm):
    reference, ours = twin(
        nn.Conv2d, cnn.Conv2d, 3, 5, kernel, padding=padding, dilation=dilation, bias=bias, padding_mode=padding_mode
    )
    compare_algorithm(reference, ours, torch.randn(2, 3, 9, 10), algorithm)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "circular"])
@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation", "groups"),
    [
        (1, 1, 0, 1, 1),
        (3, 1, 1, 1, 1),
        (4, 1, "same", 1, 1),
        (3, 1, "same", 3, 3),
        (5, 2, 2, 1, 3),
        (2, 3, "valid", 2, 1),
    ],
)
def test_conv1d_matches_torch(kernel, stride, padding, dilation, groups, padding_mode):
    """Conv1d is the time-series case: (N, C, L) sequences."""
    reference, ours = twin(
        nn.Conv1d, cnn.Conv1d, 3, 6, kernel, stride, padding, dilation, groups, padding_mode=padding_mode
    )
    compare_forward_backward(reference, ours, torch.randn(3, 3, 40))


@pytest.mark.parametrize(
    ("kernel", "kwargs", "dtype", "expected"),
    [
        (7, {"padding": 3}, torch.float32, "fft"),
        ((9, 7), {"padding": 2, "groups": 2}, torch.float64, "fft"),
        (7, {"padding": 3, "stride": 2}, torch.float32, "gemm"),
        (7, {"padding": 3}, torch.bfloat16, "gemm"),
        (3, {"padding": 3, "dilation": 3}, torch.float32, "gemm"),
        ((7, 1), {"padding": (3, 0)}, torch.float32, "gemm"),
        (5, {"padding": 2}, torch.float32, "gemm"),
    ],
)
def test_auto_takes_fft_for_large_stride_one_kernels(kernel, kwargs, dtype, expected):
    """``auto`` resolves to ``fft`` for float32/64 stride-1 filters of 7×7 and up, ``gemm`` for the
    rest, and the result matches torch's either way (forward and backward); float32 on the CPU
    goes to the compiled ``direct`` kernels first, where they were built (and bfloat16 where the
    CPU has AVX512-BF16)."""
    reference, ours = twin(nn.Conv2d, cnn.Conv2d, 4, 6, kernel, **kwargs)
    x = torch.randn(2, 4, 13, 12, dtype=dtype)
    ours.weight.data = ours.weight.data.to(dtype)
    if native.available() and (dtype == torch.float32 or (dtype == torch.bfloat16 and native.bfloat16_available())):
        expected = "direct"
    assert select_algorithm(ConvCall(x, ours.weight, ours.stride, ours.padding, ours.dilation, ours.groups)) == expected
    if dtype != torch.bfloat16:
        reference, ours = reference.to(dtype), ours.to(dtype)
        compare_forward_backward(reference, ours, x.to(dtype))


@pytest.mark.parametrize("algorithm", ["depthwise", "auto"])
@pytest.mark.parametrize("multiplier", [1, 3])
@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation"), [(3, 1, 1, 1), ((3, 2), 2, 0, 2), (5, 1, "same", 1)]
)
def test_depthwise_conv2d_matches_torch(kernel, stride, padding, dilation, multiplier, algorithm):
    reference, ours = twin(nn.Conv2d, cnn.Conv2d, 4, 4 * multiplier, kernel, stride, padding, dilation, groups=4)
    ours.algorithm = algorithm
    compare_forward_backward(reference, ours, torch.randn(2, 4, 11, 12))


def conv_transpose_grid():
    for kernel, stride, padding, dilation, groups in itertools.product(
        [1, 2, 3, (2, 3)], [1, 2, (3, 2)], [0, 1], [1, 2], [1, 2]
    ):
        yield kernel, stride, padding, 0, dilation, groups
    yield 3, 2, 1, 1, 1, 1  # output_padding < stride
    yield 3, (3, 2), 0, (2, 1), 1, 2
    yield 3, 1, 1, 1, 2, 1  # output_padding allowed by dilation > output_padding
    yield 3, 2, 0, 2, 3, 1  # output_padding >= stride, < dilation


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "output_padding", "dilation", "groups"), list(conv_transpose_grid())
)
def test_conv_transpose2d_matches_torch(kernel, stride, padding, output_padding, dilation, groups):
    reference, ours = twin(
        nn.ConvTranspose2d,
        cnn.ConvTranspose2d,
        4,
        6,
        kernel,
        stride,
        padding,
        output_padding,
        groups,
        dilation=dilation,
    )
    compare_forward_backward(reference, ours, torch.randn(2, 4, 5, 6))


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "output_padding", "dilation", "groups"),
    [(2, 2, 0, 0, 1, 1), (3, 2, 1, 1, 1, 1), (4, 3, 2, 2, 2, 2), (3, 1, 0, 2, 3, 1), (1, 1, 0, 0, 1, 4)],
)
def test_conv_transpose1d_matches_torch(kernel, stride, padding, output_padding, dilation, groups):
    reference, ours = twin(
        nn.ConvTranspose1d,
        cnn.ConvTranspose1d,
        4,
        8,
        kernel,
        stride,
        padding,
        output_padding,
        groups,
        dilation=dilation,
    )
    compare_forward_backward(reference, ours, torch.randn(2, 4, 13))


@pytest.mark.parametrize("output_size", [(9, 11), (10, 12), [2, 6, 10, 11]])
def test_conv_transpose_output_size(output_size):
    reference, ours = twin(nn.ConvTranspose2d, cnn.ConvTranspose2d, 4, 6, 3, stride=2, padding=1)
    compare_forward_backward(reference, ours, torch.randn(2, 4, 5, 6), output_size=output_size)


def test_conv_transpose_output_size_out_of_range():
    layer = cnn.ConvTranspose2d(4, 6, 3, stride=2)
    with pytest.raises(ValueError, match=r"output size of \[20, 8\].*valid sizes range from \[11, 11\] to \[12, 12\]"):
        layer(torch.randn(1, 4, 5, 5), output_size=(20, 8))


@pytest.mark.parametrize("dilation", [1, 2, 3, 4])
def test_dilated_conv_receptive_field_and_output(dilation):
    """A k×k conv with dilation d reads a (d(k-1)+1)² window with taps d apart, and matches torch."""
    reference, ours = twin(nn.Conv2d, cnn.Conv2d, 1, 1, 3, dilation=dilation, bias=False)
    with torch.no_grad():
        ours.weight.fill_(1.0)
    x = torch.zeros(1, 1, 17, 17, requires_grad=True)
    out = ours(x)
    center = out.shape[-1] // 2
    out[0, 0, center, center].backward()
    rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
    span = dilation * 2 + 1
    assert rows.max() - rows.min() + 1 == span and cols.max() - cols.min() + 1 == span
    assert len(rows) == 9 and torch.all((rows - rows.min()) % dilation == 0)
    reference.load_state_dict(ours.state_dict())
    compare_forward_backward(reference, ours, torch.randn(2, 1, 17, 17))


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    groups=st.sampled_from([1, 2, 3]),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding_mode=st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
    algorithm=st.sampled_from(ALGORITHMS),
)
def test_conv2d_property_random_configs(data, groups, kernel, stride, dilation, padding_mode, algorithm):
    """Any valid configuration agrees with torch: output, input, weight and bias gradients."""
    padding = data.draw(st.tuples(st.integers(0, 2), st.integers(0, 2)))
    effective = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    height = data.draw(st.integers(max(effective[0] - 2 * padding[0], 3), 12))
    width = data.draw(st.integers(max(effective[1] - 2 * padding[1], 3), 12))
    reference, ours = twin(
        nn.Conv2d,
        cnn.Conv2d,
        2 * groups,
        3 * groups,
        kernel,
        stride,
        padding,
        dilation,
        groups,
        padding_mode=padding_mode,
    )
    compare_algorithm(reference, ours, torch.randn(data.draw(st.integers(1, 3)), 2 * groups, height, width), algorithm)


@settings(max_examples=40, deadline=None)
@given(
    kernel=st.integers(1, 4),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
    dilation=st.integers(1, 2),
    size=st.integers(1, 7),
)
def test_conv_transpose_is_adjoint_of_conv(kernel, stride, padding, dilation, size):
    """<conv(x), y> == <x, conv_transpose(y)>: the transposed conv is the conv's adjoint."""
    assume((size - 1) * stride - 2 * padding + dilation * (kernel - 1) + 1 > 0)
    weight = torch.randn(4, 3, kernel, kernel, dtype=torch.float64)
    y = torch.randn(2, 4, size, size, dtype=torch.float64)
    z = CF.conv_transpose2d(y, weight, stride=stride, padding=padding, dilation=dilation)
    x = torch.randn_like(z)
    conv_x = CF.conv2d(x, weight, stride=stride, padding=padding, dilation=dilation)
    assert conv_x.shape == y.shape
    assert torch.allclose((conv_x * y).sum(), (x * z).sum())


@settings(max_examples=30, deadline=None)
@given(a=st.floats(-3, 3), b=st.floats(-3, 3))
def test_conv2d_is_linear(a, b):
    x1, x2, w = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
    left = CF.conv2d(a * x1 + b * x2, w, padding=1)
    right = a * CF.conv2d(x1, w, padding=1) + b * CF.conv2d(x2, w, padding=1)
    assert_close(left, right, scale=10)


@pytest.mark.parametrize("algorithm", CPU_ALGORITHMS)
@pytest.mark.parametrize(("shift_y", "shift_x"), [(1, 0), (0, 3), (-2, 5)])
def test_circular_conv_is_translation_equivariant(shift_y, shift_x, algorithm):
    """With circular padding, conv(roll(x)) == roll(conv(x)): the same weights at every position."""
    kernel = 1 if algorithm == "pointwise" else 3
    dtype = torch.float32 if algorithm == "direct" else torch.float64  # the compiled kernels are float32's
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    layer = cnn.Conv2d(3, 4, kernel, padding=kernel // 2, padding_mode="circular", algorithm=algorithm).to(dtype)
    x = torch.randn(2, 3, 12, 12, dtype=dtype)
    rolled_then_conv = layer(torch.roll(x, (shift_y, shift_x), dims=(2, 3)))
    conv_then_rolled = torch.roll(layer(x), (shift_y, shift_x), dims=(2, 3))
    torch.testing.assert_close(rolled_then_conv, conv_then_rolled, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("algorithm", CPU_ALGORITHMS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_output_keeps_the_input_memory_format(algorithm, channels_last):
    """channels_last in, channels_last out (no copy back); contiguous in, contiguous out, as torch.
    The input gradient keeps the input's format too."""
    kernel = 1 if algorithm == "pointwise" else 3
    reference, ours = twin(nn.Conv2d, cnn.Conv2d, 8, 6, kernel, padding=kernel // 2)
    ours.algorithm = algorithm
    x = torch.randn(2, 8, 9, 10)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    out = ours(x)
    expected = torch.channels_last if channels_last else torch.contiguous_format
    assert out.is_contiguous(memory_format=expected)
    out.backward(torch.ones_like(out))
    assert x.grad.is_contiguous(memory_format=expected)
    assert_close(out, reference(x))


def _double(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize(
    ("algorithm", "kernel", "kwargs"),
    [
        *[
            (algorithm, (3, 2), kwargs)
            for algorithm in ("gemm", "fft", "auto")
            for kwargs in ({"stride": 1, "padding": 1}, {"stride": 2, "dilation": 2}, {"groups": 2, "padding": "same"})
        ],
        ("shift", (3, 2), {"padding": 1, "dilation": 2}),
        ("shift", (2, 3), {"groups": 2, "padding": 2}),
        ("winograd", (3, 3), {"padding": 1}),
        ("winograd", (3, 3), {"groups": 2, "padding": 3}),
        ("pointwise", (1, 1), {"stride": 2}),
        ("pointwise", (1, 1), {"groups": 2}),
    ],
)
def test_conv2d_gradcheck(algorithm, kernel, kwargs):
    inputs = (_double(2, 4, 7, 6), _double(4, 4 // kwargs.get("groups", 1), *kernel), _double(4))
    fn = lambda x, w, b: CF.conv2d(x, w, b, algorithm=algorithm, **kwargs)  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs)
    if algorithm != "fft":
        assert torch.autograd.gradgradcheck(fn, inputs)


@pytest.mark.parametrize(
    ("out_channels", "kwargs"),
    [
        (6, {"padding": 1}),
        (6, {"stride": 2, "dilation": 2}),
        (3, {"padding": 1}),  # multiplier 1, stride 1: the input gradient is a correlation of ∂out
        (3, {"padding": (1, 2), "dilation": 2}),
    ],
)
def test_depthwise_gradcheck(out_channels, kwargs):
    fn = lambda x, w, b: CF.conv2d(x, w, b, groups=3, algorithm="depthwise", **kwargs)  # noqa: E731
    inputs = (_double(2, 3, 7, 6), _double(out_channels, 1, 3, 2), _double(out_channels))
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


@pytest.mark.parametrize(
    ("fn", "inputs"),
    [
        (lambda x, w, b: CF.conv1d(x, w, b, stride=2, padding=2, dilation=2), ((2, 4, 9), (3, 4, 3), (3,))),
        (
            lambda x, w, b: CF.conv_transpose1d(x, w, b, stride=2, padding=1, output_padding=1),
            ((2, 4, 5), (4, 3, 3), (3,)),
        ),
        (
            lambda x, w, b: CF.conv_transpose2d(x, w, b, stride=2, groups=2, dilation=2),
            ((1, 4, 3, 4), (4, 2, 3, 2), (4,)),
        ),
        (lambda x, w, b: CF.conv2d(x, w, b, padding=2, padding_mode="reflect"), ((1, 2, 5, 5), (3, 2, 3, 3), (3,))),
    ],
)
def test_other_convs_gradcheck(fn, inputs):
    assert torch.autograd.gradcheck(fn, tuple(_double(*shape) for shape in inputs))


needs_native = pytest.mark.skipif(not native.available(), reason="cnnlab's compiled kernels were not built")


@needs_native
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation", "groups"),
    [(3, 1, 1, 1, 1), (3, (2, 1), 1, 1, 2), ((3, 5), 1, (0, 2), (2, 1), 1), (1, 1, 0, 1, 4), (3, 2, 1, 1, 1)],
)
def test_direct_kernels_on_wide_rows_match_torch(kernel, stride, padding, dilation, groups, channels_last):
    """Rows of 24 outputs: contiguous input with stride 1 along W takes the NCHW kernels,
    channels-last input and stride 2 along W the NHWC ones; both agree with torch."""
    reference, ours = twin(nn.Conv2d, cnn.Conv2d, 8, 12, kernel, stride, padding, dilation, groups)
    ours.algorithm = "direct"
    x = torch.randn(2, 8, 9, 24)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = compare_forward_backward(reference, ours, x)
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@pytest.mark.skipif(not native.bfloat16_available(), reason="needs cnnlab's compiled kernels and AVX512-BF16")
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(
    ("channels", "kernel", "stride", "padding", "dilation", "groups"),
    [
        ((24, 64), 3, 1, 1, 1, 1),  # one term per kernel row (K = 3·24), spans crossing the edge
        ((64, 40), 3, 2, 1, 1, 1),  # stride 2: four residue classes in the input gradient
        ((7, 45), (3, 5), (2, 3), (2, 1), (2, 1), 1),  # one term per tap, odd channel counts
        ((8, 12), 3, (1, 2), (0, 2), (1, 2), 2),  # groups
        ((16, 8), (1, 3), 1, (0, 4), 1, 1),  # padding wider than the kernel
        ((32, 96), 2, 3, 0, 1, 1),  # stride > kernel: input pixels no output reads
    ],
)
def test_bfloat16_direct_kernels_match_torch(channels, kernel, stride, padding, dilation, groups, channels_last):
    """bfloat16 convolutions on the AVX512-BF16 microkernel (float32 accumulation): output and
    both gradients agree with torch's float32 convolution of the same bfloat16 numbers, to
    bfloat16's rounding of the result."""
    c_in, c_out = channels
    x = torch.randn(3, c_in, 11, 13).to(torch.bfloat16)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(c_out, c_in // groups, *((kernel,) * 2 if isinstance(kernel, int) else kernel)).to(torch.bfloat16)
    args = (stride, padding, dilation, groups)
    assert select_algorithm(ConvCall(x, w, *(_pair(v) for v in args[:3]), groups)) == "direct"
    ours_in = [x.clone().requires_grad_(), w.clone().requires_grad_()]
    theirs_in = [x.float().requires_grad_(), w.float().requires_grad_()]
    ours, theirs = CF.conv2d(ours_in[0], ours_in[1], None, *args), F.conv2d(theirs_in[0], theirs_in[1], None, *args)
    assert ours.dtype == torch.bfloat16 and ours.is_contiguous(memory_format=memory_format_of(x))
    grad = torch.randn_like(theirs).to(torch.bfloat16)
    ours_grads = torch.autograd.grad(ours, ours_in, grad)
    theirs_grads = torch.autograd.grad(theirs, theirs_in, grad.float())
    for a, e in zip((ours, *ours_grads), (theirs, *theirs_grads)):
        assert a.dtype == torch.bfloat16
        torch.testing.assert_close(a.float(), e, rtol=1e-2, atol=1e-2 * e.abs().max().item())


@pytest.mark.skipif(not native.bfloat16_available(), reason="needs cnnlab's compiled kernels and AVX512-BF16")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("channels", "kernel", "stride", "padding", "dilation", "groups"),
    [
        ((3, 24), 3, 1, 1, 1, 1),  # an RGB stem: kernel rows gathered as one span
        ((3, 40), (3, 5), (2, 1), (1, 2), (1, 2), 1),  # dilated along W: tap by tap
        ((12, 21), 3, 2, 1, 1, 3),  # groups of 4 channels
        ((5, 16), (2, 3), 1, (0, 3), 1, 1),  # padding wider than the kernel: whole rows of zeros
    ],
)
def test_thin_inputs_gather_their_taps_and_auto_takes_direct_for_stems(
    dtype, channels, kernel, stride, padding, dilation, groups
):
    """Fewer than 16 (bfloat16) or 64 (float32) channels per group: the weight gradient gathers every
    tap's pixels into one product; output and weight gradient match torch's float32 convolution of
    the same numbers. ``auto`` takes ``direct`` for such an input only where it needs no gradient."""
    c_in, c_out = channels
    x = torch.randn(3, c_in, 11, 13).to(dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(c_out, c_in // groups, *((kernel,) * 2 if isinstance(kernel, int) else kernel)).to(dtype)
    args = (stride, padding, dilation, groups)
    call = ConvCall(x, w, *(_pair(v) for v in args[:3]), groups)
    if c_in // groups < 4:
        assert select_algorithm(call) == "direct"
        needing_grad = ConvCall(x.clone().requires_grad_(), w, *(_pair(v) for v in args[:3]), groups)
        assert select_algorithm(needing_grad) == "gemm"
    weight = w.clone().requires_grad_()
    reference = w.float().requires_grad_()
    ours, theirs = CF.conv2d(x, weight, None, *args), F.conv2d(x.float(), reference, None, *args)
    grad = torch.randn_like(theirs).to(dtype)
    (ours_grad,), (theirs_grad,) = (
        torch.autograd.grad(ours, weight, grad),
        torch.autograd.grad(theirs, reference, grad.float()),
    )
    tolerance = 1e-2 if dtype == torch.bfloat16 else 1e-5
    for a, e in ((ours, theirs), (ours_grad, theirs_grad)):
        torch.testing.assert_close(a.float(), e, rtol=tolerance, atol=tolerance * e.abs().max().item())


@needs_native
@pytest.mark.parametrize("channels_last", [False, True])
def test_direct_kernels_support_double_backward(channels_last):
    """``create_graph=True``: the second derivative (of the input gradient's norm by the weight)
    agrees with torch's."""
    reference, ours = twin(nn.Conv2d, cnn.Conv2d, 8, 6, 3, 1, 1)
    ours.algorithm = "direct"
    x = torch.randn(2, 8, 7, 20)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    second = []
    for layer in (reference, ours):
        xi = x.clone().requires_grad_(True)
        (grad_x,) = torch.autograd.grad(layer(xi).square().sum(), xi, create_graph=True)
        (grad_w,) = torch.autograd.grad(grad_x.square().sum(), layer.weight)
        second.append(grad_w)
    assert_close(second[1], second[0], scale=10)
