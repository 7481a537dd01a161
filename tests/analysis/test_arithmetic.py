"""``cnnlab.analysis.arithmetic``: the footprint measured by probing a layer equals the textbook
windows for random configurations of each kind, the transposed convolution's overlap map equals
a hand count of its taps, and ``python -m cnnlab.analyze arithmetic`` writes its pictures."""

from __future__ import annotations

import math
import random

import pytest
import torch
from PIL import Image

from cnnlab import nn as cnn
from cnnlab.analysis.arithmetic import build_layer, measure_footprint, output_size_formula
from cnnlab.analysis.receptive_field import receptive_fields, unproductive_layers
from cnnlab.analyze import main
from cnnlab.errors import UserError


def windows(n: int, out: int, k: int, s: int, p: int, d: int) -> torch.Tensor:
    """``(out, n)``: 1 where output ``i``'s window, taps ``i·s − p + t·d`` (t < k), holds input ``u``."""
    table = torch.zeros(out, n, dtype=torch.int64)
    for i in range(out):
        for t in range(k):
            u = i * s - p + t * d
            if 0 <= u < n:
                table[i, u] = 1
    return table


def scatter(n: int, out: int, k: int, s: int, p: int, d: int) -> torch.Tensor:
    """``(out, n)``: the taps ``t`` of a transposed convolution that carry input ``u`` to ``o = u·s − p + t·d``."""
    table = torch.zeros(out, n, dtype=torch.int64)
    for u in range(n):
        for t in range(k):
            o = u * s - p + t * d
            if 0 <= o < out:
                table[o, u] += 1
    return table


