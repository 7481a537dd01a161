"""The standard CIFAR-10 architectures built from YAML: parameter counts equal the reference
implementations' (kuangliu/pytorch-cifar, Page's ResNet-9, airbench94), and, with the weights
copied over, the built model computes what the reference computes; each builds, traces and trains
a step on cnnlab and on torch layers, and its conv/pool slots swap like every family's."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab import nn as cnn
from cnnlab.models import ModelConfigError, build_model, format_shape_table
from tests.configs import STANDARD_ARCHITECTURES, compose_cfg
from tests.conftest import ForbiddenOpGuard

# Published parameter counts (kuangliu/pytorch-cifar's models; airbench94 counts its BN scales, which are frozen)
PARAMETERS = {
    "resnet18": 11_173_962,
    "resnet50": 23_520_842,
    "preact_resnet18": 11_171_146,
    "vgg16": 14_728_266,
    "mobilenetv2": 2_296_922,
    "resnet9": 6_573_120,
    "airbench94": 1_972_792,
}
ARCHITECTURES = sorted(PARAMETERS)
assert sorted(STANDARD_ARCHITECTURES) == ARCHITECTURES


# --- reference implementations, written from the papers' and repositories' descriptions -------------------------


def conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out)]


class Shortcut(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, norm: bool = True) -> None:
        super().__init__()
        self.identity = stride == 1 and c_in == c_out
        self.layers = nn.Identity() if self.identity else nn.Sequential(*conv_bn(c_in, c_out, 1, stride)[: 1 + norm])

    def forward(self, x):
        return x if self.identity else self.layers(x)


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*conv_bn(c_in, c_out, 3, stride), nn.ReLU(), *conv_bn(c_out, c_out))
        self.shortcut = Shortcut(c_in, c_out, stride)

    def forward(self, x):
        return F.relu(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    def __init__(self, c_in: int, planes: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *conv_bn(c_in, planes, 1), nn.ReLU(), *conv_bn(planes, planes, 3, stride), nn.ReLU(),
            *conv_bn(planes, 4 * planes, 1),
        )  # fmt: skip
        self.shortcut = Shortcut(c_in, 4 * planes, stride)

    def forward(self, x):
        return F.relu(self.body(x) + self.shortcut(x))


class PreActBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = Shortcut(c_in, c_out, stride, norm=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut.identity else self.shortcut(out)
        return self.conv2(F.relu(self.bn2(self.conv1(out)))) + shortcut


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, expansion: int, stride: int) -> None:
        super().__init__()
        planes = expansion * c_in
        self.body = nn.Sequential(
            *conv_bn(c_in, planes, 1), nn.ReLU(), *conv_bn(planes, planes, 3, stride, groups=planes), nn.ReLU(),
            *conv_bn(planes, c_out, 1),
        )  # fmt: skip
        self.shortcut = Shortcut(c_in, c_out, 1) if stride == 1 else None  # no residual at stride 2

    def forward(self, x):
        out = self.body(x)
        return out if self.shortcut is None else out + self.shortcut(x)


def resnet(block, stages: list[int], pre_activation: bool = False) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 3, 1, 1, bias=False)]
    if not pre_activation:
        layers += [nn.BatchNorm2d(64), nn.ReLU()]
    channels, expansion = 64, 4 if block is Bottleneck else 1
    for width, blocks, stride in zip((64, 128, 256, 512), stages, (1, 2, 2, 2)):
        for i in range(blocks):
            layers.append(block(channels, width, stride if i == 0 else 1))
            channels = width * expansion
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10))


def vgg16() -> nn.Module:
    layers: list[nn.Module] = []
    channels = 3
    for item in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.BatchNorm2d(item), nn.ReLU()]
            channels = item
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(512, 10))


def mobilenetv2() -> nn.Module:
    layers: list[nn.Module] = [*conv_bn(3, 32), nn.ReLU()]
    channels = 32
    for expansion, width, blocks, stride in [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
                                             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:  # fmt: skip
        for i in range(blocks):
            layers.append(InvertedResidual(channels, width, expansion, stride if i == 0 else 1))
            channels = width
    return nn.Sequential(
        *layers, *conv_bn(320, 1280, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, 10)
    )


class Residual(nn.Module):
    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.body(x)


def resnet9() -> nn.Module:
    def block(c_in, c_out):
        return [*conv_bn(c_in, c_out), nn.ReLU()]

    return nn.Sequential(
        *block(3, 64), *block(64, 128), nn.MaxPool2d(2), Residual(*block(128, 128), *block(128, 128)),
        *block(128, 256), nn.MaxPool2d(2),
        *block(256, 512), nn.MaxPool2d(2), Residual(*block(512, 512), *block(512, 512)),
        nn.MaxPool2d(4), nn.Flatten(), nn.Linear(512, 10, bias=False),
    )  # fmt: skip


def airbench94() -> nn.Module:
    def bn(c):
        norm = nn.BatchNorm2d(c, momentum=0.4, eps=1e-12)
        norm.weight.requires_grad_(False)
        return norm

    layers: list[nn.Module] = [nn.Conv2d(3, 24, 2, padding=0), nn.GELU()]
    channels = 24
    for width in (64, 256, 256):
        layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.MaxPool2d(2), bn(width), nn.GELU()]
        layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), bn(width), nn.GELU()]
        channels = width
    return nn.Sequential(*layers, nn.MaxPool2d(3), nn.Flatten(), nn.Linear(256, 10, bias=False))


REFERENCES = {
    "resnet18": lambda: resnet(BasicBlock, [2, 2, 2, 2]),
    "resnet50": lambda: resnet(Bottleneck, [3, 4, 6, 3]),
    "preact_resnet18": lambda: resnet(PreActBlock, [2, 2, 2, 2], pre_activation=True),
    "vgg16": vgg16,
    "mobilenetv2": mobilenetv2,
    "resnet9": resnet9,
    "airbench94": airbench94,
}


def build(name: str, conv: str = "standard", pool: str = "max", *overrides: str):
    cfg = compose_cfg(f"model={name}", f"conv={conv}", f"pool={pool}", *overrides)
    return build_model(cfg.model, cfg.conv, cfg.pool)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_parameter_count_and_function_equal_the_reference(name):
    """Same count as published and as the reference; with the same weights (parameters and
    buffers in registration order, shape by shape; BN and bias values made non-trivial) the
    outputs agree, in training mode (BN on batch statistics, so activations stay well scaled)."""
    torch.manual_seed(0)
    ours, rows = build(name)
    reference = REFERENCES[name]()
    assert count(ours) == count(reference) == PARAMETERS[name]
    assert f"{PARAMETERS[name]:,}" in format_shape_table(rows, (3, 32, 32))
    theirs = list(reference.state_dict().values())
    assert [tuple(t.shape) for t in ours.state_dict().values()] == [tuple(t.shape) for t in theirs]
    with torch.no_grad():
        for mine, value in zip(ours.state_dict().values(), theirs):
            mine.copy_(
                value + 0.1 * torch.rand_like(value) if value.dim() == 1 and value.is_floating_point() else value
            )
        reference.load_state_dict(dict(zip(reference.state_dict(), ours.state_dict().values())))
    assert [p.requires_grad for p in ours.parameters()] == [p.requires_grad for p in reference.parameters()]
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(ours(x), reference(x), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_architecture_trains_a_step_on_cnnlab_and_on_torch_layers_alike(name):
    """cnnlab layers (no aten conv/pool op, forward or backward) and the conv=torch twin from the
    same weights: the same loss, gradients as close to the float64 ones as torch's, and one SGD
    step lowers the batch's loss on both."""
    torch.manual_seed(0)
    ours, _ = build(name)
    twin, _ = build(name, "torch", "torch_max")
    twin.load_state_dict(ours.state_dict())
    assert any(type(m) is nn.Conv2d for m in twin.modules()) and not any(type(m) is nn.Conv2d for m in ours.modules())
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))

    def loss_and_gradient(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        loss = F.cross_entropy(model(x.to(next(model.parameters()).dtype)), y)
        loss.backward()
        return loss.detach(), torch.cat([p.grad.flatten().double() for p in model.parameters() if p.requires_grad])

    _, exact = loss_and_gradient(copy.deepcopy(twin).double())
    losses, errors = [], []
    for model in (ours, twin):
        with ForbiddenOpGuard() as guard:
            loss, gradient = loss_and_gradient(model)
        assert (guard.forbidden == []) == (model is ours)
        losses.append(loss)
        errors.append(float((gradient - exact).norm() / exact.norm()))
        torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3).step()
        assert F.cross_entropy(model(x), y) < loss
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-4, atol=1e-5)
    # float32 rounding, amplified by BN over 4 images through a deep net, reaches ~1e-3 of the gradient for torch too
    assert errors[0] <= max(3 * errors[1], 2e-3), f"gradient error vs float64: cnnlab {errors[0]}, torch {errors[1]}"


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_conv_and_pool_slots_swap(name):
    model, _ = build(name, "separable", "avg")
    convs = [m for m in model.modules() if isinstance(m, cnn.DepthwiseSeparableConv2d)]
    pools = [m for m in model.modules() if isinstance(m, cnn.AvgPool2d)]
    has_pool_slot = name in ("vgg16", "resnet9", "airbench94")
    assert convs and bool(pools) == has_pool_slot
    assert not any(type(m) is nn.Conv2d or isinstance(m, cnn.MaxPool2d) for m in model.modules())  # no torch twin
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_stage_rows_and_override_paths():
    """A stage is one row per block at the stage's path; its arguments are overrides."""
    _, rows = build("resnet50", "standard", "max", "model.layers.4.stage.times=2")
    stage = [r for r in rows if r.path == "model.layers.4"]
    assert [r.layer for r in stage] == ["bottleneck 1/2", "bottleneck 2/2"]
    assert stage[0].output_shape == (512, 16, 16)
    assert sum(r.parameters for r in rows) == sum(
        p.numel() for p in build("resnet50", "standard", "max", "model.layers.4.stage.times=2")[0].parameters()
    )


