"""The module contract of every cnnlab pooling layer: repr and arguments like torch's twin,
convert, dtypes, devices, unbatched / empty / channels_last / non-contiguous input, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab import nn as cnn
from tests.conftest import DEVICES, assert_close, compare_forward_backward

# (torch class or None, cnnlab class, constructor args, constructor kwargs, input shape)
POOLS = [
    (nn.MaxPool1d, cnn.MaxPool1d, (3,), {"stride": 2, "padding": 1}, (2, 4, 17)),
    (nn.MaxPool2d, cnn.MaxPool2d, (2,), {}, (2, 4, 10, 9)),
    (nn.MaxPool2d, cnn.MaxPool2d, (3,), {"stride": 2, "padding": 1, "ceil_mode": True}, (2, 4, 10, 9)),
    (nn.AvgPool1d, cnn.AvgPool1d, (3,), {"stride": 2, "padding": 1, "count_include_pad": False}, (2, 4, 17)),
    (nn.AvgPool2d, cnn.AvgPool2d, (3,), {"stride": 2, "padding": 1, "ceil_mode": True}, (2, 4, 10, 9)),
    (nn.LPPool1d, cnn.LPPool1d, (2, 3), {"stride": 2}, (2, 4, 17)),
    (nn.LPPool2d, cnn.LPPool2d, (2, 2), {}, (2, 4, 10, 9)),
    (nn.AdaptiveAvgPool1d, cnn.AdaptiveAvgPool1d, (5,), {}, (2, 4, 17)),
    (nn.AdaptiveAvgPool2d, cnn.AdaptiveAvgPool2d, ((3, 4),), {}, (2, 4, 10, 9)),
    (nn.AdaptiveMaxPool1d, cnn.AdaptiveMaxPool1d, (5,), {}, (2, 4, 17)),
    (nn.AdaptiveMaxPool2d, cnn.AdaptiveMaxPool2d, ((3, 4),), {}, (2, 4, 10, 9)),
    (None, cnn.GlobalAvgPool2d, (), {"flatten": True}, (2, 4, 10, 9)),
    (None, cnn.GlobalMaxPool2d, (), {}, (2, 4, 10, 9)),
    (None, cnn.ChannelMaxPool, (2,), {}, (2, 4, 10, 9)),
    (None, cnn.DistanceWeightedPool2d, (3,), {"stride": 2, "padding": 1}, (2, 4, 10, 9)),
    (None, cnn.DistanceWeightedPool2d, (2,), {"kind": "inverse"}, (2, 4, 10, 9)),
    (None, cnn.BlurPool2d, (3, 2), {}, (2, 4, 10, 9)),
    (None, cnn.MaxBlurPool2d, (2, 3, 2), {}, (2, 4, 10, 9)),
]
TWINNED = [p for p in POOLS if p[0] is not None]


def _ids(specs):
    return [f"{spec[1].__name__}-{i}" for i, spec in enumerate(specs)]


def _input(shape, cls, **kwargs):
    """Tie-free input (max pools route the gradient to one element); positive for LP pools."""
    x = torch.randperm(torch.Size(shape).numel(), **kwargs).view(shape) / 10.0
    return x if cls in (cnn.LPPool1d, cnn.LPPool2d) else x - x.mean()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("spec", TWINNED, ids=_ids(TWINNED))
def test_matches_torch_twin(spec, dtype, device):
    torch_cls, cnnlab_cls, args, kwargs, shape = spec
    reference, ours = torch_cls(*args, **kwargs), cnnlab_cls(*args, **kwargs)
    assert repr(ours).split("(", 1)[1] == repr(reference).split("(", 1)[1]
    compare_forward_backward(reference, ours, _input(shape, cnnlab_cls, dtype=dtype, device=device))
    converted = cnnlab.convert(nn.Sequential(reference), to="cnnlab")
    assert type(converted[0]) is cnnlab_cls
    assert type(cnnlab.convert(converted, to="torch")[0]) is torch_cls


@pytest.fixture(params=POOLS, ids=_ids(POOLS))
def layer_and_shape(request):
    _, cnnlab_cls, args, kwargs, shape = request.param
    return cnnlab_cls(*args, **kwargs), shape


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device(layer_and_shape, dtype, device):
    layer, shape = layer_and_shape
    layer = layer.to(device)
    x = _input(shape, type(layer), dtype=dtype, device=device).requires_grad_(True)
    out = layer.to(dtype)(x)
    assert out.dtype == dtype and out.device.type == device
    out.sum().backward()
    assert x.grad.shape == x.shape


def test_bfloat16_forward(layer_and_shape):
    layer, shape = layer_and_shape
    x = _input(shape, type(layer))
    expected = layer(x)
    out = layer.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    assert_close(out.float(), expected, torch.bfloat16, scale=5)


def test_unbatched_empty_channels_last_non_contiguous(layer_and_shape):
    layer, shape = layer_and_shape
    x = _input(shape, type(layer))
    expected = layer(x)
    assert_close(layer(x[0]), expected[0])  # unbatched
    empty = layer(x[:0])
    assert empty.shape == (0, *expected.shape[1:])
    if x.dim() == 4:
        assert_close(layer(x.to(memory_format=torch.channels_last)), expected)
    wide = torch.zeros(*shape[:-1], 2 * shape[-1])
    wide[..., ::2] = x
    assert not wide[..., ::2].is_contiguous()
    assert_close(layer(wide[..., ::2]), expected)


@pytest.mark.parametrize("size", [(32, 32), (40, 40), (57, 43)])
def test_adaptive_pooling_accepts_any_input_size(size):
    """Pooling handles inputs of varying size: a model ending in adaptive/global pooling maps
    32×32, 40×40 and 57×43 images to the same output shape."""
    model = nn.Sequential(
        cnn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        cnn.MaxPool2d(2),
        cnn.AdaptiveAvgPool2d((4, 4)),
        nn.Flatten(),
        nn.Linear(8 * 16, 10),
    )
    assert model(torch.randn(2, 3, *size)).shape == (2, 10)
    assert cnn.GlobalMaxPool2d(flatten=True)(torch.randn(2, 8, *size)).shape == (2, 8)


BAD_ARGUMENTS = [
    (lambda: cnn.MaxPool2d(2, padding=2), RuntimeError, "padding=\\(2, 2\\), kernel_size=\\(2, 2\\)"),
    (lambda: cnn.AvgPool2d(3, padding=2), RuntimeError, "pad should be at most half"),
    (lambda: cnn.MaxPool2d(0), RuntimeError, "kernel_size=\\(0, 0\\)"),
    (lambda: cnn.MaxPool1d(2, stride=0), RuntimeError, "stride=\\(0,\\)"),
    (lambda: cnn.MaxPool2d(2, padding=-1), RuntimeError, "padding=\\(-1, -1\\)"),
    (lambda: cnn.MaxPool2d(5)(torch.randn(1, 1, 4, 4)), RuntimeError, "output size \\(0, 0\\) is too small"),
    (lambda: cnn.AvgPool2d(5)(torch.randn(1, 1, 4, 4)), RuntimeError, "too small"),
    (lambda: cnn.MaxPool2d(2)(torch.randn(4, 4)), RuntimeError, "3D \\(unbatched\\) or 4D.*\\[4, 4\\]"),
    (lambda: cnn.AdaptiveAvgPool2d(2)(torch.randn(4, 4)), RuntimeError, "\\[4, 4\\]"),
    (lambda: cnn.AdaptiveMaxPool2d(2)(torch.randn(1, 1, 0, 4)), RuntimeError, "non-empty"),
    (lambda: cnn.AdaptiveAvgPool2d(-1)(torch.randn(1, 1, 4, 4)), RuntimeError, "output_size=\\(-1, -1\\)"),
    (lambda: cnn.BlurPool2d(9), ValueError, "filter_size=9"),
    (lambda: cnn.DistanceWeightedPool2d(3, kind="cosine"), ValueError, "kind='cosine'"),
    (lambda: cnn.DistanceWeightedPool2d(3, sigma=0), ValueError, "sigma=0"),
    (lambda: cnn.ChannelMaxPool(3)(torch.randn(1, 4, 2, 2)), RuntimeError, "channels \\(4\\).*kernel_size=3"),
    (
        lambda: cnn.MaxUnpool2d(2)(torch.randn(1, 1, 2, 2), torch.zeros(1, 1, 2, 2, dtype=torch.long), (9, 9)),
        ValueError,
        "output_size=\\[9, 9\\]",
    ),
]


@pytest.mark.parametrize(("make", "error", "message"), BAD_ARGUMENTS)
def test_bad_arguments_raise_torch_exception_type(make, error, message):
    with pytest.raises(error, match=message):
        make()
