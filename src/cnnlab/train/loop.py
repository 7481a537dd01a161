"""The training loop: config → data, model, optimiser → epochs of steps → metrics, checkpoints,
TensorBoard. It reads top to bottom in :func:`run`; helpers above it do one thing each."""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ..analysis.tensorboard import log_analysis
from ..data import CIFAR10_CLASSES, TensorImageLoader, load_cifar10, make_synthetic
from ..models import build_model, format_shape_table
from .checkpoint import CheckpointManager, capture_rng, load_checkpoint, restore_rng, save_checkpoint
from .config import validate_config
from .distributed import all_reduce_sum, init_distributed
from .signals import StopRequested
from .tensorboard import RunLogger, confusion_matrix, first_conv_weight

__all__ = ["NonFiniteLossError", "run"]


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradients became NaN/inf; the message gives the step and what to try."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("trainer.device=cuda, but torch.cuda.is_available() is False; use trainer.device=cpu")
    return torch.device(name)


def load_data(cfg: DictConfig) -> dict[str, torch.Tensor]:
    if cfg.name == "cifar10":
        return load_cifar10(cfg.root, bool(cfg.download))
    return make_synthetic(
        int(cfg.num_train), int(cfg.num_test), int(cfg.image_shape[-1]), int(cfg.num_classes), int(cfg.seed)
    )


def compute_loss(task: str, output: torch.Tensor, images: torch.Tensor, labels: torch.Tensor, trainer) -> torch.Tensor:
    if task == "reconstruction":
        return F.mse_loss(output.float(), images.float())
    return F.cross_entropy(output.float() * trainer.logit_scale, labels, label_smoothing=trainer.label_smoothing)


@torch.no_grad()
def evaluate(model, loader: TensorImageLoader, task: str, trainer, autocast, num_classes: int) -> dict[str, Any]:
    """Loss, accuracy and confusion matrix over ``loader`` (this rank's shard), summed across ranks."""
    model.eval()
    device = loader.device
    loss_sum, correct, seen = 0.0, 0, 0
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=device)
    for images, labels in loader:
        with autocast():
            output = model(images)
            if trainer.tta_flip and task == "classification":  # test-time augmentation: average with the mirror
                output = (output.float() + model(images.flip(-1)).float()) / 2
        loss_sum += compute_loss(task, output, images, labels, trainer).item() * len(labels)
        seen += len(labels)
        if task == "classification":
            predicted = output.argmax(1)
            correct += int((predicted == labels).sum())
            confusion += confusion_matrix(predicted, labels, num_classes).to(confusion)
    model.train()
    loss_sum, correct, seen, confusion = all_reduce_sum(loss_sum, correct, seen, confusion, device=device)
    seen = max(float(seen), 1.0)
    accuracy = float(correct) / seen if task == "classification" else None
    return {"loss": float(loss_sum) / seen, "acc": accuracy, "confusion": confusion.cpu()}