def test_width_multiplier_rounds_to_multiples_of_eight():
    model, rows = build("mobilenetv2", "standard", "max", "model.width=0.5")
    widths = [m.out_channels for m in model.modules() if isinstance(m, cnn.Conv2d)]
    assert widths[0] == 16 and all(w % 8 == 0 for w in widths)
    assert rows[3].output_shape == (8, 32, 32)  # 16 × 0.5 = 8
    assert count(model) < PARAMETERS["mobilenetv2"] / 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.layers.3.stage.block=basc", r"model\.layers\.3 \(stage\): block must be one of"),
        ("model.layers.3.stage.times=0", r"model\.layers\.3 \(stage\): times must be a positive int"),
        ("+model.layers.3.stage.expansion=2", r"model\.layers\.3 \(stage\): unknown argument.*expansion"),
        ("model.width=-1", r"model\.width"),
    ],
)
def test_bad_block_arguments_name_the_layer(override, message):
    with pytest.raises(ModelConfigError, match=message):
        build("resnet18", "standard", "max", override)


def test_conv_needs_out_channels_or_expand():
    with pytest.raises(ModelConfigError, match=r"model\.layers\.0 \(conv\): give out_channels, or expand"):
        build("resnet9", "standard", "max", "+model.layers.0.conv.expand=2")
