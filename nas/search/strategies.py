"""Search strategies: Optuna samplers by name, seeded. The cost budget reaches them as a trial constraint
(`trial.set_constraint`, see nas.search.study), which every Optuna 5 sampler here takes into account."""

from __future__ import annotations

import optuna

from nas.errors import ConfigError
from nas.search.config import StrategyConfig

__all__ = ["CONSTRAINT_KEY", "STRATEGIES", "make_sampler"]

STRATEGIES = ("nsga2", "tpe", "random", "gp")
CONSTRAINT_KEY = "cost_over_budget"  # trial constraint: cost - max_cost (<= 0 is feasible)


def make_sampler(cfg: StrategyConfig, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler of `cfg.name`, seeded."""
    name = cfg.name
    if name == "nsga2":
        if cfg.population_size < 2:
            raise ConfigError(f"strategy.population_size={cfg.population_size}: NSGA-II needs at least 2")
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
