"""`nas benchmark`: one table with every requested format, the FP32 ONNX as the speed-up reference."""

from __future__ import annotations

import json

import pytest

from nas.cli import main
from nas.errors import ConfigError
from nas.export.options import BENCHMARK_VARIANTS, EXPORT_FORMATS, VARIANTS, BenchmarkOptions
from tests.zoo_helpers import make_checkpoint


def test_rows_are_one_list_and_checked():
    assert BenchmarkOptions().variants == BENCHMARK_VARIANTS == tuple(VARIANTS)
    assert all(v is None or v[0] in EXPORT_FORMATS for v in VARIANTS.values())
    assert BenchmarkOptions(formats="onnx, openvino_int8").variants == ("onnx", "openvino_int8")
    with pytest.raises(ConfigError, match="formats"):
        BenchmarkOptions(formats="onnx,tflite")


def test_cli_benchmark_writes_json_and_markdown(tmp_path, capsys):
    from nas.data.synthetic import CLASSES

    ckpt = make_checkpoint(tmp_path / "tiny.pt", 8, list(CLASSES))
    args = ["benchmark", f"model={ckpt}", "imgsz=64", "rounds=2", "calib=4", f"project={tmp_path / 'runs'}"]
    assert main([*args, "formats=torch,onnx,onnx_int8,torchscript,engine"]) == 0
    out = capsys.readouterr().out
    work = tmp_path / "runs" / "benchmark" / "exp"
    result = json.loads((work / "results.json").read_text())
    rows = {r["name"]: r for r in result["rows"]}
    assert list(rows) == ["torch", "onnx", "onnx_int8", "torchscript", "engine"]
    assert rows["onnx"]["speedup"]["1"] == 1.0 and rows["onnx_int8"]["size_mb"] < rows["onnx"]["size_mb"]
    for name in ("torch", "onnx", "onnx_int8", "torchscript"):
        r = rows[name]
        assert r["error"] is None and 0 <= r["mAP50_95"] <= 100 and set(r["ms"]) == {str(t) for t in result["threads"]}
    if rows["engine"]["error"] is not None:  # no TensorRT here: the row says why, the others still ran
        assert "TensorRT engines need" in rows["engine"]["error"]
    assert result["fingerprint"]["cpu"]["isa"] and "| onnx_int8 |" in (work / "results.md").read_text()
    assert "speed-up" in out


def test_committed_benchmark_report_is_recomputed_from_its_json():
    from pathlib import Path

    from experiments.benchmark.report import build_report

    here = Path(__file__).resolve().parents[2] / "experiments" / "benchmark"
    assert (here / "results.md").read_text() == build_report(here)
