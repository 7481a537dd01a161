"""Every model family × every conv option × every pool option composes, builds, and runs forward
and backward; impossible configs fail at build time naming the layer's config path."""

from __future__ import annotations

import itertools
import os

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cnnlab import nn as cnn
from cnnlab.models import ModelConfigError, build_model, format_shape_table
from tests.configs import CONFIGS, STANDARD_ARCHITECTURES, compose_cfg
from tests.conftest import ForbiddenOpGuard

# the small families (every conv × pool option here); the standard architectures: test_architectures.py
MODELS = sorted(p.stem for p in (CONFIGS / "model").glob("*.yaml") if p.stem not in STANDARD_ARCHITECTURES)
CONVS = sorted(p.stem for p in (CONFIGS / "conv").glob("*.yaml"))
POOLS = sorted(p.stem for p in (CONFIGS / "pool").glob("*.yaml"))


@pytest.fixture(scope="module")
def group_configs():
    """Each group option's config, composed once."""
    cfg = {name: compose_cfg(f"model={name}").model for name in MODELS}
    convs = {name: compose_cfg(f"conv={name}").conv for name in CONVS}
    pools = {name: compose_cfg(f"pool={name}").pool for name in POOLS}
    return cfg, convs, pools


def test_every_family_and_option_is_there():
    assert set(MODELS) >= {"simple", "vgg", "resnet", "mobilenet", "dilated", "allconv", "fast", "autoencoder"}
    assert set(CONVS) == {"standard", "separable", "dilated", "fft", "deformable", "std", "torch"}
    assert set(POOLS) == {"max", "avg", "lp2", "gaussian", "blur", "maxout", "torch_max"}


@pytest.mark.slow
@pytest.mark.parametrize(("model", "conv", "pool"), list(itertools.product(MODELS, CONVS, POOLS)))
def test_model_builds_and_trains_one_step(group_configs, model, conv, pool):
    models, convs, pools = group_configs
    net, rows = build_model(models[model], convs[conv], pools[pool])
    x = torch.randn(2, 3, 32, 32)
    out = net(x)
    expected = (2, 3, 32, 32) if models[model].task == "reconstruction" else (2, 10)
    assert out.shape == expected and rows[-1].output_shape == expected[1:]
    out.square().mean().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize("model", MODELS)
def test_cnnlab_models_never_reach_torch_conv_or_pool(group_configs, model):
    models, convs, pools = group_configs
    net, _ = build_model(models[model], convs["standard"], pools["max"])
    with ForbiddenOpGuard() as guard:
        net(torch.randn(2, 3, 32, 32)).square().mean().backward()
    assert guard.forbidden == []


def test_torch_backend_builds_the_torch_twin(group_configs):
    """conv=torch pool=torch_max gives the same architecture on torch.nn layers, with the same
    parameter names and shapes, so weights move across and outputs agree."""
    models, convs, pools = group_configs
    ours, _ = build_model(models["vgg"], convs["standard"], pools["max"])
    twin, _ = build_model(models["vgg"], convs["torch"], pools["torch_max"])
    assert any(type(m) is torch.nn.Conv2d for m in twin.modules())
    assert not any(type(m) is torch.nn.Conv2d for m in ours.modules())
    twin.load_state_dict(ours.state_dict())
    ours.eval(), twin.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(ours(x), twin(x), rtol=1e-4, atol=1e-4)


def test_pool_and_conv_slots_are_filled_from_the_groups(group_configs):
    models, convs, pools = group_configs
    net, _ = build_model(models["resnet"], convs["separable"], pools["blur"])
    assert any(isinstance(m, cnn.DepthwiseSeparableConv2d) for m in net.modules())
    assert any(isinstance(m, cnn.MaxBlurPool2d) for m in net.modules())
    net, _ = build_model(models["simple"], convs["fft"], pools["gaussian"])
    assert any(isinstance(m, cnn.FFTConv2d) for m in net.modules())
    assert any(isinstance(m, cnn.DistanceWeightedPool2d) for m in net.modules())


def test_shape_table_lists_every_layer_with_parameters(group_configs):
    models, convs, pools = group_configs
    net, rows = build_model(models["simple"], convs["standard"], pools["max"])
    assert [r.output_shape for r in rows] == [
        (32, 32, 32),
        (32, 32, 32),
        (32, 16, 16),
        (64, 16, 16),
        (64, 16, 16),
        (64, 8, 8),
        (4096,),
        (10,),
    ]
    assert sum(r.parameters for r in rows) == sum(p.numel() for p in net.parameters())
    table = format_shape_table(rows, (3, 32, 32))
    assert "model.layers.7" in table and "linear" in table


