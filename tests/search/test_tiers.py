"""Tier windows, the stratified start and the per-tier candidate counts of the report (tiny space: its S
window holds 4 of its 3,072 architectures, a uniform draw hits it 0.13% of the time)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import optuna
import pytest

from nas.errors import ConfigError
from nas.search.config import StrategyConfig
from nas.search.objectives import Evaluator
from nas.search.runner import run_search
from nas.search.strategies import draw_index
from nas.search.study import TIER_START_ATTR
from nas.search.tiers import (
    directed_mutation,
    start_count,
    stratified_start,
    target_tier,
    tier_counts,
    tier_windows,
    walk_into,
    window_constraint,
)


@pytest.fixture(scope="module")
def costs(tiny_space, proxy_cache, tiny_space_path):
    from tests.search.tiny import tiny_config

    ev = Evaluator(tiny_config(tiny_space_path, proxy_cache), tiny_space)
    budgets = {n: ev.costs(a)[ev.cost] for n, a in tiny_space.references.items()}
    return (lambda a: ev.costs(a)[ev.cost]), budgets


def test_windows_run_from_the_next_smaller_budget():
    w = tier_windows({"m": 2.0, "s": 1.0, "l": 3.0})
    assert list(w) == ["m", "s", "l"]  # the configured order
    assert w == {"s": (0.0, 1.0), "m": (1.0, 2.0), "l": (2.0, 3.0)}


def test_stratified_start_puts_an_equal_share_in_every_window(tiny_space, costs):
    cost_fn, budgets = costs
    refs = [a.digest() for a in tiny_space.references.values()]
    start = stratified_start(tiny_space, cost_fn, budgets, 6, seed=0, exclude=refs)
    windows = tier_windows(budgets)
    assert [t for t, _ in start] == ["tiny_s", "tiny_m", "tiny_l"] * 2  # round-robin, smallest first
    for tier, arch in start:
        lo, hi = windows[tier]
        assert lo < cost_fn(arch) <= hi, tier
    digests = [a.digest() for _, a in start]
    assert len(set(digests)) == 6 and not set(digests) & set(refs)


def test_stratified_start_is_deterministic_per_seed(tiny_space, costs):
    cost_fn, budgets = costs
    one = [a.digest() for _, a in stratified_start(tiny_space, cost_fn, budgets, 6, seed=3)]
    assert one == [a.digest() for _, a in stratified_start(tiny_space, cost_fn, budgets, 6, seed=3)]
    assert one != [a.digest() for _, a in stratified_start(tiny_space, cost_fn, budgets, 6, seed=4)]


def test_a_window_without_architectures_is_skipped_with_a_warning(tiny_space, costs, caplog):
    cost_fn, budgets = costs
    assert walk_into(tiny_space, cost_fn, 0.0, 1e-9, np.random.default_rng(0), max_steps=50) is None
    with caplog.at_level("WARNING", logger="nas.search"):
        start = stratified_start(tiny_space, cost_fn, {"nano": 1e-9, **budgets}, 4, seed=0, max_walks=2, max_steps=50)
    assert "tier 'nano'" in caplog.text and "widen tiers.nano" in caplog.text
    assert len(start) == 4 and "nano" not in {t for t, _ in start}, "the other windows take its share"


def test_start_count_defaults_to_the_first_population_less_the_references(tiny_cfg):
    cfg = dataclasses.replace(tiny_cfg, n_trials=60, strategy=StrategyConfig(name="nsga2", population_size=16))
    assert start_count(cfg, n_references=3, n_tiers=3) == 13
    assert start_count(dataclasses.replace(cfg, strategy=StrategyConfig(name="tpe")), 3, 3) == 7
    assert start_count(dataclasses.replace(cfg, tier_start_trials=1), 3, 3) == 1
    assert start_count(dataclasses.replace(cfg, tier_start_trials=9), 3, 3) == 9
    assert start_count(dataclasses.replace(cfg, tier_start="none"), 3, 3) == 0


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("tier_start", "uniform", r"tier_start='uniform'; choose one of stratified, none"),
        ("tier_start_trials", -1, r"tier_start_trials=-1: a number of trials >= 0"),
        ("tier_start_trials", 2.5, r"tier_start_trials=2.5"),
        ("tier_target", "window", r"tier_target='window'; choose one of mutate, constraint, none"),
        ("tier_target_every", 0, r"tier_target_every=0: a whole number >= 1"),
        ("tier_target_every", True, r"tier_target_every=True"),
        ("tier_target_every", 1.5, r"tier_target_every=1.5"),
    ],
)
def test_bad_tier_start_settings_are_refused(tiny_cfg, tmp_path, field, value, match):
    with pytest.raises(ConfigError, match=match):
        run_search(dataclasses.replace(tiny_cfg, **{field: value}), tmp_path)


def _search(cfg, out):
    res = run_search(cfg, out)
    return res, json.loads((out / "report.json").read_text())


def test_report_counts_feasible_candidates_per_tier(tiny_cfg, tmp_path):
    proxy = dataclasses.replace(tiny_cfg.proxy, proxies=["flops"])  # no model to build: fast
    cfg = dataclasses.replace(tiny_cfg, n_trials=9, strategy=StrategyConfig(name="random"), proxy=proxy)
    res, rep = _search(cfg, tmp_path / "stratified")
    assert rep["tier_start"] == {"mode": "stratified", "trials": {"tiny_s": 2, "tiny_m": 2, "tiny_l": 2}}
    assert len(res.trials) == 9  # 3 references and 6 of the 7 planned start trials (3 S, 2 M, 2 L); none waits
    assert rep["tiers"]["tiny_s"]["window"] == [0.0, rep["tiers"]["tiny_s"]["budget"]]
    expected = tier_counts(res.trials, rep["cost"], {t: v["budget"] for t, v in rep["tiers"].items()})
    assert {t: v["candidates"] for t, v in rep["tiers"].items()} == expected
    for tier, (lo, hi) in tier_windows({t: v["budget"] for t, v in rep["tiers"].items()}).items():
        in_window = {r.arch.digest() for r in res.trials if r.feasible and lo < r.values[rep["cost"]] <= hi}
        assert expected[tier]["in_window"] == len(in_window) >= 3  # the reference and two start trials
    md = (tmp_path / "stratified" / "report.md").read_text()
    c = rep["tiers"]["tiny_s"]["candidates"]
    assert f"| tiny_s | {rep['tiers']['tiny_s']['budget']:.4g} | (0, " in md
    assert f"| {c['under_budget']} | {c['in_window']} (2) |" in md

    # before: the uniform start of the same search leaves the S window to the reference alone
    _, before = _search(dataclasses.replace(cfg, tier_start="none", tier_target="none"), tmp_path / "none")
    assert before["tiers"]["tiny_s"]["candidates"]["in_window"] == 1
    assert before["tiers"]["tiny_s"]["selected"]["equals_reference"]
    assert before["tier_start"] == {"mode": "none", "trials": {}}


def test_the_start_is_enqueued_once_per_study(tiny_cfg, tmp_path):
    cfg = dataclasses.replace(tiny_cfg, n_trials=8)
    run_search(cfg, tmp_path)
    run_search(dataclasses.replace(cfg, n_trials=12), tmp_path)  # resumed: no second start population
    study = optuna.load_study(study_name=cfg.study_name, storage=f"sqlite:///{tmp_path / 'study.db'}")
    started = [t for t in study.get_trials() if "tier_start" in t.user_attrs]
    assert len(started) == len(study.user_attrs[TIER_START_ATTR]) == 3
    assert [t.number for t in started] == [3, 4, 5]  # right after the references
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 12


def test_the_target_tier_depends_on_the_draw_index_alone():
    budgets = {"m": 2.0, "s": 1.0, "l": 3.0}
    every2 = [target_tier(i, budgets, 2) for i in range(12)]
    assert every2 == ["s", None, "m", None, "l", None] * 2  # smallest first, one draw in two
    assert every2 == [target_tier(i, dict(reversed(budgets.items())), 2) for i in range(12)]
    assert [target_tier(i, budgets, 1) for i in range(4)] == ["s", "m", "l", "s"]
    assert window_constraint(1.5, 1.0, 2.0) < 0 < window_constraint(2.5, 1.0, 2.0)
    assert window_constraint(0.5, 1.0, 2.0) > 0


def test_a_directed_mutation_stays_in_its_window_and_is_new(tiny_space, costs, tiny_cfg, tmp_path):
    cost_fn, budgets = costs
    lo, hi = tier_windows(budgets)["tiny_m"]
    res = run_search(dataclasses.replace(tiny_cfg, n_trials=6, tier_target="none"), tmp_path)
    seen = {r.arch.digest() for r in res.trials}
    for seed in range(5):
        child = directed_mutation(tiny_space, cost_fn, res.trials, "flops_g", (lo, hi), np.random.default_rng(seed))
        assert child is not None and child.digest() not in seen and lo < cost_fn(child) <= hi
    assert directed_mutation(tiny_space, cost_fn, res.trials, "flops_g", (0.0, 1e-9), np.random.default_rng(0)) is None


def _after_start(res, rep):
    """In-window feasible candidates per tier among the trials after the references and the stratified start."""
    n_first = sum(r.reference is not None for r in res.trials) + sum(rep["tier_start"]["trials"].values())
    later = [r for r in res.trials if r.number >= n_first]
    budgets = {t: v["budget"] for t, v in rep["tiers"].items()}
    return {t: c["in_window"] for t, c in tier_counts(later, rep["cost"], budgets).items()}


def test_every_window_keeps_receiving_candidates_after_the_start(tiny_cfg, tmp_path):
    proxy = dataclasses.replace(tiny_cfg.proxy, proxies=["flops"])  # no model to build: fast
    cfg = dataclasses.replace(tiny_cfg, n_trials=18, proxy=proxy, tier_target="mutate", tier_target_every=1)
    res, rep = _search(cfg, tmp_path / "mutate")
    assert all(n >= 1 for n in _after_start(res, rep).values()), _after_start(res, rep)
    aimed = rep["tier_target"]["trials"]
    assert all(a["aimed"] >= 3 and a["mutated"] >= 1 for a in aimed.values()), aimed
    assert "| aimed after the start |" in (tmp_path / "mutate" / "report.md").read_text()
    # the strategy alone, after the same start, leaves the S window (4 of 3,072 architectures) to the start
    res, rep = _search(dataclasses.replace(cfg, tier_target="none"), tmp_path / "none")
    assert _after_start(res, rep)["tiny_s"] == 0
    assert rep["tier_target"] == {"mode": "none", "every": 1, "trials": {}}


def test_aimed_trials_follow_the_draw_index_across_a_resume(tiny_cfg, tmp_path):
    proxy = dataclasses.replace(tiny_cfg.proxy, proxies=["flops"])
    cfg = dataclasses.replace(tiny_cfg, n_trials=10, proxy=proxy, tier_target_every=2)
    run_search(cfg, tmp_path / "resumed")
    run_search(dataclasses.replace(cfg, n_trials=16), tmp_path / "resumed")
    run_search(dataclasses.replace(cfg, n_trials=16), tmp_path / "straight")

    def trials(folder):
        study = optuna.load_study(study_name=cfg.study_name, storage=f"sqlite:///{folder / 'study.db'}")
        return study.get_trials()

    resumed, straight = trials(tmp_path / "resumed"), trials(tmp_path / "straight")
    budgets = {"tiny_s": 1.0, "tiny_m": 2.0, "tiny_l": 3.0}  # only the order of the budgets matters
    for t in resumed:
        if not t.system_attrs.get("fixed_params"):
            assert t.user_attrs.get("tier_target") == target_tier(draw_index(resumed, t), budgets, 2), t.number
    assert any("tier_target" in t.user_attrs for t in resumed if t.number >= 10)
    key = [(t.number, t.user_attrs.get("tier_target"), t.user_attrs.get("digest")) for t in resumed]
    assert key == [(t.number, t.user_attrs.get("tier_target"), t.user_attrs.get("digest")) for t in straight]
