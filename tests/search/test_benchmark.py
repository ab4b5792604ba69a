"""experiments/search_efficiency/run.py runs end to end on the tiny space and resumes from its saved runs."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_search_efficiency_benchmark_tiny(tmp_path, tiny_space_path, proxy_cache):
    spec = importlib.util.spec_from_file_location("search_efficiency", ROOT / "experiments/search_efficiency/run.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = ["--space", str(tiny_space_path), "--strategies", "nsga2", "tpe", "--seeds", "0", "--n-trials", "6",
            "--random-trials", "10", "--proxy-hw", "64", "--proxy-batch", "random", "--workers", "1",
            "--cache-dir", str(proxy_cache), "--out", str(tmp_path)]  # fmt: skip
    assert bench.main(args) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert set(res["summary"]) == {"random", "nsga2", "tpe"}
    assert len(res["curves"]["random-seed0"]) == 10 and len(res["curves"]["nsga2-seed0"]) == 6
    hv = res["curves"]["random-seed0"]
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(hv)), "hypervolume never decreases (up to rounding)"
    assert hv[-1] == pytest.approx(res["random_final_hv_mean"])
    assert (tmp_path / "results.md").is_file() and (tmp_path / "hv_vs_trials.png").is_file()
    saved = sorted(p.name for p in (tmp_path / "runs").glob("*.json"))
    assert saved == ["nsga2-seed0-n6.json", "random-seed0-n10.json", "tpe-seed0-n6.json"]
    assert bench.main(args) == 0  # a second run reads the saved runs
