from __future__ import annotations

import json

import numpy as np
import pytest

from nas.latency.__main__ import main
from nas.latency.validate import fit_linear, metrics, validate, validation_archs
from nas.space import load_space


def test_metrics_on_known_values():
    m = metrics([1.0, 2.08, 2.5, 4.0], [1.0, 2.0, 3.0, 4.0])
    assert m["n"] == 4
    assert m["within_5pct"] == 0.75 and m["within_10pct"] == 0.75
    assert m["mape_pct"] == pytest.approx(100 * (0.04 + 0.5 / 3) / 4)
    assert m["kendall_tau"] == 1.0 and m["spearman_rho"] == 1.0
    assert fit_linear([1, 2, 3], [3, 5, 7]) == pytest.approx((2.0, 1.0))


def test_validation_networks_are_never_calibration_networks():
    space = load_space("yolo_nas")
    first = validation_archs(space, 5, seed=1, exclude=set())
    excluded = {first[0].digest(), first[1].digest()}
    again = validation_archs(space, 5, seed=1, exclude=excluded)
    assert not {a.digest() for a in again} & excluded
    assert [a.name for a in again[-3:]] == ["yolo_nas_s", "yolo_nas_m", "yolo_nas_l"]
    with pytest.raises(AssertionError, match="overlap the calibration set"):
        validation_archs(space, 2, seed=1, exclude={space.references["yolo_nas_s"].digest()})


def test_validate_writes_json_and_png(tiny_table, tiny_files, tmp_path):
    r = validate(
        tiny_table.hardware, n=3, seed=1, noise=2, space=str(tiny_files["space"]), out=tmp_path, progress=False
    )
    data = json.loads((tmp_path / "validation.json").read_text())
    png = (tmp_path / "validation.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert data["predictor"]["n"] == 3 and data["noise_floor"]["n"] == 2
    assert set(data["baselines"]) == {"lut_sum_raw", "flops_linear", "params_linear"}
    for m in [data["predictor"], *data["baselines"].values()]:
        assert {"within_5pct", "within_10pct", "mape_pct", "kendall_tau", "spearman_rho"} <= set(m)
    calib = set(tiny_table.calibration_archs)
    assert not {row["digest"] for row in data["rows"]} & calib
    assert all(row["measured_ms"] > 0 and row["predicted_ms"] > 0 for row in data["rows"])
    assert r["out"] == str(tmp_path)


def test_cli_build_info_validate_and_list(tiny_files, tmp_path, capsys):
    hw, space = str(tiny_files["hardware"]), str(tiny_files["space"])
    out = tmp_path / "cli.json"
    assert main(["build", f"hardware={hw}", f"space={space}", "calib=0", "limit=2", f"out={out}"]) == 0
    assert f"{out}: 2 units" in capsys.readouterr().out
    assert main(["info", f"hardware={hw}", f"space={space}"]) == 0
    assert "units of space 'tiny' measured" in capsys.readouterr().out
    assert main(["validate", f"hardware={hw}", f"space={space}", "n=2", "noise=1", f"out={tmp_path}"]) == 0
    assert "within ±10%" in capsys.readouterr().out
    assert main(["list"]) == 0
    assert "cpu_ort" in capsys.readouterr().out
    assert main(["build", "hardware=nope"]) == 2
    assert "available hardware is cpu_ort" in capsys.readouterr().err
    assert main(["build", f"hardware={hw}", "limit=x"]) == 2
    assert main(["build", "colour=red"]) == 2
    assert main(["frobnicate"]) == 2


def test_scatter_rows_are_consistent(tiny_table, tiny_files, tmp_path):
    r = validate(
        tiny_table.hardware, n=2, seed=3, noise=0, space=str(tiny_files["space"]), out=tmp_path, progress=False
    )
    pred = np.array([row["predicted_ms"] for row in r["rows"]])
    assert r["noise_floor"] == {"n": 0} and np.isfinite(pred).all()
