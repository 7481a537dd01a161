"""Print the analysis tables of a model config without training, the 1-D signal example, or
a layer's arithmetic drawn:

python -m cnnlab.analyze [hydra overrides]      e.g. python -m cnnlab.analyze model=resnet pool=blur
python -m cnnlab.analyze signal [--out DIR]     convolution as a weighted average of a noisy 1-D signal
python -m cnnlab.analyze arithmetic kind=conv kernel_size=3 stride=2 padding=1 [size=7] [--out DIR]
python -m cnnlab.analyze arithmetic layer=model.layers.6 model=autoencoder [overrides] [--out DIR]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

try:  # the configs: the `train` extra
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from .analysis import analyze, format_report
    from .analysis.profile import format_profile_summary, profile_layers
    from .errors import UserError
    from .models import build_model, format_shape_table, model_layer_rows
    from .train.config import complete_config, validate_config
    from .train.overrides import misplaced_group_key, unknown_group_choice
except ModuleNotFoundError as missing:  # only the layers are installed
    print(
        f"Error: python -m cnnlab.analyze reads the model configs, which needs cnnlab's `train` extra "
        f"({missing.name} is not installed): pip install 'cnnlab[train]'",
        file=sys.stderr,
    )
    raise SystemExit(2) from None

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PROFILE_BATCH = 32  # the batch the shape table's forward/backward times are measured on


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


def arithmetic_main(argv: list[str]) -> str:
    """``arithmetic``: one layer's footprint measured by probing it, drawn as an animated GIF and a
    still (:mod:`cnnlab.analysis.arithmetic`), with its output-size formula; a layer built from
    ``kind=`` and its arguments, or a model config's layer by its path (``layer=model.layers.3``)."""
    import yaml

    from .analysis.arithmetic import KINDS, build_layer, write_pictures
    from .analysis.receptive_field import config_paths

    parser = argparse.ArgumentParser(prog="python -m cnnlab.analyze arithmetic", description=arithmetic_main.__doc__)
    parser.add_argument("--out", type=Path, default=Path("outputs/arithmetic"), help="folder for the pictures")
    args, rest = parser.parse_known_args(argv)
    settings = dict(item.split("=", 1) for item in rest if "=" in item and not item.startswith(("+", "~")))
    size = int(settings.pop("size")) if "size" in settings else None
    if "layer" in settings:
        path = settings.pop("layer")
        overrides = [item for item in rest if item.split("=", 1)[0] not in ("layer", "size")]
        cfg = _compose(overrides)
        model, _ = build_model(cfg.model, cfg.conv, cfg.pool, tuple(cfg.data.image_shape))
        layers = {path: module for module, path in config_paths(model).items() if module is not model}
        spatial = [p for p, m in layers.items() if hasattr(m, "kernel_size") or hasattr(m, "output_size")]
        if path not in spatial:
            raise UserError(f"arithmetic: layer={path} is not a convolution or pooling layer of "
                            f"model={cfg.model.name}; those are: {', '.join(spatial)}")  # fmt: skip
        layer, name = layers[path], re.sub(r"\W+", "_", path).strip("_")  # model.layers.3[1].0 → model_layers_3_1_0
    else:
        unknown = [item for item in rest if "=" not in item]
        kind = settings.pop("kind", None)
        if kind not in KINDS or unknown:
            raise UserError(f"arithmetic: give kind=<one of {', '.join(KINDS)}> and the layer's arguments as "
                            f"key=value (got kind={kind}{', ' + ' '.join(unknown) if unknown else ''})")  # fmt: skip
        arguments = {key: yaml.safe_load(value) for key, value in settings.items()}
        try:
            layer = build_layer(kind, **arguments)
        except (TypeError, ValueError) as error:
            raise UserError(f"arithmetic: {kind} with {arguments}: {error}") from None
        short = {"kernel_size": "k", "stride": "s", "padding": "p", "dilation": "d", "output_padding": "op"}
        name = kind + "".join(f"_{short.get(key, key)}{value}" for key, value in settings.items()).replace(" ", "")
    try:
        text, files = write_pictures(layer, args.out, size, name)
    except (RuntimeError, ValueError) as error:  # e.g. an input too small for the kernel
        raise UserError(f"arithmetic: {error}".splitlines()[0]) from None
    return text + "\n\n" + "\n".join(f"wrote {file}" for file in files)


def _compose(overrides: list[str]):
    if error := unknown_group_choice(overrides, CONFIGS) or misplaced_group_key(overrides, CONFIGS):
        raise UserError(error)  # (as train.py says it, before Hydra's longer message)
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    validate_config(cfg)
    complete_config(cfg)
    return cfg


def main(overrides: list[str]) -> str:
    if overrides[:1] == ["signal"]:
        return signal_main(overrides[1:])
    if overrides[:1] == ["arithmetic"]:
        return arithmetic_main(overrides[1:])
    if overrides[:1] in (["-h"], ["--help"]):
        return __doc__
    cfg = _compose(overrides)
    input_shape = tuple(cfg.data.image_shape)
    model, rows = build_model(cfg.model, cfg.conv, cfg.pool, input_shape)
    report = analyze(model, input_shape, classifier=cfg.model.task == "classification")
    profile = profile_layers(model, input_shape, batch_size=PROFILE_BATCH, costs=report.costs)
    text = f"{cfg.model.name} (conv={cfg.conv.kind}, pool={cfg.pool.kind})\n\n" + format_shape_table(
        rows, input_shape, profile
    )
    text += "\n" + format_profile_summary(
        profile, PROFILE_BATCH, [f"{row.path} ({row.layer})" for row in model_layer_rows(rows)]
    )
    return text + "\n\n" + format_report(report)


if __name__ == "__main__":
    try:
        print(main(sys.argv[1:]))
    except (HydraException, UserError) as error:  # one line, as train.py's errors
        message = str(error).split("\nConfig search path")[0].strip()  # (Hydra's: the options of a group)
        print(f"Error: {message}", file=sys.stderr)
        sys.exit(2)
