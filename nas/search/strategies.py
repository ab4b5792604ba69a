"""Search strategies: Optuna samplers by name, seeded. The cost budget reaches them as a trial constraint
(`trial.set_constraint`, see nas.search.study), which every Optuna 5 sampler here takes into account.

`TrialSeededSampler` seeds a fresh sampler for every trial from (study seed, draw index), where the draw index is
the trial number less the retries before it (a retry re-runs fixed parameters and draws nothing). The random
draws of a trial thus do not depend on which process runs it or on how many trials that process ran before:
workers sharing a study draw different candidates, a resumed process does not replay the draws of the first
one, and a study interrupted and resumed draws what the uninterrupted study draws (exactly so for a single
worker whose sampler depends on the draws and the complete trials only, see docs/search.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from nas.errors import ConfigError
from nas.search.config import STRATEGIES, StrategyConfig

__all__ = [
    "CONSTRAINT_KEY",
    "INT8_CONSTRAINT_KEY",
    "STRATEGIES",
    "TrialSeededSampler",
    "draw_index",
    "make_sampler",
    "trial_seed",
]

CONSTRAINT_KEY = "cost_over_budget"  # trial constraint: cost - max_cost (<= 0 is feasible), see Session.store
INT8_CONSTRAINT_KEY = "int8_drop_over"  # trial constraint: int8_drop - max_int8_drop, under `max_int8_drop`


class Director(Protocol):
    """(study, trial, draw index) -> the trial's parameters over `distributions`, or None for the strategy's draw."""

    distributions: dict[str, BaseDistribution]

    def __call__(self, study: optuna.Study, trial: FrozenTrial, index: int) -> dict[str, Any] | None: ...


def make_sampler(cfg: StrategyConfig, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler of `cfg.name`, seeded."""
    name = cfg.name
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(
            population_size=cfg.population_size,
            crossover_prob=cfg.crossover_prob,
            mutation_prob=cfg.mutation_prob,
            seed=seed,
        )
    if name == "tpe":
        return optuna.samplers.TPESampler(
            n_startup_trials=cfg.n_startup_trials,
            multivariate=cfg.multivariate,
            seed=seed,
        )
    if name == "gp":
        return optuna.samplers.GPSampler(
            n_startup_trials=cfg.n_startup_trials, seed=seed, warn_independent_sampling=False
        )
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"unknown strategy {name!r}; available strategies: {', '.join(STRATEGIES)}")


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial `number` of a study seeded with `seed`."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def draw_index(trials: Sequence[FrozenTrial], trial: FrozenTrial) -> int:
    """The trial's number less the retries before it; a retry has the index of the trial it retries (a trial
    stopped before it drew its parameters is redrawn with the same seed)."""
    by_number = {t.number: t for t in trials}
    while "retry_of" in trial.user_attrs and trial.user_attrs["retry_of"] in by_number:
        trial = by_number[trial.user_attrs["retry_of"]]
    return trial.number - sum(t.number < trial.number and "retry_of" in t.user_attrs for t in trials)


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """`make_sampler(cfg, trial_seed(seed, draw index))`, made fresh for each trial (in `before_trial`).

    The samplers here keep no state of their own beyond their random generator (NSGA-II keeps its generations
    in the study), so a fresh one per trial sees the same history and differs only in its seed.

    `director` (nas.search.tiers.TierDirector) sees every drawn trial first, with its draw index; parameters it
    returns are the trial's (a relative sample over its `distributions`), None leaves the draw to the strategy.
    """

    def __init__(self, cfg: StrategyConfig, seed: int, director: Director | None = None):
        self.cfg, self.seed, self.director = cfg, seed, director
        self._inner = make_sampler(cfg, seed)  # checks the config now; replaced before every trial
        self._proposal: dict[str, Any] | None = None

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        index = draw_index(study.get_trials(deepcopy=False), trial)
        self._inner = make_sampler(self.cfg, trial_seed(self.seed, index))
        self._inner.before_trial(study, trial)
        self._proposal = None
        if self.director is not None and not trial.system_attrs.get("fixed_params"):  # enqueued: not drawn
            self._proposal = self.director(study, trial, index)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        if self._proposal is not None:
            return dict(self.director.distributions)
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if self._proposal is not None:
            return {k: v for k, v in self._proposal.items() if k in search_space}
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()
