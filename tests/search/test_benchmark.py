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
    saved = sorted(p.name for p in (tmp_path / "runs").glob("*.json"))
    assert saved == [f"{s}-seed{i}-n6.json" for s in ("nsga2",) for i in (0, 1)] + ["random-seed0-n10.json"] + [
        f"tpe-seed{i}-n6.json" for i in (0, 1)
    ]
    assert bench.main(args) == 0  # a second run reads the saved runs
