"""experiments/proxy_correlation's reports recomputed from the committed per-unit files (a report that could lie
fails here), and the window report's statistics (the ceiling, the two-level truth-test difference, its decision
rule) against cases with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.proxy.test_proxy_correlation import HERE, _load, pc  # noqa: F401 (pc: the experiment's fixture)


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
    if isinstance(a, float) and isinstance(b, float):  # BLAS's last bit differs between CPUs (AVX2 vs AVX-512)
        return None if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) else f"{path}: committed {a!r}, recomputed {b!r}"
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
    # one training a side: its bootstrap interval is a point, not evidence: no decision
    one = wr.two_level_difference({"p@0": {0: 12.0}}, {0: 10.0}, boot=100)
    assert one["diff"] == 2.0 and one["decision"] == "too few trainings"
    assert "emits the released layout" in wr.DECISION_WORDS["not distinguishable"]


def test_a_pick_that_is_the_released_unit_differs_by_zero_and_untrained_picks_block_a_decision():
    wr = _load("window_report")
    ref = {0: 7.4, 1: 8.1, 2: 7.2}
    # the search picked the released layout at every seed: the same trainings on both sides, difference 0 exactly
    same = wr.two_level_difference({"s@0": ref, "s@1": ref}, ref, boot=300, ref_name="s")
    assert same["diff"] == 0.0 and same["ci"] == [0.0, 0.0]
    # without the pairing two independent resamples of one unit's seeds would make a spread out of nothing
    unpaired = wr.two_level_difference({"s@0": ref, "s@1": ref}, ref, boot=300)
    assert unpaired["ci"][0] < 0 < unpaired["ci"][1]
    # a search seed whose pick has no training yet: no decision, however clear the trained ones look
    clear = {"s@0": ref, "p@1": {0: 20.0, 1: 20.1, 2: 19.9}, "q@2": {}}
    d = wr.two_level_difference(clear, ref, boot=300, ref_name="s")
    assert d["n_picks_untrained"] == 1 and d["decision"] == "too few trainings"
    trained = wr.two_level_difference({**clear, "q@2": {0: 20.0, 1: 20.2}}, ref, boot=300, ref_name="s")
    assert trained["n_picks_untrained"] == 0 and trained["decision"] != "too few trainings"


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


def test_the_window_set_is_fixed_within_the_window_and_balanced_over_block_types():
    from nas.latency import arch_cost, load_predictor
    from nas.space import load_arch

    win = _load("window")
    doc = json.loads((HERE / "window.json").read_text())
    pred = load_predictor("cpu_ort", warn=False)
    ref = pred.predict(load_arch(HERE / "archs" / "yolo_nas_s.yaml"))
    rows = {u["name"]: u for u in doc["units"]}
    for name, u in rows.items():
        arch = load_arch(win.unit_arch_path(name))
        assert arch.digest() == u["digest"], f"{name}: the committed architecture changed after the draw"
        assert pred.predict(arch) == pytest.approx(u["latency_ms"], abs=0.06)
        assert arch_cost(arch, 640).gflops == pytest.approx(u["gflops"], abs=1e-3)
        if u["role"] == "window":
            assert abs(u["latency_ms"] / ref - 1) <= win.WINDOW + 1e-9, name
    window = [u for u in rows.values() if u["role"] == "window"]
    assert len(window) >= 12 and {u["blocks"] for u in window} == {"qarepvgg", "repvgg"}
    assert sum(u["blocks"] == "qarepvgg" for u in window) == sum(u["blocks"] == "repvgg" for u in window)
    assert len({u["depth"] for u in window}) >= 5, "depth is traded against width across the set"
    assert rows["flops_s"]["latency_ms"] <= ref + 0.05 and rows["flops_s"]["gflops"] >= max(
        u["gflops"] for u in window if u["latency_ms"] <= ref
    )
    # every recorded search pick has its architecture, at or under its tier's budget
    for per_seed in doc["search"].values():
        for rec in per_seed.values():
            for tier, t in rec["tiers"].items():
                assert t["equals_released"] or win.unit_arch_path(t["unit"]).is_file(), t["unit"]
                assert t["selected"]["latency_ms"] <= t["budget_ms"] + 1e-6, (tier, t["unit"])


def test_the_driver_queues_every_unit_seed_major_and_knows_what_is_done(tmp_path, monkeypatch):
    win = _load("window")
    doc = json.loads((HERE / "window.json").read_text())
    order = win.units(doc)
    s_names = set(_load("window_report").window_names(doc))  # the S window set: seed-major, then M/L
    k = len(s_names)
    for i, seed in enumerate(win.SEEDS):
        assert set(order[i * k : (i + 1) * k]) == {(n, seed) for n in s_names}
    assert all(n not in s_names for n, _ in order[len(win.SEEDS) * k :])
    assert order[0] == ("yolo_nas_s", 0) and ("flops_s", 2) in order and ("w11", 2) in order
    assert ("yolo_nas_m", 1) in order and ("yolo_nas_m", 0) not in order  # seed 0 is results/gt's
    picks = [rec["tiers"]["yolo_nas_s"]["unit"] for rec in doc["search"].get("vote", {}).values()]
    assert all((p, s) in order for p in picks for s in win.SEEDS)
    assert len(order) == len(set(order))
    monkeypatch.setattr(win, "WINDOW_RESULTS", tmp_path)
    assert not win.done("w00", 0)
    (tmp_path / "w00_s0.json").write_text("{}")
    assert win.done("w00", 0) and win.done("yolo_nas_m", 0)  # the latter from results/gt
    cmd = win.train_command("w00", 1)
    assert cmd[cmd.index("--out") + 1] == str(tmp_path / "w00_s1.json") and "win_w00_s1" in cmd


def test_the_driver_moves_the_units_named_in_window_first_to_the_front(tmp_path, monkeypatch):
    win = _load("window")
    queue = [(k, [k]) for k in ("w00:0", "w01:0", "search:synflow:0", "yolo_nas_s:1", "w00:1")]
    monkeypatch.setattr(win, "FIRST_FILE", tmp_path / "window_first")
    assert win._first(queue) == queue  # no file: the driver's own order
    (tmp_path / "window_first").write_text("yolo_nas_s:1\n\nw00:1\nnot_queued:3\n")
    assert [k for k, _ in win._first(queue)] == ["yolo_nas_s:1", "w00:1", "w00:0", "w01:0", "search:synflow:0"]


@pytest.mark.slow
def test_the_supernet_evidence_is_recomputed_from_the_committed_files():
    sn = _load("supernet")
    assert sn.EVIDENCE_JSON.is_file(), "results/supernet_evidence.json is committed with the supernet's scores"
    committed = json.loads(sn.EVIDENCE_JSON.read_text())
    recomputed = _roundtrip(sn.evidence(sn.run.RESULTS, 2000))
    assert _first_difference(committed, recomputed) is None, (
        f"supernet_evidence.json differs from its raw files: {_first_difference(committed, recomputed)};"
        " re-run `python experiments/proxy_correlation/supernet.py report`"
    )
    assert sn.EVIDENCE_MD.read_text() == sn._md(committed) + "\n"


@pytest.mark.slow
def test_the_supernet_signal_trains_resumes_and_scores_into_the_proxy_files(pc, tmp_path, monkeypatch):  # noqa: F811
    """supernet.py end to end on the tiny elastic space: one epoch, then a resumed second, then a score file that
    the report reads as the signal `supernet (mAP50_95)`."""
    import argparse

    from nas.space import load_space
    from tests.supernet.tiny import write_space

    sn = _load("supernet")
    monkeypatch.setattr(sn, "run", pc)
    monkeypatch.setattr(sn, "SUPERNET_RUN", tmp_path / "runs" / "supernet" / "gt")
    monkeypatch.setattr(sn, "TRAIN_JSON", tmp_path / "results" / "supernet_train.json")
    space_path = write_space(tmp_path / "space")
    args = dict(device="cpu", workers=0, threads=1, random_subnets=1, distill=None, variant="gt", space=str(space_path))
    with pytest.raises(SystemExit, match=r"train-one tiny 0 --out .*parent_tiny_s0\.json --run-name gt_tiny_s0"):
        sn.train(argparse.Namespace(epochs=1, from_scratch=False, **args))  # no parent: never silently from scratch
    args["from_scratch"] = True
    assert sn.train(argparse.Namespace(epochs=1, **args)) == 0
    first = json.loads(sn.TRAIN_JSON.read_text())
    assert not first["resumed"] and first["epochs"] == 1 and first["cpu_s_this_process"] > 0
    assert sn.train(argparse.Namespace(epochs=1, **args)) == 0  # a second call resumes (here: nothing left)
    assert json.loads(sn.TRAIN_JSON.read_text())["resumed"] and (sn.SUPERNET_RUN / "last.pt").is_file()
    space = load_space(space_path)
    arch = space.decode({d.path: d.choices[0] for d in space.dimensions})  # a sub-network of the supernet
    (pc.ARCHS / "sub.yaml").write_text(arch.replace(name="sub").to_yaml())
    monkeypatch.setenv("NAS_THREADS", "1")
    assert sn.score_one(argparse.Namespace(name="sub", variant="gt")) == 0
    row = json.loads(pc.proxy_path("supernet", "sub").read_text())
    assert 0 <= row["mAP50_95"] <= 100 and row["cpu_s"] > 0 and "int8_drop" in row
    rep = _load("report")
    assert "supernet (mAP50_95)" in rep.proxy_scores(pc.RESULTS)
    # fine-tuning from the supernet's weights (supernet.py finetune's unit): run.py train-one --init supernet:PATH
    init = f"supernet:{sn.SUPERNET_RUN / 'last.pt'}"
    ft = argparse.Namespace(name="sub", seed=0, device="cpu", workers=0, verbose=False, trial="", arch="", init=init,
                            set=["epochs=1"], out=str(tmp_path / "ft.json"), run_name="ft")  # fmt: skip
    assert pc.train_one(ft) == 0
    doc = json.loads((tmp_path / "ft.json").read_text())
    assert doc["init"] == init and doc["recipe"]["epochs"] == 1 and len(doc["history"]) == 1


def test_training_cost_estimates_a_resumed_training_per_epoch():
    wr = _load("window_report")
    recipe = {"epochs": 20}
    rows = [
        {"cpu_s_this_process": 3600.0, "resumed": False, "epochs_this_process": 20, "recipe": recipe, "machine": "A"},
        {"cpu_s_this_process": 900.0, "resumed": True, "epochs_this_process": 5, "recipe": recipe, "machine": "B"},
        {"cpu_s_this_process": 1800.0, "resumed": False, "epochs_this_process": 20, "recipe": recipe, "machine": "B"},
    ]
    cost = wr.training_cost(rows)
    assert cost == {
        "cpu_hours": 2.5,
        "cpu_hours_measured": 1.5,
        "n_resumed_estimated": 1,
        "cpu_hours_by_machine": {"A": {"units": 1, "cpu_hours": 1.0}, "B": {"units": 2, "cpu_hours": 1.5}},  # 4 x 900
    }


def test_machine_effect_compares_one_layout_across_cpus():
    wr = _load("window_report")
    recipe = {"epochs": 20}
    amd, intel = "AMD EPYC (AuthenticAMD family 25 model 17 stepping 1)", "Intel Xeon (GenuineIntel family 6 model 143)"
    rows = [{"name": "s", "recipe": recipe, "machine": amd, "mAP50_95": v} for v in (7.0, 8.0, 7.5)]
    rows += [{"name": "w00", "recipe": recipe, "machine": amd, "mAP50_95": 6.0}]  # one machine only: no row
    extra = [{"name": "s", "recipe": recipe, "machine": intel, "mAP50_95": v} for v in (8.0, 9.0)]
    extra += [{"name": "s", "recipe": {"epochs": 5}, "machine": intel, "mAP50_95": 1.0}]  # another recipe: left out
    (e,) = wr.machine_effect(rows, extra)
    assert e["name"] == "s" and e["difference"] == pytest.approx(1.0)
    assert e["ci95"][0] < 1.0 < e["ci95"][1]
