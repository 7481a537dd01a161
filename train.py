"""Train any cnnlab model on CIFAR-10 (or synthetic data), configured with Hydra.

python train.py                                  # the default experiment
python train.py model=resnet pool=blur trainer.max_epochs=5
python train.py -m conv=standard,torch pool=max,avg
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from cnnlab.train import run  # imported here so `--help` and config errors come fast

    metrics = run(cfg)
    return metrics.get("val_acc")


if __name__ == "__main__":
    main()
