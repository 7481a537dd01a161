"""Render the analysis figures of a trained run:

    python docs/figures.py outputs/<date>/<run>                        # into outputs/figures/
    python docs/figures.py outputs/<date>/<run> --out docs/site/images      # the guides' images

Reads the run's config.yaml and checkpoints/best.pt; writes receptive_field.png (the
receptive-field growth with the effective receptive field of the trained model) and
feature_maps.png (the first layer's feature maps of one test image): the same images the run
logs to TensorBoard under ``visuals/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from omegaconf import OmegaConf

from cnnlab.analysis import empirical_receptive_field, receptive_fields
from cnnlab.analysis.tensorboard import feature_maps
from cnnlab.data import normalize
from cnnlab.models import build_model
from cnnlab.train.engine.setup import load_data


def main(run_dir: Path, out: Path) -> None:
    cfg = OmegaConf.load(run_dir / "config.yaml")
    model, _ = build_model(cfg.model, cfg.conv, cfg.pool, tuple(cfg.data.image_shape))
    model.load_state_dict(torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["model"])
    model.eval()
    rows = receptive_fields(model)
    size, erf = empirical_receptive_field(model, tuple(cfg.data.image_shape))
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
    out.mkdir(parents=True, exist_ok=True)
    figure.savefig(out / "receptive_field.png", dpi=90)

    data = load_data(cfg.data)
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
    figure.savefig(out / "feature_maps.png", dpi=90)
    print(f"wrote {out / 'receptive_field.png'} and {out / 'feature_maps.png'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python docs/figures.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a finished run (holding config.yaml and checkpoints/best.pt)")
    parser.add_argument("--out", type=Path, default=Path("outputs/figures"), help="folder for the PNGs")
    args = parser.parse_args()
    for needed in (args.run_dir / "config.yaml", args.run_dir / "checkpoints" / "best.pt"):
        if not needed.is_file():
            parser.error(f"{needed} not found: run_dir must be a finished training run")
    main(args.run_dir, args.out)
