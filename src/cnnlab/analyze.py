"""Print the analysis tables of a model config without training, or the 1-D signal example:

python -m cnnlab.analyze [hydra overrides]      e.g. python -m cnnlab.analyze model=resnet pool=blur
python -m cnnlab.analyze signal [--out DIR]     convolution as a weighted average of a noisy 1-D signal
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException

from .analysis import analyze, format_report
from .errors import UserError
from .models import build_model, format_shape_table
from .train.config import complete_config, validate_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def signal_main(argv: list[str]) -> str:
    """``signal``: the seeds' 1-D example (:mod:`cnnlab.analysis.signal`), printed and plotted."""
    from .analysis.signal import format_signal_report, signal_report, write_signal_figure

    parser = argparse.ArgumentParser(prog="python -m cnnlab.analyze signal", description=signal_main.__doc__)
    parser.add_argument("--out", type=Path, default=Path("outputs/signal"), help="folder for signal.png")
    parser.add_argument("--steps", type=int, default=500, help="time steps of the trajectory")
    parser.add_argument("--noise", type=float, default=1.0, help="sensor noise standard deviation")
    parser.add_argument("--fft-lengths", type=int, nargs="+", default=[3, 9, 33, 129, 513], help="kernel lengths timed")
    args = parser.parse_args(argv)
    report, true, noisy, smoothed = signal_report(args.steps, args.noise, fft_lengths=tuple(args.fft_lengths))
    figure = write_signal_figure(args.out / "signal.png", true, noisy, smoothed)
    return format_signal_report(report) + f"\n\nfigure: {figure}"


def main(overrides: list[str]) -> str:
    if overrides[:1] == ["signal"]:
        return signal_main(overrides[1:])
    if overrides[:1] in (["-h"], ["--help"]):
        return __doc__
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    validate_config(cfg)
    complete_config(cfg)
    input_shape = tuple(cfg.data.image_shape)
    model, rows = build_model(cfg.model, cfg.conv, cfg.pool, input_shape)
    report = analyze(model, input_shape, classifier=cfg.model.task == "classification")
    text = f"{cfg.model.name} (conv={cfg.conv.kind}, pool={cfg.pool.kind})\n\n" + format_shape_table(rows, input_shape)
    return text + "\n\n" + format_report(report)


if __name__ == "__main__":
    try:
        print(main(sys.argv[1:]))
    except (HydraException, UserError) as error:  # one line, as train.py's errors
        message = str(error).split("\nConfig search path")[0].strip()  # (Hydra's: the options of a group)
        print(f"Error: {message}", file=sys.stderr)
        sys.exit(2)
