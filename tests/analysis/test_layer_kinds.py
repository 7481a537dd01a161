"""Every layer kind answers its own geometry, and the analyses ask it: each registered conv and
pool kind grows the receptive field (or its row says why not), any ``nn.Module`` is measured
(a converted torchvision model included), and a new pooling variant is one file, one
registration line and its options: the shape table, receptive field and arithmetic pictures
see it with nothing else changed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

import cnnlab
from cnnlab.analysis import analyze, receptive_fields
from cnnlab.analysis.arithmetic import arithmetic_stills
from cnnlab.analysis.receptive_field import config_paths
from cnnlab.models import CONVS, POOLS, LayerKind, build_model, model_layer_rows
from cnnlab.nn.geometry import NotAnalysed, Window, geometry_of, window
from cnnlab.train.config import known_keys
from tests.configs import compose_cfg


def _spatial_layers(model: nn.Module) -> dict[nn.Module, tuple[Window, ...]]:
    """The leaf layers whose windows move the field: more than one tap along the first axis."""
    found = {}
    for module in model.modules():
        geometry = geometry_of(module)
        if isinstance(geometry, tuple) and any(w.effective[0] > 1 or w.stride[0] != 1 for w in geometry):
            found[module] = geometry
    return found


@pytest.mark.parametrize(("group", "kind"), [("conv", kind) for kind in CONVS] + [("pool", kind) for kind in POOLS])
def test_every_registered_kind_grows_the_receptive_field_or_says_why_not(group, kind):
    """Each kind built into a model: every layer with a window has a row, and its field grows by
    its span (or moves by its stride); no row is silently skipped or left unanalysed."""
    files = {"lp": "lp2"}  # configs/pool/<file>.yaml → kind
    cfg = compose_cfg("model=simple", f"{group}={files.get(kind, kind)}")
    model, _ = build_model(cfg.model, cfg.conv, cfg.pool, (3, 32, 32))
    rows = receptive_fields(model, 32)
    by_path = {row.path: row for row in rows}
    assert not [row for row in rows if row.note.startswith("not analysed")]
    spatial = _spatial_layers(model)
    assert spatial, "the model has layers with windows"
    paths = config_paths(model)
    for module, geometry in spatial.items():
        row = by_path[paths[module]]
        grew = row.size > row.entering or any(w.stride[0] != 1 for w in geometry)
        assert grew or row.note, (kind, row)


class _Unannounced(nn.Module):
    """A layer of someone's that says nothing about its geometry."""

    def forward(self, x):
        return F.avg_pool2d(x, 3, 1, 1)


def test_a_layer_that_cannot_answer_gets_a_named_row_never_pointwise():
    model = nn.Sequential(cnnlab.nn.Conv2d(3, 4, 3), _Unannounced(), cnnlab.nn.Conv2d(4, 4, 3))
    assert isinstance(geometry_of(model[1]), NotAnalysed)
    rows = receptive_fields(model)
    assert [row.layer for row in rows] == ["Conv2d", "_Unannounced", "Conv2d"]
    assert rows[1].note.startswith("not analysed") and "window_geometry" in rows[1].note
    assert rows[1].size == rows[0].size and rows[2].size == 5  # passed on unchanged, and said so


def test_the_analyses_take_any_module_a_converted_torchvision_resnet18():
    """``analyze`` on a model that is no ``Sequential``: the receptive field through its residual
    sums is resnet18's published 435 px, the downsampling shortcuts join the body."""
    torchvision = pytest.importorskip("torchvision")
    model = cnnlab.convert(torchvision.models.resnet18(num_classes=10))
    rows = receptive_fields(model, 224)
    assert max(row.size for row in rows) == 435 and rows[-1].layer == "AdaptiveAvgPool2d"
    assert sum(row.layer == "residual (sum)" for row in rows) == 8
    report = analyze(model, (3, 64, 64))
    assert report.empirical_size is not None and report.consistency is not None


# ---- a new pooling variant, added the way the README says: its file, its YAML, one line


class MixedPool2d(nn.Module):
    """``α·max + (1 − α)·avg`` over ``kernel_size`` windows (Lee et al. 2016): the variant's own
    file would hold just this."""

    def __init__(self, kernel_size: int, stride: int, padding: int = 0, alpha: float = 0.5) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.alpha = kernel_size, stride, padding, alpha

    def window_geometry(self) -> tuple[Window]:
        return window(self.kernel_size, self.stride, self.padding, 1, 2)

    def forward(self, x):
        maximum = cnnlab.functional.max_pool2d(x, self.kernel_size, self.stride, self.padding)
        mean = cnnlab.functional.avg_pool2d(x, self.kernel_size, self.stride, self.padding)
        return self.alpha * maximum + (1 - self.alpha) * mean


def _mixed(channels: int, kernel_size: int, stride: int, padding: int, *, alpha: float = 0.5) -> nn.Module:
    return MixedPool2d(kernel_size, stride, padding, float(alpha))


def test_a_new_pool_variant_is_its_file_its_yaml_and_one_registration_line(monkeypatch, tmp_path):
    monkeypatch.setitem(POOLS, "mixed", LayerKind(_mixed))  # the registration line
    yaml = tmp_path / "mixed.yaml"  # its configs/pool/mixed.yaml
    yaml.write_text("kind: mixed\nalpha: 0.25\n")
    cfg = compose_cfg("model=simple")
    cfg.pool = OmegaConf.load(yaml)
    assert known_keys(cfg)["pool"] == {"kind", "alpha"}  # the config check reads its options

    model, shapes = build_model(cfg.model, cfg.conv, cfg.pool, (3, 32, 32))
    mixed = [m for m in model.modules() if isinstance(m, MixedPool2d)]
    assert mixed and all(m.alpha == 0.25 for m in mixed)
    assert any(row.layer == "pool: MixedPool2d" for row in model_layer_rows(shapes))  # the shape table
    rows = [row for row in receptive_fields(model, 32) if row.layer == "MixedPool2d"]
    assert rows and all(row.size > row.entering and not row.note for row in rows)  # the receptive field
    stills = arithmetic_stills(model)  # the arithmetic pictures
    assert any(isinstance(layer, MixedPool2d) for layer, path in _layers_at(model, stills))
    model(torch.randn(2, 3, 32, 32)).sum().backward()


def _layers_at(model: nn.Module, stills: dict) -> list[tuple[nn.Module, str]]:
    return [(module, path) for module, path in config_paths(model).items() if path in stills]
