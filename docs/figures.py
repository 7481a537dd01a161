"""Render the README's analysis figures from a trained run:

    python docs/figures.py outputs/<date>/<run>     # reads config.yaml and checkpoints/best.pt

Writes docs/images/{receptive_field.png, feature_maps.png}: the receptive-field growth with the
effective receptive field of the trained model, and the first layer's feature maps of one test
image — the same images the run logs to TensorBoard under ``analysis/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from omegaconf import OmegaConf

from cnnlab.analysis import empirical_receptive_field, feature_extractor, receptive_fields
from cnnlab.analysis.tensorboard import feature_maps
from cnnlab.data import load_cifar10, normalize
from cnnlab.models import build_model

OUT = Path(__file__).resolve().parent / "images"


def main(run_dir: Path) -> None:
    cfg = OmegaConf.load(run_dir / "config.yaml")
    model, _ = build_model(cfg.model, cfg.conv, cfg.pool, tuple(cfg.data.image_shape))
    model.load_state_dict(torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["model"])
    model.eval()
    rows = receptive_fields(model)
    size, erf = empirical_receptive_field(feature_extractor(model)[:-1], tuple(cfg.data.image_shape))
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.plot(range(1, len(rows) + 1), [r.size for r in rows], marker="o")
    left.set_xlabel("spatial layer")
    left.set_ylabel("receptive field (pixels)")
    left.set_title("analytic receptive field growth")
    left.grid(alpha=0.3)
    right.imshow(erf.numpy(), cmap="magma")
    right.set_title(f"effective receptive field (trained, {size} px non-zero)")
    right.axis("off")
    figure.tight_layout()
    OUT.mkdir(exist_ok=True)
    figure.savefig(OUT / "receptive_field.png", dpi=90)

    data = load_cifar10(cfg.data.root)
    image = normalize(data["test_images"][:1], torch.tensor(list(cfg.data.mean)), torch.tensor(list(cfg.data.std)))[0]
    maps = feature_maps(model, image, layers=1, channels=16)[0][1]
    figure, axes = plt.subplots(2, 9, figsize=(9, 2.3))
    picture = data["test_images"][0].permute(1, 2, 0).numpy()
    for axis in axes.flat:
        axis.axis("off")
    axes[0, 0].imshow(picture)
    axes[0, 0].set_title("input", fontsize=8)
    for index, axis in enumerate([*axes[0, 1:], *axes[1, 1:]]):
        axis.imshow(maps[index, 0].numpy(), cmap="gray")
    figure.suptitle("first conv layer: 16 feature maps of one test image", fontsize=9)
    figure.tight_layout()
    figure.savefig(OUT / "feature_maps.png", dpi=90)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
