"""Pareto front and tier selection on hand-made records."""

from __future__ import annotations

import pytest

from nas.search.select import TrialRecord, pareto_front, rerank_tiers, select_tiers, tier_candidates
from tests.search.tiny import tiny_arch

OBJ, DIR = ("proxy_score", "flops_g"), ("maximize", "minimize")


def rec(
    n: int, score: float, cost: float, feasible: bool = True, reference: str | None = None, arch=None
) -> TrialRecord:
    arch = arch or tiny_arch(
        f"a{n}",
        {
            "heads.heads.0.first_conv_group_size": n % 3,
            "backbone.stem.out_channels": (n // 3) % 2,
            "backbone.stages.0.out_channels": (n // 6) % 2,
        },
    )
    return TrialRecord(
        n, arch, {"proxy_score": score, "flops_g": cost, "params_m": 1.0}, feasible=feasible, reference=reference
    )


def test_pareto_front_keeps_only_non_dominated_feasible_records():
    rs = [rec(0, 1.0, 1.0), rec(1, 2.0, 2.0), rec(2, 1.5, 2.5), rec(3, 3.0, 3.0, feasible=False), rec(4, 0.5, 0.5)]
    front = pareto_front(rs, OBJ, DIR)
    assert [r.number for r in front] == [4, 0, 1]  # sorted by cost; 2 is dominated by 1; 3 infeasible


def test_pareto_front_counts_an_architecture_once():
    a = tiny_arch("x")
    front = pareto_front([rec(0, 1.0, 1.0, arch=a), rec(1, 1.0, 1.0, arch=a)], OBJ, DIR)
    assert [r.number for r in front] == [0]


def test_tiers_pick_the_best_score_under_each_budget_and_know_their_reference():
    rs = [
        rec(0, 1.0, 1.0, reference="s"),
        rec(1, 1.4, 0.9),
        rec(2, 2.0, 2.0, reference="m"),
        rec(3, 2.5, 1.9),
        rec(4, 9.0, 5.0),
    ]
    sel = select_tiers(rs, "flops_g", {"s": 1.0, "m": 2.0, "tiny": 0.1}, OBJ, DIR)
    assert sel["s"].record.number == 1 and sel["s"].reference.number == 0
    assert sel["m"].record.number == 3 and sel["m"].reference.number == 2
    assert sel["tiny"].record is None and sel["tiny"].reference is None
    front = {r.number for r in pareto_front(rs, OBJ, DIR)}
    assert {sel["s"].record.number, sel["m"].record.number} <= front


def test_tier_ties_go_to_the_cheaper_candidate():
    sel = select_tiers([rec(0, 1.0, 1.0), rec(1, 1.0, 0.5)], "flops_g", {"t": 1.0}, OBJ, DIR)
    assert sel["t"].record.number == 1


def test_two_stages_re_rank_the_k_best_of_each_tier_by_the_costly_proxy():
    rs = [rec(0, 1.0, 1.0, reference="s"), rec(1, 3.0, 0.9), rec(2, 2.0, 0.8), rec(3, 2.5, 1.9), rec(4, 0.5, 0.4)]
    rs.append(rec(5, 3.0, 0.9, arch=rs[1].arch))  # the same architecture again: one candidate
    assert [r.number for r in tier_candidates(rs, "flops_g", 1.0, OBJ, DIR)] == [1, 2, 0, 4]
    truth = {0: 5.0, 1: 1.0, 2: 4.0, 3: 9.0, 4: 8.0}  # the costly proxy by trial
    by_arch = {r.arch.digest(): truth[r.number] for r in rs if r.number in truth}
    first = select_tiers(rs, "flops_g", {"s": 1.0, "m": 2.0}, OBJ, DIR)
    calls = []

    def rescore(arch):
        calls.append(arch.digest())
        return by_arch[arch.digest()]

    sel, table = rerank_tiers(first, rs, "flops_g", OBJ, DIR, 2, rescore)
    # s: the 2 best by proxy_score under 1.0 are trials 1 and 2; the costly proxy prefers 2 (4.0 > 1.0);
    # trial 0 (5.0) and 4 (8.0) are not among them: a pre-filter, not a search by the costly proxy
    assert sel["s"].record.number == 2 and sel["s"].reference.number == 0
    assert [(c["trial"], c["rerank"]) for c in table["s"]] == [(1, 1.0), (2, 4.0)]
    assert [c["trial"] for c in table["m"]] == [1, 3] and sel["m"].record.number == 3  # 9.0 > 1.0
    assert len(calls) == 4
    tie, _ = rerank_tiers(first, rs, "flops_g", OBJ, DIR, 2, lambda arch: 0.0)
    assert tie["s"].record.number == first["s"].record.number == 1  # a tie keeps the first stage's order
    one, _ = rerank_tiers(first, rs, "flops_g", OBJ, DIR, 1, rescore)
    assert {t: s.record.number for t, s in one.items()} == {t: s.record.number for t, s in first.items()}


def test_hypervolume_2d_matches_a_grid_count():
    import numpy as np

    from nas.search.select import hypervolume_2d

    rng = np.random.default_rng(0)
    pts = [(float(c), float(s)) for c, s in rng.random((12, 2))]
    grid = (np.arange(400) + 0.5) / 400
    cc, ss = np.meshgrid(grid, grid, indexing="ij")
    covered = np.zeros_like(cc, dtype=bool)
    for c, s in pts:
        covered |= (cc >= c) & (ss <= s)
    assert hypervolume_2d(pts, 1.0, 0.0) == pytest.approx(covered.mean(), abs=5e-3)
    assert hypervolume_2d([(2.0, 0.5)], 1.0, 0.0) == 0.0  # outside the reference box
    assert hypervolume_2d([], 1.0, 0.0) == 0.0
