"""No cnnlab conv or pool layer may reach torch's convolution or pooling kernels, forward or backward."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from cnnlab import nn as cnn
from cnnlab.functional import native
from tests.conftest import ForbiddenOpGuard

GUARDED_LAYERS = [
    (lambda: cnn.Conv1d(4, 6, 3, padding="same", padding_mode="reflect"), (2, 4, 16)),
    (lambda: cnn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=2), (2, 4, 12, 12)),
    (lambda: cnn.Conv2d(4, 8, 3, groups=4, padding="same", padding_mode="circular"), (2, 4, 12, 12)),
    (lambda: cnn.Conv2d(4, 8, 1), (2, 4, 12, 12)),
    (lambda: cnn.Conv2d(4, 6, 3, padding=1, algorithm="shift"), (2, 4, 12, 12)),
    (lambda: cnn.Conv2d(4, 6, 3, padding=1, algorithm="winograd"), (2, 4, 12, 12)),
    (lambda: cnn.Conv2d(4, 6, 3, padding=1, algorithm="gemm"), (2, 4, 12, 12)),
    (lambda: cnn.Conv2d(4, 6, 3, padding=1, groups=2, algorithm="traceable"), (2, 4, 12, 12)),
    (lambda: cnn.Conv2d(4, 8, 3, padding=1, groups=4, algorithm="traceable"), (2, 4, 12, 12)),
    (lambda: cnn.FFTConv2d(4, 6, 7, padding=3), (2, 4, 12, 12)),
    (lambda: cnn.ConvTranspose1d(4, 6, 3, stride=2), (2, 4, 9)),
    (lambda: cnn.ConvTranspose2d(4, 6, 3, stride=2, output_padding=1, groups=2), (2, 4, 5, 5)),
    (lambda: cnn.DepthwiseSeparableConv2d(4, 6, 3, padding=1, depth_multiplier=2), (2, 4, 8, 8)),
    (lambda: cnn.MaxPool1d(3, 2, 1), (2, 4, 9)),
    (lambda: cnn.MaxPool2d(3, 2, 1, dilation=1, ceil_mode=True), (2, 4, 9, 9)),
    (lambda: cnn.AvgPool1d(3, 2, 1), (2, 4, 9)),
    (lambda: cnn.AvgPool2d(3, 2, 1, count_include_pad=False), (2, 4, 9, 9)),
    (lambda: cnn.LPPool1d(2, 3), (2, 4, 9)),
    (lambda: cnn.LPPool2d(2, 2), (2, 4, 8, 8)),
    (lambda: cnn.AdaptiveAvgPool1d(4), (2, 4, 9)),
    (lambda: cnn.AdaptiveAvgPool2d((3, 4)), (2, 4, 9, 9)),
    (lambda: cnn.AdaptiveMaxPool1d(4), (2, 4, 9)),
    (lambda: cnn.AdaptiveMaxPool2d((3, 4)), (2, 4, 9, 9)),
    (lambda: cnn.GlobalAvgPool2d(flatten=True), (2, 4, 8, 8)),
    (lambda: cnn.GlobalMaxPool2d(), (2, 4, 8, 8)),
    (lambda: cnn.ChannelMaxPool(2), (2, 4, 8, 8)),
    (lambda: cnn.DistanceWeightedPool2d(3, 2, 1, learnable_sigma=True), (2, 4, 8, 8)),
    (lambda: cnn.BlurPool2d(3, 2), (2, 4, 8, 8)),
    (lambda: cnn.MaxBlurPool2d(2, 3, 2), (2, 4, 8, 8)),
    (lambda: cnn.Conv3d(4, 6, 3, stride=2, padding=1, groups=2), (2, 4, 6, 7, 8)),
    (lambda: cnn.Conv3d(4, 4, 3, groups=4, padding="same", padding_mode="reflect"), (2, 4, 6, 7, 8)),
    (lambda: cnn.ConvTranspose3d(4, 6, 3, stride=2, output_padding=1), (2, 4, 3, 4, 5)),
    (lambda: cnn.LazyConv3d(6, 3), (2, 4, 6, 7, 8)),
    (lambda: cnn.LazyConvTranspose2d(6, 3, stride=2), (2, 4, 6, 7)),
    (lambda: cnn.MaxPool3d(3, 2, 1, ceil_mode=True), (2, 4, 6, 7, 8)),
    (lambda: cnn.AvgPool3d(3, 2, 1, count_include_pad=False), (2, 4, 6, 7, 8)),
    (lambda: cnn.LPPool3d(2, 2), (2, 4, 6, 6, 6)),
    (lambda: cnn.AdaptiveAvgPool3d((2, 3, 4)), (2, 4, 6, 7, 8)),
    (lambda: cnn.AdaptiveMaxPool3d((2, 3, 4)), (2, 4, 6, 7, 8)),
    (lambda: cnn.FractionalMaxPool2d(2, output_ratio=0.6), (2, 4, 9, 9)),
    (lambda: cnn.FractionalMaxPool3d(2, output_size=(3, 3, 4)), (2, 4, 6, 7, 8)),
]


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_max_unpool_dispatches_no_conv_or_pool_op(dims):
    pool = getattr(cnn, f"MaxPool{dims}d")(2, return_indices=True)
    values, indices = pool(torch.randn(2, 4, *(8,) * dims))
    values.requires_grad_(True)
    with ForbiddenOpGuard() as guard:
        getattr(cnn, f"MaxUnpool{dims}d")(2)(values, indices).square().sum().backward()
    assert guard.seen and guard.forbidden == []


def test_guard_catches_torch_convolution():
    """The guard itself works: torch's own Conv2d and MaxPool2d are flagged."""
    with ForbiddenOpGuard() as guard:
        nn.MaxPool2d(2)(nn.Conv2d(3, 3, 3)(torch.randn(1, 3, 8, 8))).sum().backward()
    assert any("convolution" in op for op in guard.forbidden)
    assert any("max_pool2d" in op for op in guard.forbidden)


