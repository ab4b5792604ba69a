"""Tier windows, per-tier counts of feasible candidates, and a start population stratified over the windows.

A tier's window is (the next-smaller tier's budget, its own budget]. Uniform samples of a space need not
reach every window: of 2,000 uniform samples of `yolo_nas`, none is predicted (cpu_ort) at or below the
released S, although the space's smallest network is at about half of it (experiments/search_efficiency/
tiers.md). A sampler started from uniform draws then never proposes an S candidate, and the S tier returns
the released S. The stratified start draws an equal share of the first population inside each window, by a
random walk on the cost (counted from the ArchConfig: no model, no proxy), so every tier has candidates
from the first generation on. After the start, the samplers still propose no S candidate (they are not
pushed to the space's small end), so one sampled trial in `tier_target_every` aims at a tier and, under
`tier_target=mutate`, mutates a best candidate of that tier's window (`TierDirector`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from nas.errors import ConfigError
from nas.search import optuna_compat
from nas.search.config import TIER_STARTS, TIER_TARGETS
from nas.search.select import TrialRecord
from nas.space import ArchConfig, SearchSpace

__all__ = [
    "TIER_STARTS",
    "TIER_TARGETS",
    "TierDirector",
    "directed_mutation",
    "mutation_rng",
    "start_count",
    "stratified_start",
    "target_tier",
    "tier_budgets",
    "tier_counts",
    "tier_windows",
    "walk_into",
    "window_constraint",
]

_SALT = 0x7153  # separates the start population's random stream from the samplers' (seeded by the same seed)
_MUTATE_SALT = 0x7154

log = logging.getLogger("nas.search")
CostFn = Callable[[ArchConfig], float]


def tier_budgets(
    tiers: Mapping[str, float | None] | None, space: SearchSpace, cost_of: CostFn, cost: str
) -> dict[str, float]:
    """Each tier's maximum `cost`: as configured (`tiers.NAME=VALUE`), or, for null (and every reference when `tiers`
    is None), the cost of the space's reference of that name (counts only: no model, no proxy)."""
    tiers = tiers if tiers is not None else dict.fromkeys(space.references)
    budgets = {}
    for tier, budget in tiers.items():
        if budget is None:
            ref = space.references.get(tier)
            if ref is None:
                raise ConfigError(
                    f"tier {tier!r} has no budget and is not a reference of space {space.name!r} "
                    f"(references: {', '.join(space.references) or 'none'}); set tiers.{tier}=<max {cost}>"
                )
            budget = cost_of(ref)
        elif (
            isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget) or budget <= 0
        ):
            raise ConfigError(
                f"tiers.{tier}={budget!r}: a budget is a positive {cost} (the tier's maximum cost), "
                f"or null for the cost of the space's reference of that name ({', '.join(space.references)})"
            )
        budgets[tier] = float(budget)
    return budgets


def tier_windows(budgets: Mapping[str, float]) -> dict[str, tuple[float, float]]:
    """Per tier, its window (lo, hi]: hi its budget, lo the next-smaller budget (0 for the smallest tier)."""
    out, lo = {}, 0.0
    for tier, hi in sorted(budgets.items(), key=lambda kv: kv[1]):
        out[tier] = (lo, float(hi))
        lo = float(hi)
    return {t: out[t] for t in budgets}  # in the configured order


def tier_counts(records: Sequence[TrialRecord], cost: str, budgets: Mapping[str, float]) -> dict[str, dict[str, int]]:
    """Per tier, the feasible evaluated candidates (distinct architectures): `under_budget` (cost <= budget)
    and `in_window` (next-smaller budget < cost <= budget)."""
    seen, distinct = set(), []
    for r in records:
        if r.feasible and r.arch.digest() not in seen:
            seen.add(r.arch.digest())
            distinct.append(r.values[cost])
    out = {}
    for tier, (lo, hi) in tier_windows(budgets).items():
        out[tier] = {
            "under_budget": sum(c <= hi for c in distinct),
            "in_window": sum(lo < c <= hi for c in distinct),
        }
    return out


