"""Set-up: from a validated config to a :class:`~cnnlab.train.engine.state.Run` (device, processes, data
loaders, the model traced once, optimiser and schedule, logger, callbacks), restored from a
checkpoint when one is given."""

from __future__ import annotations

import ctypes
import logging
import math
import platform
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ...data import CIFAR10_CLASSES, TensorImageLoader, class_indices, load_cifar10, make_synthetic, select_classes
from ...functional import native
from ...models import build_model, format_shape_table
from ...nn import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from ..config import NORM_BIAS_LR_SCALE, ConfigValueError
from ..options import TrainerOptions
from ..overrides import JobInfo
from ..runs.checkpoint import CheckpointManager
from .distributed import init_distributed
from .state import Run
from .tensorboard import RunLogger

__all__ = [
    "build_run",
    "class_names",
    "keep_freed_memory",
    "load_data",
    "seed_everything",
    "select_device",
    "select_precision",
]

log = logging.getLogger("cnnlab")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigValueError(
            "config key trainer.device: got 'cuda', but torch.cuda.is_available() is False on this machine (no "
            f"CUDA GPU, or torch {torch.__version__} built without CUDA); use trainer.device=cpu or auto"
        )
    return torch.device(name)


# mallopt(3)'s parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Keep freed memory in the process for the next training step, as a GPU's caching allocator
    does. glibc's malloc hands every block over 32 MiB (a step's activations) back to the kernel
    when it is freed, and the next step's allocation faults each page in again, zeroed: about 10⁸
    page faults in a 10-epoch airbench94 run on the CPU; one epoch went 832 → 952 images/s once
    they were gone (``docs/benchmarks.md``). Big blocks come from the heap instead
    (``M_MMAP_MAX = 0``) and the heap is trimmed only above 2 GiB free (``M_TRIM_THRESHOLD``).
    Returns False (and changes nothing) where the C library is not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


_CNNLAB_CONVS = (Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d)


def select_precision(name: str, device: torch.device, model: torch.nn.Module | None = None) -> str:
    """``"auto"`` → ``"bf16"`` where bfloat16 steps are the faster ones, else ``"32"``: on a CUDA GPU
    that supports it; on a CPU where oneDNN computes bfloat16 (AVX-512) and, for a ``model`` with
    cnnlab's convolutions, cnnlab's bfloat16 kernels are faster than its float32 ones: AMX tiles
    (2.2× the float32 step on an AMX Xeon), or AVX512-BF16 on a CPU without AMX (AMD Zen 4/5). On
    an AMX CPU whose AMX kernels are switched off (``CNNLAB_AMX=0``) the AVX512-BF16 kernels are
    slower than float32 (393 against 470 images/s, ``fast``), and on an AVX2-only CPU bfloat16 is
    emulated (torch's ran 14 images/s on ``fast`` against 215 in float32): float32 there. The
    measurements are in ``docs/benchmarks.md``."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "32"
    if device.type != "cpu" or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "32"
    if model is not None and any(isinstance(m, _CNNLAB_CONVS) for m in model.modules()):
        kernels = native.bfloat16_kernels()
        faster = kernels == "amx" or (kernels == "avx512_bf16" and "AMX" not in native.instruction_sets())
        return "bf16" if faster else "32"
    return "bf16"


def class_names(cfg: DictConfig) -> list[str]:
    """The names of the classes a run tells apart (``cfg`` is ``data``), in label order."""
    if cfg.name != "cifar10":
        return [str(i) for i in range(int(cfg.num_classes))]
    classes = cfg.get("classes")
    return (
        list(CIFAR10_CLASSES)
        if classes is None
        else [CIFAR10_CLASSES[i] for i in class_indices(list(classes), CIFAR10_CLASSES)]
    )


def load_data(cfg: DictConfig) -> dict[str, torch.Tensor]:
    """uint8 images and int64 labels of both splits (CIFAR-10 from ``data.root``, only
    ``data.classes`` if given, relabelled 0..n−1 in their order; or synthetic)."""
    if cfg.name == "cifar10":
        data = load_cifar10(cfg.root, bool(cfg.download))
        classes = cfg.get("classes")
        return data if classes is None else select_classes(data, class_indices(list(classes), CIFAR10_CLASSES))
    return make_synthetic(
        int(cfg.num_train), int(cfg.num_test), int(cfg.image_shape[-1]), int(cfg.num_classes), int(cfg.seed)
    )


def _loaders(cfg: DictConfig, options: TrainerOptions, device: torch.device, rank: int, world_size: int):
    """Training and validation loaders over whole tensors held on ``device``. With
    ``trainer.overfit_batches=N`` training sees the same N batches every epoch, unshuffled and
    unaugmented (a model that cannot fit them has a bug)."""
    data = load_data(cfg.data)
    mean, std = torch.tensor(list(cfg.data.mean)), torch.tensor(list(cfg.data.std))
    overfit = options.overfit_batches
    common = dict(mean=mean, std=std, device=device, rank=rank, world_size=world_size,
                  channels_last=options.channels_last, num_classes=int(cfg.data.num_classes))  # fmt: skip
    train_loader = TensorImageLoader(
        data["train_images"],
        data["train_labels"],
        int(cfg.data.batch_size),
        shuffle=not overfit,
        drop_last=True,
        augment=None if overfit else OmegaConf.to_container(cfg.data.augment),
        seed=int(cfg.seed),
        limit_batches=overfit or options.limit_train_batches,
        split="batch",
        **common,
    )
    val_loader = TensorImageLoader(
        data["test_images"],
        data["test_labels"],
        int(cfg.data.eval_batch_size),
        limit_batches=options.limit_val_batches,
        split="dataset",
        **common,
    )
    if len(train_loader) == 0:
        raise ConfigValueError(
            f"config key data.batch_size: got {cfg.data.batch_size}, expected at most the "
            f"{len(data['train_images'])} training images (the last incomplete batch is dropped)"
        )
    return train_loader, val_loader, mean, std


def build_optimizer(config: DictConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer of ``optimizer:`` over the model's parameters. ``norm_bias_lr_scale: s``
    (cnnlab's key, not the optimizer's) puts the normalisation layers' biases in a group of their
    own with ``s`` times the learning rate and ``1/s`` times the weight decay, so their absolute
    decay per step, ``lr · weight_decay · p``, stays the others' (airbench94's ``bias_scaler``: 64)."""
    options = OmegaConf.to_container(config, resolve=True)
    scale = options.pop(NORM_BIAS_LR_SCALE, 1.0)
    make = instantiate(OmegaConf.create(options))
    if scale == 1.0:
        return make(params=model.parameters())
    norm_biases = {
        id(module.bias)
        for module in model.modules()
        if isinstance(module, _NORMALISATIONS) and isinstance(getattr(module, "bias", None), torch.nn.Parameter)
    }
    biases = [p for p in model.parameters() if id(p) in norm_biases]
    others = [p for p in model.parameters() if id(p) not in norm_biases]
    lr, weight_decay = options["lr"], options.get("weight_decay", 0.0)
    groups = [{"params": others}, {"params": biases, "lr": lr * scale, "weight_decay": weight_decay / scale}]
    try:
        return make(params=groups)
    except TypeError as error:  # an optimiser that groups the parameters itself (Muon)
        raise ConfigValueError(f"config key optimizer.{NORM_BIAS_LR_SCALE}: got {scale}, but {error}") from None


