"""What torch.nn users asked for and torch never gave (issue 27), each against its reference:
TensorFlow's SAME padding for any stride (the rule written out by hand), transposed convolutions
with padding modes (the adjoint identity and gradcheck), deformable convolution (torchvision),
weight-standardised convolution (the formula); and PyTorch's own test cases that cnnlab used to
get wrong."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlab
from cnnlab import functional as C
from cnnlab import nn as cnn

F64 = torch.float64


# ---------------------------------------------------------------- padding="tf_same"
def tf_same_pads(size, kernel, stride, dilation=(1, 1, 1)):
    """TensorFlow's SAME rule, written out: ceil(in / s) outputs, total padding
    max((ceil(in/s) − 1)·s + (k − 1)·d + 1 − in, 0), the odd pixel after. As F.pad's list."""
    pairs = []
    for n, k, s, d in zip(size, kernel, stride, dilation):
        total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
        pairs.append((total // 2, total - total // 2))
    return [p for pair in reversed(pairs) for p in pair]


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize(
    ("kernel", "stride", "dilation"), [(3, 2, 1), (4, 3, 1), (2, 2, 1), (5, 1, 1), (3, 2, 2), (1, 3, 1)]
)
def test_tf_same_convolution_is_tensorflows_rule(dims, kernel, stride, dilation):
    sizes = (7, 10, 9)[:dims]
    x = torch.randn(2, 4, *sizes, dtype=F64, requires_grad=True)
    w = torch.randn(6, 2, *(kernel,) * dims, dtype=F64, requires_grad=True)
    conv = getattr(C, f"conv{dims}d")
    ours = conv(x, w, None, stride, "tf_same", dilation, 2)
    pads = tf_same_pads(sizes, (kernel,) * dims, (stride,) * dims, (dilation,) * dims)
    reference = getattr(F, f"conv{dims}d")(F.pad(x, pads), w, None, stride, 0, dilation, 2)
    assert ours.shape[2:] == tuple(math.ceil(n / stride) for n in sizes)
    torch.testing.assert_close(ours, reference)
    grad = torch.randn_like(reference)
    for a, b in zip(torch.autograd.grad(ours, (x, w), grad), torch.autograd.grad(reference, (x, w), grad)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(("kernel", "stride"), [((3, 3), (2, 2)), ((2, 3), (2, 3)), ((3, 1), (1, 2)), ((5, 5), (1, 1))])
def test_tf_same_pooling_is_tensorflows_rule(kernel, stride):
    """Max pooling: the maximum over the window's real pixels (the padding is −inf), indices into
    the unpadded input; average pooling: count_include_pad counts the padding (timm's AvgPool2dSame),
    without it the divisor is the real pixels (TensorFlow's avg_pool)."""
    x = torch.randn(2, 3, 11, 12, dtype=F64)
    pads = tf_same_pads(x.shape[2:], kernel, stride)
    values, index = C.max_pool2d(x, kernel, stride, "tf_same", return_indices=True)
    torch.testing.assert_close(values, F.max_pool2d(F.pad(x, pads, value=-math.inf), kernel, stride))
    assert torch.equal(x.flatten(2).gather(2, index.flatten(2)).view_as(values), values)
    padded_sum = F.avg_pool2d(F.pad(x, pads), kernel, stride)
    torch.testing.assert_close(C.avg_pool2d(x, kernel, stride, "tf_same"), padded_sum)
    count = F.avg_pool2d(F.pad(torch.ones_like(x), pads), kernel, stride)
    torch.testing.assert_close(C.avg_pool2d(x, kernel, stride, "tf_same", count_include_pad=False), padded_sum / count)


def test_tf_same_layers_and_the_drop_in_contract():
    """The layers take 'tf_same' (1-, 2-, 3-D convolutions and max/avg pools), while 'same' with a
    stride keeps raising torch's errors: ValueError from the layer, RuntimeError from the function."""
    x = torch.randn(2, 3, 7, 9, 10)
    assert cnn.Conv3d(3, 4, 3, 2, "tf_same")(x).shape == (2, 4, 4, 5, 5)
    assert cnn.MaxPool3d(3, 2, "tf_same")(x).shape == cnn.AvgPool3d(3, 2, "tf_same")(x).shape == (2, 3, 4, 5, 5)
    assert cnn.Conv1d(3, 4, 4, 3, "tf_same")(x[:, :, 0, 0]).shape == (2, 4, 4)
    assert cnn.AvgPool1d(3, 2, "tf_same")(x[:, :, 0, 0]).shape == cnn.MaxPool1d(3, 2, "tf_same")(x[:, :, 0, 0]).shape
    assert "padding=tf_same" in repr(cnn.Conv2d(3, 4, 3, 2, "tf_same"))
    with pytest.raises(ValueError, match="strided"):
        nn.Conv2d(3, 4, 3, 2, "same")
    with pytest.raises(ValueError, match="strided"):
        cnn.Conv2d(3, 4, 3, 2, "same")
    for ours, theirs in ((C.conv2d, F.conv2d), (C.conv3d, F.conv3d)):
        dims = 2 if ours is C.conv2d else 3
        args = (torch.randn(1, 2, *(5,) * dims), torch.randn(3, 2, *(3,) * dims), None, 2, "same")
        with pytest.raises(RuntimeError, match="strided"):
            theirs(*args)
        with pytest.raises(RuntimeError, match="strided"):
            ours(*args)


def test_tf_same_under_export_and_compile_with_a_dynamic_batch_and_spatial_size():
    model = nn.Sequential(cnn.Conv2d(3, 8, 3, 2, "tf_same"), cnn.MaxPool2d(3, 2, "tf_same"),
                          cnn.AvgPool2d(2, 2, "tf_same", count_include_pad=False)).eval()  # fmt: skip
    dims = {0: torch.export.Dim("batch", max=64), 2: torch.export.Dim("height", min=16, max=256),
            3: torch.export.Dim("width", min=16, max=256)}  # fmt: skip
    exported = torch.export.export(model, (torch.randn(2, 3, 17, 19),), dynamic_shapes={"input": dims})
    for shape in ((1, 3, 17, 19), (5, 3, 32, 32), (3, 3, 16, 41)):
        x = torch.randn(shape)
        expected = model(x)
        assert expected.shape[2:] == tuple(math.ceil(math.ceil(math.ceil(n / 2) / 2) / 2) for n in shape[2:])
        torch.testing.assert_close(exported.module()(x), expected)
    # inductor takes minutes to simplify the index arithmetic of a stack of symbolic-size layers on 2
    # cores; one layer shows that a compiled graph serves every size without recompiling
    torch._dynamo.reset()
    compiled = torch.compile(model[0], fullgraph=True, dynamic=True)
    first, second = torch.randn(2, 3, 17, 19), torch.randn(3, 3, 32, 24)
    torch.testing.assert_close(compiled(first), model[0](first))
    with torch._dynamo.config.patch(error_on_recompile=True):  # the second size runs the first one's graph
        torch.testing.assert_close(compiled(second), model[0](second))


# ---------------------------------------------------------------- transposed padding modes
@pytest.mark.parametrize("mode", ["zeros", "circular", "reflect", "replicate"])
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize(("stride", "padding", "dilation", "groups"), [(1, 1, 1, 1), (2, 1, 1, 2), (3, 2, 2, 1)])
def test_transposed_padding_modes_are_the_adjoint_of_the_padded_convolution(mode, dims, stride, padding, dilation,
                                                                             groups):  # fmt: skip
    """⟨conv(x), y⟩ = ⟨x, convT(y)⟩ for the convolution that pads x with ``mode``: the pair an
    encoder/decoder needs to be consistent."""
    x = torch.randn(2, 4, *(9, 8, 7)[:dims], dtype=F64)
    w = torch.randn(6, 4 // groups, *(3,) * dims, dtype=F64)
    pad = [padding] * (2 * dims)
    y = getattr(F, f"conv{dims}d")(F.pad(x, pad, mode="constant" if mode == "zeros" else mode), w, None, stride, 0,
                                   dilation, groups)  # fmt: skip
    v = torch.randn_like(y)
    transpose = getattr(C, f"conv_transpose{dims}d")
    size = transpose(v, w, None, stride, padding, 0, groups, dilation, padding_mode=mode).shape[2:]
    output_padding = tuple(a - b for a, b in zip(x.shape[2:], size))
    adjoint = transpose(v, w, None, stride, padding, output_padding, groups, dilation, padding_mode=mode)
    torch.testing.assert_close((y * v).sum(), (x * adjoint).sum())


@pytest.mark.parametrize("mode", ["circular", "reflect", "replicate"])
def test_transposed_padding_mode_layers_gradcheck_and_refuse_what_the_mode_cannot_do(mode):
    layer = cnn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1, padding_mode=mode, dtype=F64)
    assert f"padding_mode={mode}" in repr(layer)
    with pytest.raises(ValueError, match='Only "zeros"'):
        nn.ConvTranspose2d(3, 2, 3, padding_mode=mode)  # what torch says
    x = torch.randn(1, 3, 4, 5, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))
    assert torch.autograd.gradgradcheck(layer, (x,))
    if mode != "replicate":  # reflect needs padding < output size, circular padding <= output size
        with pytest.raises(ValueError, match="padding"):
            C.conv_transpose2d(torch.randn(1, 3, 1, 1), torch.randn(3, 2, 5, 5), padding=2, padding_mode=mode)


def test_convert_to_torch_leaves_what_torch_cannot_compute():
    model = nn.Sequential(cnn.Conv2d(3, 4, 3, 2, "tf_same"), cnn.ConvTranspose2d(4, 4, 3, padding_mode="circular"),
                          cnn.StdConv2d(4, 4, 3), cnn.Conv2d(4, 4, 3))  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        converted = cnnlab.convert(model, to="torch")
    assert [type(layer).__module__.split(".")[0] for layer in converted] == ["cnnlab", "cnnlab", "cnnlab", "torch"]
    (message,) = [str(w.message) for w in caught]
    assert "stays on cnnlab" in message and "tf_same" in message and "circular" in message and "standard" in message


# ---------------------------------------------------------------- deformable convolution
torchvision = pytest.importorskip("torchvision")


@pytest.mark.parametrize(
    ("channels", "kernel", "stride", "padding", "dilation", "groups", "offset_groups", "mask"),
    [
        ((4, 6), 3, 1, 1, 1, 1, 1, False),
        ((4, 6), 3, 2, 1, 1, 2, 2, True),
        ((6, 4), (2, 3), (2, 1), (0, 2), (2, 1), 2, 3, True),
    ],
)
def test_deform_conv2d_matches_torchvision(channels, kernel, stride, padding, dilation, groups, offset_groups, mask):
    """Values and the gradients of input, offset, mask, weight and bias, with offsets of a few
    pixels (points between pixels and outside the image)."""
    c_in, c_out = channels
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    layer = torchvision.ops.DeformConv2d(c_in, c_out, kernel, stride, padding, dilation, groups).double()
    x = torch.randn(2, c_in, 9, 8, dtype=F64, requires_grad=True)
    s, p, d = (torch.nn.modules.utils._pair(v) for v in (stride, padding, dilation))
    oh, ow = ((n + 2 * pp - dd * (k - 1) - 1) // ss + 1 for n, k, ss, pp, dd in zip((9, 8), (kh, kw), s, p, d))
    offset = (torch.randn(2, 2 * offset_groups * kh * kw, oh, ow, dtype=F64) * 2).requires_grad_()
    modulation = torch.rand(2, offset_groups * kh * kw, oh, ow, dtype=F64, requires_grad=True) if mask else None
    ours = cnn.DeformConv2d(c_in, c_out, kernel, stride, padding, dilation, groups, dtype=F64)
    ours.load_state_dict(layer.state_dict())
    mine, theirs = ours(x, offset, modulation), layer(x, offset, modulation)
    torch.testing.assert_close(mine, theirs)
    inputs = [x, offset, ours.weight, ours.bias] + ([modulation] if mask else [])
    reference_inputs = [x, offset, layer.weight, layer.bias] + ([modulation] if mask else [])
    grad = torch.randn_like(theirs)
    for a, b in zip(torch.autograd.grad(mine, inputs, grad), torch.autograd.grad(theirs, reference_inputs, grad)):
        torch.testing.assert_close(a, b)


def test_deform_conv2d_gradcheck_and_errors():
    x = torch.randn(1, 2, 5, 5, dtype=F64, requires_grad=True)
    offset = (torch.rand(1, 18, 5, 5, dtype=F64) * 0.8 + 0.1).requires_grad_()  # away from pixel boundaries
    w = torch.randn(3, 2, 3, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: C.deform_conv2d(t[0], t[1], t[2], padding=1), (x, offset, w))
    with pytest.raises(RuntimeError, match="offset"):
        C.deform_conv2d(x, offset[:, :17], w, padding=1)


def test_deform_conv2d_converts_both_ways_and_the_block_starts_as_a_conv():
    reference = torchvision.ops.DeformConv2d(4, 6, 3, padding=1)
    converted = cnnlab.convert(nn.Sequential(reference), to="cnnlab")
    assert type(converted[0]) is cnn.DeformConv2d and converted[0].weight is reference.weight
    assert type(cnnlab.convert(converted, to="torch")[0]) is torchvision.ops.DeformConv2d
    block = cnn.DeformableConv2d(4, 6, 3, stride=2, padding=1)  # zero-initialised offsets: a plain convolution
    x = torch.randn(2, 4, 9, 9)
    torch.testing.assert_close(block(x), F.conv2d(x, block.conv.weight, block.conv.bias, 2, 1))
    with pytest.raises(ValueError, match="offset_groups"):
        cnn.DeformableConv2d(4, 6, 3, offset_groups=3)


# ---------------------------------------------------------------- weight standardisation
def test_std_conv2d_is_the_formula():
    layer = cnn.StdConv2d(4, 6, 3, padding=1, gain=True)
    with torch.no_grad():
        layer.gain.uniform_(0.5, 2)
    x = torch.randn(2, 4, 8, 8)
    w = layer.weight
    mean, var = w.mean((1, 2, 3), keepdim=True), w.var((1, 2, 3), unbiased=False, keepdim=True)
    expected = F.conv2d(x, layer.gain * (w - mean) / torch.sqrt(var + 1e-6), layer.bias, 1, 1)
    torch.testing.assert_close(layer(x), expected)
    standardised = C.standardize_weight(w)
    torch.testing.assert_close(standardised.mean((1, 2, 3)), torch.zeros(6), atol=1e-6, rtol=0)
    # var / (var + eps): one up to the eps of a filter's variance (~1e-2 here)
    torch.testing.assert_close(standardised.var((1, 2, 3), unbiased=False), torch.ones(6), atol=1e-3, rtol=0)
    assert isinstance(layer, nn.Conv2d) and set(layer.state_dict()) == {"weight", "bias", "gain"}


# ---------------------------------------------------------------- PyTorch's own test cases
def test_fractional_max_pool_cases_from_torchs_tests():
    """An empty batch; samples for more images than the batch (torch uses the first N, also for
    unbatched input); samples outside [0, 1), whose windows torch computes by truncation."""
    empty = torch.randn(0, 1, 4, 5, 4)
    assert C.fractional_max_pool3d(empty, (2, 2, 1), output_size=2).shape == (0, 1, 2, 2, 2)
    samples = torch.rand(2, 4, 3)
    x = torch.randn(4, 5, 5, 5)
    torch.testing.assert_close(
        cnn.FractionalMaxPool3d(2, output_ratio=0.5, _random_samples=samples)(x),
        nn.FractionalMaxPool3d(2, output_ratio=0.5, _random_samples=samples)(x),
    )
    x = torch.randn(1, 2, 9, 9)
    for samples in (torch.full((1, 2, 2), -0.5), torch.rand(1, 2, 2) * 3 - 1):
        args = (x, 2, 4, None, True, samples)
        for ours, theirs in zip(C.fractional_max_pool2d(*args), F.fractional_max_pool2d(*args)):
            assert torch.equal(ours, theirs)


@pytest.mark.parametrize("name", ["conv_transpose2d", "conv_transpose3d", "adaptive_avg_pool3d"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_is_at_least_as_close_to_float32_as_torch(name, dtype):
    """Where torch's own half-precision CPU kernels sum in half precision, cnnlab sums in float32
    and rounds once: its result is never further from the float32 one than torch's (plus one
    rounding), on inputs like torch's test samples."""
    dims = 3 if name.endswith("3d") else 2
    x = torch.randn(2, 4, *(5, 6, 7)[:dims]).to(dtype)
    args = (torch.randn(4, 5, *(3,) * dims).to(dtype),) if "conv" in name else ((3, 3, 4)[:dims],)
    ours, theirs = getattr(C, name)(x, *args), getattr(F, name)(x, *args)
    exact = getattr(F, name)(x.float(), *(a.float() if torch.is_tensor(a) else a for a in args))
    eps = torch.finfo(dtype).eps * exact.abs().max()
    assert (ours.float() - exact).abs().max() <= (theirs.float() - exact).abs().max() + eps
