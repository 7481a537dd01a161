"""Training, by the part of a run's life each sub-package serves:

- :mod:`.engine` — one run in memory: set-up from a validated config, the loop of epochs of steps,
  the run's state and callbacks, optimisers and schedules, TensorBoard logging while it trains and
  the report at its end (``metrics.json``, the trained model's analysis, HParams);
- :mod:`.runs` — a run on disk: its directory, atomic checkpoints, resuming (all of it in
  :mod:`.runs.resume`), clean stops on signals, and the record of what exactly ran;
- :mod:`.sweeps` — many runs: sweep directories and their summary tables, Optuna's sampler.

Beside them, what ``train.py`` reads first: :mod:`.cli` (the body of its ``@hydra.main``),
:mod:`.config` (checks of a composed config), :mod:`.options` (its ``trainer:`` section, typed) and
:mod:`.overrides` (what a command line's overrides say a job is)."""

from .engine.callbacks import Callback, WeightEMA
from .engine.loop import run

__all__ = ["Callback", "WeightEMA", "run"]
