"""cnnlab's compiled CPU kernels that run by CPU capability: the bfloat16 convolution on AMX tiles
(``csrc/correlate_amx.cpp``; its filter packing checked on any CPU, its products where the CPU has
AMX, and the AVX512-BF16 kernels it replaces there) and the depthwise convolution
(``csrc/depthwise.cpp``: float32 and bfloat16, contiguous and channels-last)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import cnnlab.functional as CF
import cnnlab.nn as cnnlab_nn
from cnnlab.functional import native

needs_native = pytest.mark.skipif(not native.available(), reason="needs cnnlab's compiled kernels")
needs_amx = pytest.mark.skipif(
    not native.bfloat16_available() or native.bfloat16_kernels() != "amx", reason="needs a CPU with AMX-BF16"
)


@needs_native
@pytest.mark.parametrize(("shape", "ldn"), [((5, 3), 16), ((2, 33, 20), 32), ((64, 48), 48)])
def test_amx_filter_packing_pairs_rows_of_k(shape, ldn):
    """B [K × N] packed for tdpbf16ps: out[p][n][e] = B[2p + e][n], K padded with zero rows to a
    multiple of 32 and N with zero columns to ``ldn`` (checked element by element)."""
    rows = torch.randn(shape).to(torch.bfloat16)
    packed = torch.ops.cnnlab_native.amx_pair_rows(rows, ldn)
    k, n = shape[-2:]
    pairs = (k + 31) // 32 * 16
    assert packed.shape == (*shape[:-2], pairs, ldn, 2)
    for p in range(pairs):
        for e in range(2):
            expected = torch.zeros(*shape[:-2], ldn, dtype=torch.bfloat16)
            if 2 * p + e < k:
                expected[..., :n] = rows[..., 2 * p + e, :]
            assert torch.equal(packed[..., p, :, e], expected)


def _bfloat16_conv_errors(cases, dtype: torch.dtype = torch.bfloat16) -> list[float]:
    """Largest error of output, ∂x and ∂w (channels-last ``dtype`` through ``cnnlab.functional``)
    against float64 torch on the same numbers, relative to the largest value of each."""
    errors = []
    for n, c, o, h, w, k, s, p, d, g in cases:
        torch.manual_seed(0)
        x = torch.randn(n, c, h, w).to(dtype).contiguous(memory_format=torch.channels_last)
        weight = (torch.randn(o, c // g, k, k) * 0.2).to(dtype)
        ours_in = [x.clone().requires_grad_(), weight.clone().requires_grad_()]
        exact_in = [x.double().requires_grad_(), weight.double().requires_grad_()]
        ours = CF.conv2d(*ours_in, None, s, p, d, g, algorithm="direct")
        exact = F.conv2d(*exact_in, None, s, p, d, g)
        grad = torch.randn_like(exact).to(dtype)
        got = (ours, *torch.autograd.grad(ours, ours_in, grad))
        want = (exact, *torch.autograd.grad(exact, exact_in, grad.double()))
        errors.append(max(((a.double() - b).abs().max() / b.abs().max()).item() for a, b in zip(got, want)))
    return errors


# (N, C, O, H, W, kernel, stride, padding, dilation, groups)
_AMX_CASES = [
    (2, 64, 64, 16, 16, 3, 1, 1, 1, 1),  # padded products, whole kernel rows as terms
    (2, 3, 24, 17, 19, 3, 1, 1, 1, 1),  # an RGB stem: 27 values of 32 per term
    (2, 24, 40, 16, 16, 3, 1, 1, 1, 1),  # channels that are no multiple of 32
    (2, 32, 48, 17, 15, 3, 1, 2, 2, 1),  # dilated along H (padded), along W (gathered)
    (2, 128, 32, 12, 12, 3, 1, 1, 1, 1),  # 128 channels: the weight gradient tap by tap
    (2, 64, 64, 8, 8, 3, 1, 1, 1, 1),  # 8×8: padded forward, gathered weight gradient
    (2, 16, 40, 9, 7, 3, 2, 1, 1, 1),  # stride 2: four classes of ∂x pixels
    (2, 12, 20, 9, 9, 3, 3, 0, 1, 4),  # groups, stride longer than the kernel
    (2, 16, 16, 10, 10, 3, 1, 3, 1, 1),  # padding wider than the kernel reaches
    (1, 96, 72, 16, 16, 1, 1, 0, 1, 1),  # 1×1
    (2, 40, 16, 12, 14, 5, 1, 2, 1, 1),  # 5×5
]


@needs_amx
def test_amx_kernels_match_torch_to_bfloat16_rounding():
    """Every path of the AMX kernels (padded products, gathered blocks, stride classes, groups) gives
    output and both gradients within bfloat16's rounding (2⁻⁸) of float64 torch."""
    assert max(_bfloat16_conv_errors(_AMX_CASES)) < 2**-8


