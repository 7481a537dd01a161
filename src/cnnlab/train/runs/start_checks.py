"""Checks before Hydra creates anything: what would otherwise fail after a run or sweep directory
exists, with a traceback. Each refusal is one ``Error:`` line on stderr and exit status 2, as
``train.py``'s config errors (:mod:`cnnlab.train.cli`)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, NoReturn

from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig, OmegaConf

from .resume import has_checkpoint, nothing_to_resume

__all__ = ["StartChecks"]


def _refuse(message: str) -> NoReturn:
    print(f"Error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


class StartChecks(HydraCallback):
    """Hydra callback (``configs/hydra/default.yaml``):

    - a single run with ``resume=auto`` whose ``hydra.run.dir`` holds no checkpoint stops before
      Hydra creates the directory or appends to its log (an empty directory that
      ``${cnnlab.unique_dir:...}`` made for it is removed); a sweep's jobs are checked by the run;
    - a sweep with ``hydra/launcher=slurm`` where there is no ``srun`` stops before the sweep
      directory exists (submitit raises a 30-line ``RuntimeError`` otherwise).
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.get("resume") != "auto" or OmegaConf.select(config, "trainer.eval_only", default=False):
            return
        run_dir = Path(str(config.hydra.run.dir))
        if not has_checkpoint(run_dir):
            error = nothing_to_resume(run_dir)
            if run_dir.is_dir() and not any(run_dir.iterdir()):
                run_dir.rmdir()
            _refuse(str(error))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        launcher = str(OmegaConf.select(config, "hydra.launcher._target_", default=""))
        if launcher.endswith("SlurmLauncher") and shutil.which("srun") is None:
            _refuse(
                "hydra/launcher=slurm submits jobs with Slurm's sbatch/srun, and there is no srun on this machine's "
                "PATH: run the sweep on a Slurm login node, or drop hydra/launcher=slurm to run its jobs here "
                "one after another"
            )
