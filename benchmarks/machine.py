"""The machine a benchmark ran on, for the first line of its table (every table names its CPU)."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from cnnlab.functional import native


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe() -> str:
    """CPU model, its instruction sets (AVX2 / AVX-512 / AVX512-BF16 / AMX), the kernels cnnlab's
    bfloat16 convolutions run on, torch's version and thread count."""
    kernels = native.bfloat16_kernels() if native.available() else "not built"
    return (
        f"{cpu_model()} ({', '.join(native.instruction_sets()) or 'no AVX2'}; cnnlab bfloat16 kernels: "
        f"{kernels or 'none'}), torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
