"""experiments/int8's report is a pure function of its committed raw files: rebuilt here, compared to the
committed results.json and nas/quant/block_drop.json; and its PLAN.md rules on made-up raw files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from experiments.int8.report import BLOCK_DROP, HERE, RAW, build, markdown, stage_path, training_path  # noqa: E402


def _same(a, b, path="results"):
    """Equal, floats to 1e-12 (the rebuild runs the same arithmetic; a different number is a wrong report)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{path}: {len(a)} != {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-12), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def test_committed_report_is_recomputed_from_raw():
    results, block = build(RAW)
    _same(results, json.loads((HERE / "results.json").read_text()))
    assert (HERE / "results.md").read_text() == markdown(results)
    if block is not None:  # the search's table is the report's, not an older one
        _same(block, json.loads(BLOCK_DROP.read_text()), "block_drop")


def test_every_trained_seed_has_its_raw_measurements():
    """A training without its accuracy file would be silently left out of the pairing."""
    for p in sorted((RAW / "train").glob("*_s*.json")):
        model, seed = p.stem.rsplit("_s", 1)
        assert stage_path(RAW, int(seed), "accuracy", model).is_file(), f"{p}: trained but not measured"


def _fake(raw: Path, seed: int, model: str, fp32: float, draws: list[float]) -> None:
    train = {
        "name": model,
        "seed": seed,
        "mAP50_95": fp32,
        "mAP50": 2 * fp32,
        "cpu_s_this_process": 900.0,
        "machine": "test CPU",
        "recipe": {"imgsz": 160, "epochs": 20, "batch": 8, "lr0": 0.001},
    }
    p = training_path(raw, model, seed)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(train))
    q = {"mAP50_95": fp32 - draws[0], "mAP50": 0.0, "output_error": {"error": 0.1}}
    acc = {
        "machine": "test CPU",
        "fp32": {"mAP50_95": fp32},
        "int8": {"minmax": q, "percentile": q},
        "calib_draws": {"method": "minmax", "draws": [{"draw": i, "mAP50_95": fp32 - d} for i, d in enumerate(draws)]},
    }
    p = stage_path(raw, seed, "accuracy", model)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(acc))


def test_paired_rule_is_symmetric(tmp_path):
    """RepVGG's drop 1 point larger at every seed: QARepVGG better; swapped: RepVGG better."""
    for seed, base in enumerate((0.1, 0.2, 0.15)):
        _fake(tmp_path / "a", seed, "qarepvgg", 7.0, [base, base + 0.02])
        _fake(tmp_path / "a", seed, "repvgg", 7.0, [base + 1.0, base + 1.02])
        _fake(tmp_path / "b", seed, "qarepvgg", 7.0, [base + 1.0, base + 1.02])
        _fake(tmp_path / "b", seed, "repvgg", 7.0, [base, base + 0.02])
    a, block = build(tmp_path / "a")
    b, _ = build(tmp_path / "b")
    assert a["P2_repvgg_minus_qarepvgg"]["mean"] == pytest.approx(1.0)
    assert a["P2_repvgg_minus_qarepvgg"]["verdict"] == "QARepVGG quantizes better"
    assert b["P2_repvgg_minus_qarepvgg"]["verdict"] == "RepVGG quantizes better"
    assert block["drop"] == {"qarepvgg": pytest.approx(0.16), "repvgg": pytest.approx(1.16)}
    assert a["P1_drop"]["qarepvgg"]["sd_over_draws_mean"] == pytest.approx(0.01414, abs=1e-4)


def test_noise_level_difference_is_not_called_a_win(tmp_path):
    for seed, d in enumerate((0.3, -0.25, 0.05)):
        _fake(tmp_path, seed, "qarepvgg", 7.0, [0.2, 0.2])
        _fake(tmp_path, seed, "repvgg", 7.0, [0.2 + d, 0.2 + d])
    r, _ = build(tmp_path)
    assert r["P2_repvgg_minus_qarepvgg"]["verdict"].startswith("not distinguishable")
    assert "half-width" in r["P2_repvgg_minus_qarepvgg"]["verdict"]


def test_unpaired_seed_is_left_out(tmp_path):
    """A seed where only one model is measured does not enter the paired difference."""
    _fake(tmp_path, 0, "qarepvgg", 7.0, [0.2])
    _fake(tmp_path, 0, "repvgg", 7.0, [0.3])
    _fake(tmp_path, 1, "qarepvgg", 7.0, [0.2])
    r, _ = build(tmp_path)
    assert list(r["seeds"]) == ["0"]
    assert r["P2_repvgg_minus_qarepvgg"]["ci95"] is None