def _distance(c: float, lo: float, hi: float) -> float:
    return lo - c if c <= lo else max(c - hi, 0.0)


def walk_into(
    space: SearchSpace, cost_fn: CostFn, lo: float, hi: float, rng: np.random.Generator, max_steps: int = 3000
) -> ArchConfig | None:
    """A random point of `space` moved, one random dimension change at a time, until its cost lies in (lo, hi].

    A change is kept when it brings the cost closer to the window, so the walk ends at the first point inside;
    None when `max_steps` changes did not get there or the walk is stuck (the caller starts another).
    """
    dims = space.dimensions
    values = {d.path: d.choices[rng.integers(len(d.choices))] for d in dims}
    arch = space.decode(values)
    dist = _distance(cost_fn(arch), lo, hi)
    # a walk that no single change brings closer is stuck: after this many failed changes in a row, give up
    patience = 4 * sum(len(d.choices) - 1 for d in dims)
    stalled = 0
    for _ in range(max_steps):
        if stalled > patience:
            break
        if dist == 0.0:
            return arch
        d = dims[rng.integers(len(dims))]
        if len(d.choices) < 2:
            continue
        old = values[d.path]
        values[d.path] = d.choices[rng.integers(len(d.choices))]
        cand = space.decode(values)
        new = _distance(cost_fn(cand), lo, hi)
        if new < dist:
            arch, dist, stalled = cand, new, 0
        else:
            values[d.path] = old
            stalled += 1
    return arch if dist == 0.0 else None


def stratified_start(
    space: SearchSpace,
    cost_fn: CostFn,
    budgets: Mapping[str, float],
    n: int,
    seed: int,
    exclude: Sequence[str] = (),
    max_walks: int = 20,
    max_steps: int = 3000,
) -> list[tuple[str, ArchConfig]]:
    """`n` distinct architectures, an equal share (round-robin, smallest tier first) in each tier window;
    deterministic for (`space`, `budgets`, `n`, `seed`). `exclude`: digests not to propose (the references)."""
    if n <= 0 or not budgets:
        return []
    rng = np.random.default_rng(np.random.SeedSequence([seed, _SALT]))
    windows = sorted(tier_windows(budgets).items(), key=lambda kv: kv[1][1])
    seen, out = set(exclude), []
    k = 0
    while len(out) < n and windows:
        tier, (lo, hi) = windows[k % len(windows)]
        for _ in range(max_walks):
            arch = walk_into(space, cost_fn, lo, hi, rng, max_steps)
            if arch is not None and arch.digest() not in seen:
                break
        else:
            # A small window (e.g. one that holds little more than its reference) is not an error: the search
            # goes on, the other windows take its share, and the report's per-tier counts show what it got.
            log.warning(
                "tier_start=stratified: no new architecture of space %r with a cost in (%.4g, %.4g] (tier %r) in "
                "%d random walks; the window may be empty or exhausted: its share of the start goes to the others "
                "(widen tiers.%s to search it)",
                space.name, lo, hi, tier, max_walks, tier,
            )  # fmt: skip
            windows.remove((tier, (lo, hi)))
            continue
        seen.add(arch.digest())
        out.append((tier, arch))
        k += 1
    return out


def start_size(strategy: Any) -> int:
    """The size of a strategy's first population: NSGA-II's population, else the random start-up trials."""
    return int(strategy.population_size if strategy.name == "nsga2" else strategy.n_startup_trials)


def start_count(cfg: Any, n_references: int, n_tiers: int) -> int:
    """How many stratified start trials a SearchConfig plans (at least one per tier); a study runs those it has
    room for (see nas.search.study.Session.enqueue_tier_start)."""
    if cfg.tier_start == "none":
        return 0
    n = cfg.tier_start_trials
    if n is None:
        n = max(start_size(cfg.strategy) - n_references, n_tiers)
    return n


