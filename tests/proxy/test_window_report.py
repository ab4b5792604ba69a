"""experiments/proxy_correlation's reports recomputed from the committed per-unit files (a report that could lie
fails here), and the window report's statistics (the ceiling, the two-level truth-test difference, its decision
rule) against cases with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.proxy.test_proxy_correlation import HERE, _load


def _roundtrip(obj):
    return json.loads(json.dumps(obj))


def _first_difference(a, b, path="") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}.{k}: only in {'committed' if k in a else 'recomputed'}"
            d = _first_difference(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = _first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path}: committed {a!r}, recomputed {b!r}"


@pytest.mark.slow
def test_results_json_is_recomputed_from_the_committed_unit_files():
    rep = _load("report")
    committed = json.loads((HERE / "results.json").read_text())
    recomputed = _roundtrip(rep.build(rep.RESULTS, 2000))
    assert _first_difference(committed, recomputed) is None, (
        f"results.json differs from its raw files: {_first_difference(committed, recomputed)};"
        " re-run `python experiments/proxy_correlation/run.py report`"
    )
    assert (HERE / "results.md").read_text() == rep.markdown(committed)


@pytest.mark.slow
def test_window_results_are_recomputed_from_the_committed_unit_files():
    wr = _load("window_report")
    path = HERE / "window_results.json"
    assert path.is_file(), "window_results.json is committed with the window's first results"
    committed = json.loads(path.read_text())
    recomputed = _roundtrip(wr.build(wr.RESULTS, 2000))
    assert _first_difference(committed, recomputed) is None, (
        f"window_results.json differs from its raw files: {_first_difference(committed, recomputed)};"
        " re-run `python experiments/proxy_correlation/window_report.py`"
    )
    assert (HERE / "window_results.md").read_text() == wr.markdown(committed)
    assert json.loads(wr.EVIDENCE.read_text()) == _roundtrip(wr.evidence(committed)), "nas/search/evidence.json"


def test_every_window_result_names_a_unit_of_the_fixed_set_with_its_recipe_and_machine():
    wr = _load("window_report")
    window = json.loads((HERE / "window.json").read_text())
    names = set(wr.window_names(window)) | {"yolo_nas_m", "yolo_nas_l"}
    for per_seed in window.get("search", {}).values():
        names |= {t["unit"] for rec in per_seed.values() for t in rec["tiers"].values()}
    run = _load("run")
    for p in sorted((HERE / "results" / "window").glob("*.json")):
        r = json.loads(p.read_text())
        assert p.stem == f"{r['name']}_s{r['seed']}" and r["name"] in names, p
        assert r["recipe"] == run.RECIPE and r["machine"] and r["cpu_s_this_process"] > 0, p
        assert r["history"] and r["history"][-1]["mAP50_95"] == r["mAP50_95"], p


def test_the_ceiling_of_a_noiseless_ground_truth_is_one_and_of_pure_noise_near_zero():
    wr = _load("window_report")
    names = [f"a{i}" for i in range(12)]
    exact = {n: {s: float(i) for s in (0, 1, 2)} for i, n in enumerate(names)}
    c = wr.ceiling(exact, names, boot=50)
    assert c["pairwise"] == pytest.approx(1.0) and c["reliability"] == pytest.approx(1.0) and c["sd_within"] == 0
    rng = np.random.default_rng(1)
    noise = {n: {s: float(rng.normal()) for s in (0, 1, 2)} for n in names}
    c = wr.ceiling(noise, names, boot=200)
    assert abs(c["pairwise"]) < 0.5 and c["pairwise_ci"][0] < 0 < c["pairwise_ci"][1]
    # Spearman-Brown: the reliability of a k-seed mean from the mean pairwise rho
    assert c["reliability"] == pytest.approx(3 * c["pairwise"] / (1 + 2 * c["pairwise"]))
    assert wr.ceiling(exact, names[:3], boot=10)["pairwise"] is None  # too few architectures with 3 seeds


def test_the_truth_test_decides_only_when_the_interval_excludes_zero():
    wr = _load("window_report")
    ref = {0: 10.0, 1: 10.2, 2: 9.8}
    clear = {"p@0": {0: 12.0, 1: 12.1, 2: 11.9}, "p@1": {0: 12.2, 1: 12.0, 2: 12.1}, "p@2": {0: 11.9, 1: 12.0}}
    d = wr.two_level_difference(clear, ref, boot=500)
    assert d["diff"] == pytest.approx(np.mean([12.0, 12.1, 11.95]) - 10.0) and d["decision"] == "better"
    worse = {k: {s: v - 4 for s, v in p.items()} for k, p in clear.items()}
    assert wr.two_level_difference(worse, ref, boot=500)["decision"] == "worse"
    noisy = {"p@0": {0: 11.0, 1: 9.0, 2: 10.0}, "p@1": {0: 9.5, 1: 10.5, 2: 10.1}}
    d = wr.two_level_difference(noisy, ref, boot=500)
    assert d["decision"] == "not distinguishable" and d["ci"][0] < 0 < d["ci"][1]
    assert d["welch_ci"][0] < d["diff"] < d["welch_ci"][1]
    assert wr.two_level_difference({}, ref)["diff"] is None
    assert "emits the released layout" in wr.DECISION_WORDS["not distinguishable"]


def test_the_window_signal_table_scores_a_size_only_signal_at_zero_given_latency():
    wr = _load("window_report")
    names = [f"a{i}" for i in range(10)]
    lat = {n: 380.0 + i for i, n in enumerate(names)}
    truth = [3, 1, 4, 1.5, 5, 9, 2, 6, 5.5, 3.5]
    values = {n: {0: float(t), 1: float(t)} for n, t in zip(names, truth, strict=True)}
    scores = {
        "FLOPs": {n: (lat[n], 0.0) for n in names},  # exactly the latency: pure size
        "oracle": {n: (float(t), 1.0) for n, t in zip(names, truth, strict=True)},
    }
    rows = {r["signal"]: r for r in wr.signal_table(values, names, scores, lat, boot=100)}
    assert rows["oracle"]["spearman"] == pytest.approx(1.0) and rows["oracle"]["pairs"]["accuracy"] == 1.0
    assert rows["oracle"]["budget_regret"]["mean"] == 0 and rows["oracle"]["vs_baseline"]["regret"] < 0
    assert rows["FLOPs"]["partial_spearman_given_latency"]["value"] is None  # a monotone function of latency
    assert math.isclose(rows["oracle"]["cost_s"], 1.0)
