"""cnnlab.convert keeps a model's state (Parameter objects, requires_grad, buffers, mode, hooks,
parametrizations), reports what stays on torch, and functional_mode routes F.* conv/pool calls."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
import torch.nn.functional as nnf
from torch import nn
from torch.nn.functional import max_pool2d
from torch.nn.utils import parametrizations, parametrize

import cnnlab
from cnnlab import nn as cnn
from tests.conftest import ForbiddenOpGuard, assert_close


def _convert_quietly(model, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to report for these models
        return cnnlab.convert(model, **kwargs)


def test_parameters_are_the_same_objects_so_an_existing_optimizer_trains_the_converted_model():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.MaxPool2d(2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ours = _convert_quietly(model)
    assert type(ours[0]) is cnn.Conv2d and type(model[0]) is nn.Conv2d  # model itself untouched
    assert ours[0].weight is model[0].weight and ours[1].running_mean is model[1].running_mean
    before = ours[0].weight.detach().clone()
    ours(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    assert not torch.equal(ours[0].weight, before)
    in_place = cnnlab.convert(model, inplace=True)
    assert in_place is model and type(model[0]) is cnn.Conv2d


def test_requires_grad_and_training_mode_are_kept_both_ways():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ConvTranspose2d(4, 2, 2)).eval()
    model[0].weight.requires_grad_(False)
    ours = _convert_quietly(model)
    back = _convert_quietly(ours, to="torch")
    for converted in (ours, back):
        assert not converted[0].weight.requires_grad and converted[0].bias.requires_grad
        assert not converted.training and not converted[1].training


def test_hooks_move_with_the_layer_and_their_handles_still_remove_them():
    layer = nn.Conv2d(3, 4, 3)
    calls = []
    handle = layer.register_forward_hook(lambda module, args, out: calls.append(type(module)))
    layer.register_forward_pre_hook(lambda module, args: calls.append("pre"))
    layer.register_full_backward_hook(lambda module, grad_in, grad_out: calls.append("backward"))
    ours = _convert_quietly(nn.Sequential(layer))
    ours(torch.randn(1, 3, 6, 6, requires_grad=True)).sum().backward()
    assert calls == ["pre", cnn.Conv2d, "backward"]
    handle.remove()
    calls.clear()
    ours(torch.randn(1, 3, 6, 6))
    assert calls == ["pre"]


@pytest.mark.parametrize(
    "parametrization",
    [parametrizations.weight_norm, parametrizations.spectral_norm, parametrizations.orthogonal],
    ids=["weight_norm", "spectral_norm", "orthogonal"],
)
def test_parametrized_layers_convert_with_their_parametrizations(parametrization):
    reference = parametrization(nn.Conv2d(4, 4, 1)).eval()
    ours = _convert_quietly(nn.Sequential(reference))[0]
    assert isinstance(ours, cnn.Conv2d) and parametrize.is_parametrized(ours, "weight")
    assert set(dict(ours.named_parameters())) == set(dict(reference.named_parameters()))
    assert all(a is b for a, b in zip(ours.parameters(), reference.parameters()))
    x = torch.randn(2, 4, 5, 5)
    assert_close(ours(x), reference(x))
    back = _convert_quietly(nn.Sequential(ours), to="torch")[0]
    assert type(back).__bases__[0] is nn.Conv2d and parametrize.is_parametrized(back, "weight")


def test_hook_based_weight_norm_converts_and_trains():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.nn.utils.weight_norm is deprecated
        reference = nn.utils.weight_norm(nn.Conv2d(3, 4, 3))
    ours = _convert_quietly(nn.Sequential(reference))[0]
    assert type(ours) is cnn.Conv2d and ours.weight_g is reference.weight_g
    x = torch.randn(2, 3, 6, 6)
    assert_close(ours(x), reference(x))
    ours(x).sum().backward()
    assert ours.weight_v.grad is not None


def test_what_stays_on_torch_is_reported_or_raised_with_strict():
    class OwnForward(nn.Conv2d):
        def forward(self, x):
            return super().forward(x) * 2

    class CallsFunctional(nn.Module):
        def forward(self, x):
            return F.max_pool2d(F.avg_pool2d(x, 2), 2)

    model = nn.Sequential(nn.Conv3d(1, 1, 1), OwnForward(1, 1, 1), CallsFunctional())
    with pytest.warns(UserWarning) as record:
        cnnlab.convert(model)
    message = str(record[0].message)
    assert "1: OwnForward subclasses Conv2d" in message
    assert "2: CallsFunctional calls torch.nn.functional avg_pool2d, max_pool2d" in message
    assert "cnnlab.functional_mode()" in message
    assert "0:" not in message  # Conv3d has a twin now
    with pytest.raises(cnnlab.ConversionError, match="OwnForward subclasses Conv2d"):
        cnnlab.convert(model, strict=True, example_inputs=(torch.randn(1, 1, 4, 4, 4),))
    with pytest.raises(ValueError, match="strict=True checks the converted model by running it once; pass example"):
        cnnlab.convert(model, strict=True)


def _pool_helper(x):
    return nnf.avg_pool2d(x, 2)


class _ImportedByName(nn.Module):
    def forward(self, x):
        return max_pool2d(x, 2)


class _AliasedModule(nn.Module):
    def forward(self, x):
        return nnf.adaptive_avg_pool2d(x, 4)


class _CallsAHelper(nn.Module):
    def forward(self, x):
        return _pool_helper(x)


@pytest.mark.parametrize(
    ("block", "op"),
    [
        (_ImportedByName, "max_pool2d_with_indices"),
        (_AliasedModule, "_adaptive_avg_pool2d"),
        (_CallsAHelper, "avg_pool2d"),
    ],
)
def test_strict_runs_the_model_and_catches_torch_ops_however_they_are_called(block, op):
    """The source scan misses these three spellings (only a warning-free conversion shows it);
    strict runs the converted model and names the module in which torch computed."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), block())
    x = torch.randn(2, 3, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cnnlab.convert(model)  # not seen by reading the source
    with pytest.raises(cnnlab.ConversionError, match=f"1: {block.__name__} runs torch's aten.{op}") as error:
        cnnlab.convert(model, strict=True, example_inputs=(x,))
    assert "Conv2d" not in str(error.value)  # the converted convolution ran on cnnlab
    with cnnlab.functional_mode(), ForbiddenOpGuard() as guard:  # the remedy: nothing of torch's runs
        cnnlab.convert(model)(x)
    assert guard.forbidden == []


def test_strict_towards_torch_lists_the_cnnlab_modules_left():
    model = nn.Sequential(
        cnn.Conv2d(4, 4, 3),
        cnn.BlurPool2d(4),
        cnn.DepthwiseSeparableConv2d(4, 8, 3),
        cnn.MaxBlurPool2d(8),
        cnn.GlobalAvgPool2d(),
    )
    with pytest.raises(cnnlab.ConversionError) as error:
        cnnlab.convert(model, to="torch", strict=True)
    lines = str(error.value).splitlines()[1:]
    expected = ["BlurPool2d", "DepthwiseSeparableConv2d", "MaxBlurPool2d", "GlobalAvgPool2d"]
    assert [line.strip() for line in lines] == [
        f"{i}: {name} is cnnlab's (torch.nn has no twin)" for i, name in enumerate(expected, start=1)
    ]
    converted = cnnlab.convert(nn.Sequential(cnn.Conv2d(4, 4, 3), cnn.MaxPool2d(2)), to="torch", strict=True)
    assert [type(m).__module__.split(".")[0] for m in converted.modules()] == ["torch"] * 3


def test_copy_gives_an_independent_model():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    ours = _convert_quietly(model, copy=True)
    assert ours[0].weight is not model[0].weight and torch.equal(ours[0].weight, model[0].weight)
    x = torch.randn(2, 3, 6, 6)
    assert_close(ours(x), model(x))
    optimizer = torch.optim.SGD(ours.parameters(), lr=0.1)
    ours(x).sum().backward()
    optimizer.step()
    assert not torch.equal(ours[0].weight, model[0].weight) and model[0].weight.grad is None
    assert ours[1].running_mean is not model[1].running_mean
    with pytest.raises(ValueError, match="copy=True makes a new model"):
        cnnlab.convert(model, copy=True, inplace=True)


def test_lazy_layers_convert_before_and_after_materialising():
    model = nn.Sequential(nn.LazyConv2d(4, 3))
    model(torch.randn(1, 3, 6, 6))
    ours = _convert_quietly(model)
    assert type(ours[0]) is cnn.Conv2d and ours[0].in_channels == 3
    for lazy, twin in (
        (nn.LazyConv3d(4, 3), cnn.Conv3d),
        (nn.LazyConvTranspose1d(4, 3, stride=2), cnn.ConvTranspose1d),
    ):
        x = torch.randn(2, 5, *(6,) * len(lazy.kernel_size))
        ours = _convert_quietly(nn.Sequential(lazy))
        assert type(ours[0]).__name__ == type(lazy).__name__ and type(ours[0]).__module__.startswith("cnnlab")
        y = ours[0](x)
        assert type(ours[0]) is twin and ours[0].in_channels == 5
        reference = type(lazy).cls_to_become(5, 4, 3, **({"stride": 2} if "Transpose" in twin.__name__ else {}))
        reference.load_state_dict(ours[0].state_dict())
        torch.testing.assert_close(y, reference(x), rtol=1e-4, atol=1e-5)


class _FunctionalNet(nn.Module):
    """Calls every routed kind of functional op itself, as torchvision's inception does."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)  # a torch layer: its F.conv2d is routed too
        self.weight = nn.Parameter(torch.randn(4, 4, 3))

    def forward(self, x):
        x = F.max_pool2d(self.conv(x), 3, 2, 1, ceil_mode=True)
        x = F.avg_pool2d(x, 2, count_include_pad=False) + F.lp_pool2d(x, 2, 2)
        values, indices = F.max_pool2d(x, 2, return_indices=True)
        x = F.max_unpool2d(values, indices, 2) + F.adaptive_max_pool2d(x, (2, 2)).mean()
        x = F.conv1d(x.flatten(2), self.weight, padding=1)
        x = F.conv_transpose1d(x, self.weight, stride=2)
        return F.adaptive_avg_pool1d(x, 3) + F.adaptive_max_pool1d(x, 3)


def test_functional_mode_runs_functional_calls_on_cnnlab_with_the_same_result():
    model = _FunctionalNet()
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    expected = model(x)
    (expected_grad,) = torch.autograd.grad(expected.sum(), x)
    with cnnlab.functional_mode(), ForbiddenOpGuard() as guard:
        out = model(x)
        (grad,) = torch.autograd.grad(out.sum(), x)
    assert guard.seen and guard.forbidden == []
    assert_close(out, expected)
    assert_close(grad, expected_grad)


@pytest.mark.slow
def test_functional_mode_leaves_no_torch_conv_or_pool_in_converted_torchvision_models():
    torchvision = pytest.importorskip("torchvision")
    for make in (torchvision.models.mobilenet_v2, torchvision.models.densenet121):
        reference = make(num_classes=10).eval()
        with pytest.warns(UserWarning, match="functional_mode"):
            ours = cnnlab.convert(reference)
        x = torch.randn(1, 3, 32, 32)
        with torch.no_grad(), cnnlab.functional_mode(), ForbiddenOpGuard() as guard:
            out = ours(x)
        assert guard.forbidden == []
        with torch.no_grad():
            assert_close(out, reference(x), scale=10)
