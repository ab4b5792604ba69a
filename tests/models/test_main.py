"""`python -m nas.models`: the summary of S/M/L."""

from __future__ import annotations

from nas.models.__main__ import main


def test_demo_prints_the_released_summary(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("NAS_WEIGHTS_DIR", str(tmp_path))
    assert main(["flops=false"]) == 0
    out = capsys.readouterr().out
    for row in (
        "yolo_nas_s  19,053,888   921",
        "yolo_nas_m  51,182,658   965",
        "yolo_nas_l  66,976,392  1097",
        "12,184,240   625",
        "31,922,098   653",
        "42,017,784   737",
    ):
        assert row in out, row
    assert f"released weights directory: {tmp_path}" in out and "yolo_nas_s: not placed" in out


def test_demo_prints_the_deployed_gflops(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("NAS_WEIGHTS_DIR", str(tmp_path))
    main([])
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("yolo_nas_")}
    assert [rows[n][3] for n in ("yolo_nas_s", "yolo_nas_m", "yolo_nas_l")] == ["31.8", "87.8", "119.8"]