def _model(*layers):
    return OmegaConf.create({"task": "classification", "layers": list(layers)})


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (
            [{"conv": {"out_channels": 8}}] + [{"pool": {"kernel_size": 2}}] * 6,
            r"model\.layers\.6 \(pool\): cannot take input of shape \(8, 1, 1\).*output size \(0, 0\) is too small",
        ),
        (
            [{"conv": {"out_channels": 8, "kernel_size": 40, "padding": 0}}],
            r"model\.layers\.0 \(conv\).*greater than",
        ),
        ([{"conv": {"out_channels": 8}}, {"linear": {"out_features": 10}}], r"model\.layers\.1 \(linear\).*flatten"),
        ([{"conv": {"out_channels": 8, "groups": 3}}], r"model\.layers\.0 \(conv\)"),
        ([{"convolution": {"out_channels": 8}}], r"model\.layers\.0: unknown layer type 'convolution'"),
        (
            [{"conv": {"out_channels": 8, "kernal_size": 3}}],
            r"model\.layers\.0 \(conv\): unknown argument.*kernal_size",
        ),
        (["relu", {"residual": [{"conv": {"out_channels": 8, "stride": 3}}]}], r"model\.layers\.1 \(residual\)"),
    ],
)
def test_impossible_models_fail_at_build_time_with_the_config_path(group_configs, layers, message):
    _, convs, pools = group_configs
    with pytest.raises(ModelConfigError, match=message):
        build_model(_model(*layers), convs["standard"], pools["max"])


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml")))
def test_experiments_compose(experiment):
    from cnnlab.train.config import validate_config

    cfg = compose_cfg(f"experiment={experiment}")
    validate_config(cfg)
    assert cfg.trainer.max_epochs > 0 and cfg.tags


def test_torch_experiment_only_swaps_the_backend():
    ours, twin = compose_cfg("experiment=cifar_fast"), compose_cfg("experiment=cifar_fast_torch")
    assert (twin.conv.kind, twin.pool.kind) == ("torch", "torch_max")
    assert ours.trainer == twin.trainer and ours.model == twin.model and ours.optimizer == twin.optimizer


@pytest.mark.parametrize(
    ("launcher", "target"),
    [
        ("basic", "BasicLauncher"),
        ("joblib", "JoblibLauncher"),
        ("slurm", "SlurmLauncher"),
    ],
)
def test_launchers_compose(launcher, target):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)


def test_slurm_launcher_sets_up_ddp_and_requeue():
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(
            config_name="train",
            return_hydra_config=True,
            overrides=[
                "hydra/launcher=slurm",
                "hydra.launcher.nodes=2",
                "hydra.launcher.tasks_per_node=4",
            ],
        )
    launcher = cfg.hydra.launcher
    assert (launcher.nodes, launcher.tasks_per_node, launcher.max_num_timeout) == (2, 4, 3)
    assert launcher.signal_delay_s > 0


def test_slurm_environment_becomes_torch_distributed_environment(monkeypatch):
    """srun with 8 tasks: cnnlab exports RANK/WORLD_SIZE/MASTER_ADDR for torch.distributed."""
    from cnnlab.train.engine.distributed import _export_slurm_environment

    # submitit writes os.environ directly: give it a copy that this test's teardown throws away,
    # so no RANK/WORLD_SIZE leaks into later tests (or the train.py subprocesses they start)
    monkeypatch.setattr(
        os,
        "environ",
        {
            k: v
            for k, v in os.environ.items()
            if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
        },
    )
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")  # set in every job hydra-submitit-launcher starts
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "4")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "node[07-08]")
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "2")
    monkeypatch.setenv("SLURM_NODEID", "1")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "node[07-08]")
    _export_slurm_environment()
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("5", "8", "1")
    assert os.environ["MASTER_ADDR"] == "node07" and int(os.environ["MASTER_PORT"]) > 0


@pytest.mark.parametrize("model", sorted(p.stem for p in (CONFIGS / "model").glob("*.yaml")))
def test_every_model_takes_a_width_and_a_class_subset_without_a_plus(model):
    """``model.width=0.5`` and ``data.classes=[...]`` are keys of every model's config (no leading
    ``+``), and the head follows ``data.num_classes``."""
    from cnnlab.train.config import complete_config, validate_config

    cfg = compose_cfg(f"model={model}", "model.width=0.5", "data.classes=[cat,dog,ship]")
    validate_config(cfg)
    complete_config(cfg)
    assert cfg.model.width == 0.5 and cfg.data.num_classes == 3
    layers = OmegaConf.to_container(cfg.model, resolve=True)["layers"]
    ((kind, args),) = next(x for x in reversed(layers) if isinstance(x, dict) and {"linear", "conv"} & set(x)).items()
    if cfg.model.task == "classification":  # the head: a linear layer, or allconv's 1×1 conv to class maps
        assert args["out_features" if kind == "linear" else "out_channels"] == 3
    if model in ("allconv", "simple"):  # built: the head keeps its 3 outputs at width 0.5
        _, rows = build_model(cfg.model, cfg.conv, cfg.pool)
        assert rows[-1].output_shape == (3,)
