"""The machine a benchmark ran on, for the first line of its table (every table names its CPU)."""

from __future__ import annotations

import torch

from cnnlab.functional import native


def describe() -> str:
    """CPU model, its instruction sets (AVX2 / AVX-512 / AVX512-BF16 / AMX), the kernels cnnlab's
    bfloat16 convolutions run on, torch's version and thread count."""
    kernels = native.bfloat16_kernels() if native.available() else "not built"
    return (
        f"{native.cpu_model()} ({', '.join(native.instruction_sets()) or 'no AVX2'}; cnnlab bfloat16 kernels: "
        f"{kernels or 'none'}), torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
