"""The rest of torch.nn's convolution and pooling family (issue 15): the 3-D layers, fractional
max pooling, the Lazy convolutions and the 1-D/3-D unpooling, against torch: values, indices,
gradients (gradcheck and gradgradcheck in float64), hypothesis-drawn 3-D configurations, module
initialisation and state dicts both ways, and torchvision's r3d_18 converted whole."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import cnnlab
from cnnlab import functional as C
from cnnlab import nn as cnn
from cnnlab.functional import native
from cnnlab.functional.conv.base import ConvCall
from cnnlab.functional.conv.dispatch import select_algorithm

F64 = torch.float64


def assert_same(ours, theirs, exact: bool = False):
    ours, theirs = (ours, theirs) if isinstance(ours, tuple) else ((ours,), (theirs,))
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and a.dtype == b.dtype
        if exact or not a.is_floating_point():
            assert torch.equal(a, b)
        else:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def assert_same_outcome(ours, theirs, exact: bool = False):
    """Both calls return the same (see :func:`assert_same`), or both raise the same exception type."""
    try:
        expected = theirs()
    except Exception as error:  # torch refuses the configuration: so must cnnlab, with the same type
        with pytest.raises(type(error)):
            ours()
        return
    assert_same(ours(), expected, exact)


def compare_with_grad(ours_fn, torch_fn, *inputs: torch.Tensor, exact: bool = False):
    """Outputs and the gradients of every input that requires one agree."""
    mine = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
    theirs = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
    out_ours, out_theirs = ours_fn(*mine), torch_fn(*theirs)
    assert_same(out_ours, out_theirs, exact)
    first = out_ours[0] if isinstance(out_ours, tuple) else out_ours
    grad = torch.randn_like(first)
    first.backward(grad)
    (out_theirs[0] if isinstance(out_theirs, tuple) else out_theirs).backward(grad)
    for a, b in zip(mine, theirs):
        if a.requires_grad:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-10)


CONV3D = [
    {},
    {"stride": 2, "padding": 1},
    {"stride": (1, 2, 3), "padding": (0, 1, 2), "dilation": (2, 1, 1)},
    {"padding": "same", "dilation": 2},
    {"groups": 2, "padding": 1},
    {"groups": 4, "padding": 1},  # depthwise
]


@pytest.mark.parametrize("kwargs", CONV3D, ids=str)
def test_conv3d_matches_torch(kwargs):
    groups = kwargs.get("groups", 1)
    x = torch.randn(2, 4, 6, 7, 8, dtype=F64, requires_grad=True)
    w = torch.randn(8, 4 // groups, 3, 2, 3, dtype=F64, requires_grad=True)
    b = torch.randn(8, dtype=F64, requires_grad=True)
    if kwargs.get("padding") == "same":
        w = torch.randn(8, 4, 3, 3, 3, dtype=F64, requires_grad=True)
    compare_with_grad(lambda *t: C.conv3d(*t, **kwargs), lambda *t: F.conv3d(*t, **kwargs), x, w, b)


needs_native = pytest.mark.skipif(not native.available(), reason="cnnlab's compiled kernels were not built")


@needs_native
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last_3d], ids=str)
@pytest.mark.parametrize("kwargs", [*CONV3D[:-1], {"padding": 1, "in_channels": 20}], ids=str)
def test_conv3d_compiled_kernels_match_torch(kwargs, memory_format):
    """float32 3-D convolutions run cnnlab's compiled channels-last kernels (``direct``, what
    ``auto`` picks here): output, both gradients and the memory format agree with torch's, with
    few channels per group (the gathered forward) and many (one product per tap)."""
    kwargs = dict(kwargs)
    channels, groups = kwargs.pop("in_channels", 4), kwargs.get("groups", 1)
    call = ConvCall(torch.empty(1, channels, 1, 1, 1), torch.empty(8, channels // groups, 1, 1, 1), 1, 0, 1, groups)
    assert select_algorithm(call) == "direct"
    x = torch.randn(2, channels, 6, 7, 9).contiguous(memory_format=memory_format).requires_grad_()
    w = torch.randn(8, channels // groups, 3, 3, 3 if kwargs.get("padding") == "same" else 2, requires_grad=True)
    b = torch.randn(8, requires_grad=True)
    ours, theirs = C.conv3d(x, w, b, **kwargs), F.conv3d(x, w, b, **kwargs)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-4)
    assert ours.is_contiguous(memory_format=memory_format)
    grad = torch.randn_like(theirs)
    for a, e in zip(torch.autograd.grad(ours, (x, w, b), grad), torch.autograd.grad(theirs, (x, w, b), grad)):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-4)


@needs_native
def test_conv3d_compiled_kernels_support_double_backward():
    x = torch.randn(2, 4, 5, 6, 7, requires_grad=True)
    w = torch.randn(6, 4, 3, 3, 3, requires_grad=True)
    second = []
    for conv in (C.conv3d, F.conv3d):
        (grad_x,) = torch.autograd.grad(conv(x, w, None, 1, 1).square().sum(), x, create_graph=True)
        second.append(torch.autograd.grad(grad_x.square().sum(), w)[0])
    # a sum of ~10⁴ float32 products per entry: tolerance relative to the largest
    torch.testing.assert_close(second[0], second[1], rtol=1e-4, atol=1e-4 * second[1].abs().max().item())


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_conv3d_padding_modes_match_torch(mode):
    reference = nn.Conv3d(3, 4, 3, padding=1, padding_mode=mode, dtype=F64)
    ours = cnn.Conv3d(3, 4, 3, padding=1, padding_mode=mode, dtype=F64)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 5, 6, 7, dtype=F64)
    assert_same(ours(x), reference(x))


CONV_TRANSPOSE3D = [
    {},
    {"stride": 2, "padding": 1, "output_padding": 1},
    {"stride": (1, 2, 3), "dilation": (1, 2, 1), "output_padding": (0, 1, 2)},
    {"groups": 2, "stride": 2},
]


@pytest.mark.parametrize("kwargs", CONV_TRANSPOSE3D, ids=str)
def test_conv_transpose3d_matches_torch(kwargs):
    groups = kwargs.get("groups", 1)
    x = torch.randn(2, 4, 3, 4, 5, dtype=F64, requires_grad=True)
    w = torch.randn(4, 6 // groups, 3, 2, 3, dtype=F64, requires_grad=True)
    b = torch.randn(6, dtype=F64, requires_grad=True)
    compare_with_grad(lambda *t: C.conv_transpose3d(*t, **kwargs), lambda *t: F.conv_transpose3d(*t, **kwargs), x, w, b)


def test_conv_transpose3d_module_output_size():
    reference, ours = (
        nn.ConvTranspose3d(3, 2, 3, stride=2, dtype=F64),
        cnn.ConvTranspose3d(3, 2, 3, stride=2, dtype=F64),
    )
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(1, 3, 4, 4, 4, dtype=F64)
    assert_same(ours(x, output_size=(10, 9, 10)), reference(x, output_size=(10, 9, 10)))


POOL3D = [
    {"kernel_size": 2},
    {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
    {"kernel_size": (2, 3, 1), "stride": (1, 2, 1)},
]


@pytest.mark.parametrize("kwargs", POOL3D, ids=str)
def test_max_and_avg_pool3d_match_torch(kwargs):
    x = torch.randn(2, 3, 7, 8, 9, dtype=F64, requires_grad=True)
    x.data[0, 0, :2, :2, :2] = 1.0  # ties: the first maximum wins
    compare_with_grad(
        lambda t: C.max_pool3d(t, return_indices=True, **kwargs),
        lambda t: F.max_pool3d(t, return_indices=True, **kwargs),
        x,
        exact=True,
    )
    dilated = {**kwargs, "dilation": 2} if "padding" not in kwargs else kwargs
    compare_with_grad(lambda t: C.max_pool3d(t, **dilated), lambda t: F.max_pool3d(t, **dilated), x, exact=True)
    for extra in ({}, {"count_include_pad": False}, {"divisor_override": 5}):
        options = {**kwargs, **extra}
        compare_with_grad(lambda t, o=options: C.avg_pool3d(t, **o), lambda t, o=options: F.avg_pool3d(t, **o), x)
    positive = x.detach().abs().requires_grad_(True)
    lp = {k: v for k, v in kwargs.items() if k != "padding"}
    compare_with_grad(lambda t: C.lp_pool3d(t, 2.0, **lp), lambda t: F.lp_pool3d(t, 2.0, **lp), positive)


def test_max_pool3d_nan_and_infinities_follow_torch():
    x = torch.randn(1, 2, 4, 4, 4, dtype=F64)
    x[0, 0, 0, 0, 0] = x[0, 0, 1, 1, 1] = float("nan")
    x[0, 1, :2, :2, :2] = -float("inf")
    ours, theirs = C.max_pool3d(x, 2, return_indices=True), F.max_pool3d(x, 2, return_indices=True)
    torch.testing.assert_close(ours[0], theirs[0], equal_nan=True)
    assert torch.equal(ours[1], theirs[1])


@pytest.mark.parametrize("size", [(3, 4, 5), (2, 2, 2), (7, 1, 3), (None, 2, 4)], ids=str)
def test_adaptive_pool3d_matches_torch(size):
    x = torch.randn(2, 3, 7, 8, 9, dtype=F64, requires_grad=True)
    compare_with_grad(lambda t: C.adaptive_avg_pool3d(t, size), lambda t: F.adaptive_avg_pool3d(t, size), x)
    compare_with_grad(
        lambda t: C.adaptive_max_pool3d(t, size, return_indices=True),
        lambda t: F.adaptive_max_pool3d(t, size, return_indices=True),
        x,
        exact=True,
    )


@pytest.mark.parametrize(("dims", "shape", "kernel"), [(1, (2, 3, 9), 2), (3, (2, 3, 6, 7, 8), (2, 3, 2))])
def test_max_unpool_1d_and_3d_invert_max_pool(dims, shape, kernel):
    pool, unpool = getattr(F, f"max_pool{dims}d"), getattr(F, f"max_unpool{dims}d")
    ours_unpool = getattr(C, f"max_unpool{dims}d")
    x = torch.randn(shape, dtype=F64)
    values, indices = pool(x, kernel, return_indices=True)
    values.requires_grad_(True)
    size = shape[2:]
    compare_with_grad(
        lambda v: ours_unpool(v, indices, kernel, output_size=size),
        lambda v: unpool(v, indices, kernel, output_size=size),
        values,
    )
    module = getattr(cnn, f"MaxUnpool{dims}d")(kernel)
    assert_same(
        module(values, indices, output_size=size),
        getattr(nn, f"MaxUnpool{dims}d")(kernel)(values, indices, output_size=size),
    )


@pytest.mark.parametrize(
    ("dims", "kwargs"),
    [
        (2, {"kernel_size": 3, "output_size": (5, 6)}),
        (2, {"kernel_size": (2, 3), "output_ratio": (0.5, 0.7)}),
        (2, {"kernel_size": 2, "output_size": 1}),
        (3, {"kernel_size": 2, "output_size": (3, 4, 5)}),
        (3, {"kernel_size": (1, 2, 3), "output_ratio": (0.6, 0.5, 0.5)}),
    ],
    ids=str,
)
def test_fractional_max_pool_matches_torch(dims, kwargs):
    shape = (2, 3, 11, 13) if dims == 2 else (2, 3, 7, 8, 9)
    x = torch.randn(shape, dtype=F64, requires_grad=True)
    samples = torch.rand(2, 3, dims, dtype=F64)
    ours_fn, torch_fn = getattr(C, f"fractional_max_pool{dims}d"), getattr(F, f"fractional_max_pool{dims}d")
    compare_with_grad(
        lambda t: ours_fn(t, return_indices=True, _random_samples=samples, **kwargs),
        lambda t: torch_fn(t, return_indices=True, _random_samples=samples, **kwargs),
        x,
        exact=True,
    )
    # without samples both draw them with torch.rand: the same windows under the same seed
    module_kwargs = {k: v for k, v in kwargs.items()}
    torch.manual_seed(3)
    ours = getattr(cnn, f"FractionalMaxPool{dims}d")(**module_kwargs)(x)
    torch.manual_seed(3)
    assert torch.equal(ours, getattr(nn, f"FractionalMaxPool{dims}d")(**module_kwargs)(x))


def test_fractional_max_pool_arguments_fail_like_torch():
    for make in (lambda m: m.FractionalMaxPool2d(2), lambda m: m.FractionalMaxPool2d(2, output_ratio=1.5)):
        with pytest.raises(ValueError):
            make(nn)
        with pytest.raises(ValueError):
            make(cnn)
    x = torch.randn(1, 2, 5, 5)
    for module in (nn, cnn):
        with pytest.raises(RuntimeError):
            module.FractionalMaxPool2d(3, output_size=4)(x)  # windows would run past the input


GRADCHECKS = [
    (lambda x, w: C.conv3d(x, w, stride=(1, 2, 1), padding=1, groups=2), (1, 2, 3, 4, 4), (2, 1, 2, 2, 3)),
    (lambda x, w: C.conv_transpose3d(x, w, stride=2, output_padding=1), (1, 2, 2, 3, 2), (2, 2, 2, 2, 2)),
    (lambda x: C.max_pool3d(x, 2, padding=1), (1, 2, 3, 4, 3), None),
    (lambda x: C.avg_pool3d(x, (2, 2, 3), stride=1, count_include_pad=False, padding=1), (1, 2, 3, 4, 4), None),
    (lambda x: C.adaptive_avg_pool3d(x, (2, 3, 2)), (1, 2, 3, 4, 5), None),
    (lambda x: C.adaptive_max_pool3d(x, (2, 3, 2)), (1, 2, 3, 4, 5), None),
    (lambda x: C.lp_pool3d(x.abs() + 0.5, 3.0, 2), (1, 2, 4, 4, 4), None),
    (
        lambda x: C.fractional_max_pool2d(x, 2, output_size=3, _random_samples=torch.full((1, 2, 2), 0.3, dtype=F64)),
        (1, 2, 6, 6),
        None,
    ),
]


@pytest.mark.parametrize(("fn", "shape", "weight_shape"), GRADCHECKS)
def test_gradcheck_and_gradgradcheck(fn, shape, weight_shape):
    inputs = [torch.randn(shape, dtype=F64, requires_grad=True)]
    if weight_shape:
        inputs.append(torch.randn(weight_shape, dtype=F64, requires_grad=True))
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


@settings(max_examples=25, deadline=None)
@given(
    kernel=st.tuples(*[st.integers(1, 3)] * 3),
    stride=st.tuples(*[st.integers(1, 3)] * 3),
    dilation=st.tuples(*[st.integers(1, 2)] * 3),
    padding=st.tuples(*[st.integers(0, 2)] * 3),
    groups=st.sampled_from([1, 2]),
    size=st.tuples(*[st.integers(5, 9)] * 3),
    batch=st.integers(1, 2),
)
def test_conv3d_hypothesis(kernel, stride, dilation, padding, groups, size, batch):
    x = torch.randn(batch, 2 * groups, *size, dtype=F64)
    w = torch.randn(2 * groups, 2, *kernel, dtype=F64)
    assert_same_outcome(
        lambda: C.conv3d(x, w, None, stride, padding, dilation, groups),
        lambda: F.conv3d(x, w, None, stride, padding, dilation, groups),
    )
    wt = torch.randn(2 * groups, 3, *kernel, dtype=F64)
    output_padding = tuple(max(s, d) - 1 for s, d in zip(stride, dilation))
    assert_same_outcome(
        lambda: C.conv_transpose3d(x, wt, None, stride, padding, output_padding, groups, dilation),
        lambda: F.conv_transpose3d(x, wt, None, stride, padding, output_padding, groups, dilation),
    )


@settings(max_examples=25, deadline=None)
@given(
    kernel=st.tuples(*[st.integers(1, 3)] * 3),
    stride=st.tuples(*[st.integers(1, 3)] * 3),
    dilation=st.tuples(*[st.integers(1, 2)] * 3),
    ceil_mode=st.booleans(),
    size=st.tuples(*[st.integers(4, 8)] * 3),
    data=st.data(),
)
def test_pool3d_hypothesis(kernel, stride, dilation, ceil_mode, size, data):
    padding = tuple(data.draw(st.integers(0, (d * (k - 1) + 1) // 2)) for k, d in zip(kernel, dilation))
    x = torch.randn(2, 3, *size, dtype=F64)
    args = (kernel, stride, padding, dilation, ceil_mode, True)
    assert_same_outcome(lambda: C.max_pool3d(x, *args), lambda: F.max_pool3d(x, *args), exact=True)
    avg = (kernel, stride, tuple(min(p, k // 2) for p, k in zip(padding, kernel)), ceil_mode)
    assert_same_outcome(lambda: C.avg_pool3d(x, *avg), lambda: F.avg_pool3d(x, *avg))


@pytest.mark.parametrize(
    ("ours", "theirs", "args"),
    [
        (cnn.Conv3d, nn.Conv3d, (4, 6, 3)),
        (cnn.ConvTranspose3d, nn.ConvTranspose3d, (4, 6, (2, 3, 1))),
    ],
)
def test_3d_modules_initialise_like_torch_and_share_state_dicts(ours, theirs, args):
    torch.manual_seed(5)
    mine = ours(*args, groups=2)
    torch.manual_seed(5)
    reference = theirs(*args, groups=2)
    assert mine.state_dict().keys() == reference.state_dict().keys()
    for name, value in reference.state_dict().items():
        assert torch.equal(mine.state_dict()[name], value), name
    mine.load_state_dict(theirs(*args, groups=2).state_dict())
    reference.load_state_dict(mine.state_dict())


@pytest.mark.parametrize("name", ["LazyConv1d", "LazyConv2d", "LazyConv3d", "LazyConvTranspose1d",
                                  "LazyConvTranspose2d", "LazyConvTranspose3d"])  # fmt: skip
def test_lazy_convolutions_materialise_like_torch(name):
    dims = int(name[-2])
    x = torch.randn(2, 3, *(5,) * dims)
    torch.manual_seed(1)
    mine = getattr(cnn, name)(4, 3, stride=2)
    torch.manual_seed(1)
    reference = getattr(nn, name)(4, 3, stride=2)
    torch.manual_seed(2)
    y = mine(x)
    torch.manual_seed(2)
    torch.testing.assert_close(y, reference(x), rtol=1e-4, atol=1e-5)
    assert type(mine).__name__ == name.removeprefix("Lazy") and mine.in_channels == 3
    assert torch.equal(mine.weight, reference.weight)


def test_r3d_18_converts_whole_and_matches_torch():
    torchvision = pytest.importorskip("torchvision")
    reference = torchvision.models.video.r3d_18().eval()
    x = torch.randn(1, 3, 4, 32, 32)
    model = cnnlab.convert(reference, to="cnnlab", strict=True, example_inputs=(x,))  # strict: nothing on torch
    torch_layers = [m for m in model.modules() if type(m).__module__.startswith("torch.nn.modules.conv")
                    or type(m).__module__.startswith("torch.nn.modules.pooling")]  # fmt: skip
    assert torch_layers == []
    with torch.no_grad():
        expected = torchvision.models.video.r3d_18().eval()
        expected.load_state_dict(model.state_dict())
        torch.testing.assert_close(model(x), expected(x), rtol=1e-3, atol=1e-4)


def test_fractional_max_pool_in_the_toolchain():
    """With fixed ``_random_samples`` (a buffer), fractional max pooling captures in one graph
    (torch.compile fullgraph, AOT autograd), exports with no aten pool op, and runs under vmap."""
    samples = torch.rand(2, 3, 2)
    layer = cnn.FractionalMaxPool2d(2, output_size=4, _random_samples=samples)
    x = torch.randn(2, 3, 9, 9, requires_grad=True)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), layer(x))
    compiled(x).sum().backward()
    exported = torch.export.export(layer, (x.detach(),))
    ops = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert not [op for op in ops if "pool" in op], ops
    one = torch.func.vmap(lambda image, u: C.fractional_max_pool2d(image[None], 2, 4, _random_samples=u[None])[0])
    torch.testing.assert_close(one(x.detach(), samples), layer(x.detach()))


def test_every_torch_conv_and_pool_module_and_functional_has_a_twin():
    """The whole family: each torch.nn conv/pool class has a cnnlab pair (so convert() swaps it),
    each torch.nn.functional conv/pool function a cnnlab function of the same name."""
    import re

    from cnnlab.twins import cnnlab_twin

    modules = [name for name in dir(nn) if re.search(r"Conv|Pool|Unpool", name) and name[0] != "_"]
    assert len(modules) >= 31
    assert [name for name in modules if cnnlab_twin(getattr(nn, name)) is None] == []
    functions = [name for name in dir(F) if re.search(r"conv|pool", name) and name[0] != "_"]
    assert [name for name in functions if not hasattr(C, name)] == []


def test_conv_tbc_and_with_indices_forms_match_torch():
    x, w, b = torch.randn(9, 2, 4, dtype=F64), torch.randn(3, 4, 5, dtype=F64), torch.randn(5, dtype=F64)
    assert_same(C.conv_tbc(x, w, b, 1), F.conv_tbc(x, w, b, 1))
    image = torch.randn(2, 3, 8, 8, dtype=F64)
    assert_same(C.max_pool2d_with_indices(image, 2), F.max_pool2d_with_indices(image, 2), exact=True)
    assert_same(
        C.adaptive_max_pool3d_with_indices(image[None], (1, 2, 3)),
        F.adaptive_max_pool3d_with_indices(image[None], (1, 2, 3)),
        exact=True,
    )
