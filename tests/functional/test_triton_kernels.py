"""The Triton implicit-GEMM kernels (``algorithm="triton"``) against torch.

On CPU, CI runs them under Triton's interpreter (``TRITON_INTERPRET=1``, in a subprocess so the
rest of the suite keeps compiled Triton); on a CUDA machine the ``gpu`` tests run the compiled
kernels in float32, bfloat16 and float16, channels-last included.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import cnnlab.functional as CF
from tests.conftest import ForbiddenOpGuard

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")

# kernel, stride, padding, dilation, groups
GEOMETRIES = [
    (3, 1, 1, 1, 1),
    (3, 2, 1, 1, 2),
    ((2, 3), (2, 1), (1, 0), 2, 1),
    (1, 1, 0, 1, 1),
    (3, 1, 2, 1, 2),
    (3, 1, 0, 2, 1),
    (5, 2, 2, 1, 1),
]
TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 5e-2}


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.detach().float(), expected.detach().float()
    return float((actual - expected).abs().max() / expected.abs().max().clamp(min=1e-6))


def check_against_torch(device: str, dtype: torch.dtype, channels_last: bool = False) -> None:
    """Forward, input gradient and weight gradient of conv2d (every geometry above) and of
    conv_transpose2d agree with torch's, relative to the largest value."""
    torch.manual_seed(0)
    tolerance = TOLERANCE[dtype]
    for kernel, stride, padding, dilation, groups in GEOMETRIES:
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        x = torch.randn(2, 4, 9, 10, device=device, dtype=dtype)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        w = torch.randn(6, 4 // groups, kh, kw, device=device, dtype=dtype)
        args = (stride, padding, dilation, groups)
        xs, ws = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        xr, wr = x.float().clone().requires_grad_(True), w.float().clone().requires_grad_(True)
        out, expected = CF.conv2d(xs, ws, None, *args, algorithm="triton"), F.conv2d(xr, wr, None, *args)
        grad = torch.randn_like(expected)
        out.backward(grad.to(dtype))
        expected.backward(grad)
        for name, a, e in (
            ("output", out, expected),
            ("input grad", xs.grad, xr.grad),
            ("weight grad", ws.grad, wr.grad),
        ):
            error = _relative_error(a, e)
            assert error < tolerance, f"{name} of {kernel, stride, padding, dilation, groups}: {error}"
        if channels_last:
            assert out.is_contiguous(memory_format=torch.channels_last)
    # transposed convolution through the TRANSPOSED kernel
    from cnnlab.functional.conv.dispatch import convolve_transpose

    x = torch.randn(2, 4, 5, 6, device=device, dtype=dtype, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, device=device, dtype=dtype, requires_grad=True)
    out = convolve_transpose(x, w, (2, 2), (1, 1), (1, 1), (1, 1), 1, algorithm="triton")
    xr, wr = x.detach().float().requires_grad_(True), w.detach().float().requires_grad_(True)
    expected = F.conv_transpose2d(xr, wr, None, 2, 1, 1, 1, 1)
    grad = torch.randn_like(expected)
    out.backward(grad.to(dtype))
    expected.backward(grad)
    for a, e in ((out, expected), (x.grad, xr.grad), (w.grad, wr.grad)):
        assert _relative_error(a, e) < tolerance


def run_interpreted(calls: str) -> None:
    """Run ``calls`` (on this module's checks) in a fresh interpreter with ``TRITON_INTERPRET=1``."""
    root = Path(__file__).resolve().parents[2]
    script = f"import torch\nfrom tests.functional.test_triton_kernels import *\n{calls}"
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(root)}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]


@needs_triton
@pytest.mark.slow
def test_kernels_match_torch_in_the_interpreter():
    """float32 and float16 through Triton's interpreter on CPU tensors (bfloat16 needs a GPU:
    the interpreter computes through NumPy, which has no bfloat16)."""
    root = Path(__file__).resolve().parents[2]
    script = (
        "import torch; from tests.functional.test_triton_kernels import check_against_torch as c; "
        "c('cpu', torch.float32); c('cpu', torch.float32, channels_last=True); c('cpu', torch.float16)"
    )
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(root)}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_triton_refuses_cpu_tensors_without_the_interpreter():
    from cnnlab.functional.backends import triton_available as available

    if available(torch.zeros(1)):
        pytest.skip("running under TRITON_INTERPRET")
    with pytest.raises(ValueError, match="the 'triton' algorithm needs triton installed and a CUDA tensor"):
        CF.conv2d(torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3), algorithm="triton")


@pytest.mark.gpu
@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_kernels_match_cudnn(dtype, channels_last):
    check_against_torch("cuda", dtype, channels_last)


