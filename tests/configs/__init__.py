from pathlib import Path

from hydra import compose, initialize_config_dir

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# the standard CIFAR-10 architectures (tests/configs/test_architectures.py), apart from the small families
STANDARD_ARCHITECTURES = ("airbench94", "mobilenetv2", "preact_resnet18", "resnet18", "resnet50", "resnet9", "vgg16")


def compose_cfg(*overrides: str):
    """``configs/train.yaml`` composed with ``overrides``, as ``train.py`` would."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))