@needs_native
def test_float32_tile_kernels_match_torch():
    """The float32 channels-last products on this CPU's tiles (AVX-512, or AVX2 where the shape suits
    them: ``native.float32_kernels()``) or brgemm, over the same paths, plus column counts that end
    inside a vector (12 filters, an RGB stem's 3-channel ∂x, a gathered 27-column ∂w): float32
    rounding of float64 torch."""
    cases = [*_AMX_CASES, (2, 8, 12, 11, 13, 3, 1, 1, 1, 1), (3, 16, 32, 10, 10, 3, 1, 1, 1, 1)]
    assert max(_bfloat16_conv_errors(cases, torch.float32)) < 1e-5


@pytest.mark.parametrize(
    ("bfloat16", "sets", "expected"),
    [
        (True, ["AVX2", "AVX-512", "AVX512-BF16", "AMX"], "avx512"),  # Xeon from Sapphire Rapids on
        (True, ["AVX2", "AVX-512", "AVX512-BF16"], "avx512"),  # AMD Zen 4/5
        (False, ["AVX2", "AVX-512"], ""),  # Skylake to Ice Lake: brgemm's AVX-512 code, not the AVX2 tiles
        (False, ["AVX2"], "avx2"),  # AMD Zen 2/3, older Intel
        (False, [], ""),
    ],
)
def test_float32_kernels_follow_the_cpu_kind(monkeypatch, bfloat16, sets, expected):
    """Which float32 kernels run, per CPU kind: the AVX2 tiles only where AVX-512 is missing."""
    monkeypatch.setattr(native, "available", lambda: True)
    monkeypatch.setattr(native, "bfloat16_available", lambda: bfloat16)
    monkeypatch.setattr(native, "instruction_sets", lambda: sets)
    assert native.float32_kernels() == expected