_NORMALISATIONS = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)


def build_run(
    cfg: DictConfig, saved: dict[str, Any] | None = None, saved_path: Path | None = None, job: JobInfo | None = None
) -> Run:
    """Everything a run needs, built from ``cfg``, started by ``job``; ``saved`` (a checkpoint)
    restores it (with the job that started it)."""
    options = TrainerOptions.from_config(cfg.trainer)
    device = select_device(options.device)
    if device.type == "cpu":
        keep_freed_memory()
    rank, world_size = init_distributed(device)
    run_dir = Path(cfg.paths.output_dir)
    seed_everything(int(cfg.seed))
    if options.deterministic:
        torch.use_deterministic_algorithms(True)
    train_loader, val_loader, mean, std = _loaders(cfg, options, device, rank, world_size)

    input_shape = tuple(cfg.data.image_shape)
    model, rows = build_model(cfg.model, cfg.conv, cfg.pool, input_shape)
    if cfg.model.task == "classification" and rows[-1].output_shape != (int(cfg.data.num_classes),):
        raise ConfigValueError(
            f"config key {rows[-1].path}: the model ends in {rows[-1].output_shape}, but the data has "
            f"{cfg.data.num_classes} classes (data.num_classes): give the last layer ${{data.num_classes}} outputs, "
            "as configs/model/*.yaml do"
        )
    model.to(device, memory_format=torch.channels_last if options.channels_last else torch.preserve_format)
    step_model = model
    if world_size > 1:
        step_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.index else None
        )
    if options.compile:
        step_model = torch.compile(step_model)

    optimizer = build_optimizer(cfg.optimizer, model)
    steps_per_epoch = len(train_loader)
    total_steps = options.max_steps if options.max_steps > 0 else math.ceil(options.max_epochs * steps_per_epoch)
    scheduler = instantiate(cfg.scheduler)(optimizer=optimizer, total_steps=total_steps)
    # (a recipe drops one of its group's callbacks with `callbacks.<name>: null`)
    callbacks = {name: instantiate(c) for name, c in (cfg.get("callbacks") or {}).items() if c is not None}
    main = rank == 0
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    run = Run(
        cfg=cfg,
        options=options,
        run_dir=run_dir,
        device=device,
        precision=select_precision(options.precision, device, model),
        rank=rank,
        world_size=world_size,
        model=model,
        step_model=step_model,
        optimizer=optimizer,
        scheduler=scheduler,
        train_loader=train_loader,
        val_loader=val_loader,
        logger=RunLogger(run_dir, bool(cfg.logger.enabled) and main),
        checkpoints=CheckpointManager(run_dir / "checkpoints", options.keep_last_k),
        callbacks=callbacks,
        shape_table=format_shape_table(rows, input_shape),
        input_shape=input_shape,
        mean=mean,
        std=std,
        total_steps=total_steps,
        max_epochs=math.ceil(total_steps / steps_per_epoch),
        job=job or JobInfo(),
    )
    if saved is not None and not options.eval_only:
        run.restore(saved)
        run.last_checkpoint = saved_path
    return run
