"""Every conv/pool functional against torch's in every dtype torch's CPU kernels accept, with
torch's exception types for bad arguments and torch's memory formats (issue 15).

Dtypes: where torch returns, cnnlab returns the same dtype and, for integers, the same values
(integer max pooling pads with the dtype's minimum; integer average pooling divides with
truncation); float16/bfloat16 results are no further from the float64 result than 1.5x torch's
error (cnnlab accumulates in float32 and rounds once where its sums would otherwise round each
partial sum). Where torch has no CPU kernel for a dtype (``NotImplementedError``), cnnlab may
still compute: that is a superset, not a mismatch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab import functional as C

DTYPES = [
    torch.float64,
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
]


def data(shape, dtype, generator):
    if dtype.is_floating_point:
        return torch.randn(shape, generator=generator).to(dtype)
    return torch.randint(0 if dtype == torch.uint8 else -5, 6, shape, generator=generator).to(dtype)


def weight(shape):
    return lambda x, g: (data(shape, x.dtype, g),)


# (functional name, input shape, extra positional arguments from (x, generator), keyword arguments)
OPS = [
    ("conv1d", (2, 4, 9), weight((6, 2, 3)), {"groups": 2, "padding": 1}),
    ("conv2d", (2, 4, 7, 8), weight((6, 4, 3, 3)), {"padding": 1}),
    ("conv2d", (2, 4, 7, 8), weight((6, 2, 3, 3)), {"groups": 2, "stride": 2}),
    ("conv2d", (2, 4, 7, 8), weight((8, 1, 3, 3)), {"groups": 4, "padding": 1}),
    ("conv3d", (2, 4, 5, 6, 7), weight((6, 2, 3, 3, 3)), {"groups": 2, "padding": 1}),
    ("conv_transpose1d", (2, 4, 9), weight((4, 3, 3)), {"stride": 2}),
    ("conv_transpose2d", (2, 4, 5, 6), weight((4, 3, 3, 3)), {"stride": 2, "padding": 1}),
    ("conv_transpose2d", (2, 4, 5, 6), weight((4, 3, 3, 3)), {"groups": 2, "stride": 2}),
    ("conv_transpose3d", (2, 4, 3, 4, 5), weight((4, 3, 3, 3, 3)), {"stride": 2}),
    ("max_pool1d", (2, 3, 9), lambda x, g: (3,), {"stride": 2, "padding": 1}),
    ("max_pool2d", (2, 3, 9, 8), lambda x, g: (3,), {"stride": 2, "padding": 1}),
    ("max_pool2d", (2, 3, 9, 8), lambda x, g: (2,), {"return_indices": True}),
    ("max_pool3d", (2, 3, 5, 6, 7), lambda x, g: (3,), {"stride": 2, "padding": 1, "return_indices": True}),
    ("avg_pool1d", (2, 3, 9), lambda x, g: (3,), {"stride": 2, "padding": 1}),
    ("avg_pool2d", (2, 3, 9, 8), lambda x, g: (3,), {"stride": 2, "padding": 1}),
    ("avg_pool3d", (2, 3, 5, 6, 7), lambda x, g: (3,), {"stride": 2, "padding": 1}),
    ("lp_pool1d", (2, 3, 9), lambda x, g: (2.0, 3), {"stride": 2}),
    ("lp_pool2d", (2, 3, 9, 8), lambda x, g: (2.0, 3), {"stride": 2}),
    ("lp_pool3d", (2, 3, 5, 6, 7), lambda x, g: (2.0, 2), {}),
    ("adaptive_avg_pool1d", (2, 3, 9), lambda x, g: (4,), {}),
    ("adaptive_avg_pool2d", (2, 3, 9, 8), lambda x, g: ((4, 3),), {}),
    ("adaptive_avg_pool3d", (2, 3, 5, 6, 7), lambda x, g: ((2, 3, 4),), {}),
    ("adaptive_max_pool1d", (2, 3, 9), lambda x, g: (4,), {}),
    ("adaptive_max_pool2d", (2, 3, 9, 8), lambda x, g: ((4, 3),), {"return_indices": True}),
    ("adaptive_max_pool3d", (2, 3, 5, 6, 7), lambda x, g: ((2, 3, 4),), {"return_indices": True}),
    ("fractional_max_pool2d", (2, 3, 9, 8), lambda x, g: (2, 4), {"return_indices": True}),
    ("fractional_max_pool3d", (2, 3, 5, 6, 7), lambda x, g: (2, 3), {"return_indices": True}),
]


def _call(module, name, x, args, kwargs):
    torch.manual_seed(1)  # fractional pooling draws its windows: the same draw for both
    out = getattr(module, name)(x, *args, **kwargs)
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("name", "shape", "extra", "kwargs"), OPS, ids=[f"{op[0]}-{i}" for i, op in enumerate(OPS)])
def test_every_dtype_torch_accepts(name, shape, extra, kwargs, dtype):
    generator = torch.Generator().manual_seed(0)
    x = data(shape, dtype, generator)
    if name.startswith("lp_pool"):
        x = x.abs()
    args = extra(x, generator)
    try:
        expected = _call(F, name, x, args, kwargs)
    except NotImplementedError:
        pytest.skip(f"torch has no CPU kernel of {name} for {dtype}")
    ours = _call(C, name, x, args, kwargs)
    assert [t.dtype for t in ours] == [t.dtype for t in expected]
    assert [t.shape for t in ours] == [t.shape for t in expected]
    for index, expected_index in zip(ours[1:], expected[1:]):  # indices are exact in every dtype
        assert torch.equal(index, expected_index)
    if not expected[0].is_floating_point():
        assert torch.equal(ours[0], expected[0])
        return
    if name.startswith("fractional"):
        reference = expected[0].double()  # the windows are the data's: compare with torch's own result
    else:
        wide = tuple(a.double() if isinstance(a, torch.Tensor) else a for a in args)
        reference = _call(F, name, x.double(), wide, kwargs)[0]
    theirs = (expected[0].double() - reference).abs().max().item()
    mine = (ours[0].double() - reference).abs().max().item()
    assert mine <= 1.5 * theirs + 1e-6, f"{name} {dtype}: error {mine:.3g} vs torch's {theirs:.3g}"


def _raises_like_torch(ours, theirs):
    with pytest.raises(Exception) as expected:
        theirs()
    with pytest.raises(expected.type):
        ours()


@pytest.mark.parametrize(
    "call",
    [
        # bias dtype differs from input/weight: torch raises, it does not promote
        lambda f: f.conv2d(
            torch.randn(1, 2, 5, 5, dtype=torch.float64), torch.randn(3, 2, 3, 3, dtype=torch.float64), torch.randn(3)
        ),
        lambda f: f.conv2d(torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3), torch.randn(3).half()),
        lambda f: f.conv1d(torch.randn(1, 2, 5), torch.randn(3, 2, 3), torch.randn(3, dtype=torch.complex64)),
        lambda f: f.conv3d(torch.randn(1, 2, 5, 5, 5), torch.randn(3, 2, 3, 3, 3), torch.randn(3).double()),
        # groups <= 0 in the functionals
        lambda f: f.conv2d(torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3), groups=0),
        lambda f: f.conv1d(torch.randn(1, 2, 5), torch.randn(3, 2, 3), groups=-1),
        lambda f: f.conv_transpose2d(torch.randn(1, 2, 5, 5), torch.randn(2, 3, 3, 3), groups=0),
        # adaptive pools: an empty output_size, a 2-D input to the 2-D variants
        lambda f: f.adaptive_avg_pool2d(torch.randn(1, 2, 5, 5), ()),
        lambda f: f.adaptive_max_pool2d(torch.randn(1, 2, 5, 5), ()),
        lambda f: f.adaptive_avg_pool1d(torch.randn(1, 2, 5), ()),
        lambda f: f.adaptive_max_pool1d(torch.randn(1, 2, 5), ()),
        lambda f: f.adaptive_avg_pool2d(torch.randn(5, 5), 2),
        lambda f: f.adaptive_max_pool2d(torch.randn(5, 5), 2),
        lambda f: f.adaptive_avg_pool3d(torch.randn(5, 5, 5), 2),
        # too few dims to keep the sizes an output_size leaves as None: ValueError, read before the rank
        lambda f: f.adaptive_avg_pool2d(torch.randn(4, 5), (None, 2)),
        lambda f: f.adaptive_max_pool2d(torch.randn(5), (None, None)),
        lambda f: f.adaptive_avg_pool3d(torch.randn(4, 5, 6), (2, None, 2)),
        lambda f: f.adaptive_max_pool3d(torch.randn(4, 5), (None, None, None)),
        # 3-D pooling bounds the padding by half the kernel (not the dilated kernel)
        lambda f: f.max_pool3d(torch.randn(1, 1, 6, 6, 6), 3, 1, 2, dilation=2),
        lambda f: f.fractional_max_pool2d(torch.randn(1, 2, 5, 5), 3, output_size=4),
    ],
)
def test_bad_arguments_raise_torchs_exception_type(call):
    _raises_like_torch(lambda: call(C), lambda: call(F))


def test_transposed_convolution_keeps_the_inputs_dtype_with_another_bias_dtype():
    x, w, b = torch.randn(1, 2, 5), torch.randn(2, 3, 3), torch.randn(3, dtype=torch.float64)
    ours, theirs = C.conv_transpose1d(x, w, b), F.conv_transpose1d(x, w, b)
    assert ours.dtype == theirs.dtype == torch.float32
    torch.testing.assert_close(ours, theirs)


def _layout(t: torch.Tensor) -> str:
    if t.is_contiguous():
        return "contiguous"
    layout = {4: torch.channels_last, 5: torch.channels_last_3d}.get(t.dim())
    return str(layout) if layout is not None and t.is_contiguous(memory_format=layout) else f"strides {t.stride()}"


CL4 = lambda: torch.randn(2, 3, 9, 8).contiguous(memory_format=torch.channels_last)  # noqa: E731
CL5 = lambda: torch.randn(2, 3, 5, 6, 7).contiguous(memory_format=torch.channels_last_3d)  # noqa: E731


@pytest.mark.parametrize(
    ("name", "make", "args", "kwargs"),
    [
        ("conv2d", CL4, (torch.randn(4, 3, 3, 3),), {}),
        ("conv3d", CL5, (torch.randn(4, 3, 3, 3, 3),), {}),
        ("conv_transpose2d", CL4, (torch.randn(3, 4, 3, 3),), {"stride": 2}),
        ("conv_transpose3d", CL5, (torch.randn(3, 4, 3, 3, 3),), {"stride": 2}),
        ("max_pool2d", CL4, (2,), {"return_indices": True}),
        ("max_pool2d", CL4, (3,), {"stride": 2, "padding": 1, "return_indices": True}),
        ("max_pool3d", CL5, (2,), {"return_indices": True}),
        ("avg_pool2d", CL4, (2,), {}),
        ("avg_pool3d", CL5, (2,), {}),
        ("lp_pool2d", CL4, (2.0, 2), {}),
        ("lp_pool3d", CL5, (2.0, 2), {}),
        ("adaptive_avg_pool2d", CL4, ((4, 3),), {}),
        ("adaptive_avg_pool3d", CL5, ((2, 3, 4),), {}),
        ("adaptive_max_pool2d", CL4, ((4, 3),), {"return_indices": True}),  # non-tiling windows
        ("adaptive_max_pool2d", CL4, ((3, 4),), {"return_indices": True}),  # tiling windows
        ("adaptive_max_pool3d", CL5, ((2, 3, 4),), {"return_indices": True}),
        ("fractional_max_pool2d", CL4, (2, 4), {"return_indices": True}),
        ("fractional_max_pool3d", CL5, (2, 3), {"return_indices": True}),
    ],
)
def test_memory_format_follows_torch(name, make, args, kwargs):
    x = make()
    ours, theirs = _call(C, name, x, args, kwargs), _call(F, name, x, args, kwargs)
    assert [_layout(t) for t in ours] == [_layout(t) for t in theirs]


@pytest.mark.parametrize("dims", [2, 3])
def test_max_unpool_memory_format_follows_torch(dims):
    x = CL4() if dims == 2 else CL5()
    values, indices = getattr(F, f"max_pool{dims}d")(x, 2, return_indices=True)
    size = x.shape[2:]
    ours = getattr(C, f"max_unpool{dims}d")(values, indices, 2, output_size=size)
    theirs = getattr(F, f"max_unpool{dims}d")(values, indices, 2, output_size=size)
    assert _layout(ours) == _layout(theirs)
    assert torch.equal(ours, theirs)


def test_adaptive_max_pool2d_indices_are_contiguous():
    """Non-tiling windows used to give indices with transposed strides (``.view`` failed)."""
    _, indices = C.adaptive_max_pool2d(torch.randn(2, 3, 10, 9), (3, 4), return_indices=True)
    assert indices.is_contiguous() and indices.view(-1).numel() == 2 * 3 * 3 * 4


FLOATS = [torch.float64, torch.float32, torch.float16, torch.bfloat16]


def _input_gradient(module, name, x, args, kwargs, upstream):
    x = x.detach().clone().requires_grad_(True)
    wide = upstream.to(x.dtype)
    _call(module, name, x, args, kwargs)[0].backward(wide)
    return x.grad


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize(("name", "shape", "extra", "kwargs"), OPS, ids=[f"{op[0]}-{i}" for i, op in enumerate(OPS)])
def test_input_gradients_in_every_float_dtype_torch_accepts(name, shape, extra, kwargs, dtype):
    """The gradient too: float32/float64 to their tolerance, float16/bfloat16 no further from the
    float64 gradient than 1.5x torch's error."""
    generator = torch.Generator().manual_seed(0)
    x = data(shape, dtype, generator)
    if name.startswith("lp_pool"):
        x = x.abs() + 0.1  # the gradient of the 2-norm is undefined at 0
    args = extra(x, generator)
    try:
        out = _call(F, name, x, args, kwargs)[0]
        upstream = torch.randn(out.shape, generator=generator)
        theirs = _input_gradient(F, name, x, args, kwargs, upstream)
    except (NotImplementedError, RuntimeError) as error:
        pytest.skip(f"torch has no CPU gradient of {name} for {dtype}: {str(error)[:60]}")
    ours = _input_gradient(C, name, x, args, kwargs, upstream)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    if dtype in (torch.float64, torch.float32):
        tolerance = {torch.float64: 1e-10, torch.float32: 1e-4}[dtype]
        torch.testing.assert_close(ours, theirs, rtol=tolerance, atol=tolerance)
        return
    wide = tuple(a.double() if isinstance(a, torch.Tensor) else a for a in args)
    if name.startswith("fractional"):  # its windows come from a draw in the input's dtype
        reference = theirs.double()
    else:  # the float64 gradient of the same function (max pools pick the same taps: same values)
        reference = _input_gradient(F, name, x.double(), wide, kwargs, upstream)
    error_theirs = (theirs.double() - reference).abs().max().item()
    error_ours = (ours.double() - reference).abs().max().item()
    assert error_ours <= 1.5 * error_theirs + 1e-6, f"{name} {dtype}: {error_ours:.3g} vs torch's {error_theirs:.3g}"
