"""The sampler of ``hparams_search=optuna`` (needs the ``search`` extra): Optuna's TPE with random
numbers that depend on the trial's number as well as on the seed.

A study kept in storage (``hydra.sweeper.storage=sqlite:///study.db``) is continued by running the
same command again: Optuna numbers the new trials k, k+1, ... But a seeded ``TPESampler`` starts
its random sequence afresh in every process, so the continued search would draw trial 0's values
again for trial k (and so on through the random start-up trials). Seeding each trial's draws from
``(seed, trial number)`` keeps a search reproducible and makes a continued search draw new points.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from optuna.samplers import RandomSampler, TPESampler

__all__ = ["TrialSeededTPESampler"]


class TrialSeededTPESampler(TPESampler):
    """``optuna.samplers.TPESampler`` whose draws for trial ``n`` come from ``RandomState([seed, n])``."""

    def __init__(self, *args: Any, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, seed=seed, **kwargs)
        self._base_seed = seed
        self._seeded_trial: int | None = None

    def _seed_for(self, trial: Any) -> None:
        if self._base_seed is None or trial.number == self._seeded_trial:
            return
        self._seeded_trial = trial.number
        self._rng = np.random.RandomState([self._base_seed, trial.number])
        self._random_sampler = RandomSampler(seed=int(self._rng.randint(2**31)))

    def sample_relative(self, study: Any, trial: Any, search_space: dict) -> dict:
        self._seed_for(trial)
        return super().sample_relative(study, trial, search_space)

    def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
        self._seed_for(trial)
        return super().sample_independent(study, trial, param_name, param_distribution)
