"""The traceable forms (what every conv/pool op computes under a tracer or ``torch.func``
transform) against torch: outputs, max-pool indices, and input/weight gradients.

``torch.func.vjp`` is itself a transform, so calling an op under it runs the traceable form with
real values; torch's own op, under the same ``vjp``, is the reference.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import vjp, vmap

from cnnlab import functional as cf
from tests.conftest import assert_close

CONV_CASES = [  # (input shape, weight shape, kwargs)
    ((2, 4, 9, 10), (6, 4, 3, 3), {}),
    ((2, 4, 9, 10), (6, 2, 3, 2), {"stride": (2, 1), "padding": (1, 2), "dilation": (2, 1), "groups": 2}),
    ((2, 4, 9, 10), (8, 1, 3, 3), {"padding": "same", "groups": 4}),
    ((2, 4, 9, 10), (6, 4, 4, 4), {"padding": "same"}),
    ((3, 5, 11), (4, 5, 3), {"stride": 2, "padding": 1}),
]

TRANSPOSED_CASES = [  # (input shape, weight shape, kwargs)
    ((2, 4, 5, 6), (4, 3, 3, 3), {"stride": 2, "padding": 1, "output_padding": 1}),
    ((2, 4, 5, 6), (4, 2, 2, 3), {"stride": (2, 3), "groups": 2, "dilation": (1, 2)}),
    ((2, 4, 5, 6), (4, 3, 3, 3), {"stride": 2, "padding": 0, "output_padding": 1, "dilation": 3}),
    ((2, 4, 7), (4, 3, 3), {"stride": 3, "padding": 2, "output_padding": 2}),
]


def _under_vmap(fn, x):
    """``fn(x)`` computed under ``vmap`` (over a batch of one): its traceable form, integer outputs too."""
    return tuple(t.squeeze(0) for t in vmap(fn)(x.unsqueeze(0)))


def _vjp_pair(ours, theirs, *tensors):
    """Outputs and input gradients (for one random cotangent) of both functions, under ``vjp``."""
    out, pullback = vjp(ours, *tensors)
    expected, expected_pullback = vjp(theirs, *tensors)
    cotangent = torch.randn_like(expected)
    return out, expected, pullback(cotangent), expected_pullback(cotangent)


@pytest.mark.parametrize(("input_shape", "weight_shape", "kwargs"), CONV_CASES)
@pytest.mark.parametrize("algorithm", ["auto", "fft", "gemm"])
def test_conv_traceable_form_matches_torch(input_shape, weight_shape, kwargs, algorithm):
    x, w, b = torch.randn(input_shape), torch.randn(weight_shape), torch.randn(weight_shape[0])
    ours_fn, theirs_fn = (cf.conv1d, F.conv1d) if len(input_shape) == 3 else (cf.conv2d, F.conv2d)
    out, expected, grads, expected_grads = _vjp_pair(
        lambda *t: ours_fn(*t, **kwargs, algorithm=algorithm), lambda *t: theirs_fn(*t, **kwargs), x, w, b
    )
    assert_close(out, expected, scale=10)
    for grad, expected_grad in zip(grads, expected_grads):
        assert_close(grad, expected_grad, scale=10)


@pytest.mark.parametrize(("input_shape", "weight_shape", "kwargs"), TRANSPOSED_CASES)
def test_transposed_traceable_form_matches_torch(input_shape, weight_shape, kwargs):
    groups = kwargs.get("groups", 1)
    x, w = torch.randn(input_shape), torch.randn(weight_shape)
    b = torch.randn(weight_shape[1] * groups)
    ours_fn, theirs_fn = (
        (cf.conv_transpose1d, F.conv_transpose1d)
        if len(input_shape) == 3
        else (cf.conv_transpose2d, F.conv_transpose2d)
    )
    out, expected, grads, expected_grads = _vjp_pair(
        lambda *t: ours_fn(*t, **kwargs), lambda *t: theirs_fn(*t, **kwargs), x, w, b
    )
    assert_close(out, expected)
    for grad, expected_grad in zip(grads, expected_grads):
        assert_close(grad, expected_grad)


def _hard_input(shape) -> torch.Tensor:
    """Ties (a ReLU's zeros), NaN and -inf: where torch's max-pool index rule is subtle."""
    x = torch.randn(shape).relu()
    flat = x.view(-1)
    flat[3] = math.nan
    flat[7] = math.nan
    flat[11] = -math.inf
    x[..., :2, :2] = -math.inf  # a window of -inf only: torch takes its first in-bounds tap
    return x


MAX_CASES = [  # (kernel, stride, padding, dilation, ceil_mode)
    (2, 2, 0, 1, False),
    (3, 2, 1, 1, True),
    ((3, 2), (2, 1), (1, 0), (2, 1), False),
    (3, 1, 1, 1, False),
]


MAX_CASES_BY_DIMS = [(1, case) for case in MAX_CASES if not isinstance(case[0], tuple)] + [(2, c) for c in MAX_CASES]


@pytest.mark.parametrize(("spatial_dims", "case"), MAX_CASES_BY_DIMS)
def test_max_pool_traceable_form_matches_torch_indices_and_gradient(spatial_dims, case):
    kernel, stride, padding, dilation, ceil_mode = case
    if spatial_dims == 1:
        ours_fn, theirs_fn, x = cf.max_pool1d, F.max_pool1d, _hard_input((2, 3, 1, 13)).squeeze(2)
    else:
        ours_fn, theirs_fn, x = cf.max_pool2d, F.max_pool2d, _hard_input((2, 3, 9, 11))
    args = (kernel, stride, padding, dilation, ceil_mode, True)
    out, index = _under_vmap(lambda t: ours_fn(t, *args), x)
    expected, expected_index = theirs_fn(x, *args)
    torch.testing.assert_close(out, expected, equal_nan=True)
    assert torch.equal(index, expected_index)
    out, pullback = vjp(lambda t: ours_fn(t, *args[:-1]), x)
    expected, expected_pullback = vjp(lambda t: theirs_fn(t, *args[:-1]), x)
    cotangent = torch.randn_like(expected)
    torch.testing.assert_close(pullback(cotangent)[0], expected_pullback(cotangent)[0])


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    [
        (2, 2, 0, False, True, None),
        (3, 2, 1, True, False, None),
        ((3, 2), (1, 2), (1, 1), True, True, None),
        (3, 2, 1, False, True, 5),
    ],
)
def test_avg_pool_traceable_form_matches_torch(kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    x = torch.randn(2, 3, 9, 11)
    args = (kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    out, expected, (grad,), (expected_grad,) = _vjp_pair(
        lambda t: cf.avg_pool2d(t, *args), lambda t: F.avg_pool2d(t, *args), x
    )
    assert_close(out, expected)
    assert_close(grad, expected_grad)


@pytest.mark.parametrize("output_size", [(3, 4), (4, 7), (9, 11), 1])
def test_adaptive_max_traceable_form_matches_torch(output_size):
    x = _hard_input((2, 3, 9, 11))
    out, index = _under_vmap(lambda t: cf.adaptive_max_pool2d(t, output_size, True), x)
    expected, expected_index = F.adaptive_max_pool2d(x, output_size, True)
    torch.testing.assert_close(out, expected, equal_nan=True)
    assert torch.equal(index, expected_index)
    x = torch.randn(2, 3, 9, 11)
    out, expected, (grad,), (expected_grad,) = _vjp_pair(
        lambda t: cf.adaptive_max_pool2d(t, output_size), lambda t: F.adaptive_max_pool2d(t, output_size), x
    )
    assert_close(out, expected)
    assert_close(grad, expected_grad)


def test_traceable_forms_keep_channels_last():
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    w = torch.randn(6, 4, 3, 3)
    for op in (
        lambda t: cf.conv2d(t, w, padding=1),
        lambda t: cf.conv_transpose2d(t, w.transpose(0, 1).contiguous(), stride=2),
        lambda t: cf.max_pool2d(t, 2),
        lambda t: cf.avg_pool2d(t, 2),
    ):
        out = vjp(op, x)[0]
        assert out.is_contiguous(memory_format=torch.channels_last)
