from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from nas.errors import ConfigError
from nas.latency import load_predictor
from nas.latency.__main__ import main
from nas.latency.calibrate import adapt, calibrate
from nas.latency.device import DeviceMismatchWarning
from nas.latency.predictor import Calibration
from nas.latency.usercal import user_dir

from .conftest import fake_machine

BASE = Calibration(("lut_ms", "gmacs"), (0.9, 2.0), 5.0, 0.03, 40)


def _features(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lut = rng.uniform(100, 1500, n)
    return np.column_stack([lut, lut / 25 * rng.uniform(0.8, 1.2, n), lut / 10, np.full(n, 60.0)])


def test_adapt_finds_the_scale_between_two_machines():
    x = _features(8)
    cal, method = adapt(BASE, x, 0.4 * BASE.apply(x))
    assert method == "scale" and cal.features == BASE.features
    assert cal.apply(x) == pytest.approx(0.4 * BASE.apply(x), rel=1e-9)
    assert cal.loo_rel_rmse < 1e-9 and cal.n == 8


def test_adapt_adds_an_offset_or_refits_only_when_it_holds_out_better():
    x = _features(8, seed=1)
    y = 0.5 * BASE.apply(x) + 80.0
    cal, method = adapt(BASE, x, y)
    assert method == "scale+offset" and cal.apply(x) == pytest.approx(y, rel=1e-6)
    x = _features(16, seed=2)
    y = 3.0 + 0.2 * x[:, 0] + 5.0 * x[:, 1]  # another balance of table time and multiply-adds
    cal, method = adapt(BASE, x, y)
    assert method == "refit" and cal.apply(x) == pytest.approx(y, rel=1e-3)
    with pytest.raises(ConfigError, match="at least 2 measured networks"):
        adapt(BASE, x[:1], y[:1])


def _half(pred):
    return lambda archs, hw: [{"median_ms": 0.5 * pred.predict(a), "n": 1} for a in archs]


def test_calibrate_stores_per_machine_and_wins_on_this_machine_only(tiny_table, tiny_files, monkeypatch):
    fake_machine(monkeypatch)
    hw, space = tiny_table.hardware, str(tiny_files["space"])
    shipped = tiny_table.path.read_bytes()
    before = load_predictor(hw, space=space, warn=False)
    arch = before.space.base
    r = calibrate(hw, n=4, space=space, progress=False, measure=_half(before))
    assert tiny_table.path.read_bytes() == shipped  # the table is never rewritten
    assert os.path.dirname(r["path"]) == str(user_dir()) and r["path"].endswith(".calibration.json")
    assert r["method"] == "scale" and len(r["networks"]) == 4
    assert set(json.loads(Path(r["path"]).read_text())["fingerprint"]["cpu"]) >= {"vendor", "family", "model", "isa"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an own calibration for this machine: no mismatch warning
        after = load_predictor(hw, space=space)
    assert "this machine's calibration" in after.calibration_source
    assert after.predict(arch) == pytest.approx(0.5 * before.predict(arch), rel=1e-6)
    assert after.predict_many([arch])[0] == pytest.approx(after.predict(arch))
    # on another machine the file is not used, and the table's own mismatch warning appears
    fake_machine(monkeypatch, cpuinfo="processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t: 143\n")
    with pytest.warns(DeviceMismatchWarning, match="GenuineIntel family 6 model 143"):
        other = load_predictor(hw, space=space)
    assert other.predict(arch) == pytest.approx(before.predict(arch))


def test_a_rebuilt_table_invalidates_the_calibration(tiny_table, tiny_files, tmp_path, monkeypatch):
    fake_machine(monkeypatch)
    hw, space = tiny_table.hardware, str(tiny_files["space"])
    own = tmp_path / "copy.json"
    own.write_text(tiny_table.path.read_text())
    before = load_predictor(hw, space=space, path=own, warn=False)
    calibrate(hw, n=3, space=space, path=own, progress=False, measure=_half(before))
    assert "this machine" in load_predictor(hw, space=space, path=own, warn=False).calibration_source
    data = json.loads(own.read_text())
    key = next(iter(data["units"]))
    data["units"][key]["median_ms"] *= 2
    own.write_text(json.dumps(data))
    assert "the table's calibration" in load_predictor(hw, space=space, path=own, warn=False).calibration_source


def test_cli_calibrate_measures_real_networks(tiny_table, tiny_files, capsys):
    hw, space = str(tiny_files["hardware"]), str(tiny_files["space"])
    assert main(["calibrate", f"hardware={hw}", f"space={space}", "n=3"]) == 0
    out = capsys.readouterr().out
    assert "measured" in out and "fit on 3 networks" in out and str(user_dir()) in out
    assert main(["calibrate", f"hardware={hw}", "n=1"]) == 2
    assert "at least 2 networks" in capsys.readouterr().err


def test_calibrate_warns_when_the_repeated_timings_disagree(tiny_table, tiny_files, monkeypatch):
    from nas.latency.calibrate import NoisyMeasurementWarning

    fake_machine(monkeypatch)
    hw, space = tiny_table.hardware, str(tiny_files["space"])
    pred = load_predictor(hw, space=space, warn=False)

    def loaded(archs, hw):  # what a neighbour on the same cores does to each network's repeated timings
        return [{"median_ms": 2 * (m := pred.predict(a)), "p10_ms": 1.2 * m, "p90_ms": 3.0 * m, "n": 9} for a in archs]

    def idle(archs, hw):
        return [{"median_ms": (m := pred.predict(a)), "p10_ms": 0.99 * m, "p90_ms": 1.02 * m, "n": 9} for a in archs]

    with pytest.warns(NoisyMeasurementWarning, match=r"looked busy.*p90/p10 = 2\.50.*clock=process"):
        r = calibrate(hw, n=3, space=space, progress=False, measure=loaded)
    assert r["load"]["busy"] and json.loads(Path(r["path"]).read_text())["load"]["median_p90_over_p10"] == 2.5
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoisyMeasurementWarning)
        assert not calibrate(hw, n=3, space=space, progress=False, measure=idle)["load"]["busy"]


def test_nas_latency_measures_on_the_clock_asked_so_a_process_calibration_can_be_checked(
    tiny_table, tiny_files, capsys
):
    from nas.cli import main as nas_main

    args = ["latency", f"model={tiny_files['arch']}", f"hardware={tiny_files['hardware']}", "measure=true"]
    assert nas_main([*args, "clock=process"]) == 0
    out = capsys.readouterr().out
    assert "measuring on the process clock" in out and "prediction error" in out
    assert nas_main(args) == 0
    assert "measuring on the wall clock" in capsys.readouterr().out  # the target's own clock
    assert nas_main([*args, "clock=cpu"]) == 2
    assert "clock='cpu'; expected one of wall, process" in capsys.readouterr().err
