"""Train any cnnlab model on CIFAR-10 (or synthetic data), configured with Hydra.

python train.py                                  # the default experiment
python train.py model=resnet pool=blur trainer.max_epochs=5
python train.py -m conv=standard,torch pool=max,avg
"""

import os
import sys
from pathlib import Path

import hydra
from dotenv import load_dotenv
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("PROJECT_ROOT", str(ROOT))  # configs/paths: where ./data and outputs/ are
load_dotenv(ROOT / ".env")  # e.g. CNNLAB_DATA=/path/to/data (the environment wins over .env)


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from cnnlab.train.cli import hydra_main  # imported here so `--help` and config errors come fast

    return hydra_main(cfg)


if __name__ == "__main__":
    from cnnlab.train.overrides import misplaced_group_key, unknown_group_choice
    from cnnlab.train.runs.directories import register_resolvers
    from cnnlab.train.sweeps.sweep import name_jobs_by_swept_keys

    configs = ROOT / "configs"  # before Hydra's 24-line messages:
    if error := unknown_group_choice(sys.argv[1:], configs) or misplaced_group_key(sys.argv[1:], configs):
        print(f"Error: {error}", file=sys.stderr)
        sys.exit(2)
    register_resolvers()
    sys.argv = name_jobs_by_swept_keys(sys.argv)
    main()