def _hint_nonfinite(what: str, state: dict, last_finite: float, checkpoint: str | None) -> str:
    return (
        f"{what} became non-finite at step {state['step'] + 1} (epoch {state['epoch'] + 1}, batch "
        f"{state['batch'] + 1}); last finite loss {last_finite:.4f}. The last good checkpoint is "
        f"{checkpoint or 'none yet'}. Try a lower optimizer.lr, trainer.grad_clip_norm=1.0 or "
        f"trainer.precision=32, or set trainer.skip_nonfinite_steps=true to skip such steps."
    )


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train (or evaluate) the configured model; returns the metrics written to ``metrics.json``."""
    validate_config(cfg)
    trainer = cfg.trainer
    device = select_device(trainer.device)
    rank, world_size = init_distributed(device)
    main = rank == 0
    run_dir = Path(cfg.paths.output_dir)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    seed_everything(int(cfg.seed))
    if trainer.deterministic:
        torch.use_deterministic_algorithms(True)
    use_bf16 = str(trainer.precision) == "bf16"

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)

    # ---- data: whole uint8 tensors on the device; each rank takes its share of every batch
    data = load_data(cfg.data)
    mean, std = torch.tensor(list(cfg.data.mean)), torch.tensor(list(cfg.data.std))
    num_classes = int(cfg.data.num_classes)
    train_loader = TensorImageLoader(
        data["train_images"],
        data["train_labels"],
        int(cfg.data.batch_size),
        mean,
        std,
        shuffle=True,
        drop_last=True,
        augment=OmegaConf.to_container(cfg.data.augment),
        seed=int(cfg.seed),
        device=device,
        limit_batches=trainer.limit_train_batches,
        rank=rank,
        world_size=world_size,
        split="batch",
        channels_last=trainer.channels_last,
    )
    val_loader = TensorImageLoader(
        data["test_images"],
        data["test_labels"],
        int(cfg.data.eval_batch_size),
        mean,
        std,
        device=device,
        limit_batches=trainer.limit_val_batches,
        rank=rank,
        world_size=world_size,
        split="dataset",
        channels_last=trainer.channels_last,
    )

    # ---- model, traced once on a dummy input
    input_shape = tuple(cfg.data.image_shape)
    model, rows = build_model(cfg.model, cfg.conv, cfg.pool, input_shape)
    table = format_shape_table(rows, input_shape)
    if main:
        print(table, flush=True)
    model.to(device, memory_format=torch.channels_last if trainer.channels_last else torch.preserve_format)
    step_model = model
    if world_size > 1:
        step_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.index else None
        )
    if trainer.compile:
        step_model = torch.compile(step_model)
    task = cfg.model.task

    # ---- optimiser and schedule
    optimizer = instantiate(cfg.optimizer)(params=model.parameters())
    steps_per_epoch = len(train_loader)
    total_steps = trainer.max_steps if trainer.max_steps > 0 else trainer.max_epochs * steps_per_epoch
    max_epochs = math.ceil(total_steps / steps_per_epoch)
    scheduler = instantiate(cfg.scheduler)(optimizer=optimizer, total_steps=total_steps)

    # Everything needed to continue exactly where a run stopped (plain tensors and built-ins).
    state: dict[str, Any] = {
        "epoch": 0,
        "batch": 0,
        "step": 0,
        "best_val_acc": -math.inf,
        "train_images": 0,
        "train_seconds": 0.0,
        "running_loss": 0.0,
        "running_correct": 0,
        "running_seen": 0,
        "skipped_steps": 0,
        "last_finite_loss": math.nan,
        "history": [],
    }
    checkpoints = CheckpointManager(run_dir / "checkpoints", int(trainer.keep_last_k))
    last_checkpoint: list[str] = []

    def snapshot() -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": capture_rng(),
            "state": dict(state),
            "config": OmegaConf.to_yaml(cfg, resolve=True),
        }

    def save_last() -> None:
        if main:
            last_checkpoint[:] = [str(checkpoints.save(snapshot(), state["step"]))]

    if cfg.resume:
        found = (
            checkpoints.load_latest(device)
            if cfg.resume == "auto"
            else (load_checkpoint(cfg.resume, device), Path(cfg.resume))
        )
        if found is not None:
            saved, path = found
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            restore_rng(saved["rng"])
            state.update(saved["state"])
            last_checkpoint[:] = [str(path)]
            if main:
                print(f"Resumed from {path} at epoch {state['epoch']}, batch {state['batch']}, step {state['step']}")

    logger = RunLogger(run_dir, bool(cfg.logger.enabled) and main)

    def analysis_images() -> torch.Tensor:
        """The first ``logger.analysis_images`` test images, normalised, for the invariance measures."""
        return next(iter(val_loader))[0][: int(cfg.logger.analysis_images)]

    logger.text("config", OmegaConf.to_yaml(cfg, resolve=True))
    logger.text("model/shape_table", table)

    if trainer.eval_only:
        if not cfg.ckpt_path:
            raise ValueError("trainer.eval_only=true needs ckpt_path=<checkpoint file>")
        model.load_state_dict(load_checkpoint(cfg.ckpt_path, map_location=device)["model"])
        result = evaluate(model, val_loader, task, trainer, autocast, num_classes)
        metrics = {"val_loss": result["loss"], "val_acc": result["acc"], "ckpt_path": str(cfg.ckpt_path)}
        if main:
            (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
            accuracy = f" val_acc {result['acc']:.4f}" if result["acc"] is not None else ""
            print(f"eval: val_loss {result['loss']:.4f}{accuracy}")
        logger.close()
        return metrics

    every_n_steps = trainer.checkpoint_every_n_steps
    train_loss = math.nan
    with StopRequested() as stop:
        while state["epoch"] < max_epochs and state["step"] < total_steps:
            epoch = state["epoch"]
            bar = tqdm(
                train_loader.iterate(epoch, start_batch=state["batch"]),
                total=steps_per_epoch,
                initial=state["batch"],
                desc=f"epoch {epoch + 1}/{max_epochs}",
                disable=not (trainer.progress_bar and main),
                leave=False,
            )
            epoch_start = time.perf_counter()
            for images, labels in bar:
                step_start = time.perf_counter()
                try:
                    with autocast():
                        output = step_model(images)
                    loss = compute_loss(task, output, images, labels, trainer)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                except torch.cuda.OutOfMemoryError as error:
                    raise RuntimeError(
                        f"CUDA out of memory at data.batch_size={cfg.data.batch_size}: try "
                        f"data.batch_size={max(1, int(cfg.data.batch_size) // 2)} (or trainer.precision=bf16)"
                    ) from error
                max_norm = trainer.grad_clip_norm or math.inf
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
                finite = bool(torch.isfinite(loss)) and bool(torch.isfinite(grad_norm))
                if not finite:
                    if not trainer.skip_nonfinite_steps:
                        what = "the loss" if not torch.isfinite(loss) else "the gradient norm"
                        raise NonFiniteLossError(
                            _hint_nonfinite(
                                what, state, state["last_finite_loss"], last_checkpoint[0] if last_checkpoint else None
                            )
                        )
                    state["skipped_steps"] += 1
                    optimizer.zero_grad(set_to_none=True)
                else:
                    optimizer.step()
                    state["last_finite_loss"] = loss.item()
                    state["running_loss"] += loss.item() * len(labels)
                    state["running_seen"] += len(labels)
                    if task == "classification":
                        state["running_correct"] += int((output.argmax(1) == labels).sum())
                scheduler.step()
                state["step"] += 1
                state["batch"] += 1
                state["train_images"] += len(labels) * world_size
                state["train_seconds"] += time.perf_counter() - step_start
                images_per_sec = state["running_seen"] * world_size / max(time.perf_counter() - epoch_start, 1e-9)
                bar.set_postfix(
                    loss=f"{loss.item():.3f}",
                    acc=f"{state['running_correct'] / max(state['running_seen'], 1):.3f}",
                    img_s=f"{images_per_sec:.0f}",
                )
                if state["step"] % trainer.log_every_n_steps == 0:
                    logger.scalar("train/loss", loss.item(), state["step"])
                    logger.scalar("lr", scheduler.get_last_lr()[0], state["step"])
                if (every_n_steps and state["step"] % every_n_steps == 0) or stop.signal is not None:
                    save_last()
                if stop.signal is not None:
                    bar.close()
                    if main:
                        print(
                            f"Stopped by signal at step {state['step']}: checkpoint {last_checkpoint[0]}. "
                            f"Continue with resume=auto (same hydra.run.dir).",
                            flush=True,
                        )
                    logger.close()
                    raise SystemExit(stop.exit_code)
                if state["step"] >= total_steps:
                    break
            bar.close()
            loss_sum, correct, seen = all_reduce_sum(
                state["running_loss"], state["running_correct"], state["running_seen"], device=device
            )
            train_loss = float(loss_sum) / max(float(seen), 1.0)
            train_acc = float(correct) / max(float(seen), 1.0)
            result = evaluate(model, val_loader, task, trainer, autocast, num_classes)
            state.update(epoch=epoch + 1, batch=0, running_loss=0.0, running_correct=0, running_seen=0)
            images_per_sec = state["train_images"] / max(state["train_seconds"], 1e-9)
            logger.scalar("train/loss", train_loss, state["step"])
            logger.scalar("train/acc", train_acc, state["step"])
            logger.scalar("val/loss", result["loss"], state["step"])
            logger.scalar("throughput/images_per_sec", images_per_sec, state["step"])
            logger.scalar("lr", scheduler.get_last_lr()[0], state["step"])
            if result["acc"] is not None:
                logger.scalar("val/acc", result["acc"], state["step"])
            state["history"].append(
                {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": result["loss"], "val_acc": result["acc"]}
            )
            score = result["acc"] if result["acc"] is not None else -result["loss"]
            improved = score > state["best_val_acc"]
            state["best_val_acc"] = max(score, state["best_val_acc"])
            save_last()
            if improved and main:
                save_checkpoint(snapshot(), run_dir / "checkpoints" / "best.pt")
            if main:
                accuracy = f" val_acc {result['acc']:.4f}" if result["acc"] is not None else ""
                print(
                    f"epoch {epoch + 1}/{max_epochs}: train_loss {train_loss:.4f} train_acc {train_acc:.4f} "
                    f"val_loss {result['loss']:.4f}{accuracy} | {images_per_sec:.0f} img/s",
                    flush=True,
                )
            every = cfg.logger.analysis_every_n_epochs
            if main and cfg.logger.analysis and every and state["epoch"] % every == 0 and state["epoch"] < max_epochs:
                log_analysis(logger, model, input_shape, analysis_images(), task == "classification", state["step"])

    # ---- final report
    final = evaluate(model, val_loader, task, trainer, autocast, num_classes)
    metrics = {
        "train_loss": train_loss,
        "val_loss": final["loss"],
        "val_acc": final["acc"],
        "epochs": state["epoch"],
        "steps": state["step"],
        "skipped_steps": state["skipped_steps"],
        "images_per_sec": state["train_images"] / max(state["train_seconds"], 1e-9),
        "wall_s": state["train_seconds"],
        "world_size": world_size,
        "history": state["history"],
    }
    if not main:
        return metrics
    if cfg.logger.analysis:
        metrics["analysis"] = log_analysis(
            logger, model, input_shape, analysis_images(), task == "classification", state["step"]
        )
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if cfg.logger.log_images:
        sample, _ = next(train_loader.iterate(0))
        logger.images(
            "train/samples", sample[:32].cpu() * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1), state["step"]
        )
        logger.filters("model/first_layer_filters", first_conv_weight(model), state["step"])
        if task == "classification":
            names = list(CIFAR10_CLASSES) if cfg.data.name == "cifar10" else [str(i) for i in range(num_classes)]
            logger.confusion(final["confusion"], names, state["step"])
    hparams = {
        "model": cfg.model.name,
        "conv": cfg.conv.kind,
        "pool": cfg.pool.kind,
        "seed": int(cfg.seed),
        "batch_size": int(cfg.data.batch_size),
        "lr": float(cfg.optimizer.lr),
        "epochs": state["epoch"],
    }
    final_metrics = {"hparam/val_loss": final["loss"], "hparam/images_per_sec": metrics["images_per_sec"]}
    final_metrics.update({f"hparam/{key}": value for key, value in metrics.get("analysis", {}).items()})
    if final["acc"] is not None:
        final_metrics["hparam/val_acc"] = final["acc"]
    logger.hparams(hparams, final_metrics)
    logger.close()
    return metrics