@pytest.mark.gpu
@needs_triton
def test_auto_picks_triton_on_cuda_and_calls_no_torch_conv():
    from cnnlab.functional.conv.base import ConvCall
    from cnnlab.functional.conv.dispatch import select_algorithm

    x = torch.randn(2, 8, 16, 16, device="cuda", requires_grad=True)
    w = torch.randn(8, 8, 3, 3, device="cuda", requires_grad=True)
    assert select_algorithm(ConvCall(x, w, (1, 1), (1, 1), (1, 1), 1)) == "triton"
    with ForbiddenOpGuard() as guard:
        CF.conv2d(x, w, padding=1).sum().backward()
    assert not guard.forbidden, guard.forbidden


def check_depthwise_against_torch(device: str, dtype: torch.dtype) -> None:
    """The depthwise kernels (forward, input and weight gradient; depth multiplier 1 and 2)."""
    torch.manual_seed(0)
    for kernel, stride, padding, dilation, multiplier in [(3, 1, 1, 1, 1), (3, 2, 1, 1, 2), ((2, 3), (2, 1), 2, 2, 1)]:
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        x = torch.randn(2, 5, 9, 10, device=device, dtype=dtype)
        w = torch.randn(5 * multiplier, 1, kh, kw, device=device, dtype=dtype)
        args = (stride, padding, dilation, 5)
        xs, ws = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        xr, wr = x.float().clone().requires_grad_(True), w.float().clone().requires_grad_(True)
        out, expected = CF.conv2d(xs, ws, None, *args), F.conv2d(xr, wr, None, *args)
        grad = torch.randn_like(expected)
        out.backward(grad.to(dtype))
        expected.backward(grad)
        for a, e in ((out, expected), (xs.grad, xr.grad), (ws.grad, wr.grad)):
            assert _relative_error(a, e) < TOLERANCE[dtype], (kernel, stride, padding, dilation, multiplier)


# kernel, stride, padding, dilation, ceil_mode
POOL_GEOMETRIES = [(2, 2, 0, 1, False), (3, 2, 1, 1, True), ((2, 3), (2, 1), (1, 0), 2, False), (3, 1, 1, 1, False)]


def check_pools_against_torch(device: str, dtype: torch.dtype) -> None:
    """Max pooling (values, torch's indices with ties and NaN, gradient) and average pooling (every
    divisor rule, gradient) through the Triton pool kernels agree with torch."""
    torch.manual_seed(0)
    tolerance = TOLERANCE[dtype]
    for kernel, stride, padding, dilation, ceil_mode in POOL_GEOMETRIES:
        x = torch.randint(-3, 4, (2, 3, 9, 10), device=device).to(dtype)  # many ties
        x[0, 0, 1, 1] = float("nan")
        args = (kernel, stride, padding, dilation, ceil_mode, True)
        ours_x, ref_x = x.clone().requires_grad_(True), x.float().clone().requires_grad_(True)
        (out, index), (expected, expected_index) = CF.max_pool2d(ours_x, *args), F.max_pool2d(ref_x, *args)
        assert torch.equal(index, expected_index)
        torch.testing.assert_close(out.float(), expected, equal_nan=True)
        grad = torch.randn_like(expected)
        out.backward(grad.to(dtype))
        expected.backward(grad)
        torch.testing.assert_close(ours_x.grad.float(), ref_x.grad, atol=tolerance, rtol=tolerance)
        if dilation != 1:
            continue
        for count_include_pad, divisor in ((True, None), (False, None), (True, 5)):
            y = torch.randn(2, 3, 9, 10, device=device, dtype=dtype)
            avg_args = (kernel, stride, padding, ceil_mode, count_include_pad, divisor)
            ours_y, ref_y = y.clone().requires_grad_(True), y.float().clone().requires_grad_(True)
            out, expected = CF.avg_pool2d(ours_y, *avg_args), F.avg_pool2d(ref_y, *avg_args)
            assert _relative_error(out, expected) < tolerance
            grad = torch.randn_like(expected)
            out.backward(grad.to(dtype))
            expected.backward(grad)
            assert _relative_error(ours_y.grad, ref_y.grad) < tolerance


@needs_triton
@pytest.mark.slow
def test_pool_and_depthwise_kernels_match_torch_in_the_interpreter():
    run_interpreted(
        "check_pools_against_torch('cpu', torch.float32); check_depthwise_against_torch('cpu', torch.float32)"
    )


@pytest.mark.gpu
@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_pool_and_depthwise_kernels_match_torch_on_cuda(dtype):
    check_pools_against_torch("cuda", dtype)
    check_depthwise_against_torch("cuda", dtype)
