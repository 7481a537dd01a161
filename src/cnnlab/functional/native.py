"""cnnlab's compiled CPU kernels (``src/cnnlab/csrc/*.cpp``), built once per machine and cached.

The C++ sources register ``torch.library`` ops in the ``cnnlab_native`` namespace
(``torch.ops.cnnlab_native.*``); this module builds them with ``torch.utils.cpp_extension`` the
first time a kernel is asked for (``make venv`` does it ahead: ``python -m
cnnlab.functional.native``), for the instruction set this CPU has (AVX-512 or AVX2; the name of
the build says which, so another CPU gets its own), and gives each op the fake implementation
that ``torch.compile``, ``torch.export`` and meta tensors need.

Where no compiler is there, or ``CNNLAB_NATIVE=0`` is set, :func:`available` is ``False``, one
warning says why (no compiler), and the dispatches run the Python algorithms: the same results,
slower.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import warnings
from pathlib import Path

import torch

__all__ = ["available", "bfloat16_available", "bfloat16_kernels", "build", "cpu_model", "describe", "float32_kernels",
           "instruction_sets", "main"]  # fmt: skip

CSRC = Path(__file__).resolve().parents[1] / "csrc"

# Instruction-set flags per CPU capability torch reports; the kernels vectorise through the compiler.
_ISA_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma"],
    "AVX2": ["-mavx2", "-mfma"],
}


def _capability() -> str:
    return torch.backends.cpu.get_cpu_capability()


def _enabled() -> bool:
    return os.environ.get("CNNLAB_NATIVE", "1") != "0"


def build(verbose: bool = False) -> None:
    """Compile (or load the cached build of) the kernels and load them into ``torch.ops``. A build
    newer than every source is loaded directly (asking ``cpp_extension`` to check it costs every
    process about 2 s); the flags are part of its name, so other flags make another build."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)  # its import warns that this machine has no CUDA runtime: irrelevant here
    try:
        from torch.utils import cpp_extension
    finally:
        logger.setLevel(level)

    capability = _capability()
    flags = ["-O3", "-fopenmp", "-DNDEBUG", *_ISA_FLAGS.get(capability, [])]
    name = f"cnnlab_native_{capability.lower()}_{hashlib.sha1(' '.join(flags).encode()).hexdigest()[:8]}"
    sources = sorted(CSRC.glob("*.cpp"))
    library = Path(cpp_extension._get_build_directory(name, verbose)) / f"{name}.so"
    newest = max(path.stat().st_mtime for path in CSRC.iterdir())
    if not verbose and library.exists() and library.stat().st_mtime > newest:
        torch.ops.load_library(str(library))
        return
    cpp_extension.load(
        name=name,
        sources=[str(path) for path in sources],
        extra_cflags=flags,
        extra_ldflags=["-fopenmp"],
        is_python_module=False,
        verbose=verbose,
    )


def _constant_for_tracers(fn):
    """``torch.compiler.assume_constant_result(fn)``: tracers read ``fn``'s answer, never its body.
    The mark it sets, set here: calling it imports ``torch._dynamo``, a second of ``import cnnlab``
    that a program which never compiles would pay (tests/functional/test_dispatch_guard.py checks
    that the marks are the same)."""
    fn._dynamo_marked_constant = True
    return fn


_loaded: bool | None = None  # set by the first call of available()


@_constant_for_tracers
def available() -> bool:
    """Whether the compiled kernels are loaded (building them the first time)."""
    global _loaded
    if _loaded is None:
        _loaded = _load()
    return _loaded


_bfloat16: bool | None = None


@_constant_for_tracers
def bfloat16_available() -> bool:
    """Whether the bfloat16 convolution kernels run here: built, and the CPU has AVX512-BF16."""
    global _bfloat16
    if _bfloat16 is None:
        _bfloat16 = available() and torch.ops.cnnlab_native.bfloat16_supported()
    return _bfloat16


_kernels: str | None = None


@_constant_for_tracers
def bfloat16_kernels() -> str:
    """Which kernels compute bfloat16 convolutions on this CPU: ``"amx"`` (AMX tiles, Xeon from
    Sapphire Rapids on), ``"avx512_bf16"`` (``vdpbf16ps``; also where ``CNNLAB_AMX=0`` is set), or
    ``""`` where none run (no AVX512-BF16, or the kernels not built)."""
    global _kernels
    if _kernels is None:
        _kernels = torch.ops.cnnlab_native.bfloat16_kernels() if bfloat16_available() else ""
    return _kernels


@_constant_for_tracers
def float32_kernels() -> str:
    """Which kernels compute channels-last 2-D float32 convolutions here: ``"avx512"`` (cnnlab's
    AVX-512 tiles, where the CPU has AVX512-BF16 too), ``"avx2"`` (its AVX2 tiles, for the shapes
    they suit, else ATen's brgemm; CPUs with AVX2 and no AVX-512), or ``""`` (brgemm alone, or the
    kernels not built)."""
    if not available():
        return ""
    if bfloat16_available():
        return "avx512"
    sets = instruction_sets()
    return "avx2" if "AVX2" in sets and "AVX-512" not in sets else ""


_sets: tuple[str, ...] | None = None


@_constant_for_tracers
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def instruction_sets() -> tuple[str, ...]:
    """The vector instruction sets of this CPU that decide which kernels run (torch's own checks):
    a subset of AVX2, AVX-512, AVX512-BF16, AMX."""
    global _sets
    if _sets is None:
        checks = {
            "AVX2": torch.cpu._is_avx2_supported,
            "AVX-512": torch.cpu._is_avx512_supported,
            "AVX512-BF16": torch.cpu._is_avx512_bf16_supported,
            "AMX": torch.cpu._is_amx_tile_supported,
        }
        _sets = tuple(name for name, check in checks.items() if check())
    return _sets


