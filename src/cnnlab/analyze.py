"""Print the analysis tables of a model config without training:

python -m cnnlab.analyze [hydra overrides]      e.g. python -m cnnlab.analyze model=resnet pool=blur
"""

from __future__ import annotations

import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from .analysis import analyze, format_report
from .models import build_model, format_shape_table

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def main(overrides: list[str]) -> str:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    input_shape = tuple(cfg.data.image_shape)
    model, rows = build_model(cfg.model, cfg.conv, cfg.pool, input_shape)
    report = analyze(model, input_shape, classifier=cfg.model.task == "classification")
    text = f"{cfg.model.name} (conv={cfg.conv.kind}, pool={cfg.pool.kind})\n\n" + format_shape_table(rows, input_shape)
    return text + "\n\n" + format_report(report)


if __name__ == "__main__":
    print(main(sys.argv[1:]))
