"""cnnlab.analysis against hand computation and properties: receptive fields, parameter counts,
equivariance, the shift invariance pooling buys, input sizes, and the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn

from cnnlab import nn as cnn
from cnnlab.analysis import (
    accepted_input_sizes,
    classification_consistency,
    conv_equivariance,
    empirical_receptive_field,
    equivariance_error,
    feature_change,
    layer_costs,
    receptive_fields,
)
from cnnlab.analyze import main as analyze_cli
from cnnlab.data import make_synthetic, normalize
from cnnlab.models import build_model
from tests.configs import STANDARD_ARCHITECTURES

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MODELS = sorted(p.stem for p in (CONFIGS / "model").glob("*.yaml"))


def conv(k=3, s=1, d=1, p=None):
    return cnn.Conv2d(2, 2, k, stride=s, dilation=d, padding=d * (k - 1) // 2 if p is None else p)


# (layers, receptive field after the last one), computed by hand:
# r_out = r_in + (d(k-1)+1 - 1) * jump_in, jump_out = jump_in * stride
HAND = [
    ([conv(), conv()], 5),  # 1 + 2 + 2
    ([conv(), conv(), cnn.MaxPool2d(2)], 6),  # 5 + 1
    ([conv(d=2)], 5),  # one dilated 3×3 spans 5
    ([conv(d=2), conv(d=2)], 9),  # 5 + 4
    ([conv(s=2), conv()], 7),  # 3 + 2·2
    ([conv(), cnn.MaxPool2d(2), conv(), cnn.MaxPool2d(2)], 10),  # 3, 4, 8, 10
    ([conv(k=5), cnn.AvgPool2d(3, 2, 1), conv(k=1)], 7),  # 5, 7, 7
    ([conv(), cnn.BlurPool2d(3, 2), conv()], 9),  # 3, 5, 5 + 2·2
]


@pytest.mark.parametrize(("layers", "expected"), HAND, ids=range(len(HAND)))
def test_receptive_field_by_hand(layers, expected):
    rows = receptive_fields(nn.Sequential(*layers))
    assert rows[-1].size == expected


@pytest.mark.parametrize(("layers", "expected"), HAND, ids=range(len(HAND)))
def test_analytic_and_empirical_receptive_fields_agree(layers, expected):
    """The gradient of the central output unit is non-zero on exactly the analytic field."""
    model = nn.Sequential(*layers)
    size, erf = empirical_receptive_field(model, (2, 33, 33))
    assert size == expected
    assert erf.max() == 1 and erf[erf.shape[0] // 2].sum() > 0


def test_receptive_field_through_transposed_and_residual_layers():
    up = nn.Sequential(conv(), cnn.ConvTranspose2d(2, 2, 2, stride=2))
    rows = receptive_fields(up)
    assert rows[-1].jump == 0.5  # upsampling halves the jump
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["model=resnet"])
    model, _ = build_model(cfg.model, cfg.conv, cfg.pool)
    rows = receptive_fields(model)
    residual = [r for r in rows if r.layer == "residual (sum)"]
    assert residual[0].size == 7  # stem 3, then the body's two 3×3 convs: the longest path


def test_parameter_and_mac_counts():
    """C_in·C_out·k² (+C_out) per conv, against the module and against sum(p.numel())."""
    model = nn.Sequential(
        cnn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        cnn.MaxPool2d(2),
        cnn.Conv2d(8, 4, 5, groups=2),
        nn.Flatten(),
        nn.Linear(4 * 12 * 12, 10),
    )
    costs = layer_costs(model)
    assert [c.parameters for c in costs] == [3 * 8 * 9 + 8, 8 // 2 * 4 * 25 + 4, 4 * 12 * 12 * 10 + 10]
    assert sum(c.parameters for c in costs) == sum(p.numel() for p in model.parameters())
    first = costs[0]
    assert first.macs == 3 * 8 * 9 * 32 * 32
    assert first.dense_parameters == (3 * 32 * 32) * (8 * 32 * 32) + 8 * 32 * 32
    assert first.parameter_ratio > 1e5  # sparse interactions × parameter sharing


def test_equivariance_error_zero_for_circular_and_large_for_strided():
    x = torch.randn(2, 3, 16, 16)
    circular = cnn.Conv2d(3, 4, 3, padding=1, padding_mode="circular")
    zero = cnn.Conv2d(3, 4, 3, padding=1)
    strided = cnn.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode="circular")
    for shift in (1, 2, 3, 4):
        assert equivariance_error(circular, x, shift) < 1e-6
        assert equivariance_error(zero, x, shift) < 1e-6  # interior only
    assert equivariance_error(strided, x, 1) > 0.3 and equivariance_error(strided, x, 3) > 0.3
    assert equivariance_error(strided, x, 2) < 1e-6  # a multiple of the stride is fine
    second = cnn.Conv2d(4, 4, 3, stride=2, padding=1, padding_mode="circular")
    errors = conv_equivariance(nn.Sequential(circular, nn.ReLU(), second))
    assert {e.padding_mode for e in errors} == {"circular"} and len(errors) == 8


def test_blur_pooling_is_more_shift_consistent_than_max_pooling():
    """Zhang 2019, measured: same random weights, same 256 synthetic images, pool=max vs pool=blur.
    Measured 2026-11-23: consistency max 0.36 vs blur 0.66; feature change 0.31 vs 0.12."""
    data = make_synthetic(16, 256, seed=1)
    images = normalize(data["test_images"], torch.full((3,), 0.5), torch.full((3,), 0.25))
    scores = {}
    for pool in ("max", "blur"):
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            cfg = compose(config_name="train", overrides=["model=simple", f"pool={pool}"])
        torch.manual_seed(0)
        model, _ = build_model(cfg.model, cfg.conv, cfg.pool)
        scores[pool] = (classification_consistency(model, images), feature_change(model, images))
    assert scores["blur"][0] > scores["max"][0] + 0.15, scores
    assert scores["blur"][1] < scores["max"][1] * 0.75, scores


def test_input_sizes_report():
    flat = nn.Sequential(cnn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 30 * 30, 10))
    pooled = nn.Sequential(cnn.Conv2d(3, 4, 3), cnn.GlobalAvgPool2d(flatten=True), nn.Linear(4, 10))
    sizes = accepted_input_sizes(flat)
    assert sizes["32x32"].startswith("ok") and sizes["40x40"] == (
        "not accepted: its linear layer takes 3600 features, this size gives 5776 (a flatten → linear head fixes the "
        "input size; a global pool before it would not)"
    )  # 4·30·30 and 4·38·38
    assert all(v.startswith("ok → (10,)") for v in accepted_input_sizes(pooled).values())


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_cli_runs_on_every_model_family(model):
    narrow = ["model.width=0.25"] if model in STANDARD_ARCHITECTURES else []  # the same layers, 16x fewer multiplies
    text = analyze_cli([f"model={model}", *narrow])
    for heading in ("Receptive field", "Sparse interactions", "Equivariance error", "Other input sizes"):
        assert heading in text
    table = text.split("\n\n")[1].splitlines()
    measured = re.compile(r".* \d+\.\d\d +\d+\.\d\d +\d+\.\d\d$")  # MFLOPs, fwd ms, bwd ms
    # every layer of the built model is measured; the rows inside a residual body are blank
    assert "MFLOPs" in table[0] and table[-2].startswith("total")
    assert [bool(measured.match(line)) for line in table[2:-2]] == [
        line.split()[0].split(".layers.")[-1].isdigit() for line in table[2:-2]
    ]


def test_a_map_too_narrow_to_measure_equivariance_is_marked_and_explained():
    """A 3×3 conv on a 4-wide map has no column that neither the padding nor a 1-pixel wrap-around
    reaches: the table shows — (not nan) and says why."""
    from cnnlab.analysis import analyze, format_report

    model = nn.Sequential(cnn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(64, 2))
    text = format_report(analyze(model, (3, 4, 4)))
    row = next(line for line in text.splitlines() if line.startswith("model.layers.0 ") and "zeros" in line)
    assert row.split()[-4:] == ["—"] * 4 and "nan" not in text
    assert "—: the feature map is too narrow to measure" in text


def test_profile_counts_each_layers_flops_by_hand_and_times_it():
    """FLOPs per image: 2·MACs of a conv/linear, a pool's outputs × its window, one per element else."""
    from cnnlab.analysis.profile import profile_layers
    from cnnlab.models.builder import ShapeRow, format_shape_table

    model = nn.Sequential(cnn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), cnn.MaxPool2d(2), nn.Flatten(), nn.Linear(128, 10))
    profiles = profile_layers(model, (3, 8, 8), batch_size=4, repeats=1)
    assert [p.flops for p in profiles] == [2 * (3 * 9) * 8 * 64, 8 * 64, 8 * 16 * 4, 128, 2 * 128 * 10]
    assert all(p.forward_ms > 0 and p.backward_ms >= 0 for p in profiles)
    rows = [ShapeRow(f"model.layers.{i}", type(m).__name__, (1,), 0) for i, m in enumerate(model)]
    table = format_shape_table(rows, (3, 8, 8), profiles)
    assert "MFLOPs" in table.splitlines()[0] and f"{profiles[0].flops / 1e6:.2f}" in table.splitlines()[2]
    with pytest.raises(ValueError, match="profile: got 5 entries for the model's 4 layers"):
        format_shape_table(rows[:4], (3, 8, 8), profiles)