@needs_amx
def test_avx512_bf16_kernels_still_run_where_amx_is():
    """``CNNLAB_AMX=0`` keeps the AVX512-BF16 kernels on an AMX CPU (what CPUs without AMX run);
    they report themselves and agree with torch the same way."""
    script = (
        "from cnnlab.functional import native\n"
        "from tests.functional.test_native_kernels import _AMX_CASES, _bfloat16_conv_errors\n"
        "print(native.bfloat16_kernels(), max(_bfloat16_conv_errors(_AMX_CASES[:4])))\n"
    )
    env = {**os.environ, "CNNLAB_AMX": "0"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=root, capture_output=True, text=True, check=True)
    kernels, error = out.stdout.split()
    assert kernels == "avx512_bf16" and float(error) < 2**-8


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(
    ("channels", "kernel", "stride", "padding", "dilation", "size"),
    [
        (32, 3, 1, 1, 1, (13, 11)),  # two blocks of 16 channels
        (24, 3, 2, 1, 1, (13, 11)),  # stride 2: planes in stride phases; a last block of 8 channels
        (16, 3, 2, 1, 1, (9, 70)),  # rows of 2·16 values split (and joined) in registers, and the rest
        (6, 3, (3, 2), (1, 2), 1, (11, 35)),  # stride 3 along H: phases without taps
        (33, (5, 3), 1, (2, 1), (1, 2), (13, 11)),  # dilation, an odd channel count
        (8, 3, 1, 3, 1, (13, 11)),  # padding wider than the kernel reaches
        (4, 2, 2, 0, 1, (13, 11)),  # even kernel
    ],
)
def test_native_depthwise_matches_torch(dtype, channels_last, channels, kernel, stride, padding, dilation, size):
    """The compiled depthwise kernels: output and both gradients agree with torch's (float32:
    to float32 tolerance; bfloat16: to its rounding of the float64 result), in the input's memory
    format and dtype."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, channels, *size).to(dtype).contiguous(memory_format=fmt)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    weight = torch.randn(channels, 1, kh, kw).to(dtype)
    args = (stride, padding, dilation, channels)
    ours_in = [x.clone().requires_grad_(), weight.clone().requires_grad_()]
    exact_in = [x.double().requires_grad_(), weight.double().requires_grad_()]
    with torch.profiler.profile() as profile:
        ours = CF.conv2d(*ours_in, None, *args)
    assert "cnnlab_native::depthwise" in {event.name for event in profile.events()}
    exact = F.conv2d(*exact_in, None, *args)
    assert ours.dtype == dtype and ours.is_contiguous(memory_format=fmt)
    grad = torch.randn_like(exact).to(dtype).contiguous(memory_format=fmt)
    got = (ours, *torch.autograd.grad(ours, ours_in, grad))
    want = (exact, *torch.autograd.grad(exact, exact_in, grad.double()))
    assert got[1].is_contiguous(memory_format=fmt) and got[2].dtype == dtype
    tolerance = 2**-8 if dtype == torch.bfloat16 else 1e-5
    for a, b in zip(got, want):
        assert ((a.double() - b).abs().max() / b.abs().max()).item() < tolerance


@needs_native
def test_native_depthwise_double_backward_records_the_traceable_form():
    """``create_graph=True`` through the compiled depthwise kernels: the second derivative equals
    torch's (the backward differentiates the traceable form there)."""
    torch.manual_seed(0)
    x = torch.randn(2, 6, 7, 7, dtype=torch.float32)
    weight = torch.randn(6, 1, 3, 3)
    results = []
    for conv in (CF.conv2d, F.conv2d):
        xi, wi = x.clone().requires_grad_(), weight.clone().requires_grad_()
        (gx,) = torch.autograd.grad(conv(xi, wi, None, 1, 1, 1, 6).square().sum(), xi, create_graph=True)
        results.append(torch.autograd.grad(gx.square().sum(), wi)[0])
    torch.testing.assert_close(results[0], results[1], rtol=1e-4, atol=1e-4)


