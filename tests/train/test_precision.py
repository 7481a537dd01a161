"""``trainer.precision=auto``: bfloat16 autocast only where the device computes bfloat16 natively."""

from __future__ import annotations

import pytest
import torch

from cnnlab.train.config import validate_config
from cnnlab.train.setup import select_precision
from tests.configs import compose_cfg


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_the_cpu_has_bf16_kernels(monkeypatch, native):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
    assert select_precision("auto", torch.device("cpu")) == ("bf16" if native else "32")


@pytest.mark.parametrize("name", ["32", "bf16"])
def test_an_explicit_precision_is_kept_on_every_device(monkeypatch, name):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: name == "32")
    assert select_precision(name, torch.device("cpu")) == name


def test_the_default_experiment_asks_for_auto_and_it_validates():
    cfg = compose_cfg("experiment=cifar_fast")
    assert cfg.trainer.precision == "auto"
    validate_config(cfg)
