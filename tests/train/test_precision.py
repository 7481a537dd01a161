"""``trainer.precision=auto``: bfloat16 autocast only where the device computes bfloat16 natively."""

from __future__ import annotations

import pytest
import torch

import cnnlab.nn as cnn
from cnnlab.functional import native
from cnnlab.train.config import validate_config
from cnnlab.train.engine.setup import select_precision
from tests.configs import compose_cfg


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_the_cpu_has_bf16_kernels(monkeypatch, native):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
    assert select_precision("auto", torch.device("cpu")) == ("bf16" if native else "32")


@pytest.mark.parametrize(
    ("kernels", "sets", "expected"),
    [
        ("amx", ["AVX2", "AVX-512", "AVX512-BF16", "AMX"], "bf16"),  # AMX tiles: 2.2× the float32 step
        ("avx512_bf16", ["AVX2", "AVX-512", "AVX512-BF16"], "bf16"),  # AMD Zen 4/5
        ("avx512_bf16", ["AVX2", "AVX-512", "AVX512-BF16", "AMX"], "32"),  # CNNLAB_AMX=0 on an AMX Xeon: slower
        ("", ["AVX2", "AVX-512"], "32"),  # no bfloat16 kernel of cnnlab's: the Python algorithms
    ],
)
def test_auto_precision_for_cnnlab_layers_follows_cnnlabs_bfloat16_kernels(monkeypatch, kernels, sets, expected):
    """A model of cnnlab's convolutions gets bfloat16 only where cnnlab's bfloat16 kernels beat its
    float32 ones; a model of torch's layers only asks oneDNN (bfloat16 wherever it computes it)."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setattr(native, "bfloat16_kernels", lambda: kernels)
    monkeypatch.setattr(native, "instruction_sets", lambda: sets)
    cnnlab_model = torch.nn.Sequential(cnn.Conv2d(3, 8, 3), torch.nn.ReLU())
    torch_model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
    assert select_precision("auto", torch.device("cpu"), cnnlab_model) == expected
    assert select_precision("auto", torch.device("cpu"), torch_model) == "bf16"


@pytest.mark.parametrize("name", ["32", "bf16"])
def test_an_explicit_precision_is_kept_on_every_device(monkeypatch, name):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: name == "32")
    assert select_precision(name, torch.device("cpu")) == name


def test_the_default_experiment_asks_for_auto_and_it_validates():
    cfg = compose_cfg("experiment=cifar_fast")
    assert cfg.trainer.precision == "auto"
    validate_config(cfg)
