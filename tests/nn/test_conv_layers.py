"""The torch.nn contract of every cnnlab convolution layer: init, repr, state_dict, dtypes,
devices, shapes (unbatched, empty, channels_last, non-contiguous), errors and ``convert``."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import cnnlab
from cnnlab import nn as cnn
from tests.conftest import DEVICES, assert_close, compare_forward_backward, twin

# (torch class, cnnlab class, constructor args, constructor kwargs, input shape)
LAYERS = [
    (nn.Conv1d, cnn.Conv1d, (4, 6, 3), {"padding": 1}, (2, 4, 16)),
    (nn.Conv2d, cnn.Conv2d, (4, 6, 3), {"padding": 1, "stride": 2}, (2, 4, 10, 9)),
    (nn.Conv2d, cnn.Conv2d, (4, 8, 3), {"groups": 4, "dilation": 2, "padding": "same"}, (2, 4, 10, 9)),
    (nn.Conv2d, cnn.FFTConv2d, (4, 6, 7), {"padding": 3}, (2, 4, 12, 12)),
    (nn.ConvTranspose1d, cnn.ConvTranspose1d, (4, 6, 3), {"stride": 2, "output_padding": 1}, (2, 4, 9)),
    (nn.ConvTranspose2d, cnn.ConvTranspose2d, (4, 6, 2), {"stride": 2}, (2, 4, 5, 6)),
]
IDS = [f"{ours.__name__}-{i}" for i, (_, ours, *_rest) in enumerate(LAYERS)]


@pytest.fixture(params=LAYERS, ids=IDS)
def spec(request):
    return request.param


def test_initialisation_identical_to_torch(spec):
    """Same seed, same draws: parameters are created and initialised exactly as torch does."""
    torch_cls, cnnlab_cls, args, kwargs, _ = spec
    torch.manual_seed(123)
    reference = torch_cls(*args, **kwargs)
    torch.manual_seed(123)
    ours = cnnlab_cls(*args, **kwargs)
    assert [n for n, _ in ours.named_parameters()] == ["weight", "bias"]
    for (name, p_ref), (_, p_our) in zip(reference.named_parameters(), ours.named_parameters()):
        assert torch.equal(p_ref, p_our), name


def test_reset_parameters_distribution():
    """weight ~ U(-1/√fan_in, 1/√fan_in): bounds and variance (1/(3·fan_in)) checked on a large layer."""
    layer = cnn.Conv2d(64, 128, 3)
    fan_in = 64 * 9
    bound = fan_in**-0.5
    assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
    assert abs(layer.weight.var().item() * 3 * fan_in - 1) < 0.02


def test_repr_matches_torch(spec):
    torch_cls, cnnlab_cls, args, kwargs, _ = spec
    assert repr(cnnlab_cls(*args, **kwargs)).split("(", 1)[1] == repr(torch_cls(*args, **kwargs)).split("(", 1)[1]


def test_state_dict_round_trip(spec):
    torch_cls, cnnlab_cls, args, kwargs, shape = spec
    reference, ours = twin(torch_cls, cnnlab_cls, *args, **kwargs)
    back = torch_cls(*args, **kwargs)
    back.load_state_dict(ours.state_dict())
    x = torch.randn(shape)
    assert_close(ours(x), reference(x))
    assert torch.equal(back(x), reference(x))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_backward_dtype_device(spec, dtype, device):
    torch_cls, cnnlab_cls, args, kwargs, shape = spec
    reference, ours = twin(torch_cls, cnnlab_cls, *args, **kwargs)
    reference.to(device, dtype)
    ours.to(device, dtype)
    out = compare_forward_backward(reference, ours, torch.randn(shape, device=device, dtype=dtype))
    assert out.dtype == dtype and out.device.type == device


def test_bfloat16_forward(spec):
    torch_cls, cnnlab_cls, args, kwargs, shape = spec
    reference, ours = twin(torch_cls, cnnlab_cls, *args, **kwargs)
    x = torch.randn(shape)
    out = ours.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    assert_close(out.float(), reference(x), torch.bfloat16, scale=4)


def test_autocast_runs_in_the_autocast_dtype_like_torch(spec):
    """Under torch.autocast(bfloat16) the layer computes in bfloat16, as torch's convolutions do."""
    torch_cls, cnnlab_cls, args, kwargs, shape = spec
    reference, ours = twin(torch_cls, cnnlab_cls, *args, **kwargs)
    x = torch.randn(shape)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected, out = reference(x), ours(x)
    assert out.dtype == expected.dtype == torch.bfloat16
    assert_close(out.float(), expected.float(), torch.bfloat16, scale=4)


