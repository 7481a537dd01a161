"""Every cnnlab layer inside PyTorch 2's toolchain: torch.compile (fullgraph), torch.export with a
dynamic batch, ONNX (both exporters, run by onnxruntime), torch.func, meta/fake tensors, fx,
jit.trace and empty batches, each compared with eager cnnlab and with the torch.nn twin."""

from __future__ import annotations

import collections
import io
import warnings

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.func import functional_call, grad, jacrev, jvp, vmap

import cnnlab
from cnnlab import nn as cnn
from cnnlab.functional import native
from tests.conftest import ForbiddenOpGuard, assert_close


def small_model(layers) -> nn.Module:
    """The issue's small model, on ``layers`` (``torch.nn`` or ``cnnlab.nn``)."""
    return nn.Sequential(
        layers.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        layers.MaxPool2d(2),
        layers.Conv2d(8, 8, 3, padding=1, groups=8),
        layers.AvgPool2d(2),
        layers.ConvTranspose2d(8, 4, 2, stride=2),
        layers.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 10),
    )


class EveryLayer(nn.Module):
    """A model holding every cnnlab conv and pool layer (FFTConv2d optional: ONNX has no complex numbers)."""

    def __init__(self, fft: bool = True):
        super().__init__()
        self.image = nn.Sequential(
            cnn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect"),
            nn.ReLU(),
            cnn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2),
            cnn.FFTConv2d(8, 8, 7, padding=3) if fft else nn.Identity(),
            cnn.DepthwiseSeparableConv2d(8, 8, 3, padding=1),
            # beyond torch.nn: deformable and weight-standardised convolution, strided 'tf_same'
            # down and a circular-padded transposed convolution back up
            cnn.DeformableConv2d(8, 8, 3, padding=1, modulated=True),
            cnn.StdConv2d(8, 8, 3, padding=1, gain=True),
            cnn.Conv2d(8, 8, 3, stride=2, padding="tf_same"),
            cnn.AvgPool2d(3, 1, "tf_same", count_include_pad=False),
            cnn.ConvTranspose2d(8, 8, 4, stride=2, padding=1, padding_mode="circular"),
            cnn.Conv2d(8, 8, 3, padding="same", groups=8),
            nn.ReLU(),
            cnn.MaxBlurPool2d(2, 3, 2),
            cnn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1),
            cnn.MaxPool2d(3, 2, 1, ceil_mode=True),
            cnn.AvgPool2d(3, 1, 1, count_include_pad=False),
            cnn.LPPool2d(2, 2, 1),
            cnn.DistanceWeightedPool2d(3, 1, 1, learnable_sigma=True),
            cnn.BlurPool2d(3, 1),
            cnn.ChannelMaxPool(2),
        )
        self.pool_with_indices = cnn.MaxPool2d(2, return_indices=True)
        self.unpool = cnn.MaxUnpool2d(2)
        self.sequence = nn.Sequential(
            cnn.Conv1d(4, 6, 3, padding=1),
            cnn.MaxPool1d(3, 2, 1),
            cnn.AvgPool1d(2, 1),
            cnn.LPPool1d(2, 2),
            cnn.ConvTranspose1d(6, 4, 3, stride=2, output_padding=1),
        )
        self.heads = nn.ModuleList(
            [
                cnn.AdaptiveAvgPool2d((3, 4)),
                cnn.AdaptiveMaxPool2d((3, 5)),
                cnn.GlobalAvgPool2d(flatten=True),
                cnn.GlobalMaxPool2d(flatten=True),
            ]
        )
        self.sequence_heads = nn.ModuleList([cnn.AdaptiveAvgPool1d(3), cnn.AdaptiveMaxPool1d(5)])
        self.volume = nn.Sequential(  # (N, 4, 2, 4, 8): the feature map as a short clip
            cnn.Conv3d(4, 4, 3, padding=1, groups=2),
            cnn.MaxPool3d((1, 2, 2)),
            cnn.ConvTranspose3d(4, 4, (1, 2, 2), stride=(1, 2, 2)),
            cnn.AvgPool3d(2, 1, 1, count_include_pad=False),
            cnn.LPPool3d(2, 2, 1),
        )
        self.volume_pool = cnn.MaxPool3d((1, 2, 2), return_indices=True)
        self.volume_unpool = cnn.MaxUnpool3d((1, 2, 2))
        self.volume_heads = nn.ModuleList([cnn.AdaptiveAvgPool3d((1, 2, 2)), cnn.AdaptiveMaxPool3d((1, 3, 3))])
        self.classifier = nn.LazyLinear(10)
        self.classifier(torch.zeros(1, 4 * (12 + 15 + 1 + 1) + 4 * (3 + 5) + 4 * (4 + 9)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.image(x)  # (N, 4, 8, 8)
        values, indices = self.pool_with_indices(features)
        features = features + self.unpool(values, indices)
        sequence = self.sequence(features.flatten(2))  # (N, 4, L)
        parts = [head(features).flatten(1) for head in self.heads]
        parts += [head(sequence).flatten(1) for head in self.sequence_heads]
        n, c, h, w = features.shape  # (N, 4, 2, 4, 8): a view whose batch stays dynamic when traced
        volume = self.volume(features.reshape(n, c, 2, h // 2, w))
        values, indices = self.volume_pool(volume)
        volume = volume + self.volume_unpool(values, indices, output_size=volume.shape[2:])
        parts += [head(volume).flatten(1) for head in self.volume_heads]
        return self.classifier(torch.cat(parts, 1))


@pytest.fixture
def every_layer():
    return EveryLayer().eval()


@pytest.fixture
def small_pair():
    reference = small_model(nn)
    ours = small_model(cnn)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


def _inputs(batch: int = 4, size: int = 16) -> torch.Tensor:
    return torch.randn(batch, 3, size, size)


def _grads(model: nn.Module, x: torch.Tensor, forward=None):
    model.zero_grad()
    x = x.clone().requires_grad_(True)
    out = (model if forward is None else forward)(x)
    out.square().sum().backward()
    return out.detach(), x.grad, [p.grad.clone() for p in model.parameters()]


def _assert_same_step(first, second, scale: float = 10.0):
    for a, b in zip(first[:2], second[:2]):
        assert_close(a, b, scale=scale)
    for a, b in zip(first[2], second[2]):
        assert_close(a, b, scale=scale * 10)


@pytest.mark.slow
def test_compile_fullgraph_forward_backward_matches_eager_and_torch(every_layer, small_pair):
    torch._dynamo.reset()
    x = _inputs()
    _assert_same_step(_grads(every_layer, x, torch.compile(every_layer, fullgraph=True)), _grads(every_layer, x))
    reference, ours = small_pair
    _assert_same_step(_grads(ours, x, torch.compile(ours, fullgraph=True)), _grads(reference, x))


@pytest.mark.slow
def test_export_with_dynamic_batch_runs_other_batch_sizes_and_has_no_conv_or_pool_op(every_layer):
    batch = torch.export.Dim("batch")
    program = torch.export.export(every_layer, (_inputs(4),), dynamic_shapes=({0: batch},))
    for size in (2, 7):
        x = _inputs(size)
        assert_close(program.module()(x), every_layer(x), scale=10)
    ops = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert [op for op in ops if "aten" in op and ("convolution" in op or "pool" in op)] == []


_SPATIAL_LAYERS = {  # (4-channel layer, spatial dims): geometries whose output size is a formula in the input's
    "conv1d stride 3 dilated": (lambda: cnn.Conv1d(4, 4, 3, stride=3, padding=2, dilation=2), 1),
    "conv2d stride 2 grouped": (lambda: cnn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), 2),
    "conv2d depthwise stride 2": (lambda: cnn.Conv2d(4, 8, 3, stride=2, padding=1, groups=4), 2),
    "conv2d tf_same stride 2": (lambda: cnn.Conv2d(4, 4, 3, stride=2, padding="tf_same"), 2),
    "conv3d tf_same stride 2": (lambda: cnn.Conv3d(4, 4, 3, stride=2, padding="tf_same"), 3),
    "conv_transpose2d stride 2": (lambda: cnn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1), 2),
    "max_pool2d 3/2 ceil_mode": (lambda: cnn.MaxPool2d(3, 2, padding=1, ceil_mode=True), 2),
    "max_pool3d 2": (lambda: cnn.MaxPool3d(2), 3),
    "avg_pool2d tf_same": (lambda: cnn.AvgPool2d(3, 2, padding="tf_same"), 2),
    "lp_pool2d 2": (lambda: cnn.LPPool2d(2, 2), 2),
    "adaptive_max_pool2d 3": (lambda: cnn.AdaptiveMaxPool2d(3), 2),
    "adaptive_avg_pool3d 3": (lambda: cnn.AdaptiveAvgPool3d(3), 3),
    "blur_pool2d": (lambda: cnn.BlurPool2d(4), 2),
}


@pytest.mark.parametrize("name", list(_SPATIAL_LAYERS))
def test_export_with_dynamic_batch_and_spatial_size_runs_other_sizes(name):
    """Every size is symbolic: no guard on an output-size formula may pin a spatial size."""
    make, dims = _SPATIAL_LAYERS[name]
    layer = make().eval()
    dynamic = {0: torch.export.Dim("batch", max=64)} | {
        2 + i: torch.export.Dim(f"size{i}", min=16, max=128) for i in range(dims)
    }
    program = torch.export.export(layer, (torch.randn(2, 4, *(17, 19, 18)[:dims]),), dynamic_shapes=(dynamic,))
    for sizes in ((16, 33, 20), (41, 16, 25)):
        x = torch.randn(3, 4, *sizes[:dims])
        assert_close(program.module()(x), layer(x))


def _op_types(program) -> collections.Counter:
    return collections.Counter(node.op_type for node in program.model_proto.graph.node)


@pytest.mark.slow
def test_cnnlab_onnx_export_emits_the_standard_operators():
    """cnnlab.onnx.export gives a converted resnet18 the ONNX graph of its torch.nn twin (20 Conv,
    a MaxPool, no Slice: the same operators, so the same onnxruntime time and BatchNorm folding);
    a layer ONNX has no operator for keeps its decomposition and is named in a warning."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    torchvision = pytest.importorskip("torchvision")
    import cnnlab.onnx

    reference = torchvision.models.resnet18(num_classes=10).eval()
    ours = cnnlab.convert(reference, to="cnnlab")
    x, other_batch = torch.randn(2, 3, 32, 32), torch.randn(3, 3, 32, 32)
    dynamic = {"dynamic_shapes": ({0: torch.export.Dim("batch")},)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every layer has a standard operator
        program = cnnlab.onnx.export(ours, (x,), **dynamic)
    assert all(
        type(layer).__module__.startswith("cnnlab") for layer in ours.modules() if "Conv" in type(layer).__name__
    )
    ops = _op_types(program)
    assert ops == _op_types(torch.onnx.export(reference, (x,), **dynamic))
    assert ops["Conv"] == 20 and ops["MaxPool"] == 1 and ops["Slice"] == 0
    session = ort.InferenceSession(program.model_proto.SerializeToString())
    (out,) = session.run(None, {session.get_inputs()[0].name: other_batch.numpy()})
    assert_close(torch.from_numpy(out), reference(other_batch), scale=10)

    blurred = nn.Sequential(cnn.Conv2d(3, 4, 3), cnn.BlurPool2d(4)).eval()
    with pytest.warns(UserWarning, match="no ONNX operator for these layers.*\n  1: BlurPool2d"):
        program = cnnlab.onnx.export(blurred, (x,))
    assert _op_types(program)["Conv"] == 1  # the Conv2d (the blur is its own decomposition)
    session = ort.InferenceSession(program.model_proto.SerializeToString())
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert_close(torch.from_numpy(out), blurred(x), scale=10)


@pytest.mark.slow
@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_onnx_export_runs_in_onnxruntime_and_matches(dynamo, small_pair):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript" if dynamo else "onnx")
    model = EveryLayer(fft=False).eval()  # ONNX has no complex arithmetic for FFTConv2d
    reference, ours = small_pair
    for net, expected in ((model, model), (ours, reference)):
        buffer = io.BytesIO()
        x = _inputs(4)
        kwargs = (
            {"dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamo else {"dynamic_axes": {"x": {0: "batch"}}}
        )
        torch.onnx.export(net, (x,), buffer, input_names=["x"], dynamo=dynamo, **kwargs)
        session = ort.InferenceSession(buffer.getvalue())
        for size in (4, 3):
            x = _inputs(size)
            (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
            assert_close(torch.from_numpy(out), expected(x), scale=10)


def test_vmap_of_grad_gives_per_sample_gradients(every_layer, small_pair):
    x, target = _inputs(3), torch.randint(0, 10, (3,))

    def per_sample_gradients(model):
        params = {name: p.detach() for name, p in model.named_parameters()}

        def loss(p, xi, ti):
            return nn.functional.cross_entropy(functional_call(model, p, (xi[None],)), ti[None])

        return vmap(grad(loss), in_dims=(None, 0, 0))(params, x, target)

    def looped(model):
        grads = []
        for i in range(len(x)):
            model.zero_grad()
            nn.functional.cross_entropy(model(x[i : i + 1]), target[i : i + 1]).backward()
            grads.append({name: p.grad.clone() for name, p in model.named_parameters()})
        return {name: torch.stack([g[name] for g in grads]) for name in grads[0]}

    reference, ours = small_pair
    for ours_grads, expected in (
        (per_sample_gradients(every_layer), looped(every_layer)),
        (per_sample_gradients(ours), looped(reference)),
    ):
        for name in expected:
            assert_close(ours_grads[name], expected[name], scale=100)


def test_jvp_is_the_adjoint_of_eager_backward(every_layer):
    """Forward-mode ⟨u, J v⟩ equals reverse-mode (the eager autograd Functions) ⟨Jᵀ u, v⟩."""
    model = every_layer.double()
    x, tangent = _inputs(2).double(), _inputs(2).double()
    out, forward_derivative = jvp(model, (x,), (tangent,))
    cotangent = torch.randn_like(out)
    x.requires_grad_(True)
    (reverse,) = torch.autograd.grad(model(x), x, cotangent)
    torch.testing.assert_close((cotangent * forward_derivative).sum(), (reverse * tangent).sum())


def test_jacrev_and_jvp_match_the_torch_twin(small_pair):
    reference, ours = small_pair
    x, tangent = _inputs(1, 8), _inputs(1, 8)
    assert_close(jacrev(ours)(x), jacrev(reference)(x))
    assert_close(jvp(ours, (x,), (tangent,))[1], jvp(reference, (x,), (tangent,))[1])


def test_meta_and_fake_tensors_infer_the_eager_shapes(every_layer):
    x = _inputs(5)
    expected = every_layer(x).shape
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        assert every_layer(mode.from_tensor(x)).shape == expected
    meta = EveryLayer().to("meta")
    assert meta(x.to("meta")).shape == expected


def test_fx_symbolic_trace_records_each_functional_op_as_one_node(every_layer):
    traced = torch.fx.symbolic_trace(every_layer)
    x = _inputs(3)
    assert_close(traced(x), every_layer(x))
    targets = {getattr(node.target, "__name__", "") for node in traced.graph.nodes if node.op == "call_function"}
    assert {"conv2d", "max_pool2d", "max_unpool2d", "conv_transpose1d", "adaptive_max_pool1d"} <= targets


def test_jit_trace_matches_eager_at_the_traced_size(every_layer):
    x = _inputs(3)
    traced = torch.jit.trace(every_layer, x, check_trace=False)
    assert_close(traced(x), every_layer(x))


def test_empty_batch_forward_and_backward(every_layer, small_pair):
    reference, ours = small_pair
    for model in (every_layer.train(), ours):
        x = torch.randn(0, 3, 16, 16, requires_grad=True)
        out = model(x)
        assert out.shape == (0, 10)
        out.sum().backward()
        assert x.grad.shape == x.shape
    assert ours(torch.randn(0, 3, 16, 16)).shape == reference(torch.randn(0, 3, 16, 16)).shape


def test_eager_every_layer_dispatches_no_conv_or_pool_op(every_layer):
    x = _inputs(2).requires_grad_(True)
    with ForbiddenOpGuard() as guard:
        every_layer(x).sum().backward()
    assert guard.seen and guard.forbidden == []


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_converted_torchvision_models_work_in_every_tool(name):
    """Each row of the table on torchvision models converted to cnnlab, against the torch original."""
    ort = pytest.importorskip("onnxruntime")
    torchvision = pytest.importorskip("torchvision")
    reference = getattr(torchvision.models, name)(num_classes=10).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = cnnlab.convert(reference, to="cnnlab")
    reports = [str(w.message) for w in caught if "stays on torch" in str(w.message)]
    if name == "resnet18":  # every conv and pool is a layer
        assert reports == []
    else:  # MobileNetV2._forward_impl calls F.adaptive_avg_pool2d
        assert len(reports) == 1 and "adaptive_avg_pool2d itself; run it under cnnlab.functional_mode()" in reports[0]
    x, other_batch = torch.randn(2, 3, 32, 32), torch.randn(3, 3, 32, 32)
    expected = reference(x)

    with cnnlab.functional_mode():  # mobilenet_v2 calls F.adaptive_avg_pool2d itself
        assert_close(ours(x), expected, scale=10)
    torch._dynamo.reset()  # the whole model captured as one graph; inductor's code for every layer is
    # checked on the every-layer model above, and takes minutes to generate for these models on 2 cores
    compiled = _grads(ours, x, torch.compile(ours, fullgraph=True, backend="eager"))
    _assert_same_step(compiled, _grads(reference, x), scale=100)

    program = torch.export.export(ours, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    assert_close(program.module()(other_batch), reference(other_batch), scale=10)
    buffer = io.BytesIO()
    # (the exported graph before onnxscript's optimiser, which the every-layer export above runs:
    # 12 of mobilenet_v2's 31 s)
    torch.onnx.export(ours, (x,), buffer, input_names=["x"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                      optimize=False)  # fmt: skip
    session = ort.InferenceSession(buffer.getvalue())
    (out,) = session.run(None, {session.get_inputs()[0].name: other_batch.numpy()})
    assert_close(torch.from_numpy(out), reference(other_batch), scale=10)

    params = {k: v.detach() for k, v in ours.named_parameters()}
    per_sample = vmap(grad(lambda p, xi: functional_call(ours, p, (xi[None],)).sum()), in_dims=(None, 0))(params, x)
    reference.zero_grad()
    reference(x[:1]).sum().backward()
    for key, p in reference.named_parameters():
        assert_close(per_sample[key][0], p.grad, scale=100)
    tangent = torch.randn_like(x)
    assert_close(jvp(ours, (x,), (tangent,))[1], jvp(reference, (x,), (tangent,))[1], scale=10)

    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        assert ours(mode.from_tensor(x)).shape == expected.shape
    assert_close(torch.fx.symbolic_trace(ours)(x), expected, scale=10)
    assert_close(torch.jit.trace(ours, x, check_trace=False)(x), expected, scale=10)
    empty = torch.randn(0, 3, 32, 32, requires_grad=True)
    ours(empty).sum().backward()
    assert empty.grad.shape == empty.shape


@pytest.mark.slow
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_opaque_kernels_pass_opcheck(memory_format):
    """The custom ops torch.compile runs cnnlab's eager kernels as: fake implementations give the
    real outputs' shapes and strides (opcheck), and their autograd formulas pass gradcheck."""
    ops = torch.ops.cnnlab
    x = torch.randn(2, 4, 7, 8, dtype=torch.float64).contiguous(memory_format=memory_format).requires_grad_(True)
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    channels_last = memory_format == torch.channels_last
    geometry = ([2, 1], [1, 1], [1, 2], 2, "gemm")  # stride, padding, dilation, groups, algorithm
    torch.library.opcheck(ops.correlate2d, (x, w, *geometry, channels_last))
    grad = ops.correlate2d(x, w, *geometry, channels_last).detach().requires_grad_(True)
    torch.library.opcheck(ops.correlate2d_input_grad, (grad, w, [7, 8], *geometry, channels_last))
    torch.library.opcheck(ops.correlate2d_weight_grad, (x.detach(), grad.detach(), list(w.shape), *geometry))
    torch.autograd.gradcheck(lambda a, b: ops.correlate2d(a, b, *geometry, channels_last), (x, w))
    torch.autograd.gradcheck(lambda a, b: ops.correlate2d_input_grad(a, b, [7, 8], *geometry, channels_last), (grad, w))


@pytest.mark.skipif(not native.available(), reason="cnnlab's compiled kernels were not built")
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_compiled_pools_run_the_compiled_window_kernels(memory_format):
    """Under torch.compile the max and adaptive pools call cnnlab's window kernels (not their
    traceable form), keep the input's memory format, and give eager's values and gradients."""
    torch._dynamo.reset()
    x = torch.randn(4, 16, 12, 12).contiguous(memory_format=memory_format).requires_grad_(True)

    def pools(t):  # overlapping windows, and adaptive ones that do not tile 12
        return cnnlab.functional.max_pool2d(t, 3, 2, 1), cnnlab.functional.adaptive_max_pool2d(t, 5)

    def loss(outputs):
        return sum(out.square().sum() for out in outputs)

    compiled = torch.compile(pools, fullgraph=True)
    compiled(x)  # compile outside the profile
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        outputs = compiled(x)
        (grad,) = torch.autograd.grad(loss(outputs), x)
    ops = {event.name for event in profile.events()}
    assert {f"cnnlab_native::{op}" for op in ("window_max", "adaptive_window_max", "window_max_backward")} <= ops
    expected = pools(x)
    for out, reference in zip(outputs, expected):
        assert_close(out, reference)
        assert out.is_contiguous(memory_format=memory_format)
    assert_close(grad, torch.autograd.grad(loss(expected), x)[0])


@pytest.mark.parametrize(
    "pool",
    [
        lambda t: cnnlab.functional.max_pool2d(t, 4),
        lambda t: cnnlab.functional.max_pool2d(t, 3, 2, 1),
        lambda t: cnnlab.functional.adaptive_max_pool2d(t, (3, 5)),
    ],
    ids=["tiling", "overlapping", "adaptive"],
)
def test_compiled_max_pool_after_a_fused_activation_picks_the_maximum(pool):
    """Inductor may compute a fused GELU in two kernels an ulp apart; the max pool must not rely on
    comparing such values for equality (it once gathered the first tap instead of the maximum)."""
    torch._dynamo.reset()
    x = torch.randn(4, 16, 8, 8)
    fn = lambda t: pool(nn.functional.gelu(t))  # noqa: E731
    assert_close(torch.compile(fn, fullgraph=True)(x), fn(x))