def describe() -> str:
    """One line for a run's log: the instruction sets, and which kernels compute cnnlab's layers."""
    sets = ", ".join(instruction_sets()) or "no AVX2"
    if not available():
        return f"CPU with {sets}; cnnlab's compiled kernels not loaded: the Python algorithms run"
    tiles = {"avx512": "on its AVX-512 tiles", "avx2": "on its AVX2 tiles and brgemm"}
    float32 = tiles.get(float32_kernels(), "on brgemm")
    bfloat16 = {"amx": "on AMX tiles", "avx512_bf16": "on AVX512-BF16 (vdpbf16ps)"}.get(bfloat16_kernels())
    return (
        f"CPU with {sets}; cnnlab's compiled kernels built for {_capability()}, float32 convolutions {float32}, "
        f"bfloat16 convolutions {bfloat16 or 'by the Python algorithms (no AVX512-BF16)'}"
    )


def _load() -> bool:
    if not _enabled():
        return False
    try:
        build()
    except Exception as error:  # no compiler, no headers: the Python algorithms still compute everything
        warnings.warn(
            f"cnnlab: the compiled CPU kernels could not be built ({type(error).__name__}: {error}); "
            "cnnlab runs its Python algorithms instead (same results, slower). Install a C++ compiler "
            "(g++) to build them, or set CNNLAB_NATIVE=0 to silence this.",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    _register_fakes()
    return True


def _register_fakes() -> None:
    """Shapes and memory formats of each op's outputs, for fake and meta tensors."""

    from .backends import memory_format_of

    def like(x: torch.Tensor, *shape: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        return x.new_empty(shape, dtype=dtype or x.dtype).contiguous(memory_format=memory_format_of(x))

    def window_max(input, *windows):  # (kernel, stride, padding, dilation,) output_size
        shape = (*input.shape[:2], *windows[-1])
        return like(input, *shape), like(input, *shape, dtype=torch.long)

    torch.library.register_fake("cnnlab_native::window_max")(window_max)
    torch.library.register_fake("cnnlab_native::adaptive_window_max")(window_max)

    @torch.library.register_fake("cnnlab_native::adaptive_window_mean")
    def _(input, output_size):
        return like(input, *input.shape[:2], *output_size)

    @torch.library.register_fake("cnnlab_native::adaptive_window_mean_backward")
    def _(grad, input_size):
        return like(grad, *grad.shape[:2], *input_size)

    @torch.library.register_fake("cnnlab_native::window_max_backward")
    def _(grad, index, input_size, overlapping):
        return like(grad, *grad.shape[:2], *input_size)

    # depthwise convolution (one filter per channel), in the input's memory format
    def out_size(size, k, s, p, d):
        return (size + 2 * p - d * (k - 1) - 1) // s + 1

    @torch.library.register_fake("cnnlab_native::depthwise")
    def _(input, weight, bias, stride, padding, dilation):
        sizes = [out_size(*a) for a in zip(input.shape[2:], weight.shape[2:], stride, padding, dilation)]
        return like(input, *input.shape[:2], *sizes)

    @torch.library.register_fake("cnnlab_native::depthwise_input_grad")
    def _(grad, weight, stride, padding, dilation, input_size):
        return like(grad, *grad.shape[:2], *input_size)

    @torch.library.register_fake("cnnlab_native::depthwise_weight_grad")
    def _(input, grad, kernel, stride, padding, dilation):
        return input.new_empty(input.shape[1], 1, *kernel)

    # the direct convolution's products, all on contiguous (N, H, W, C) tensors
    @torch.library.register_fake("cnnlab_native::correlate_nhwc")
    def _(input, weight, stride, padding, dilation, groups, out_size):
        return input.new_empty(input.shape[0], *out_size, weight.shape[0])

    @torch.library.register_fake("cnnlab_native::correlate_nhwc_input_grad")
    def _(grad, weight, stride, padding, dilation, groups, input_size):
        return grad.new_empty(grad.shape[0], *input_size, weight.shape[1] * groups)

    @torch.library.register_fake("cnnlab_native::correlate_nhwc_weight_grad")
    def _(input, grad, weight_shape, stride, padding, dilation, groups):
        return input.new_empty(weight_shape)

    # ... and on contiguous (N, C, H, W) tensors
    @torch.library.register_fake("cnnlab_native::correlate_nchw")
    def _(input, weight, stride, padding, dilation, groups, out_size):
        return input.new_empty(input.shape[0], weight.shape[0], *out_size)

    @torch.library.register_fake("cnnlab_native::correlate_nchw_input_grad")
    def _(grad, weight, stride, padding, dilation, groups, input_size):
        return grad.new_empty(grad.shape[0], weight.shape[1] * groups, *input_size)

    @torch.library.register_fake("cnnlab_native::correlate_nchw_weight_grad")
    def _(input, grad, weight_shape, stride, padding, dilation, groups):
        return input.new_empty(weight_shape)


def main() -> None:
    """Compile the kernels for this CPU (or load the cached build) and say so: ``make venv``'s build
    step, run as ``python -c 'from cnnlab.functional import native; native.main()'`` (``python -m``
    on this module works too, after a RuntimeWarning from runpy: the package imports it first)."""
    build(verbose=True)
    print(f"cnnlab: compiled CPU kernels built for {_capability()} from {CSRC}")


if __name__ == "__main__":
    main()
