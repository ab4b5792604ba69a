"""experiments/proxy_correlation: the fixed sample, a ground-truth unit trained and written, proxy units, the
rank statistics against hand-computed values, and the report over partial results."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from nas.data.synthetic import SyntheticSpec, ensure_synthetic
from nas.space import load_space
from tests.zoo_helpers import tiny_arch

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "experiments/proxy_correlation"


def _load(name: str):
    sys.path.insert(0, str(HERE))
    spec = importlib.util.spec_from_file_location(f"pc_{name}", HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def pc(tmp_path, monkeypatch):
    """The experiment with its folders under tmp_path, a tiny architecture and a tiny recipe."""
    run = _load("run")
    data = ensure_synthetic(tmp_path / "datasets", SyntheticSpec(seed=3, n_train=4, n_val=3)) / "synthetic.yaml"
    for attr, sub in (("ARCHS", "archs"), ("RESULTS", "results"), ("RUNS", "runs"), ("HERE", "")):
        monkeypatch.setattr(run, attr, tmp_path / sub)
    (tmp_path / "archs").mkdir()
    (tmp_path / "archs" / "tiny.yaml").write_text(tiny_arch(80, "tiny").to_yaml())
    recipe = {**run.RECIPE, "data": str(data), "epochs": 2, "imgsz": 64, "batch": 2, "val_period": 1}
    monkeypatch.setattr(run, "RECIPE", recipe)
    monkeypatch.setattr(run, "PARENT", "tiny")
    return run


def test_the_committed_sample_is_fixed_stratified_and_in_the_space():
    doc = json.loads((HERE / "sample.json").read_text())
    run = _load("run")
    units = doc["units"]
    assert len(units) >= 27 and {"yolo_nas_s", "yolo_nas_m", "yolo_nas_l"} <= {u["name"] for u in units}
    space = load_space("yolo_nas")
    for u in units:
        arch = run.space_arch(u["name"])
        assert arch.digest() == u["digest"] and space.contains(arch), u["name"]
    sampled = [u for u in units if u["bin"] is not None]
    assert len(sampled) >= 24 and len({u["bin"] for u in sampled}) == run.N_BINS
    for b in range(run.N_BINS):  # both block types in every latency bin
        assert {u["blocks"] for u in sampled if u["bin"] == b} == {"qarepvgg", "repvgg"}
    assert len(doc["second_seed"]) >= 6
    order = run.gt_units(doc)
    assert order[:2] == [("yolo_nas_s", 0), ("yolo_nas_s_repvgg", 0)]
    picks = run.search_units()  # the default search's S/M/L picks (search.json), each an architecture of the space
    if run.SEARCH_UNITS["yolo_nas_s"] in picks:  # the cheapest truth test right after the released S
        assert order[2] == (run.SEARCH_UNITS["yolo_nas_s"], 0)
    assert all(space.contains(run.space_arch(n)) for n in picks)
    assert len(order) == len(units) + len(doc["second_seed"]) + len(run.EXTRA_ARCHS) + len(picks)
    assert len(set(order)) == len(order)
    assert run.sample(argparse.Namespace(force=False)) == 0  # refuses to redraw: the file is unchanged
    assert json.loads((HERE / "sample.json").read_text()) == doc


def test_a_ground_truth_unit_trains_and_is_not_trained_again(pc, tmp_path, monkeypatch):
    doc = {"units": [{"name": "tiny", "bin": 0}], "second_seed": []}
    monkeypatch.setattr(pc, "gt_units", lambda d: [("tiny", 0)])
    assert pc.todo_units(doc) == [("tiny", 0)]
    assert pc.train_one(argparse.Namespace(name="tiny", seed=0, device="cpu", workers=0, verbose=False)) == 0
    res = json.loads(pc.gt_path("tiny", 0).read_text())
    assert [r["epoch"] for r in res["history"]] == [1, 2] and res["mAP50_95"] == res["history"][-1]["mAP50_95"]
    assert res["recipe"]["imgsz"] == 64 and res["train_s"] > 0 and "per_class" not in res["history"][0]
    assert pc.todo_units(doc) == [], "a finished unit is not trained again"
    assert res["cpu_s_this_process"] > 0 and res["resumed"] is False and res["epochs_this_process"] == 2
    assert "family" in res["machine"] or "?" in res["machine"]  # the device fingerprint in words
    assert pc._parent_checkpoint().is_file() and pc._parent_trained()  # the inherit proxies' parent
    # a training proxy of the same architecture, and inheritance from the trained parent
    proxies = {k: (kind, {**f, "imgsz": 64}) for k, (kind, f) in pc.TRAINED_PROXIES.items()}
    monkeypatch.setattr(pc, "TRAINED_PROXIES", proxies)
    for proxy in ("short_train_e1", "inherit_e0"):
        assert pc.proxy_one(argparse.Namespace(proxy=proxy, name="tiny", device="cpu")) == 0
        out = json.loads(pc.proxy_path(proxy, "tiny").read_text())
        assert 0 <= out["mAP50_95"] <= 100 and out["seconds"] > 0
    assert out["inherited"] == pytest.approx(1.0), "the parent is the same architecture: all inherited"
    pc.gt_path("tiny", 0).unlink()  # a parent still training has a last.pt but no result: not a parent yet
    assert pc._parent_checkpoint().is_file() and not pc._parent_trained()


def test_the_pool_runs_every_unit_and_reports_failures(pc):
    ok = [sys.executable, "-c", "pass"]
    bad = [sys.executable, "-c", "raise SystemExit(3)"]
    assert pc._pool_run([ok, ok, ok], jobs=2, threads=1) == 0
    assert pc._pool_run([ok, bad], jobs=2, threads=1) == 1


def test_rank_statistics_match_hand_computed_values():
    rep = _load("report")
    # y = x except one swapped pair among 5: Spearman 1 - 6*2/(5*24) = 0.9, Kendall (9 - 1)/10 = 0.8
    r = rep.rank_stats([1, 2, 3, 4, 5], [1, 2, 4, 3, 5], boot=200)
    assert r["spearman"] == pytest.approx(0.9) and r["kendall"] == pytest.approx(0.8) and r["n"] == 5
    lo, hi = r["spearman_ci"]
    assert -1 <= lo <= 0.9 <= hi <= 1
    assert rep.rank_stats([1, 2], [2, 1])["spearman"] is None
    assert rep.top_overlap([5, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5], k=5) == 4  # reversed: 4 of 5 shared of 6
    assert rep.top_overlap([1, 2], [1, 2], k=5) is None


def test_a_size_only_proxy_scores_high_overall_and_zero_at_equal_latency():
    rep = _load("report")
    # three latency budgets, two candidates each; within each budget the slower one is worse
    z = [100, 110, 200, 220, 400, 440]
    y = [2, 1, 4, 3, 6, 5]
    assert rep.rank_stats(z, y, boot=10)["spearman"] == pytest.approx(29 / 35)  # 1 - 6*3/(6*35)
    size = rep.same_latency_pairs(z, y, z)
    assert size == {"pairs": 3, "accuracy": 0.0, "ratio": 1.25}  # (100, 200) etc. are not one budget's pairs
    assert rep.same_latency_pairs(y, y, z)["accuracy"] == 1.0
    assert rep.same_latency_pairs([1, 1, 2, 2, 3, 3], y, z)["accuracy"] == 0.5  # ties count half
    assert rep.partial_spearman(z, y, z, boot=50)["value"] is None  # nothing left of z once z is held fixed
    good = rep.partial_spearman(y, y, z, boot=50)
    assert good["value"] == pytest.approx(1.0) and good["n"] == 6
    bad = rep.partial_spearman([-v for v in y], y, z, boot=50)["value"]
    assert bad == pytest.approx(-1.0)
    # under each budget the oracle takes the best mAP there; the size proxy takes the slowest, one worse (or best)
    assert rep.budget_regret(y, y, z) == {"budgets": 5, "mean": 0.0, "max": 0.0, "best_picked": 1.0}
    size_regret = rep.budget_regret(z, y, z)  # budgets 110..440: picks 110 (1 vs 2), 200 (4 best), 220 (3 vs 4), ...
    assert size_regret["budgets"] == 5 and size_regret["mean"] == pytest.approx(3 / 5)
    assert size_regret["max"] == 1.0 and size_regret["best_picked"] == pytest.approx(2 / 5)
    # two stages: the size proxy keeps the 2 slowest under each budget, the truth picks among them
    assert rep.two_stage_regret(z, y, y, z, k=2)["mean"] == pytest.approx(rep.budget_regret(z, y, z)["mean"] - 3 / 5)
    assert rep.two_stage_regret(z, z, y, z, k=1) == {**size_regret, "k": 1}  # k=1: the pre-filter alone


def test_the_default_changes_only_on_a_significantly_lower_regret_within_the_search_budget():
    rep = _load("report")
    z = [100 + 10 * i for i in range(12)]  # one budget per architecture
    y = [3, 1, 4, 1.5, 5, 9, 2, 6, 5.5, 3.5, 8, 7]
    anti = [-v for v in y]
    same = rep.paired_difference(y, y, y, z, boot=200)
    assert same["rho"] == 0 and same["regret"] == 0 and same["regret_ci"] == [0, 0] and same["a_lower_regret"] == 0
    d = rep.paired_difference(y, anti, y, z, boot=200)
    assert d["rho"] == pytest.approx(2.0) and d["regret"] < 0 and d["regret_ci"][1] < 0 and d["a_lower_regret"] > 0.9
    # a two-stage pick (the 3 worst survive, the truth picks among them) against the pre-filter alone
    two = rep.paired_difference(anti, anti, y, z, boot=200, a_costly=y)
    gain = rep.two_stage_regret(anti, y, y, z)["mean"] - rep.budget_regret(anti, y, z)["mean"]
    assert two["rho"] is None and gain < 0 and two["regret"] == pytest.approx(gain)

    # every endpoint at once, paired: a signal against itself differs by 0; the truth against its reverse wins all
    e = rep.paired_endpoints(y, y, y, z, boot=100)
    assert all(e[k]["diff"] == 0 and e[k]["ci"] == [0, 0] and e[k]["a_better"] == 0 for k, *_ in rep.ENDPOINTS)
    e = rep.paired_endpoints(y, anti, y, z, boot=100)
    assert e["spearman"]["diff"] == pytest.approx(2.0) and e["same_latency_pairs_right"]["a"] == 1.0
    assert e["budget_regret"]["diff"] < 0 and all(e[k]["a_better"] > 0.9 for k, *_ in rep.ENDPOINTS)
    # a size-only signal (a monotone function of latency) scores 0 given latency, not "undefined"
    size = rep.paired_endpoints(y, z, y, z, boot=100)["partial_spearman_given_latency"]
    assert size["b"] == 0.0 and size["a"] == pytest.approx(1.0)

    def row(label, x, cost):
        return {"proxy": label, "cost_s": cost, "budget_regret": rep.budget_regret(x, y, z)}

    incumbent = rep.INCUMBENT
    table = [row(incumbent, anti, 2.0), row("synflow", y, 0.7), row("params", y, 0.0), row("inherit_bn (x)", y, 20)]
    pairs = {label: rep.paired_difference(y, anti, y, z, boot=200) for label in ("synflow", "params", "inherit_bn (x)")}
    c = rep.choose_default(table, pairs)
    # PLAN.md's symmetric rule: the lowest point regret; synflow and params tie at 0, the cheaper one wins
    assert c["chosen"] == "params" and c["search_option"] == rep.SEARCH_OPTIONS["params"]
    assert "inherit_bn (x)" not in c["eligible"], "20 CPU s a candidate does not fit a 5-minute search"
    assert c["vs_incumbent"] == pairs["params"]
    # the incumbent keeps the default only by its own regret, not by being the incumbent
    flipped = [row(incumbent, y, 2.0), row("synflow", anti, 0.7)]
    assert rep.choose_default(flipped, {})["chosen"] == incumbent
    # a tie (equal regret) goes to the cheaper signal, whichever is the incumbent
    assert rep.choose_default([row(incumbent, y, 2.0), row("synflow", y, 0.7)], {})["chosen"] == "synflow"
    assert rep.choose_default([row(incumbent, y, 0.5), row("synflow", y, 0.7)], {})["chosen"] == incumbent
    # the supernet is within the search's time when one is given (PLAN.md), whatever it costs a candidate; when it
    # wins, the default without a supernet path is the rule's choice among the others
    half = [v if i % 2 else -v for i, v in enumerate(y)]
    c = rep.choose_default([row(incumbent, half, 2.0), row("synflow", anti, 0.7), row(rep.SUPERNET, y, 20.0)], {})
    assert c["chosen"] == rep.SUPERNET and c["with_supernet_option"] == rep.SEARCH_OPTIONS[rep.SUPERNET]
    assert c["default_without_supernet"] == incumbent and c["search_option"] == rep.SEARCH_OPTIONS[incumbent]
    c = rep.choose_default([row(incumbent, y, 2.0), row(rep.SUPERNET, anti, 20.0)], {})
    assert c["chosen"] == incumbent and c["with_supernet_option"] is None


def test_report_over_partial_results(tmp_path):
    rep = _load("report")
    gt, zc = tmp_path / "gt", tmp_path / "proxies" / "zero_cost"
    gt.mkdir(parents=True)
    zc.mkdir(parents=True)
    recipe = {"epochs": 20, "imgsz": 160}
    truth = {"a": 10.0, "b": 20.0, "c": 30.0, "d": 40.0}
    for n, m in truth.items():
        hist = [{"epoch": 15, "mAP50_95": m - 1}, {"epoch": 20, "mAP50_95": m}]
        (gt / f"{n}_s0.json").write_text(
            json.dumps({"name": n, "seed": 0, "mAP50_95": m, "train_s": 100, "recipe": recipe, "history": hist})
        )
        score = {"name": n, "vote": m, "vote_s": 2.0, "params": -m, "params_s": 0.0}
        (zc / f"{n}.json").write_text(json.dumps(score))
    (gt / "a_s1.json").write_text(json.dumps({"name": "a", "seed": 1, "mAP50_95": 12.0, "train_s": 100}))
    (gt / "b_s1.json").write_text(json.dumps({"name": "b", "seed": 1, "mAP50_95": 18.0, "train_s": 100}))
    res = rep.build(tmp_path, boot=100)
    assert res["n_architectures"] == 4 and res["n_trainings"] == 6 and res["train_s_total"] == 600
    assert res["ground_truth"]["a"]["mAP50_95"] == pytest.approx(11.0)  # the mean over seeds
    by = {p["proxy"]: p for p in res["proxies"]}
    assert by["zero-cost vote"]["spearman"] == pytest.approx(1.0)
    assert by["params"]["spearman"] == pytest.approx(-1.0) and by["params"]["cost_s"] == 0.0
    assert res["seed_ceiling"]["n"] == 2 and res["seed_ceiling"]["seed_abs_diff_mean"] == pytest.approx(2.0)
    assert res["settled"]["spearman"] == pytest.approx(1.0)
    md = rep.markdown(res)
    assert "| zero-cost vote | 4 | 1.00" in md and "| a | 11.0 (10.0, 12.0) | 200 |" in md


def test_the_search_picks_join_the_queue_and_the_truth_test(pc, tmp_path):
    tiers = {
        "yolo_nas_s": {"unit": "yolo_nas_s", "equals_released": True},  # the released S: trained as itself
        "yolo_nas_m": {"unit": "search_m", "equals_released": False},
    }
    for t in tiers.values():
        t.update(budget_ms=100.0, selected={"latency_ms": 90.0, "proxy_score": 1.0}, released={"latency_ms": 95.0})
    (tmp_path / "search.json").write_text(json.dumps({"tiers": tiers}))
    assert pc.search_units() == ["search_m"]
    doc = {"units": [{"name": "yolo_nas_s", "bin": None}, {"name": "pc00", "bin": 0}], "second_seed": ["pc00"]}
    order = pc.gt_units(doc)
    assert ("search_m", 0) in order and order.index(("search_m", 0)) < order.index(("pc00", 1))
    assert pc.gt_path("search_m", 0).parent.name == "search" and pc.gt_path("pc00", 0).parent.name == "gt"
    rep = _load("report")
    res = tmp_path / "results"
    for folder, name, m in (("gt", "yolo_nas_s", 7.5), ("gt", "yolo_nas_m", 9.0), ("search", "search_m", 9.5)):
        (res / folder).mkdir(parents=True, exist_ok=True)
        (res / folder / f"{name}_s0.json").write_text(json.dumps({"name": name, "seed": 0, "mAP50_95": m}))
    out = {r["tier"]: r for r in rep.build(res, boot=50)["truth_test"]}
    assert out["yolo_nas_s"]["pick_mAP50_95"] == out["yolo_nas_s"]["released_mAP50_95"] == 7.5
    assert out["yolo_nas_m"]["pick_mAP50_95"] == 9.5 and out["yolo_nas_m"]["released_mAP50_95"] == 9.0
    assert "| yolo_nas_m | search_m | 90.00 | 95.00 |" in rep.markdown(rep.build(res, boot=50))


def test_hours_leaves_out_the_units_that_cannot_finish_and_fits_the_cost_on_this_machine(tmp_path):
    run = _load("run")
    cost = {("big", 0): 5000.0, ("a", 0): 1000.0, ("b", 0): 1500.0, ("c", 0): 2500.0, ("d", 0): 600.0}
    kept, left = run.fit_units(list(cost), cost, jobs=2, budget_s=3000.0)
    # slot loads: a 1000 | b 1500 -> c onto slot a: 3500 > 3000, out; d onto slot a: 1600
    assert kept == [("a", 0), ("b", 0), ("d", 0)] and left == [("big", 0), ("c", 0)]
    assert run.fit_units(list(cost), cost, jobs=1, budget_s=10.0) == ([], list(cost))

    from nas.latency import arch_cost

    g = {n: arch_cost(run.train_arch(n), 640).gflops for n in ("pc00", "pc04", "yolo_nas_s", "yolo_nas_l")}
    (tmp_path / "gt").mkdir()
    for n, machine, scale in (("pc00", "here", 1), ("pc04", "here", 1), ("yolo_nas_s", "here", 1),
                              ("yolo_nas_l", "there", 3)):  # fmt: skip
        rec = {"name": n, "machine": machine, "cpu_s_this_process": scale * (100 + 20 * g[n]), "resumed": False}
        (tmp_path / "gt" / f"{n}_s0.json").write_text(json.dumps(rec))
    half = run.RECIPE["epochs"] // 2  # a resumed training: its CPU seconds cover half the epochs
    g["pc08"] = arch_cost(run.train_arch("pc08"), 640).gflops
    rec = {"name": "pc08", "machine": "here", "cpu_s_this_process": (100 + 20 * g["pc08"]) / 2}
    (tmp_path / "gt" / "pc08_s0.json").write_text(json.dumps({**rec, "resumed": True, "epochs_this_process": half}))
    (tmp_path / "gt" / "pc12_s0.json").write_text(json.dumps({**rec, "name": "pc12", "resumed": True}))  # unknown
    a, b, where = run.cost_model("here", tmp_path)
    assert (a, b) == (pytest.approx(100), pytest.approx(20)) and where.startswith("this machine, 4")
    assert run.cost_model("elsewhere", tmp_path)[2].startswith("other machines")


def test_the_docs_table_is_the_committed_results():
    rep = _load("report")
    res = json.loads((HERE / "results.json").read_text())
    text = rep.DOCS.read_text()
    assert rep.with_docs_table(text, res) == text, "docs/search.md is stale: run `run.py report`"
    with pytest.raises(SystemExit, match="markers"):
        rep.with_docs_table("no markers here", res)


def test_the_search_default_proxy_is_the_one_the_committed_evidence_chose():
    import yaml

    from nas.search.config import CONF_DIR, ProxyConfig, group_option

    choice = json.loads((HERE / "results.json").read_text())["default_choice"]
    conf = yaml.safe_load((CONF_DIR / "config.yaml").read_text())
    default = next(d["proxy"] for d in conf["defaults"] if isinstance(d, dict) and "proxy" in d)
    group, *overrides = choice["search_option"].split()
    assert group == f"proxy={default}", f"conf/config.yaml's proxy default vs the evidence's {choice['chosen']}"
    chosen = group_option("proxy", default, ProxyConfig)
    for kv in overrides:  # e.g. proxy.proxies=[synflow]
        key, _, value = kv.partition("=")
        assert key == "proxy.proxies" and chosen.proxies == value.strip("[]").split(","), kv


def test_the_learned_combination_predicts_each_architecture_out_of_sample():
    rep = _load("report")
    names = [f"a{i}" for i in range(8)]
    truth = {n: {"mAP50_95": float(i)} for i, n in enumerate(names)}
    scores = {
        k: {n: (float(i + 1) if k != "snip" else 1.0, 0.5) for i, n in enumerate(names)} for k in rep.RIDGE_INPUTS
    }
    scores["snip"]["a3"] = (2.0, 0.5)  # not constant
    out = rep.ridge_loo(scores, truth)
    assert set(out) == set(names) and all(cost == 3.5 for _, cost in out.values())  # seven inputs' seconds
    assert rep.rank_stats([out[n][0] for n in names], list(range(8)), boot=10)["spearman"] > 0.9
    # out of sample: an outlier's own mAP does not pull its prediction onto itself
    truth["a4"]["mAP50_95"] = 100.0
    assert rep.ridge_loo(scores, truth)["a4"][0] < 50
    assert rep.ridge_loo({k: {} for k in rep.RIDGE_INPUTS}, truth) == {}


def test_the_two_stage_default_is_the_ranker_with_the_lowest_committed_regret():
    from nas.search.config import RerankConfig

    choice = json.loads((HERE / "results.json").read_text())["rerank_choice"]
    default = RerankConfig()
    for key, value in choice["settings"].items():
        assert getattr(default, key) == value, f"RerankConfig.{key} vs the evidence's {choice['ranker']}"
