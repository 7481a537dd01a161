"""Every cnnlab layer with a torch twin is a subclass of it, so tooling that tests the class sees
it; no cnnlab layer inherits from a sibling; torch's conv-BN folding works on cnnlab layers."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

import cnnlab
from cnnlab import nn as cnn
from cnnlab.twins import EXTENSIONS, layer_pairs
from tests.conftest import assert_close

PUBLIC = {name: getattr(cnn, name) for name in cnn.__all__}


@pytest.mark.parametrize("pair", layer_pairs(), ids=lambda pair: pair.cnnlab.__name__)
def test_every_layer_with_a_twin_subclasses_it(pair):
    """torch.nn twins are subclassed; torchvision's (an optional dependency) are matched by their
    parameter names instead."""
    assert pair.cnnlab.__module__.startswith("cnnlab.nn")
    if pair.torch.__module__.startswith("torch.nn"):
        assert issubclass(pair.cnnlab, pair.torch)
    else:
        kwargs = {"in_channels": 4, "out_channels": 6, "kernel_size": 3}
        assert pair.cnnlab(**kwargs).state_dict().keys() == pair.torch(**kwargs).state_dict().keys()


def test_the_twins_table_lists_every_layer_that_subclasses_torch():
    """A cnnlab layer that is a torch conv/pool class has its pair in the table (so convert and
    the torch config kinds know it)."""
    paired = {pair.cnnlab for pair in layer_pairs()} | set(EXTENSIONS)  # (extensions: torch classes without twin)
    torch_layers = (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)
    assert {cls for cls in PUBLIC.values() if issubclass(cls, torch_layers)} <= paired


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_no_layer_inherits_from_a_sibling(name):
    """The only cnnlab base a public layer may have is what torch itself does: a lazy layer
    becomes its eager class, FFTConv2d is Conv2d with its algorithm fixed and StdConv2d Conv2d with
    its weight standardised."""
    cls = PUBLIC[name]
    cnnlab_bases = {base for base in inspect.getmro(cls)[1:] if base in PUBLIC.values()}
    allowed = {getattr(cls, "cls_to_become", None)} | ({cnn.Conv2d} if cls in (cnn.FFTConv2d, cnn.StdConv2d) else set())
    assert cnnlab_bases <= allowed, f"{name} inherits from {sorted(b.__name__ for b in cnnlab_bases)}"


def test_an_init_loop_over_torch_classes_reaches_cnnlab_layers():
    """The engineer's custom init (``for m in model.modules(): if isinstance(m, nn.Conv2d)``) sets
    the same layers of a converted model as of its torch original."""
    torch.manual_seed(0)
    original = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=8), nn.MaxPool2d(2))
    converted = cnnlab.convert(original, to="cnnlab")
    assert all(type(m).__module__.startswith("cnnlab") for m in (converted[0], converted[2], converted[3]))
    for model in (original, converted):
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.constant_(m.weight, 0.5)
    assert [m for m in converted.modules() if isinstance(m, nn.Conv2d)] == [converted[0], converted[2]]
    assert all(torch.equal(m.weight, torch.full_like(m.weight, 0.5)) for m in (converted[0], converted[2]))


@pytest.mark.parametrize(
    ("make_conv", "norm", "shape"),
    [
        (lambda: cnn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), (2, 3, 9, 9)),
        (lambda: cnn.Conv1d(4, 6, 5, stride=2), nn.BatchNorm1d(6), (2, 4, 17)),
        (lambda: cnn.ConvTranspose2d(4, 6, 2, stride=2), nn.BatchNorm2d(6), (2, 4, 5, 5)),
    ],
)
def test_torch_folds_batchnorm_into_cnnlab_convolutions(make_conv, norm, shape):
    """``torch.nn.utils.fusion.fuse_conv_bn_eval`` gives a cnnlab layer computing ``bn(conv(x))``."""
    torch.manual_seed(0)
    conv = make_conv().eval()
    norm.eval()
    norm.running_mean.uniform_(-1, 1)
    norm.running_var.uniform_(0.5, 2)
    norm.weight.data.uniform_(0.5, 1.5)
    norm.bias.data.uniform_(-1, 1)
    fused = fuse_conv_bn_eval(conv, norm, transpose=isinstance(conv, nn.ConvTranspose2d))
    assert type(fused) is type(conv)
    x = torch.randn(shape)
    with torch.no_grad():
        assert_close(fused(x), norm(conv(x)))