def test_analyses_label_each_layer_with_the_config_item_that_built_it():
    """resnet18's four ``stage`` items each build two blocks, so the model's modules outnumber the
    config's items: the k-th block of item K is ``model.layers.K[k]`` (the shape table's row
    ``model.layers.K``, ``basic k+1/2``) and the layers inside it carry that prefix, so the layers
    the receptive-field report marks unproductive point at the last stages, not at the head."""
    from cnnlab.analysis.receptive_field import config_paths, receptive_fields, unproductive_layers
    from cnnlab.models import model_layer_rows
    from tests.configs import compose_cfg

    cfg = compose_cfg("model=resnet18", "model.width=0.25")
    model, rows = build_model(cfg.model, cfg.conv, cfg.pool, (3, 32, 32))
    paths = config_paths(model)
    items = [item if isinstance(item, str) else next(iter(item)) for item in cfg.model.layers]  # conv, stage, ...
    expected = []
    for row in model_layer_rows(rows):
        stage = items[int(row.path.rsplit(".", 1)[1])] == "stage"
        expected.append(f"{row.path}[{int(row.layer.split()[-1].split('/')[0]) - 1}]" if stage else row.path)
    assert [paths[layer] for layer in model] == expected
    fields = receptive_fields(model, 32)
    for field in fields:
        item = items[int(re.match(r"model\.layers\.(\d+)", field.path).group(1))]
        assert ("[" in field.path) == (item == "stage") and item != "linear"
    assert unproductive_layers(fields, 32) and all(
        path.startswith(("model.layers.5[1]", "model.layers.6[")) for path in unproductive_layers(fields, 32)
    )
    # a residual block's layers carry its path, whether its block expands to more layers (resnet18's
    # basic: residual, relu) or to the residual alone (mobilenetv2's inverted residual)
    from cnnlab.models import Residual

    for name in ("resnet18", "mobilenetv2"):
        cfg = compose_cfg(f"model={name}", "model.width=0.25")
        model, _ = build_model(cfg.model, cfg.conv, cfg.pool, (3, 32, 32))
        paths = config_paths(model)
        blocks = [m for m in model.modules() if isinstance(m, Residual)]
        assert blocks and all(paths[m].startswith("model.layers.") for m in blocks)
        assert all(paths[inner].startswith(f"{paths[m]}.residual") for m in blocks for inner in m.body.modules())
