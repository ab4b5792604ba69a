"""Trials as plain records, the Pareto front, and one architecture per tier under its cost budget."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nas.space import ArchConfig

__all__ = [
    "Selection",
    "TrialRecord",
    "hypervolume_2d",
    "pareto_front",
    "rerank_tiers",
    "select_tiers",
    "tier_candidates",
]


@dataclass(frozen=True)
class TrialRecord:
    """A finished trial: its architecture, every metric, the raw proxy values and its feasibility."""

    number: int
    arch: ArchConfig
    values: dict[str, float]
    proxies: dict[str, float] = field(default_factory=dict)
    feasible: bool = True
    reference: str | None = None
    eval_s: float = 0.0

    @classmethod
    def from_attrs(cls, number: int, attrs: Mapping[str, Any]) -> TrialRecord:
        """From the user attributes the search stores with each trial (see nas.search.study)."""
        return cls(
            number=number,
            arch=ArchConfig.from_dict(attrs["arch"]),
            values={k: float(v) for k, v in attrs["metrics"].items()},
            proxies={k: float(v) for k, v in attrs.get("proxies", {}).items()},
            feasible=bool(attrs.get("feasible", True)),
            reference=attrs.get("reference"),
            eval_s=float(attrs.get("eval_s", 0.0)),
        )


def _signed(records: Sequence[TrialRecord], objectives: Sequence[str], directions: Sequence[str]) -> np.ndarray:
    """Objective matrix in minimization form."""
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return (
        np.array([[r.values[o] for o in objectives] for r in records], dtype=np.float64).reshape(-1, len(sign)) * sign
    )


def pareto_front(
    records: Sequence[TrialRecord], objectives: Sequence[str], directions: Sequence[str]
) -> list[TrialRecord]:
    """Feasible, non-dominated records (duplicates of one architecture kept once), sorted by the first
    minimized objective."""
    seen, feasible = set(), []
    for r in sorted(records, key=lambda r: r.number):
        key = r.arch.digest()
        if r.feasible and key not in seen:
            seen.add(key)
            feasible.append(r)
    if not feasible:
        return []
    y = _signed(feasible, objectives, directions)
    le = (y[:, None, :] <= y[None, :, :]).all(-1)
    lt = (y[:, None, :] < y[None, :, :]).any(-1)
    dominated = (le & lt).any(0)  # column j is dominated by some row i
    front = [r for r, d in zip(feasible, dominated) if not d]
    cost = next((o for o, d in zip(objectives, directions) if d == "minimize"), objectives[0])
    return sorted(front, key=lambda r: (r.values[cost], r.number))


@dataclass(frozen=True)
class Selection:
    """The architecture chosen for a tier, with its budget and the reference it competes with."""

    tier: str
    budget: float
    record: TrialRecord | None
    reference: TrialRecord | None


def tier_candidates(
    records: Sequence[TrialRecord],
    cost: str,
    budget: float,
    objectives: Sequence[str],
    directions: Sequence[str],
    score: str = "proxy_score",
) -> list[TrialRecord]:
    """The feasible records whose `cost` fits `budget`, one per architecture, best first: by `score`, ties to the
    lower cost, then to the better remaining objectives, then to the earlier trial (so the first lies on the
    Pareto front of all objectives)."""
    others = [(o, d) for o, d in zip(objectives, directions) if o not in (cost, score)]

    def key(r: TrialRecord) -> tuple:
        rest = tuple(r.values[o] if d == "minimize" else -r.values[o] for o, d in others)
        return (-r.values[score], r.values[cost], *rest, r.number)

    seen, out = set(), []
    for r in sorted((r for r in records if r.feasible and r.values[cost] <= budget), key=key):
        if r.arch.digest() not in seen:
            seen.add(r.arch.digest())
            out.append(r)
    return out


def select_tiers(
    records: Sequence[TrialRecord],
    cost: str,
    budgets: Mapping[str, float],
    objectives: Sequence[str],
    directions: Sequence[str],
    score: str = "proxy_score",
) -> dict[str, Selection]:
    """Per tier: the feasible record with the best `score` whose `cost` fits the budget (`tier_candidates`' first)."""
    out = {}
    for tier, budget in budgets.items():
        fits = tier_candidates(records, cost, budget, objectives, directions, score)
        ref = next((r for r in sorted(records, key=lambda r: r.number) if r.reference == tier), None)
        out[tier] = Selection(tier, float(budget), fits[0] if fits else None, ref)
    return out


def rerank_tiers(
    selections: Mapping[str, Selection],
    records: Sequence[TrialRecord],
    cost: str,
    objectives: Sequence[str],
    directions: Sequence[str],
    k: int,
    rescore: Callable[[ArchConfig], float],
) -> tuple[dict[str, Selection], dict[str, list[dict[str, Any]]]]:
    """Two stages: per tier, the `k` best candidates of `tier_candidates` are scored by `rescore` (a costlier
    proxy, larger is better) and the best of them is selected (ties to the better first-stage rank). Returns the
    new selections and, per tier, the candidates with both scores in first-stage order."""
    out, table = {}, {}
    for tier, sel in selections.items():
        cands = tier_candidates(records, cost, sel.budget, objectives, directions)[:k]
        values = [float(rescore(r.arch)) for r in cands]
        pick = cands[int(np.argmax(values))] if cands else None
        out[tier] = Selection(tier, sel.budget, pick, sel.reference)
        table[tier] = [
            {"trial": r.number, "name": r.arch.name, "proxy_score": r.values["proxy_score"], "rerank": v}
            for r, v in zip(cands, values)
        ]
    return out, table


def hypervolume_2d(points: Sequence[tuple[float, float]], ref_cost: float, ref_score: float) -> float:
    """Area dominated by (cost, score) points (cost minimized, score maximized) inside the reference box
    cost <= ref_cost, score >= ref_score."""
    pts = sorted((c, s) for c, s in points if c <= ref_cost and s >= ref_score)
    area, best = 0.0, ref_score
    for i, (c, s) in enumerate(pts):
        best = max(best, s)
        nxt = pts[i + 1][0] if i + 1 < len(pts) else ref_cost
        area += (nxt - c) * (best - ref_score)
    return area