def separable(rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """``(H_out, W_out, H, W)`` from the two axes' tables."""
    return torch.einsum("iu,jv->ijuv", rows, columns)


def textbook_size(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool = False) -> int:
    span = n + 2 * p - d * (k - 1) - 1
    out = (math.ceil(span / s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def random_configs(seed: int, count: int = 12):
    rng = random.Random(seed)
    for _ in range(count):
        k, s, d = rng.randint(1, 4), rng.randint(1, 3), rng.randint(1, 3)
        reach = d * (k - 1) + 1
        yield k, s, rng.randint(0, k // 2), d, rng.randint(reach, reach + 5), rng.randint(reach, reach + 5)


@pytest.mark.parametrize("seed", range(3))
def test_conv_footprint_is_the_textbook_window(seed):
    for k, s, p, d, h, w in random_configs(seed):
        layer = build_layer("conv", kernel_size=k, stride=s, padding=p, dilation=d)
        footprint = measure_footprint(layer, (h, w))
        ho, wo = textbook_size(h, k, s, p, d), textbook_size(w, k, s, p, d)
        expected = separable(windows(h, ho, k, s, p, d), windows(w, wo, k, s, p, d))
        assert torch.equal(footprint.taps, expected), (k, s, p, d, h, w)
        assert output_size_formula(layer, h).endswith(f"= {ho}")


@pytest.mark.parametrize("padding", ["same", "tf_same"])
@pytest.mark.parametrize("seed", range(2))
def test_same_padding_footprints_are_the_textbook_window(padding, seed):
    for k, s, _, d, h, _ in random_configs(seed, 8):
        s = 1 if padding == "same" else s  # torch's 'same' takes stride 1 only
        layer = build_layer("conv", kernel_size=k, stride=s, padding=padding, dilation=d)
        reach = d * (k - 1) + 1
        out = h if padding == "same" else math.ceil(h / s)
        total = d * (k - 1) if padding == "same" else max((out - 1) * s + reach - h, 0)
        expected = windows(h, out, k, s, total // 2, d)
        assert torch.equal(measure_footprint(layer, h).taps, separable(expected, expected)), (padding, k, s, d, h)


@pytest.mark.parametrize("seed", range(3))
def test_transposed_conv_footprint_is_the_textbook_scatter(seed):
    rng = random.Random(seed)
    for _ in range(10):
        k, s, d = rng.randint(1, 4), rng.randint(1, 3), rng.randint(1, 2)
        p = rng.randint(0, d * (k - 1))
        a = rng.randint(0, max(s, d) - 1)  # output_padding < max(stride, dilation)
        h = rng.randint(2, 5)
        layer = build_layer("conv_transpose", kernel_size=k, stride=s, padding=p, dilation=d, output_padding=a)
        out = (h - 1) * s - 2 * p + d * (k - 1) + a + 1
        if out < 1:
            continue
        footprint = measure_footprint(layer, h)
        expected = scatter(h, out, k, s, p, d)
        assert torch.equal(footprint.taps, separable(expected, expected)), (k, s, p, d, a, h)
        assert output_size_formula(layer, h).endswith(f"= {out}")


@pytest.mark.parametrize("kind", ["max_pool", "avg_pool"])
@pytest.mark.parametrize("seed", range(2))
def test_pool_footprint_is_the_textbook_window(kind, seed):
    rng = random.Random(seed)
    for k, s, p, d, h, w in random_configs(seed):
        ceil_mode = rng.random() < 0.5
        arguments = {"kernel_size": k, "stride": s, "padding": p, "ceil_mode": ceil_mode}
        if kind == "max_pool":
            arguments["dilation"] = d
        else:
            d = 1
        layer = build_layer(kind, **arguments)
        footprint = measure_footprint(layer, (h, w))
        ho, wo = textbook_size(h, k, s, p, d, ceil_mode), textbook_size(w, k, s, p, d, ceil_mode)
        expected = separable(windows(h, ho, k, s, p, d), windows(w, wo, k, s, p, d))
        assert torch.equal(footprint.taps, expected), (kind, arguments, h, w)
        assert output_size_formula(layer, h).endswith(f"= {ho}")


@pytest.mark.parametrize("seed", range(3))
def test_fractional_max_pool_footprint_is_torchs_pseudo_random_windows(seed):
    """Window ``i`` starts at ``trunc((i + u)·α) − trunc(u·α)``, ``α = (n − k)/(out − 1)``, the last at
    ``n − k`` (Graham 2014 as torch draws it; the 2-D samples are (width, height))."""
    k, n, out = 2, 9, 5
    layer = build_layer("fractional_max_pool", kernel_size=k, output_size=out)
    footprint = measure_footprint(layer, n, seed=seed)
    u_w, u_h = torch.rand(1, 1, 2, generator=torch.Generator().manual_seed(seed))[0, 0].tolist()

    def axis(u: float) -> torch.Tensor:
        alpha = (n - k) / (out - 1)
        starts = [int((i + u) * alpha) - int(u * alpha) for i in range(out - 1)] + [n - k]
        table = torch.zeros(out, n, dtype=torch.int64)
        for i, start in enumerate(starts):
            table[i, start : start + k] = 1
        return table

    assert torch.equal(footprint.taps, separable(axis(u_h), axis(u_w)))


def test_overlap_map_is_a_hand_count_and_shows_the_divisibility_rule():
    """Kernel 3, stride 2 on 3×3: along an axis the taps land 1 1 2 1 2 1 1 times (counted by hand:
    output o takes the taps t with o = 2u + t for some input u); kernel 4, stride 2, padding 1: even."""
    uneven = measure_footprint(build_layer("conv_transpose", kernel_size=3, stride=2), 3)
    axis = torch.tensor([1, 1, 2, 1, 2, 1, 1])
    assert torch.equal(uneven.overlap, axis[:, None] * axis[None, :])
    even = measure_footprint(build_layer("conv_transpose", kernel_size=4, stride=2, padding=1), 3)
    axis = torch.tensor([1, 2, 2, 2, 2, 1])
    assert torch.equal(even.overlap, axis[:, None] * axis[None, :])
    from cnnlab.analysis.arithmetic import format_footprint

    assert "a checkerboard (kernel size 3 not divisible by the stride 2)" in format_footprint(uneven, "")
    assert "no checkerboard (kernel size 4 divisible by the stride 2)" in format_footprint(even, "")


def test_footprint_of_a_model_layer_uses_its_channels_and_groups():
    layer = cnn.Conv2d(8, 16, 3, padding=1, groups=4)
    expected = windows(5, 5, 3, 1, 1, 1)
    assert torch.equal(measure_footprint(layer, 5).taps, separable(expected, expected))


def test_arithmetic_command_writes_the_gif_the_still_and_the_formula(tmp_path):
    text = main(["arithmetic", "kind=conv", "kernel_size=3", "stride=2", "padding=1", "size=5", "--out", str(tmp_path)])
    assert "⌊(5 + 2·1 − (3 − 1) − 1)/2⌋ + 1 = 3" in text and "input 5×5 → output 3×3 (measured)" in text
    gif = Image.open(tmp_path / "conv_k3_s2_p1.gif")
    assert gif.n_frames == 9  # one frame per output cell
    assert (tmp_path / "conv_k3_s2_p1.png").exists()


def test_arithmetic_command_draws_a_model_layer_and_its_overlap_map(tmp_path):
    text = main(["arithmetic", "layer=model.layers.6", "model=autoencoder", "--out", str(tmp_path)])
    assert "ConvTranspose2d(64, 32, kernel_size=(2, 2), stride=(2, 2))" in text and "no checkerboard" in text
    assert (tmp_path / "model_layers_6_overlap.png").exists()


def test_arithmetic_command_finds_a_layer_inside_a_stages_block(tmp_path):
    """resnet18's second stage (item 4) builds two blocks; the first one's first conv (stride 2)."""
    text = main(["arithmetic", "layer=model.layers.4[0].0.residual.0", "model=resnet18", "model.width=0.25",
                 "--out", str(tmp_path)])  # fmt: skip
    assert "stride=(2, 2)" in text and (tmp_path / "model_layers_4_0_0_residual_0.gif").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["kind=convolution"], "give kind=<one of conv"),
        (["kind=conv", "kernel_size=9", "size=3"], "arithmetic"),
        (["layer=model.layers.1", "model=autoencoder"], "not a convolution or pooling layer"),
    ],
)
def test_arithmetic_command_explains_bad_input(argv, message, tmp_path):
    with pytest.raises(UserError, match=message):
        main(["arithmetic", *argv, "--out", str(tmp_path)])


def test_unproductive_layers_are_those_whose_input_already_sees_the_whole_image():
    """3×3 convolutions on an 8×8 image: receptive fields 3, 5, 7, 9, 11; the 5th reads features that
    each see 9 ≥ 8 pixels (Richter et al. 2021's border layer rule); the global pool is not counted."""
    model = torch.nn.Sequential(*[cnn.Conv2d(1, 1, 3, padding=1) for _ in range(5)], cnn.GlobalAvgPool2d())
    rows = receptive_fields(model, image_size=8)
    assert [row.size for row in rows[:5]] == [3, 5, 7, 9, 11]
    assert unproductive_layers(rows, 8) == ["model.layers.4"]


@pytest.mark.parametrize(
    ("arguments", "size", "pad"),
    [
        ({"kernel_size": 3, "stride": 2, "padding": 1}, 5, (1, 1)),
        ({"kernel_size": 3, "stride": 2, "padding": "tf_same"}, 6, (0, 1)),
    ],
)
def test_window_includes_the_zero_padding_it_reads(arguments, size, pad):
    """The whole window of each output over the padded grid (padding cells drawn read), measured on
    an unpadded copy: the textbook window with no padding over the grown input."""
    footprint = measure_footprint(build_layer("conv", **arguments), size)
    grown = size + sum(pad)
    out = footprint.output_size[0]
    expected = windows(grown, out, 3, 2, 0, 1)
    assert torch.equal(footprint.window.gt(0).long(), separable(expected, expected))
    assert footprint.padding == (pad[0], pad[1], pad[0], pad[1])
    reflect = build_layer("conv", kernel_size=3, padding=1, padding_mode="reflect")
    assert measure_footprint(reflect, 5).window is None  # (reflected cells are real inputs: the taps show them)