@needs_native
@pytest.mark.parametrize(
    ("channels", "size", "dtype", "on_amx"),
    [
        (256, 8, torch.float32, "gemm"),  # CIFAR's 256 @8²: gemm 122 ms against direct 144
        (512, 7, torch.float32, "gemm"),  # resnet18's layer4
        (128, 16, torch.float32, "direct"),  # 128 channels: direct 113 against 141
        (256, 8, torch.bfloat16, "direct"),  # bfloat16 on AMX tiles holds up to 8×8 …
        (512, 7, torch.bfloat16, "gemm"),  # … and loses at 7×7 (41 ms against 49)
    ],
)
def test_auto_takes_gemm_for_deep_layers_with_few_outputs_on_amx_cpus(monkeypatch, channels, size, dtype, on_amx):
    """``auto``'s rule as measured per CPU kind: on an AMX Xeon ``gemm`` for 3×3 layers of 256
    channels and up with at most 14×14 outputs (float32) or 7×7 (bfloat16); ``direct`` elsewhere,
    and on every CPU without AMX (where this was not measured to differ)."""
    from cnnlab.functional.conv.base import ConvCall
    from cnnlab.functional.conv.dispatch import select_algorithm

    monkeypatch.setattr(native, "bfloat16_available", lambda: True)
    x = torch.randn(2, channels, size, size, dtype=dtype).contiguous(memory_format=torch.channels_last)
    call = ConvCall(x, torch.randn(channels, channels, 3, 3, dtype=dtype), (1, 1), (1, 1), (1, 1), 1)
    monkeypatch.setattr(native, "instruction_sets", lambda: ("AVX2", "AVX-512", "AVX512-BF16", "AMX"))
    assert select_algorithm(call) == on_amx
    monkeypatch.setattr(native, "instruction_sets", lambda: ("AVX2", "AVX-512", "AVX512-BF16"))
    assert select_algorithm(call) == "direct"


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "count_include_pad", "divisor_override", "one_divisor"),
    [
        (2, 2, 0, True, None, True),  # every window inside: one divisor, 4
        (3, 2, 1, True, None, True),  # padding counted: one divisor, 9 (bfloat16: not exact, Python)
        (3, 2, 1, False, None, False),  # padding not counted: border windows divide by less
        (3, 1, 1, False, 8, True),  # divisor_override
    ],
)
def test_average_pool_of_one_divisor_runs_the_depthwise_kernel(
    dtype, channels_last, kernel, stride, padding, count_include_pad, divisor_override, one_divisor
):
    """Where every window shares one divisor (and, for bfloat16, it is a power of two, so that the
    division of the rounded sum is exact), ``avg_pool2d`` sums windows with the compiled depthwise
    kernel and a filter of ones: forward bit for bit torch's in bfloat16; value and gradient
    within rounding of the float64 result. Elsewhere the Python sums run."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 20, 11, 12).to(dtype).contiguous(memory_format=fmt)
    args = (kernel, stride, padding, False, count_include_pad, divisor_override)
    ours_in, exact_in = x.clone().requires_grad_(), x.double().requires_grad_()
    with torch.profiler.profile() as profile:
        ours = CF.avg_pool2d(ours_in, *args)
    ran = "cnnlab_native::depthwise" in {event.name for event in profile.events()}
    divisor = divisor_override or kernel * kernel
    assert ran == (one_divisor and (dtype == torch.float32 or divisor & (divisor - 1) == 0))
    assert ours.is_contiguous(memory_format=fmt) and ours.dtype == dtype
    if ran and dtype == torch.bfloat16:
        assert torch.equal(ours, F.avg_pool2d(x, *args))
    exact = F.avg_pool2d(exact_in, *args)
    grad = torch.randn_like(exact).to(dtype)
    got = (ours, *torch.autograd.grad(ours, ours_in, grad))
    want = (exact, *torch.autograd.grad(exact, exact_in, grad.double()))
    tolerance = 2**-8 if dtype == torch.bfloat16 else 1e-6
    for a, b in zip(got, want):
        assert ((a.double() - b).abs().max() / b.abs().max()).item() < tolerance


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_native_depthwise_adds_the_bias_inside_the_kernel(dtype, channels_last):
    """A depthwise layer's bias is added to the kernel's float32 sums before their one rounding
    (no second pass over the output: no ``aten::add`` in the forward); output and the gradients of
    input, filters and bias agree with torch's."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    ours, theirs = cnnlab_nn.Conv2d(21, 21, 3, padding=1, groups=21), torch.nn.Conv2d(21, 21, 3, padding=1, groups=21)
    theirs.load_state_dict(ours.state_dict())
    ours, theirs = ours.to(dtype), theirs.to(dtype)
    x = torch.randn(2, 21, 9, 10).to(dtype).contiguous(memory_format=fmt)
    ours_in, theirs_in = x.clone().requires_grad_(), x.clone().requires_grad_()
    with torch.profiler.profile() as profile:
        out = ours(ours_in)
    names = {event.name for event in profile.events()}
    assert "cnnlab_native::depthwise" in names and "aten::add" not in names
    reference = theirs(theirs_in)
    grad = torch.randn_like(reference)
    out.backward(grad)
    reference.backward(grad)
    tolerance = {"rtol": 1.6e-2, "atol": 2e-2} if dtype == torch.bfloat16 else {}
    torch.testing.assert_close(out, reference, **tolerance)
    torch.testing.assert_close(ours_in.grad, theirs_in.grad, **tolerance)
    for name in ("weight", "bias"):
        torch.testing.assert_close(getattr(ours, name).grad, getattr(theirs, name).grad, **tolerance)


@needs_native
def test_make_venvs_build_step_is_quiet():
    """The Makefile's build step (``native.main()``) says what it built, without runpy's warning
    that ``python -m cnnlab.functional.native`` prints (the package imports the module first)."""
    root = Path(__file__).resolve().parents[2]
    recipe = (root / "Makefile").read_text()
    assert "native.main()" in recipe and "-m cnnlab.functional.native" not in recipe
    script = "from cnnlab.functional import native; native.main()"
    out = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True)
    assert "compiled CPU kernels built for" in out.stdout and "RuntimeWarning" not in out.stderr