def target_tier(index: int, budgets: Mapping[str, float], every: int) -> str | None:
    """The tier that draw `index` aims at: one draw in `every` (index % every == 0), round-robin over the tiers,
    smallest budget first; None for the other draws. Depends on the draw index alone, so workers sharing a
    study and resumed runs agree on it."""
    if not budgets or index % every:
        return None
    order = sorted(budgets, key=lambda t: budgets[t])
    return order[(index // every) % len(order)]


def window_constraint(cost: float, lo: float, hi: float) -> float:
    """An Optuna constraint value that is <= 0 exactly inside [lo, hi]: the distance outside, or minus the
    distance to the nearer edge inside."""
    return max(cost - hi, lo - cost)


def directed_mutation(
    space: SearchSpace,
    cost_fn: CostFn,
    records: Sequence[TrialRecord],
    cost: str,
    window: tuple[float, float],
    rng: np.random.Generator,
    score: str = "proxy_score",
    top: int = 3,
    max_tries: int = 50,
) -> ArchConfig | None:
    """A new architecture in `window` = (lo, hi]: a mutation (one dimension on average, see SearchSpace.mutate) of
    one of the `top` best-`score` feasible candidates evaluated there; None when the window has no candidate yet
    or `max_tries` mutations all left it or were evaluated already."""
    lo, hi = window
    seen = {r.arch.digest() for r in records}
    inside = [r for r in records if r.feasible and lo < r.values[cost] <= hi]
    if not inside:
        return None
    parents = sorted(inside, key=lambda r: (-r.values[score], r.number))[:top]
    prob = 1.0 / len(space.dimensions)
    for _ in range(max_tries):
        parent = parents[rng.integers(len(parents))]
        child = space.mutate(parent.arch, rng, prob)
        if child.digest() not in seen and lo < cost_fn(child) <= hi:
            return child
    return None


def mutation_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of directed draw `index` of a study seeded with `seed`."""
    return np.random.default_rng(np.random.SeedSequence([seed, _MUTATE_SALT, index]))


class TierDirector:
    """Aims sampled trials at the tier windows (see `target_tier`) for nas.search.strategies.TrialSeededSampler:
    records a draw's target as the trial's user attr `tier_target` and, in mode `mutate`, proposes its
    parameters (`directed_mutation`; user attr `tier_mutation`: whether it found one, else the strategy draws)."""

    def __init__(
        self,
        mode: str,
        every: int,
        budgets: Mapping[str, float],
        space: SearchSpace,
        cost_fn: CostFn,
        cost: str,
        seed: int,
    ):
        self.mode, self.every, self.budgets, self.space = mode, every, dict(budgets), space
        self.cost_fn, self.cost, self.seed = cost_fn, cost, seed
        self.windows = tier_windows(budgets)
        self.distributions: dict[str, BaseDistribution] = {
            d.path: IntDistribution(0, len(d.choices) - 1) if d.ordinal else CategoricalDistribution(list(d.labels))
            for d in space.dimensions
        }  # as SearchSpace.sample suggests them

    def __call__(self, study: optuna.Study, trial: FrozenTrial, index: int) -> dict[str, Any] | None:
        tier = target_tier(index, self.budgets, self.every)
        if tier is None:
            return None
        self._set(study, trial, "tier_target", tier)
        if self.mode != "mutate":
            return None
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        records = [TrialRecord.from_attrs(t.number, t.user_attrs) for t in trials]
        rng = mutation_rng(self.seed, index)
        arch = directed_mutation(self.space, self.cost_fn, records, self.cost, self.windows[tier], rng)
        self._set(study, trial, "tier_mutation", arch is not None)
        return None if arch is None else self.space.params_of(arch)

    @staticmethod
    def _set(study: optuna.Study, trial: FrozenTrial, key: str, value: Any) -> None:
        optuna_compat.set_trial_user_attr(study, trial, key, value)
