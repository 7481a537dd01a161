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
from .checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from .config import validate_config
from .tensorboard import RunLogger, confusion_matrix, first_conv_weight

__all__ = ["run"]


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
def evaluate(model, loader: TensorImageLoader, task: str, trainer, autocast) -> dict[str, Any]:
    """Mean loss, accuracy and predictions over ``loader`` (model in eval mode)."""
    model.eval()
    total_loss, correct, seen, predictions, labels_seen = 0.0, 0, 0, [], []
    for images, labels in loader:
        with autocast():
            output = model(images)
        total_loss += compute_loss(task, output, images, labels, trainer).item() * len(labels)
        seen += len(labels)
        if task == "classification":
            predicted = output.argmax(1)
            correct += int((predicted == labels).sum())
            predictions.append(predicted.cpu())
            labels_seen.append(labels.cpu())
    model.train()
    result = {"loss": total_loss / max(seen, 1), "acc": correct / max(seen, 1) if task == "classification" else None}
    if predictions:
        result["predictions"], result["labels"] = torch.cat(predictions), torch.cat(labels_seen)
    return result


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train (or evaluate) the configured model; returns the metrics written to ``metrics.json``."""
    validate_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    trainer = cfg.trainer
    seed_everything(int(cfg.seed))
    if trainer.deterministic:
        torch.use_deterministic_algorithms(True)
    device = select_device(trainer.device)
    use_bf16 = str(trainer.precision) == "bf16"

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)

    # ---- data
    data = load_data(cfg.data)
    mean, std = torch.tensor(list(cfg.data.mean)), torch.tensor(list(cfg.data.std))
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
    )
    val_loader = TensorImageLoader(
        data["test_images"],
        data["test_labels"],
        int(cfg.data.eval_batch_size),
        mean,
        std,
        device=device,
        limit_batches=trainer.limit_val_batches,
    )

    # ---- model, traced once on a dummy input
    input_shape = tuple(cfg.data.image_shape)
    model, rows = build_model(cfg.model, cfg.conv, cfg.pool, input_shape)
    table = format_shape_table(rows, input_shape)
    print(table, flush=True)
    model.to(device)
    step_model = torch.compile(model) if trainer.compile else model
    task = cfg.model.task

    # ---- optimiser and schedule
    optimizer = instantiate(cfg.optimizer)(params=model.parameters())
    steps_per_epoch = len(train_loader)
    total_steps = trainer.max_steps if trainer.max_steps > 0 else trainer.max_epochs * steps_per_epoch
    max_epochs = math.ceil(total_steps / steps_per_epoch)
    scheduler = instantiate(cfg.scheduler)(optimizer=optimizer, total_steps=total_steps)

    state = {
        "epoch": 0,
        "batch": 0,
        "step": 0,
        "best_val_acc": -1.0,
        "train_images": 0,
        "train_seconds": 0.0,
        "history": [],
    }
    checkpoint_dir = run_dir / "checkpoints"

    def checkpoint(path: Path) -> None:
        save_checkpoint(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": capture_rng(),
                "state": dict(state),
                "config": OmegaConf.to_yaml(cfg, resolve=True),
            },
            path,
        )

    resume = cfg.resume
    if resume:
        path = checkpoint_dir / "last.pt" if resume == "auto" else Path(resume)
        if resume != "auto" or path.exists():
            saved = load_checkpoint(path, map_location=device)
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            restore_rng(saved["rng"])
            state.update(saved["state"])
            print(f"Resumed from {path} at epoch {state['epoch']}, batch {state['batch']}, step {state['step']}")

    logger = RunLogger(run_dir, bool(cfg.logger.enabled))

    def analysis_images() -> torch.Tensor:
        """The first ``logger.analysis_images`` test images, normalised, for the invariance measures."""
        return next(iter(val_loader))[0][: int(cfg.logger.analysis_images)]

    logger.text("config", OmegaConf.to_yaml(cfg, resolve=True))
    logger.text("model/shape_table", table)

    if trainer.eval_only:
        if not cfg.ckpt_path:
            raise ValueError("trainer.eval_only=true needs ckpt_path=<checkpoint file>")
        model.load_state_dict(load_checkpoint(cfg.ckpt_path, map_location=device)["model"])
        result = evaluate(step_model, val_loader, task, trainer, autocast)
        metrics = {"val_loss": result["loss"], "val_acc": result["acc"], "ckpt_path": str(cfg.ckpt_path)}
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print(
            f"eval: val_loss {result['loss']:.4f}"
            + (f" val_acc {result['acc']:.4f}" if result["acc"] is not None else "")
        )
        logger.close()
        return metrics

    train_loss = math.nan
    while state["epoch"] < max_epochs and state["step"] < total_steps:
        epoch = state["epoch"]
        batches = train_loader.iterate(epoch, start_batch=state["batch"])
        bar = tqdm(
            batches,
            total=steps_per_epoch,
            initial=state["batch"],
            desc=f"epoch {epoch + 1}/{max_epochs}",
            disable=not trainer.progress_bar,
            leave=False,
        )
        running_loss, running_correct, running_seen = 0.0, 0, 0
        epoch_start = time.perf_counter()
        for images, labels in bar:
            step_start = time.perf_counter()
            with autocast():
                output = step_model(images)
            loss = compute_loss(task, output, images, labels, trainer)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if trainer.grad_clip_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), trainer.grad_clip_norm)
            optimizer.step()
            scheduler.step()
            state["step"] += 1
            state["batch"] += 1
            state["train_images"] += len(labels)
            state["train_seconds"] += time.perf_counter() - step_start
            running_loss += loss.item() * len(labels)
            running_seen += len(labels)
            if task == "classification":
                running_correct += int((output.argmax(1) == labels).sum())
            images_per_sec = running_seen / max(time.perf_counter() - epoch_start, 1e-9)
            bar.set_postfix(
                loss=f"{loss.item():.3f}", acc=f"{running_correct / running_seen:.3f}", img_s=f"{images_per_sec:.0f}"
            )
            if state["step"] % trainer.log_every_n_steps == 0:
                logger.scalar("train/loss", loss.item(), state["step"])
                logger.scalar("lr", scheduler.get_last_lr()[0], state["step"])
            if state["step"] >= total_steps:
                break
        bar.close()
        train_loss = running_loss / max(running_seen, 1)
        train_acc = running_correct / max(running_seen, 1)
        result = evaluate(step_model, val_loader, task, trainer, autocast)
        state["epoch"], state["batch"] = epoch + 1, 0
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
        checkpoint(checkpoint_dir / "last.pt")
        if improved:
            checkpoint(checkpoint_dir / "best.pt")
        print(
            f"epoch {epoch + 1}/{max_epochs}: train_loss {train_loss:.4f} train_acc {train_acc:.4f} "
            f"val_loss {result['loss']:.4f}"
            + (f" val_acc {result['acc']:.4f}" if result["acc"] is not None else "")
            + f" | {images_per_sec:.0f} img/s",
            flush=True,
        )
        every = cfg.logger.analysis_every_n_epochs
        if cfg.logger.analysis and every and state["epoch"] % every == 0 and state["epoch"] < max_epochs:
            log_analysis(logger, model, input_shape, analysis_images(), task == "classification", state["step"])

    # ---- final report
    final = evaluate(step_model, val_loader, task, trainer, autocast)
    metrics = {
        "train_loss": train_loss,
        "val_loss": final["loss"],
        "val_acc": final["acc"],
        "epochs": state["epoch"],
        "steps": state["step"],
        "images_per_sec": state["train_images"] / max(state["train_seconds"], 1e-9),
        "wall_s": state["train_seconds"],
        "history": state["history"],
    }
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
        if "predictions" in final:
            matrix = confusion_matrix(final["predictions"], final["labels"], int(cfg.data.num_classes))
            names = (
                list(CIFAR10_CLASSES)
                if cfg.data.name == "cifar10"
                else [str(i) for i in range(int(cfg.data.num_classes))]
            )
            logger.confusion(matrix, names, state["step"])
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