@pytest.mark.parametrize(("make", "shape"), GUARDED_LAYERS)
def test_layer_dispatches_no_conv_or_pool_op(make, shape):
    layer = make()
    x = torch.randn(shape, requires_grad=True)
    with ForbiddenOpGuard() as guard:
        layer(x).square().sum().backward()
    assert x.grad is not None
    assert guard.seen, "the guard recorded nothing"
    assert guard.forbidden == [], f"{type(layer).__name__} dispatched {guard.forbidden}"


# What the profiler must never see: aten's and oneDNN's convolution and pooling ops (by any name
# torch gives them), however deep inside another op they run. cnnlab's own compiled ops
# (cnnlab_native::correlate_nhwc, window_max, ...) and oneDNN's matmul are allowed.
PROFILED_FORBIDDEN = re.compile(r"^(aten|mkldnn|onednn|ideep)::.*(conv(olution|_|\d)|pool)|dnnl.*(conv|pool)", re.I)


def _profiled_ops(model: nn.Module, x: torch.Tensor) -> set[str]:
    """Every op torch.profiler records for one forward and backward, nested calls included."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        model(x).float().square().mean().backward()
    return {event.name for event in profile.events()}


@pytest.mark.parametrize("channels_last", [False, True])
def test_profiler_sees_no_torch_conv_or_pool_op_in_a_cnnlab_model(channels_last):
    """A model built from config (compiled kernels where built, the Python algorithms elsewhere):
    the profiler's full op list, including ops called from inside cnnlab's custom ops, holds no
    convolution or pooling op of torch or oneDNN."""
    from cnnlab.models import build_model
    from tests.configs import compose_cfg

    cfg = compose_cfg("model=fast")
    model, _ = build_model(cfg.model, cfg.conv, cfg.pool, (3, 32, 32))
    x = torch.randn(8, 3, 32, 32)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    ops = _profiled_ops(model, x)
    assert any(name.startswith("aten::") for name in ops), "the profiler recorded no aten op"
    assert sorted(name for name in ops if PROFILED_FORBIDDEN.search(name)) == []
    if native.available():  # and the compiled kernels are what ran
        # contiguous input runs the NCHW kernels, except where the AVX2 tiles are (the channels-last ones)
        layout = "nchw" if not channels_last and native.float32_kernels() != "avx2" else "nhwc"
        assert {f"cnnlab_native::correlate_{layout}", "cnnlab_native::window_max"} <= ops


def test_profiler_check_catches_torch_layers():
    ops = _profiled_ops(nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2)), torch.randn(2, 3, 8, 8))
    assert any(PROFILED_FORBIDDEN.search(name) for name in ops)


@pytest.mark.skipif(not native.available(), reason="cnnlab's compiled kernels were not built")
def test_compiled_kernels_have_fake_implementations():
    """Every cnnlab_native op infers its output on fake tensors as it computes it eagerly
    (``torch.library.opcheck``: schema, fake implementation, no aliasing)."""
    ops = torch.ops.cnnlab_native
    x, w, g = torch.randn(2, 7, 6, 5), torch.randn(4, 5, 3, 3), torch.randn(2, 5, 4, 4)
    v = torch.randn(2, 3, 4, 5, 6)
    cases = [
        (
            ops.correlate_nhwc,
            (v.movedim(1, -1).contiguous(), torch.randn(4, 3, 2, 3, 3), [1, 2, 1], [1, 0, 1], [1, 1, 2], 1, [5, 2, 2]),
        ),
        (ops.correlate_nhwc, (x, w, [1, 1], [0, 0], [1, 1], 1, [5, 4])),
        (
            ops.correlate_nhwc_input_grad,
            (g.permute(0, 2, 3, 1).contiguous(), torch.randn(5, 4, 3, 3), [1, 1], [1, 1], [1, 1], 1, [4, 4]),
        ),
        (ops.correlate_nhwc_weight_grad, (x, torch.randn(2, 5, 4, 4), [4, 5, 3, 3], [1, 1], [0, 0], [1, 1], 1)),
        (ops.correlate_nchw, (x, torch.randn(4, 7, 3, 3), [1, 1], [1, 1], [1, 1], 1, [6, 5])),
        (ops.correlate_nchw_input_grad, (g, torch.randn(5, 3, 3, 3), [1, 1], [1, 1], [1, 1], 1, [4, 4])),
        (ops.correlate_nchw_weight_grad, (g, torch.randn(2, 6, 4, 4), [6, 5, 3, 3], [1, 1], [1, 1], [1, 1], 1)),
        (ops.window_max, (g, [2, 2], [2, 2], [0, 0], [1, 1], [2, 2])),
        (ops.window_max, (v, [2, 3, 2], [1, 2, 2], [1, 1, 0], [1, 1, 2], [4, 2, 1])),
        (ops.adaptive_window_max, (g, [3, 2])),
        (ops.adaptive_window_max, (v.contiguous(memory_format=torch.channels_last_3d), [2, 3, 1])),
        (ops.window_max_backward, (torch.randn(2, 5, 2, 2), torch.zeros(2, 5, 2, 2, dtype=torch.long), [4, 4], False)),
        (ops.adaptive_window_mean, (g.contiguous(memory_format=torch.channels_last), [3, 2])),
        (ops.adaptive_window_mean, (v, [2, 3, 4])),
        (ops.adaptive_window_mean_backward, (torch.randn(2, 5, 3, 2), [4, 4])),
        (ops.adaptive_window_mean_backward, (torch.randn(2, 3, 2, 3, 4), [4, 5, 6])),
        (
            ops.window_max_backward,
            (torch.randn(2, 5, 1, 2, 2), torch.zeros(2, 5, 1, 2, 2, dtype=torch.long), [2, 3, 4], True),
        ),
        (ops.depthwise, (g, torch.randn(5, 1, 3, 3), None, [2, 1], [1, 1], [1, 2])),
        (
            ops.depthwise,
            (
                g.contiguous(memory_format=torch.channels_last),
                torch.randn(5, 1, 3, 3),
                torch.randn(5),
                [1, 1],
                [1, 1],
                [1, 1],
            ),
        ),
        (ops.depthwise_input_grad, (torch.randn(2, 5, 2, 2), torch.randn(5, 1, 3, 3), [2, 2], [1, 1], [1, 1], [4, 4])),
        (ops.depthwise_weight_grad, (g, torch.randn(2, 5, 4, 4), [3, 3], [1, 1], [1, 1], [1, 1])),
    ]
    if native.bfloat16_available():  # the bfloat16 kernels behind the same ops
        bf = torch.bfloat16
        cases += [
            (ops.correlate_nhwc, (x.to(bf), w.to(bf), [1, 1], [0, 0], [1, 1], 1, [5, 4])),
            (
                ops.correlate_nhwc_input_grad,
                (x.to(bf), torch.randn(5, 4, 3, 3, dtype=bf), [1, 1], [1, 1], [1, 1], 1, [7, 6]),
            ),
            (
                ops.correlate_nhwc_weight_grad,
                (x.to(bf), torch.randn(2, 5, 4, 4, dtype=bf), [4, 5, 3, 3], [1, 1], [0, 0], [1, 1], 1),
            ),
        ]
    for op, args in cases:
        torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor"))


def test_native_availability_carries_torchs_constant_result_mark():
    """Tracers read ``available()``'s answer, never its body (the first call builds the kernels):
    the mark is the one ``torch.compiler.assume_constant_result`` sets, set without importing
    ``torch._dynamo``."""
    marks = vars(torch.compiler.assume_constant_result(lambda: True))
    assert marks
    for function in (native.available, native.bfloat16_available, native.bfloat16_kernels):
        assert marks.items() <= vars(function).items()
