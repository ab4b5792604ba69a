"""Tier windows, per-tier counts of feasible candidates, and a start population stratified over the windows.

A tier's window is (the next-smaller tier's budget, its own budget]. Uniform samples of a space need not
reach every window: of 2,000 uniform samples of `yolo_nas`, none is predicted (cpu_ort) at or below the
released S, although the space's smallest network is at about half of it (experiments/search_efficiency/
tiers.md). A sampler started from uniform draws then never proposes an S candidate, and the S tier returns
the released S. The stratified start draws an equal share of the first population inside each window, by a
random walk on the cost (counted from the ArchConfig: no model, no proxy), so every tier has candidates
from the first generation on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from nas.errors import ConfigError
from nas.search.select import TrialRecord
from nas.space import ArchConfig, SearchSpace

__all__ = [
    "TIER_STARTS",
    "check_tier_start",
    "start_count",
    "stratified_start",
    "tier_counts",
    "tier_windows",
    "walk_into",
]

TIER_STARTS = ("stratified", "none")
_SALT = 0x7153  # separates the start population's random stream from the samplers' (seeded by the same seed)

CostFn = Callable[[ArchConfig], float]


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
    for k in range(n):
        tier, (lo, hi) = windows[k % len(windows)]
        for _ in range(max_walks):
            arch = walk_into(space, cost_fn, lo, hi, rng, max_steps)
            if arch is not None and arch.digest() not in seen:
                break
        else:
            raise ConfigError(
                f"tier_start=stratified: found no new architecture of space {space.name!r} with a cost in "
                f"({lo:.4g}, {hi:.4g}] (tier {tier!r}) in {max_walks} random walks; the window may be empty or "
                f"exhausted: change tiers.{tier}, or set tier_start=none"
            )
        seen.add(arch.digest())
        out.append((tier, arch))
    return out


def start_size(strategy: Any) -> int:
    """The size of a strategy's first population: NSGA-II's population, else the random start-up trials."""
    return int(strategy.population_size if strategy.name == "nsga2" else strategy.n_startup_trials)


def check_tier_start(cfg: Any) -> None:
    """Checks `tier_start` and `tier_start_trials` of a SearchConfig."""
    if cfg.tier_start not in TIER_STARTS:
        raise ConfigError(f"tier_start={cfg.tier_start!r}; choose one of {', '.join(TIER_STARTS)}")
    n = cfg.tier_start_trials
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise ConfigError(
            f"tier_start_trials={n!r}: a number of trials >= 0, or null for the strategy's first population "
            "less the references"
        )


def start_count(cfg: Any, n_references: int, n_tiers: int) -> int:
    """How many stratified start trials a SearchConfig plans (at least one per tier); a study runs those it has
    room for (see nas.search.study.Session.enqueue_tier_start)."""
    check_tier_start(cfg)
    if cfg.tier_start == "none":
        return 0
    n = cfg.tier_start_trials
    if n is None:
        n = max(start_size(cfg.strategy) - n_references, n_tiers)
    return n