def test_unbatched_input(spec):
    torch_cls, cnnlab_cls, args, kwargs, shape = spec
    reference, ours = twin(torch_cls, cnnlab_cls, *args, **kwargs)
    out = compare_forward_backward(reference, ours, torch.randn(shape[1:]))
    assert out.dim() == len(shape) - 1


def test_empty_batch(spec):
    torch_cls, cnnlab_cls, args, kwargs, shape = spec
    reference, ours = twin(torch_cls, cnnlab_cls, *args, **kwargs)
    x = torch.randn(0, *shape[1:], requires_grad=True)
    out = ours(x)
    assert out.shape == reference(x).shape
    out.sum().backward()
    assert x.grad.shape == x.shape and torch.all(ours.weight.grad == 0)


def test_channels_last_and_non_contiguous(spec):
    torch_cls, cnnlab_cls, args, kwargs, shape = spec
    reference, ours = twin(torch_cls, cnnlab_cls, *args, **kwargs)
    x = torch.randn(shape)
    if x.dim() == 4:
        compare_forward_backward(reference, ours, x.to(memory_format=torch.channels_last))
    wide = torch.randn(*shape[:-1], shape[-1] * 2)[..., ::2]  # every other column: a strided view
    assert not wide.is_contiguous()
    compare_forward_backward(reference, ours, wide)


