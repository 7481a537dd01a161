"""Pooling against torch (values, indices, gradients) over grids and hypothesis properties;
gradcheck; hand-computed cases for the layers torch lacks; the invariance pooling buys."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

import cnnlab.functional as CF
from cnnlab import nn as cnn
from cnnlab.functional.pool import base as pool_base
from cnnlab.functional.pool import max_pool as max_module
from tests.conftest import assert_close, compare_forward_backward


def tied_input(*shape, dtype=torch.float32):
    """Small integers: many ties, so tie-breaking (and the gradient's destination) is exercised."""
    return torch.randint(0, 4, shape).to(dtype)


def compare_max(torch_fn, our_fn, x):
    """Values, indices and the gradient (which lands on the chosen index) agree with torch."""
    x_ref, x_our = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out_ref, idx_ref = torch_fn(x_ref)
    out_our, idx_our = our_fn(x_our)
    torch.testing.assert_close(out_our, out_ref, equal_nan=True, rtol=0, atol=0)
    assert torch.equal(idx_our, idx_ref)
    grad = torch.randn_like(out_ref)
    out_ref.backward(grad)
    out_our.backward(grad)
    torch.testing.assert_close(x_our.grad, x_ref.grad, equal_nan=True)


def max_pool_grid():
    for k, s, p, d, ceil in itertools.product([1, 2, 3, (2, 3)], [None, 1, 2, (2, 1)], [0, 1], [1, 2], [False, True]):
        kk = (k, k) if isinstance(k, int) else k
        if any(p > (d * (kv - 1) + 1) // 2 for kv in kk):
            continue
        yield k, s, p, d, ceil


@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation", "ceil_mode"), list(max_pool_grid()))
def test_max_pool2d_matches_torch_with_ties(kernel, stride, padding, dilation, ceil_mode):
    args = (kernel, stride, padding, dilation, ceil_mode, True)
    compare_max(lambda x: F.max_pool2d(x, *args), lambda x: CF.max_pool2d(x, *args), tied_input(2, 3, 9, 10))


def compare_max_without_indices(args, x):
    """The route without indices (taps, taken for channels-last input and under no_grad) agrees
    with torch: values, and the gradient lands where torch's index points."""
    x_ref, x_our = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out_ref, out_our = F.max_pool2d(x_ref, *args), CF.max_pool2d(x_our, *args)
    torch.testing.assert_close(out_our, out_ref, equal_nan=True, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(CF.max_pool2d(x, *args), out_ref.detach(), equal_nan=True, rtol=0, atol=0)
    grad = torch.randn_like(out_ref)
    out_ref.backward(grad)
    out_our.backward(grad)
    torch.testing.assert_close(x_our.grad, x_ref.grad, equal_nan=True)


@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation", "ceil_mode"), list(max_pool_grid()))
def test_max_pool2d_by_taps_matches_torch_with_ties(kernel, stride, padding, dilation, ceil_mode):
    x = tied_input(2, 3, 9, 10).contiguous(memory_format=torch.channels_last)
    compare_max_without_indices((kernel, stride, padding, dilation, ceil_mode), x)


@pytest.mark.parametrize("special", [math.nan, -math.inf, math.inf])
@pytest.mark.parametrize(("kernel", "stride", "padding"), [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_max_pool2d_by_taps_nan_and_infinities(special, kernel, stride, padding):
    x = tied_input(2, 2, 8, 8)
    x[torch.rand_like(x) < 0.15] = special
    compare_max_without_indices((kernel, stride, padding), x.contiguous(memory_format=torch.channels_last))


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation", "ceil_mode"),
    [(2, None, 0, 1, False), (3, 2, 1, 1, True), (4, 3, 2, 2, True), (2, 1, 1, 3, False), (5, 2, 0, 1, True)],
)
def test_max_pool1d_matches_torch_with_ties(kernel, stride, padding, dilation, ceil_mode):
    args = (kernel, stride, padding, dilation, ceil_mode, True)
    compare_max(lambda x: F.max_pool1d(x, *args), lambda x: CF.max_pool1d(x, *args), tied_input(2, 3, 17))


@pytest.mark.parametrize("special", [math.nan, -math.inf, math.inf])
@pytest.mark.parametrize(("kernel", "stride", "padding"), [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_max_pool2d_nan_and_infinities(special, kernel, stride, padding):
    """NaN propagates (the index points at a NaN, as torch's); ±inf win or lose like numbers."""
    x = tied_input(2, 2, 8, 8)
    mask = torch.rand_like(x) < 0.15
    x[mask] = special
    args = (kernel, stride, padding, 1, False, True)
    compare_max(lambda t: F.max_pool2d(t, *args), lambda t: CF.max_pool2d(t, *args), x)


def test_max_pool2d_all_negative_infinity_windows():
    x = torch.full((1, 1, 4, 4), -math.inf)
    args = (3, 2, 1, 1, True, True)
    compare_max(lambda t: F.max_pool2d(t, *args), lambda t: CF.max_pool2d(t, *args), x)


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("count_include_pad", [False, True])
@pytest.mark.parametrize("divisor_override", [None, 3])
@pytest.mark.parametrize(
    ("kernel", "stride", "padding"), [(2, None, 0), (3, 2, 1), ((3, 2), (2, 3), (1, 1)), (4, 3, 2)]
)
def test_avg_pool2d_matches_torch(kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    reference = nn.AvgPool2d(kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    ours = cnn.AvgPool2d(kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    compare_forward_backward(reference, ours, torch.randn(2, 3, 9, 10))


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("count_include_pad", [False, True])
@pytest.mark.parametrize(("kernel", "stride", "padding"), [(2, None, 0), (3, 2, 1), (5, 3, 2)])
def test_avg_pool1d_matches_torch(kernel, stride, padding, ceil_mode, count_include_pad):
    reference = nn.AvgPool1d(kernel, stride, padding, ceil_mode, count_include_pad)
    ours = cnn.AvgPool1d(kernel, stride, padding, ceil_mode, count_include_pad)
    compare_forward_backward(reference, ours, torch.randn(2, 3, 16))


@pytest.mark.parametrize("norm_type", [1, 2, 3.5])
@pytest.mark.parametrize(("kernel", "stride", "ceil_mode"), [(2, None, False), (3, 2, True), ((2, 3), 1, False)])
def test_lp_pool_matches_torch(norm_type, kernel, stride, ceil_mode):
    x = torch.rand(2, 3, 9, 10) + 0.1  # positive: x^p is real for fractional p
    compare_forward_backward(
        nn.LPPool2d(norm_type, kernel, stride, ceil_mode), cnn.LPPool2d(norm_type, kernel, stride, ceil_mode), x
    )
    k1 = kernel if isinstance(kernel, int) else kernel[0]
    compare_forward_backward(
        nn.LPPool1d(norm_type, k1, stride, ceil_mode), cnn.LPPool1d(norm_type, k1, stride, ceil_mode), x[:, :, 0]
    )


def test_lp2_pool_is_l2_norm_of_window():
    """p = 2 is the L2 norm of each window, computed by hand."""
    x = torch.randn(1, 1, 4, 4)
    expected = torch.stack([x[0, 0, i : i + 2, j : j + 2].norm() for i in (0, 2) for j in (0, 2)]).view(1, 1, 2, 2)
    assert_close(cnn.LPPool2d(2, 2)(x), expected)


ADAPTIVE_SIZES = [
    ((7, 10), (3, 4)),
    ((7, 10), 1),
    ((7, 10), (5, None)),
    ((5, 6), (5, 6)),
    ((5, 6), (8, 9)),
    ((57, 43), (4, 4)),
]


@pytest.mark.parametrize(("size", "output_size"), ADAPTIVE_SIZES)
def test_adaptive_pools_match_torch(size, output_size):
    """Same start/end window formula as torch, also when the sizes do not divide evenly."""
    compare_forward_backward(
        nn.AdaptiveAvgPool2d(output_size), cnn.AdaptiveAvgPool2d(output_size), torch.randn(2, 3, *size)
    )
    compare_max(
        lambda x: F.adaptive_max_pool2d(x, output_size, True),
        lambda x: CF.adaptive_max_pool2d(x, output_size, True),
        tied_input(2, 3, *size),
    )
    length = size[1]
    out1 = output_size if isinstance(output_size, int) else output_size[0]
    compare_forward_backward(nn.AdaptiveAvgPool1d(out1), cnn.AdaptiveAvgPool1d(out1), torch.randn(2, 3, length))
    compare_max(
        lambda x: F.adaptive_max_pool1d(x, out1, True),
        lambda x: CF.adaptive_max_pool1d(x, out1, True),
        tied_input(2, 3, length),
    )


@pytest.mark.parametrize("special", [math.nan, -math.inf, math.inf])
def test_adaptive_max_pool2d_uneven_windows_with_nan_and_inf_match_torch(special):
    """Uneven windows (7×10 → 3×4 overlap) find the maximum with one ``max``; a NaN (where torch
    takes the last one) sends them to the exact scan, and ±inf must keep torch's index too."""
    x = tied_input(2, 3, 7, 10)
    x[0, 0, 2, 3] = special
    x[1, 2, 5, 6:8] = special
    compare_max(lambda t: F.adaptive_max_pool2d(t, (3, 4), True), lambda t: CF.adaptive_max_pool2d(t, (3, 4), True), x)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize(("size", "output_size"), [((8, 12), (2, 3)), ((4, 4), 1), ((6, 6), 3), ((7, 10), 1)])
def test_adaptive_max_pool2d_tiling_windows_match_torch(size, output_size, memory_format):
    """Windows that tile the image (global pooling among them) take max_pool2d's routes, by taps
    for small channels-last windows: values and where the gradient lands match torch, with ties
    and a NaN."""
    x = tied_input(2, 3, *size)
    x[0, 0, 1, 1] = math.nan
    x_ref = x.contiguous(memory_format=memory_format).requires_grad_(True)
    x_our = x.contiguous(memory_format=memory_format).requires_grad_(True)
    out_ref, out_our = F.adaptive_max_pool2d(x_ref, output_size), CF.adaptive_max_pool2d(x_our, output_size)
    torch.testing.assert_close(out_our, out_ref, equal_nan=True, rtol=0, atol=0)
    grad = torch.randn_like(out_ref)
    out_ref.backward(grad)
    out_our.backward(grad)
    torch.testing.assert_close(x_our.grad, x_ref.grad, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "output_size"),
    [(2, None, 0, None), (3, 2, 1, None), (2, 2, 0, (9, 11)), (3, 2, 1, [2, 3, 9, 10])],
)
def test_max_unpool2d_matches_torch(kernel, stride, padding, output_size):
    # sizes the default output size reproduces (torch rejects indices outside the output)
    x = torch.randn(2, 3, *(output_size[-2:] if output_size else (7 + 2 * padding, 10 - padding)))
    pooled, indices = F.max_pool2d(x, kernel, stride, padding, return_indices=True)
    pooled.requires_grad_(True)
    reference = nn.MaxUnpool2d(kernel, stride, padding)(pooled, indices, output_size)
    ours = cnn.MaxUnpool2d(kernel, stride, padding)(pooled, indices, output_size)
    assert torch.equal(ours, reference)
    (grad_ref,) = torch.autograd.grad(reference.square().sum(), pooled)
    (grad_our,) = torch.autograd.grad(ours.square().sum(), pooled)
    assert torch.equal(grad_our, grad_ref)


def test_max_unpool_inverts_max_pool():
    """unpool(pool(x)) keeps every window maximum in place and zeros the rest."""
    x = torch.rand(1, 2, 8, 8) + 0.1  # positive, so the zeros unpool adds never win the max
    pooled, indices = CF.max_pool2d(x, 2, return_indices=True)
    restored = CF.max_unpool2d(pooled, indices, 2)
    assert torch.equal(CF.max_pool2d(restored, 2), pooled)
    assert int((restored != 0).sum()) == pooled.numel()


@settings(max_examples=60, deadline=None)
@given(
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    ceil_mode=st.booleans(),
    size=st.tuples(st.integers(4, 11), st.integers(4, 11)),
)
def test_max_pool2d_property_random_configs(kernel, stride, padding, dilation, ceil_mode, size):
    assume(all(p <= k // 2 for k, p in zip(kernel, padding)))  # torch's check when it returns indices
    assume(all(n + 2 * p >= d * (k - 1) + 1 for n, k, d, p in zip(size, kernel, dilation, padding)))
    args = (kernel, stride, padding, dilation, ceil_mode, True)
    compare_max(lambda x: F.max_pool2d(x, *args), lambda x: CF.max_pool2d(x, *args), tied_input(1, 2, *size))


@settings(max_examples=60, deadline=None)
@given(
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    ceil_mode=st.booleans(),
    count_include_pad=st.booleans(),
    size=st.tuples(st.integers(4, 11), st.integers(4, 11)),
)
def test_avg_pool2d_property_random_configs(kernel, stride, padding, ceil_mode, count_include_pad, size):
    assume(all(p <= k // 2 for k, p in zip(kernel, padding)))
    args = (kernel, stride, padding, ceil_mode, count_include_pad)
    compare_forward_backward(nn.AvgPool2d(*args), cnn.AvgPool2d(*args), torch.randn(1, 2, *size))


@settings(max_examples=30, deadline=None)
@given(shift=st.integers(1, 5), c=st.floats(0.1, 10))
def test_pooling_properties(shift, c):
    """Max and average pooling are positively homogeneous; global pools ignore circular shifts."""
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    for pool in (lambda t: CF.max_pool2d(t, 2), lambda t: CF.avg_pool2d(t, 3, 1, 1)):
        torch.testing.assert_close(pool(c * x), c * pool(x))
    rolled = torch.roll(x, (shift, -shift), (2, 3))
    for pool in (cnn.GlobalAvgPool2d(), cnn.GlobalMaxPool2d()):
        torch.testing.assert_close(pool(rolled), pool(x))


def _double(*shape):
    """Tie-free float64 input for gradcheck (max's gradient is undefined at ties)."""
    return (torch.randperm(math.prod(shape), dtype=torch.float64) / 7).view(shape).requires_grad_(True)


GRADCHECK = [
    lambda x: CF.max_pool2d(x, 3, 2, 1, ceil_mode=True),
    lambda x: CF.max_pool2d(x, 2, 1, dilation=2),
    lambda x: CF.max_pool1d(x.flatten(2), 3, 2, 1),
    lambda x: CF.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
    lambda x: CF.avg_pool1d(x.flatten(2), 4, 3, 2),
    lambda x: CF.lp_pool2d(x.abs() + 0.5, 2, 2),
    lambda x: CF.lp_pool1d(x.flatten(2).abs() + 0.5, 3, 2),
    lambda x: CF.adaptive_avg_pool2d(x, (3, 2)),
    lambda x: CF.adaptive_max_pool2d(x, (3, 2)),
    lambda x: CF.adaptive_avg_pool1d(x.flatten(2), 4),
    lambda x: CF.adaptive_max_pool1d(x.flatten(2), 4),
    lambda x: CF.distance_weighted_pool2d(x, 3, 2, 1, kind="gaussian", sigma=0.8),
    lambda x: CF.distance_weighted_pool2d(x, 2, 1, kind="inverse"),
    lambda x: CF.blur_pool2d(x, 3, 2),
    lambda x: CF.blur_pool2d(x, 4, 2),
    lambda x: CF.max_blur_pool2d(x, 2, 3, 2),
    lambda x: CF.channel_max_pool(x, 2),
    lambda x: cnn.GlobalAvgPool2d(flatten=True)(x),
    lambda x: cnn.GlobalMaxPool2d()(x),
    lambda x: CF.max_unpool2d(*CF.max_pool2d(x, 2, return_indices=True), 2),
]


@pytest.mark.parametrize("fn", GRADCHECK, ids=range(len(GRADCHECK)))
def test_pool_gradcheck(fn):
    assert torch.autograd.gradcheck(fn, (_double(2, 4, 7, 6),))


def test_learnable_sigma_gradcheck():
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    sigma = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: CF.distance_weighted_pool2d(x, 3, 1, 1, sigma=s), (sigma,))


# ------------------------------------------------------------------ hand-computed, torch lacks them
def test_distance_weighted_gaussian_by_hand():
    """3×3 Gaussian σ=1: weights exp(-r²/2)/Z with r² ∈ {0, 1, 2}; output at one window by hand."""
    x = torch.arange(16.0).view(1, 1, 4, 4)
    out = CF.distance_weighted_pool2d(x, 3, stride=1, kind="gaussian", sigma=1.0)
    w = {0: 1.0, 1: math.exp(-0.5), 2: math.exp(-1.0)}
    z = w[0] + 4 * w[1] + 4 * w[2]
    window = x[0, 0, :3, :3]
    expected = (
        w[0] * window[1, 1]
        + w[1] * (window[0, 1] + window[1, 0] + window[1, 2] + window[2, 1])
        + w[2] * (window[0, 0] + window[0, 2] + window[2, 0] + window[2, 2])
    ) / z
    assert out.shape == (1, 1, 2, 2)
    assert math.isclose(out[0, 0, 0, 0].item(), expected.item(), rel_tol=1e-6)


def test_distance_weighted_even_window_and_inverse_by_hand():
    """A 2×2 window's centre lies between its pixels: all four are √½ away, so the weights are
    equal and the pool is the average; inverse weights 1/(1+r) normalise the same way."""
    x = torch.randn(1, 2, 6, 6)
    for kind in ("gaussian", "inverse"):
        assert_close(CF.distance_weighted_pool2d(x, 2, kind=kind), F.avg_pool2d(x, 2))
    weights = CF.distance_weights((3, 3), "inverse", 1.0)
    raw = torch.tensor(
        [
            [1 / (1 + math.sqrt(2)), 1 / 2, 1 / (1 + math.sqrt(2))],
            [1 / 2, 1.0, 1 / 2],
            [1 / (1 + math.sqrt(2)), 1 / 2, 1 / (1 + math.sqrt(2))],
        ]
    )
    assert_close(weights, raw / raw.sum())
    assert math.isclose(weights.sum().item(), 1.0, rel_tol=1e-6)


def test_distance_weighted_learnable_sigma_gets_gradient():
    layer = cnn.DistanceWeightedPool2d(3, stride=2, padding=1, learnable_sigma=True, sigma=1.5)
    assert [name for name, _ in layer.named_parameters()] == ["sigma"]
    layer(torch.randn(2, 3, 8, 8)).square().sum().backward()
    assert layer.sigma.grad is not None and layer.sigma.grad.abs() > 0


def test_channel_max_pool_by_hand():
    """Maxout over groups of 2 channels: out[c] = max(x[2c], x[2c+1])."""
    x = torch.tensor([1.0, 5.0, -2.0, -3.0, 7.0, 7.5]).view(1, 6, 1, 1)
    out = CF.channel_max_pool(x, 2)
    assert out.flatten().tolist() == [5.0, -2.0, 7.5]
    with pytest.raises(RuntimeError, match=r"channels \(6\).*kernel_size=4"):
        CF.channel_max_pool(x, 4)


def test_maxout_over_rotated_filters_is_rotation_invariant():
    """Pooling over separately parameterised filters: with 4 filters that are rotations of one
    edge detector, maxout responds the same to a pattern and its 90° rotation."""
    base = torch.randn(3, 3, dtype=torch.float64)
    weight = torch.stack([torch.rot90(base, r) for r in range(4)]).unsqueeze(1)
    conv = cnn.Conv2d(1, 4, 3, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(weight)
    maxout = cnn.ChannelMaxPool(4)
    patch = torch.randn(1, 1, 3, 3, dtype=torch.float64)
    rotated = torch.rot90(patch, 1, (2, 3))
    torch.testing.assert_close(maxout(conv(patch)), maxout(conv(rotated)))
    assert not torch.allclose(conv(patch), conv(rotated))


def _blur_by_hand(x: torch.Tensor, taps: list[float], stride: int) -> torch.Tensor:
    """Reflect-pad and filter with explicit loops, independent of cnnlab."""
    f = len(taps)
    left, right = (f - 1) // 2, f // 2
    padded = F.pad(x, [left, right, left, right], mode="reflect") if f > 1 else x
    kernel = [[a * b / sum(taps) ** 2 for b in taps] for a in taps]
    h, w = padded.shape[-2:]
    rows = []
    for i in range(0, h - f + 1, stride):
        row = []
        for j in range(0, w - f + 1, stride):
            row.append(sum(kernel[u][v] * padded[..., i + u, j + v] for u in range(f) for v in range(f)))
        rows.append(torch.stack(row, -1))
    return torch.stack(rows, -2)


@pytest.mark.parametrize(
    ("filter_size", "taps"),
    [(1, [1]), (2, [1, 1]), (3, [1, 2, 1]), (5, [1, 4, 6, 4, 1]), (7, [1, 6, 15, 20, 15, 6, 1])],
)
def test_blur_pool_by_hand(filter_size, taps):
    x = torch.randn(1, 2, 9, 8, dtype=torch.float64)
    assert_close(cnn.BlurPool2d(filter_size, 2)(x), _blur_by_hand(x, taps, 2))
    assert torch.allclose(
        CF.binomial_filter(filter_size, dtype=torch.float64).sum(), torch.tensor(1.0, dtype=torch.float64)
    )


def test_blur_pool_matches_depthwise_conv_reference():
    """The same filter through torch's F.conv2d (reference only) gives the same result."""
    x = torch.randn(2, 3, 16, 16)
    taps = CF.binomial_filter(3)
    weight = torch.outer(taps, taps).expand(3, 1, 3, 3)
    expected = F.conv2d(F.pad(x, [1, 1, 1, 1], mode="reflect"), weight, stride=2, groups=3)
    assert_close(CF.blur_pool2d(x, 3, 2), expected)
    assert_close(CF.max_blur_pool2d(x, 2, 3, 2), CF.blur_pool2d(F.max_pool2d(x, 2, 1), 3, 2))


# ------------------------------------------------------------------ the textbook claim, measured
def _fraction_unchanged(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().le(1e-6).float().mean().item()


def test_max_pooling_buys_invariance_to_one_pixel_shifts():
    """Shift random images by one pixel: more outputs stay unchanged after conv+ReLU+MaxPool2d
    than after conv+ReLU alone (Goodfellow et al., ch. 9.3), measured on 64 images."""
    torch.manual_seed(0)
    conv = cnn.Conv2d(3, 16, 3, padding=1)
    pool = cnn.MaxPool2d(3, stride=1, padding=1)
    x = torch.randn(64, 3, 24, 24)
    shifted = torch.roll(x, 1, dims=3)
    with torch.no_grad():
        detector, detector_shifted = torch.relu(conv(x)), torch.relu(conv(shifted))
        pooled, pooled_shifted = pool(detector), pool(detector_shifted)
    inner = (..., slice(2, -2), slice(2, -2))  # away from the border and the wrap-around column
    before = _fraction_unchanged(detector[inner], detector_shifted[inner])
    after = _fraction_unchanged(pooled[inner], pooled_shifted[inner])
    assert after > before + 0.1, (before, after)


@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation", "ceil_mode"), list(max_pool_grid()))
def test_max_pool2d_fast_path_picks_the_scan_index(kernel, stride, padding, dilation, ceil_mode):
    """The one-``max`` path agrees with the exact separable scan wherever it applies."""
    x = tied_input(2, 3, 9, 10)
    _, _, k, s, p, d, o = pool_base.pool_args("max_pool2d", x, 2, kernel, stride, padding, dilation, ceil_mode)
    values, fast = max_module._max_pool2d_direct(x, k, s, p, d, o)
    assert fast is not None
    assert torch.equal(values, pool_base.gather_flat(x, fast))
    scan = max_module.max_indices_2d(
        x,
        lambda t: max_module.max_indices_1d(t, k[1], s[1], p[1], d[1], o[1]),
        lambda t: max_module.max_indices_1d(t, k[0], s[0], p[0], d[0], o[0]),
    )
    assert torch.equal(fast, scan)


@pytest.mark.parametrize("channels_last", [False, True])
def test_max_pool2d_tiling_without_ties_routes_the_gradient(channels_last):
    """Windows that tile the input with one maximum each take the one-pass backward; it agrees
    with torch, also when double backward records it."""
    x = torch.randn(2, 3, 8, 6, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    compare_max_without_indices((2,), x.float())
    assert torch.autograd.gradgradcheck(lambda t: CF.max_pool2d(t, 2), (x.requires_grad_(True),))


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_maxima_count_is_exact_beyond_float32_integers(memory_format):
    """The one-pass backward counts the maxima of a 0/1 float mask; above 2²⁴ ones a float32 sum
    would round (16785409 → 16785408), the count must not."""
    ones = torch.ones(1, 1, 4097, 4097).contiguous(memory_format=memory_format)
    assert max_module._count_ones(ones) == ones.numel()
    mask = (torch.rand(2, 3, 7, 5) > 0.5).float().contiguous(memory_format=memory_format)
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        assert max_module._count_ones(mask.to(dtype)) == int(torch.count_nonzero(mask))


def test_max_pool2d_tap_by_tap_backward_records_double_backward():
    """Overlapping windows on channels-last input take the tap-by-tap backward (not the one-pass
    shortcut); its gradient is itself differentiable."""
    x = _double(2, 3, 7, 6).detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: CF.max_pool2d(t, 3, 2, 1), (x,))
    assert torch.autograd.gradgradcheck(lambda t: CF.max_pool2d(t, 3, 2, 1), (x,))
