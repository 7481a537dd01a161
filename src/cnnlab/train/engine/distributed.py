"""Multi-process training through PyTorch's own engine: ``torchrun --nproc_per_node=N train.py``
(or Slurm with one task per process) sets RANK/WORLD_SIZE/MASTER_ADDR; cnnlab then uses
DistributedDataParallel with gloo on the CPU and nccl on GPUs. Every rank gets its slice of each
global batch, metrics are summed across ranks, and only rank 0 writes."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["all_reduce_sum", "close_distributed", "init_distributed", "is_main_process"]


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group when launched with WORLD_SIZE > 1; returns ``(rank, world_size)``."""
    if "WORLD_SIZE" not in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        _export_slurm_environment()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def close_distributed() -> None:
    """Leave the process group at the end of a run. Left to the interpreter's exit, gloo's
    background threads can be torn down while still joinable, and a rank that finished first
    aborts (``terminate called without an active exception``, exit status −6: seen once in CI)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def _export_slurm_environment() -> None:
    """A Slurm job with one task per process (hydra-submitit-launcher, ``tasks_per_node`` > 1):
    derive RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT from Slurm's variables."""
    try:
        from submitit.helpers import TorchDistributedEnvironment
    except ImportError as error:
        raise RuntimeError(
            "a multi-task Slurm job needs submitit to set up torch.distributed: pip install 'cnnlab[launchers]'"
        ) from error
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def all_reduce_sum(*values: float | torch.Tensor, device: torch.device) -> list[torch.Tensor]:
    """Sum numbers (or tensors of one shape) across ranks; a no-op outside distributed runs."""
    tensors = [torch.as_tensor(v, dtype=torch.float64, device=device).clone() for v in values]
    if dist.is_initialized() and dist.get_world_size() > 1:
        for tensor in tensors:
            dist.all_reduce(tensor)
    return tensors
