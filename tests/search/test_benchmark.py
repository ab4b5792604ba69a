"""experiments/search_efficiency/run.py runs end to end on the tiny space and resumes from its saved runs."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("search_efficiency", ROOT / "experiments/search_efficiency/run.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_search_efficiency_benchmark_tiny(tmp_path, tiny_space_path, proxy_cache):
    bench = _bench()
    args = ["--space", str(tiny_space_path), "--strategies", "nsga2", "tpe", "--seeds", "0", "1", "--n-trials", "6",
            "--random-trials", "10", "--random-seeds", "0", "--proxy-hw", "64", "--proxy-batch", "random", "--workers", "1",
            "--cache-dir", str(proxy_cache), "--out", str(tmp_path)]  # fmt: skip
    assert bench.main(args) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert set(res["summary"]) == {"random", "nsga2", "tpe"}
    assert len(res["curves"]["random-seed0"]) == 10 and len(res["curves"]["nsga2-seed1"]) == 6
    # random-N runs only with --random-seeds; the strategies with every --seeds
    assert len(res["summary"]["random"]["trials_to_random_final"]) == 1
    assert len(res["summary"]["nsga2"]["trials_to_random_final"]) == 2 and "random-seed1" not in res["curves"]
    hv = res["curves"]["random-seed0"]
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(hv)), "hypervolume never decreases (up to rounding)"
    assert hv[-1] == pytest.approx(res["random_final_hv_mean"])
    assert (tmp_path / "results.md").is_file() and (tmp_path / "hv_vs_trials.png").is_file()
    saved = sorted(p.name for p in (tmp_path / "raw").glob("*.json"))
    assert saved == [f"{s}-seed{i}-n6.json" for s in ("nsga2",) for i in (0, 1)] + ["random-seed0-n10.json"] + [
        f"tpe-seed{i}-n6.json" for i in (0, 1)
    ]
    rnd = res["summary"]["random"]["hv_at"]["10"]  # the reference's own final: 1 by construction, one seed
    assert rnd["mean"] == pytest.approx(1.0) and rnd["ci95"] is None and rnd["seeds"] == [pytest.approx(1.0)]
    assert res["summary"]["nsga2"]["hv_at"] == {}  # no checkpoint within its 6 trials
    assert res["random_final_hv_ci95"] is None  # one random seed: no interval, not a zero-width one
    picks = res["picks"]["nsga2-seed0"]
    assert picks and all(p is None or {"digest", "proxy_score", "equals_reference"} <= set(p) for p in picks.values())
    raw = json.loads((tmp_path / "raw" / "nsga2-seed0-n6.json").read_text())
    assert raw["machine"] and raw["space"] == str(tiny_space_path)
    assert bench.main(args) == 0  # a second run reads the saved runs
    # the report is a function of raw/ alone
    again = json.loads(json.dumps(bench.summarize(bench.load_raw(tmp_path))))
    assert again == json.loads((tmp_path / "results.json").read_text())
    assert bench.main([*args, "--report-only"]) == 0


def test_committed_search_efficiency_recomputes_from_raw():
    """experiments/search_efficiency/results.json and .md are what raw/ gives: a wrong report fails here."""
    here = ROOT / "experiments" / "search_efficiency"
    if not (here / "raw").is_dir():
        pytest.skip("no committed raw runs")
    bench = _bench()
    result = json.loads(json.dumps(bench.summarize(bench.load_raw(here))))
    assert result == json.loads((here / "results.json").read_text())
    assert bench.markdown(result) == (here / "results.md").read_text()
    assert len(result["random_seeds"]) >= 3 and all(len(s["seeds"]) >= 3 for s in result["summary"].values())


def test_t_interval_over_seeds():
    bench = _bench()
    lo, hi = bench.t_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, 2) = 4.303
    assert (lo + hi) / 2 == pytest.approx(2.0) and (hi - lo) / 2 == pytest.approx(4.3027 / 3**0.5, rel=1e-4)
    assert bench.t_interval([0.5]) is None
