"""The search end to end on the tiny space: outputs, determinism, resume, stale trials, strategies, API."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

import nas.search
from nas.errors import ConfigError
from nas.search import StorageConfig, StrategyConfig, run_search
from nas.search.strategies import STRATEGIES
from nas.search.study import Session
from nas.space import ArchConfig, load_arch


def _values(result):
    return [(r.number, r.arch.digest(), r.values["proxy_score"], r.values["flops_g"]) for r in result.trials]


def test_outputs_of_a_tiny_search(tiny_cfg, tmp_path):
    res = run_search(tiny_cfg, tmp_path)
    for name in ("trials.csv", "pareto.csv", "pareto.png", "report.md", "report.json", "study.db"):
        assert (tmp_path / name).is_file(), name
    assert not list(tmp_path.glob(".study.db.lock*"))  # the study's locks leave no files (it left one per lock name)
    rows = list(csv.DictReader((tmp_path / "trials.csv").read_text().splitlines()))
    assert len(rows) == tiny_cfg.n_trials == len(res.trials)
    # the released references are the first trials, under their names
    assert [r["reference"] for r in rows[:3]] == ["tiny_s", "tiny_m", "tiny_l"]
    assert [r["name"] for r in rows[:3]] == ["tiny_s", "tiny_m", "tiny_l"]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["trials"]["complete"] == tiny_cfg.n_trials and report["pareto_size"] == len(res.pareto) > 0
    assert report["proxy_label"].endswith("64px; batch: 2 seeded noise images)")  # the data the proxy used, named
    assert "batch: 2 seeded noise images" in (tmp_path / "report.md").read_text()
    assert set(report["tiers"]) == {"tiny_s", "tiny_m", "tiny_l"}
    for tier, t in report["tiers"].items():
        # default budget = the reference's own cost, so every tier has a selection at least as good
        assert t["budget"] == pytest.approx(t["reference"]["values"]["flops_g"])
        sel = t["selected"]
        assert (
            sel["values"]["flops_g"] <= t["budget"]
            and sel["values"]["proxy_score"] >= t["reference"]["values"]["proxy_score"]
        )
        emitted = load_arch(tmp_path / "selected" / f"{tier}.yaml")
        assert emitted.digest() == sel["digest"] == res.selected[tier].digest()
        assert emitted.name == sel["name"]
        assert sel["digest"] in {r.arch.digest() for r in res.pareto}
    assert "| tiny_s |" in (tmp_path / "report.md").read_text()


def test_every_trial_stores_its_architecture(tiny_cfg, tmp_path):
    run_search(tiny_cfg, tmp_path)
    study = optuna.load_study(study_name=tiny_cfg.study_name, storage=f"sqlite:///{tmp_path / 'study.db'}")
    space = Session(tiny_cfg, tmp_path).space
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        arch = ArchConfig.from_dict(t.user_attrs["arch"])
        assert arch.digest() == t.user_attrs["digest"] == space.from_params(t.params).digest()
        assert t.values[1] == pytest.approx(t.user_attrs["metrics"]["flops_g"])


def test_same_seed_same_search(tiny_cfg, tmp_path):
    cfg = dataclasses.replace(tiny_cfg, storage=StorageConfig(kind="memory"))
    a, b = run_search(cfg, tmp_path / "a"), run_search(cfg, tmp_path / "b")
    assert _values(a) == _values(b)
    c = run_search(dataclasses.replace(cfg, seed=1), tmp_path / "c")
    assert [d for _, d, *_ in _values(c)] != [d for _, d, *_ in _values(a)]


@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_resume_continues_without_re_evaluating(tiny_cfg, tmp_path, storage, caplog):
    cfg = dataclasses.replace(tiny_cfg, storage=StorageConfig(kind=storage), n_trials=4)
    first = run_search(cfg, tmp_path)
    second = run_search(dataclasses.replace(cfg, n_trials=7), tmp_path)
    assert len(second.trials) == 7 and [t.number for t in second.trials] == list(range(7))
    assert _values(second)[:4] == _values(first)
    with caplog.at_level(logging.INFO, logger="nas.search"):
        again = run_search(dataclasses.replace(cfg, n_trials=7), tmp_path)  # nothing left to do
    assert _values(again) == _values(second)
    # the user's own earlier run, not a stranger: the message says so (it said "written by another worker")
    assert "written by an earlier run of this command or by another worker" in caplog.text


def test_resume_with_other_objective_settings_is_refused(tiny_cfg, tmp_path):
    run_search(dataclasses.replace(tiny_cfg, n_trials=3), tmp_path)
    changed = dataclasses.replace(tiny_cfg, proxy=dataclasses.replace(tiny_cfg.proxy, imgsz=96))
    with pytest.raises(ConfigError, match=r"imgsz.*name=<new name>"):
        run_search(changed, tmp_path)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the test asks a trial by hand, as a dying worker did
def test_a_killed_workers_running_trial_is_failed_and_rerun(tiny_cfg, tmp_path):
    cfg = dataclasses.replace(tiny_cfg, n_trials=4)
    run_search(cfg, tmp_path)
    session = Session(cfg, tmp_path)
    # a trial left RUNNING by a process that no longer exists (as after kill -9)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trial = session.study.ask()
    arch = session.sample(trial)
    trial.set_user_attr("worker", {"host": __import__("socket").gethostname(), "pid": dead.pid, "start": None})
    res = run_search(dataclasses.replace(cfg, n_trials=6), tmp_path)
    states = [t.state for t in session.study.get_trials()]
    assert TrialState.RUNNING not in states
    stale = session.study.trials[trial.number]
    assert stale.state == TrialState.FAIL and stale.user_attrs["stale"]
    retried = [t for t in session.study.trials if t.user_attrs.get("retry_of") == trial.number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert ArchConfig.from_dict(retried[0].user_attrs["arch"]).digest() == arch.digest()
    assert len(res.trials) == 6


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_runs(tiny_cfg, tmp_path, strategy):
    cfg = dataclasses.replace(
        tiny_cfg, strategy=StrategyConfig(name=strategy, population_size=4, n_startup_trials=3), n_trials=5
    )
    res = run_search(cfg, tmp_path)
    assert len(res.trials) == 5 and res.report["strategy"] == strategy


def test_budget_constraint_marks_infeasible_trials(tiny_cfg, tmp_path):
    cfg = dataclasses.replace(
        tiny_cfg, storage=StorageConfig(kind="memory"), n_trials=6, tiers={"tiny_s": None}, max_cost=0.6
    )
    res = run_search(cfg, tmp_path)
    assert any(not r.feasible for r in res.trials) and all(r.values["flops_g"] <= 0.6 for r in res.trials if r.feasible)
    assert all(r.feasible for r in res.pareto)
    assert set(res.selected) == {"tiny_s"}


def test_unknown_names_fail_with_the_choices(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="available strategies"):
        run_search(dataclasses.replace(tiny_cfg, strategy=StrategyConfig(name="cmaes")), tmp_path)
    with pytest.raises(ConfigError, match="available objectives"):
        run_search(dataclasses.replace(tiny_cfg, objectives=["proxy_score", "latency"]), tmp_path)
    with pytest.raises(ConfigError, match=r"set tiers\.huge="):
        run_search(dataclasses.replace(tiny_cfg, tiers={"huge": None}), tmp_path)
    with pytest.raises(ConfigError, match="available storages"):
        run_search(dataclasses.replace(tiny_cfg, storage=StorageConfig(kind="mysql")), tmp_path)


def test_python_api(tiny_space, proxy_cache, tmp_path):
    proxy = nas.search.ProxyConfig(
        imgsz=64, batch_size=2, batch_source="random", n_reference=3, cache_dir=str(proxy_cache)
    )
    res = nas.search.run(
        tiny_space,
        proxy=proxy,
        strategy="random",
        n_trials=4,
        storage="memory",
        out_dir=tmp_path,
        progress=False,
        threads=1,
    )
    assert isinstance(res, nas.search.SearchResult) and len(res.trials) == 4
    assert res.paths["report_json"].is_file() and set(res.selected) == {"tiny_s", "tiny_m", "tiny_l"}
    with pytest.raises(ConfigError, match="unknown field"):
        nas.search.run(tiny_space, n_trials=1, out_dir=tmp_path, storage="memory", n_trails=3)


def test_postgres_without_a_url_says_where_to_put_it(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.delenv("NAS_STORAGE_URL", raising=False)
    with pytest.raises(ConfigError, match="NAS_STORAGE_URL"):
        run_search(dataclasses.replace(tiny_cfg, storage=StorageConfig(kind="postgres")), tmp_path)
    with pytest.raises(ConfigError, match="expects a postgresql:// URL"):
        run_search(dataclasses.replace(tiny_cfg, storage=StorageConfig(kind="postgres", url="mysql://x@y/z")), tmp_path)


def test_latency_objective_uses_the_hardware_predictor(tiny_cfg, tiny_space):
    from nas.latency import load_predictor
    from nas.search.objectives import Evaluator

    cfg = dataclasses.replace(tiny_cfg, hardware="cpu_ort", objectives=["proxy_score", "latency_ms"])
    ev = Evaluator(cfg, tiny_space)
    assert ev.cost == "latency_ms" and ev.cost_imgsz == 640 and ev.fingerprint()["hardware"] == "cpu_ort"
    s = load_arch("yolo_nas_s")
    pred = load_predictor("cpu_ort")  # the shipped table: a missing one fails here
    assert ev.latency_ms(s) == pytest.approx(pred.predict(s))


def test_latency_objective_needs_a_hardware(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="add hardware=cpu_ort"):
        run_search(dataclasses.replace(tiny_cfg, objectives=["proxy_score", "latency_ms"]), tmp_path)


def test_run_takes_a_proxy_group_option_by_name_as_the_cli_does(tiny_cfg, tiny_space, tmp_path, monkeypatch):
    from nas.search import runner
    from nas.search.config import ProxyConfig, group_option
    from nas.search.objectives import Evaluator

    seen = []
    monkeypatch.setattr(runner, "run_search", lambda cfg, out_dir, space=None: seen.append(cfg))
    nas.search.run(tiny_space, proxy="flops", strategy="tpe", storage="memory", out_dir=tmp_path)
    (cfg,) = seen
    assert (cfg.proxy.name, cfg.proxy.proxies, cfg.proxy.combine) == ("flops", ["flops"], "zscore")
    assert cfg.strategy == group_option("strategy", "tpe", StrategyConfig)
    ev = Evaluator(dataclasses.replace(tiny_cfg, proxy=dataclasses.replace(tiny_cfg.proxy, name="flops")), tiny_space)
    assert ev.fingerprint()["proxy"] == Evaluator(tiny_cfg, tiny_space).fingerprint()["proxy"]  # a label only
    with pytest.raises(
        ConfigError,
        match=r"unknown proxy .flopz.; available: flops, inherit, params, short_train, supernet, vote, zero_cost",
    ):
        nas.search.run(tiny_space, proxy="flopz", storage="memory", out_dir=tmp_path)
    vote = group_option("proxy", "vote", ProxyConfig)
    assert vote.combine == "rank" and vote.proxies == ["synflow", "naswot", "snip", "zen"]  # the four-proxy vote


def test_int8_drop_constraint_rules_out_what_the_drop_table_says(tiny_cfg, tmp_path):
    # a drop table that says RepVGG quantizes badly: a RepVGG last stage puts the estimate over the limit
    table = tmp_path / "drops.json"
    table.write_text(json.dumps({"drop": {"qarepvgg": 0.1, "repvgg": 3.0}}))
    cfg = dataclasses.replace(tiny_cfg, n_trials=8, max_int8_drop=0.3, int8_drop_table=str(table))
    res = run_search(cfg, tmp_path / "run")
    blocks = {r.number: r.arch.backbone.stages[3].block for r in res.trials}
    assert set(blocks.values()) == {"qarepvgg", "repvgg"}  # the search met both
    for r in res.trials:
        assert r.values["int8_drop"] > 0.3 if blocks[r.number] == "repvgg" else r.values["int8_drop"] < 0.3
        assert not r.feasible if blocks[r.number] == "repvgg" else True
    assert all(a.backbone.stages[3].block == "qarepvgg" for a in res.selected.values())
    # the sampler sees it as an Optuna constraint
    study = optuna.load_study(study_name=cfg.study_name, storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        over = t.system_attrs["constraints:int8_drop_over"]
        assert (over > 0) == (t.user_attrs["arch"]["backbone"]["stages"][3]["block"] == "repvgg")
    with pytest.raises(ConfigError, match=r"missing\.json"):
        run_search(dataclasses.replace(cfg, int8_drop_table=str(tmp_path / "missing.json")), tmp_path / "bad")