def test_channels_last_in_channels_last_out():
    layer = cnn.Conv2d(4, 8, 3, padding=1)
    out = layer(torch.randn(2, 4, 8, 8).to(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_convert_round_trip(spec):
    torch_cls, cnnlab_cls, args, kwargs, shape = spec
    reference = nn.Sequential(torch_cls(*args, **kwargs))
    ours = cnnlab.convert(reference, to="cnnlab")
    assert type(ours[0]) is (cnnlab_cls if cnnlab_cls is not cnn.FFTConv2d else cnn.Conv2d)
    assert type(reference[0]) is torch_cls, "convert must not modify its input unless inplace=True"
    back = cnnlab.convert(ours, to="torch")
    assert type(back[0]) is torch_cls
    x = torch.randn(shape)
    assert_close(ours(x), reference(x))
    assert torch.equal(back(x), reference(x))


@pytest.mark.slow
def test_convert_torchvision_resnet18():
    """A torchvision model runs on cnnlab layers with the same outputs, then converts back."""
    model = torchvision.models.resnet18(num_classes=10).eval()
    ours = cnnlab.convert(model, to="cnnlab")
    convs = [m for m in ours.modules() if isinstance(m, cnn.Conv2d)]
    assert len(convs) == 20 and not any(type(m) is nn.Conv2d for m in ours.modules())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert_close(ours(x), model(x), scale=10)
    back = cnnlab.convert(ours, to="torch")
    assert back.state_dict().keys() == model.state_dict().keys()


def test_convert_rejects_unknown_target():
    with pytest.raises(ValueError, match="to must be 'cnnlab' or 'torch', but got to='jax'"):
        cnnlab.convert(nn.Conv2d(1, 1, 1), to="jax")


@pytest.mark.parametrize("depth_multiplier", [1, 2])
def test_depthwise_separable_parameters_and_output(depth_multiplier):
    """Parameter count by hand vs a full Conv2d, and the output equals depthwise-then-pointwise in torch."""
    c, o, k, m = 32, 64, 3, depth_multiplier
    layer = cnn.DepthwiseSeparableConv2d(c, o, k, padding=1, depth_multiplier=m)
    full = cnn.Conv2d(c, o, k, padding=1)
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(layer) == c * m * k * k + c * m + c * m * o + o
    assert count(full) == c * o * k * k + o
    assert count(layer) < count(full) / (4 if m == 1 else 3)
    depthwise = nn.Conv2d(c, c * m, k, padding=1, groups=c)
    pointwise = nn.Conv2d(c * m, o, 1)
    depthwise.load_state_dict(layer.depthwise.state_dict())
    pointwise.load_state_dict(layer.pointwise.state_dict())
    x = torch.randn(2, c, 8, 8)
    assert_close(layer(x), pointwise(depthwise(x)))


def test_depthwise_separable_norm_and_activation():
    layer = cnn.DepthwiseSeparableConv2d(8, 16, 3, padding=1, bias=False, norm_layer=nn.BatchNorm2d, act_layer=nn.ReLU)
    assert [name for name, _ in layer.named_children()] == ["depthwise", "norm", "act", "pointwise"]
    assert isinstance(layer.norm, nn.BatchNorm2d) and layer.norm.num_features == 8
    x = torch.randn(4, 8, 6, 6)
    expected = layer.pointwise(torch.relu(layer.norm(layer.depthwise(x))))
    assert_close(layer(x), expected)
    with pytest.raises(ValueError, match="depth_multiplier=0"):
        cnn.DepthwiseSeparableConv2d(8, 16, 3, depth_multiplier=0)


# Bad arguments: (callable, exception type torch raises, words the message must contain)
BAD_ARGUMENTS = [
    (lambda: cnn.Conv2d(3, 4, 3, groups=2), ValueError, "in_channels=3, groups=2"),
    (lambda: cnn.Conv2d(4, 3, 3, groups=2), ValueError, "out_channels=3, groups=2"),
    (lambda: cnn.Conv2d(4, 4, 3, groups=0), ValueError, "groups=0"),
    (lambda: cnn.Conv2d(4, 4, 3, stride=2, padding="same"), ValueError, "padding='same'.*stride=\\(2, 2\\)"),
    (lambda: cnn.Conv2d(4, 4, 3, padding="full"), ValueError, "'full'"),
    (lambda: cnn.Conv2d(4, 4, 3, padding_mode="mirror"), ValueError, "padding_mode='mirror'"),
    (lambda: cnn.Conv2d(4, 4, 3, padding=-1), RuntimeError, "padding=\\(-1, -1\\)"),
    (lambda: cnn.Conv2d(4, 4, 0), RuntimeError, "kernel_size=\\(0, 0\\)"),
    (lambda: cnn.Conv1d(4, 4, 3, stride=0), RuntimeError, "stride=\\(0,\\)"),
    (lambda: cnn.ConvTranspose2d(4, 4, 3, padding_mode="mirror"), ValueError, "padding_mode='mirror'"),
    (lambda: cnn.Conv2d(4, 4, 3)(torch.randn(4, 8)), RuntimeError, "3D \\(unbatched\\) or 4D.*\\[4, 8\\]"),
    (lambda: cnn.Conv1d(4, 4, 3)(torch.randn(1, 4, 8, 8)), RuntimeError, "2D \\(unbatched\\) or 3D"),
    (lambda: cnn.Conv2d(4, 4, 3)(torch.randn(1, 3, 8, 8)), RuntimeError, "to have 4 channels, but got 3"),
    (lambda: cnn.Conv2d(4, 4, 5)(torch.randn(1, 4, 3, 3)), RuntimeError, "\\(3, 3\\).*\\(5, 5\\).*greater than"),
    (lambda: cnn.Conv2d(4, 4, 3)(torch.randn(1, 4, 8, 8, dtype=torch.float64)), RuntimeError, "torch.float64"),
    (
        lambda: cnn.ConvTranspose2d(4, 4, 3, stride=2, output_padding=2)(torch.randn(1, 4, 3, 3)),
        RuntimeError,
        "output_padding=\\(2, 2\\)",
    ),
    (lambda: cnn.Conv2d(4, 4, 3, algorithm="Winograd"), ValueError, "^Conv2d: .*'fft', 'gemm'.*algorithm='Winograd'"),
    (lambda: cnn.Conv3d(4, 4, 3, algorithm="gemm"), ValueError, "^Conv3d: .*\\['direct', 'traceable'\\].*'gemm'"),
    (
        lambda: cnnlab.functional.conv2d(torch.randn(1, 4, 8, 8), torch.randn(4, 4, 3, 3), algorithm="magic"),
        ValueError,
        "^conv2d: .*'fft', 'gemm'.*algorithm='magic'",
    ),
]


def test_repr_shows_an_algorithm_other_than_the_class_default():
    assert repr(cnn.Conv2d(3, 4, 3, algorithm="fft")).endswith("stride=(1, 1), algorithm='fft')")
    assert "algorithm" not in repr(cnn.Conv2d(3, 4, 3)) + repr(cnn.FFTConv2d(3, 4, 7))
    assert repr(cnn.FFTConv2d(3, 4, 7, algorithm="gemm")).endswith("algorithm='gemm')")


@pytest.mark.parametrize(("make", "error", "message"), BAD_ARGUMENTS)
def test_bad_arguments_raise_torch_exception_type(make, error, message):
    with pytest.raises(error, match=message):
        make()
