from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from nas.errors import ConfigError, LatencyTableMissError
from nas.latency.build import build_table
from nas.latency.hardware import load_hardware
from nas.latency.spacemap import SpaceMap
from nas.latency.tables import LatencyTable
from nas.latency.units import decompose

from .conftest import fake_timer, tiny_arch, tiny_hardware


def test_a_real_tiny_table(tiny_table, tiny_space):
    units = SpaceMap(tiny_space, 64).units()
    assert len(tiny_table) == len(units) and all(u in tiny_table for u in units)
    entry = tiny_table.units[units[0].key]
    assert set(entry) == {"median_ms", "p10_ms", "p90_ms", "iqr_ms", "cv", "n", "gmacs", "build_s"}
    assert entry["median_ms"] > 0 and entry["build_s"] > 0
    assert tiny_table.eta_s(units) == 0.0
    data = json.loads(tiny_table.path.read_text())
    assert data["hardware"]["input_hw"] == [64, 64] and data["hardware"]["threads"] == 1
    assert {"cpu", "torch", "python", "numpy"} <= set(data["environment"])
    assert data["created"] <= data["updated"] and data["spaces"] == ["tiny"]
    assert len(data["calibration"]["archs"]) == 5 and data["calibration"]["fit"]["n"] == 5
    assert all(e["measured_ms"] > 0 for e in data["calibration"]["archs"].values())


def test_onnxruntime_table_entries(tmp_path, tiny_space):
    hw = tiny_hardware(tmp_path, "tiny_ort", "onnxruntime")
    table = build_table(hw, tiny_space, limit=2, progress=False)
    assert len(table) == 2 and all(e["median_ms"] > 0 for e in table.units.values())
    assert "onnxruntime" in table.data["environment"]
    assert "fit" not in table.data["calibration"]  # calibration waits for the complete table


def test_resume_after_an_interruption_times_only_what_is_missing(tmp_path, tiny_space):
    hw = tiny_hardware(tmp_path)
    total = len(SpaceMap(tiny_space, 64).units())
    calls: list[str] = []
    inner = fake_timer(calls)

    def crashing(u):
        if len(calls) == 7:
            raise KeyboardInterrupt
        return inner(u)

    with pytest.raises(KeyboardInterrupt):
        build_table(hw, tiny_space, calib=0, progress=False, timer=crashing, save_every_s=1e9)
    saved = LatencyTable.load(hw)
    assert len(saved) == 7  # written on the way out
    calls.clear()
    build_table(hw, tiny_space, limit=3, calib=0, progress=False, timer=fake_timer(calls))
    assert len(calls) == 3 and len(LatencyTable.load(hw)) == 10
    eta = LatencyTable.load(hw).eta_s(SpaceMap(tiny_space, 64).units())
    assert eta is not None and eta >= 0
    calls.clear()
    table = build_table(hw, tiny_space, calib=3, progress=False, timer=fake_timer(calls))
    assert len(calls) == total - 10 and len(table) == total
    assert len(table.calibration_archs) == 3 and "fit" in table.data["calibration"]
    assert not list(tmp_path.glob(".*.tmp*"))  # atomic writes leave no temporaries


def test_a_killed_build_keeps_its_periodic_saves(tmp_path, tiny_files):
    hw_path = tiny_files["hardware"]
    out = tmp_path / "killed.json"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(os.getcwd())!r})
        from nas.latency.build import build_table
        n = []
        def timer(u):
            n.append(1)
            if len(n) == 6:
                os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no final save
            return {{"median_ms": 1.0, "p10_ms": 1.0, "p90_ms": 1.0, "iqr_ms": 0.0, "cv": 0.0, "n": 1}}
        build_table({str(hw_path)!r}, {str(tiny_files["space"])!r}, out={str(out)!r}, calib=0,
                    progress=False, timer=timer, save_every_s=0)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    hw = load_hardware(hw_path)
    assert len(LatencyTable.load(hw, out)) == 5  # every unit finished before the kill was saved
    calls: list[str] = []
    build_table(hw, tiny_files["space"], out=out, calib=0, progress=False, timer=fake_timer(calls))
    assert len(LatencyTable.load(hw, out)) == 5 + len(calls)


def test_a_table_measured_with_other_settings_is_refused(tmp_path, tiny_space):
    hw = tiny_hardware(tmp_path)
    build_table(hw, tiny_space, limit=2, calib=0, progress=False, timer=fake_timer())
    other = load_hardware(hw, input_hw=96)
    with pytest.raises(ConfigError, match=r"other settings.*input_hw"):
        LatencyTable.load(other)
    data = json.loads(hw.table_path.read_text())
    data["environment"]["cpu"] = "some other CPU"
    hw.table_path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"another environment.*some other CPU.*out=PATH"):
        build_table(hw, tiny_space, calib=0, progress=False, timer=fake_timer())
    hw.table_path.write_text("{not json")
    with pytest.raises(ConfigError, match=r"not a valid latency table.*python -m nas.latency build"):
        LatencyTable.load(hw)


def test_missing_entry_says_how_to_build_it(tmp_path):
    hw = tiny_hardware(tmp_path)
    with pytest.raises(LatencyTableMissError, match="no latency table for hardware 'tiny_torch'"):
        LatencyTable.load(hw)
    table = LatencyTable.load(hw, must_exist=False)
    unit = decompose(tiny_arch(), 64)[0]
    with pytest.raises(LatencyTableMissError) as e:
        table.latency_ms(unit, space="tiny")
    msg = str(e.value)
    assert unit.key in msg and "tiny_torch.json" in msg
    assert "python -m nas.latency build hardware=tiny_torch space=tiny" in msg


def test_the_fix_for_an_own_hardware_file_names_the_file(tmp_path):
    import yaml

    from .conftest import tiny_hw_dict

    path = tmp_path / "my_box.yaml"
    path.write_text(yaml.safe_dump(tiny_hw_dict("my_box", "torch")))
    with pytest.raises(LatencyTableMissError, match=f"build hardware={path}"):
        LatencyTable.load(load_hardware(path))
    as_mapping = load_hardware(yaml.safe_load(path.read_text()))  # e.g. Hydra's cfg.hardware
    with pytest.raises(LatencyTableMissError, match="build hardware=my_box"):
        LatencyTable.load(as_mapping)


def test_units_of_the_first_networks_are_timed_first_and_predict_them(tmp_path, tiny_space):
    from nas.latency import load_predictor
    from nas.latency.validate import validation_archs

    hw = tiny_hardware(tmp_path)
    net = validation_archs(tiny_space, 1, 5, set())[0]
    needed = {u.key for u in decompose(net, hw.input_hw)}
    calls: list[str] = []
    table = build_table(
        hw, tiny_space, limit=len(needed), calib=0, progress=False, timer=fake_timer(calls), first=[net]
    )
    assert set(calls) == needed and len(table) < len(SpaceMap(tiny_space, 64).units())  # a partial table
    assert table.data["fingerprint"]["cpu"]["vendor"] is not None
    # a partial table predicts the networks whose units it holds, and names the first unit it lacks
    pred = load_predictor(hw, space=tiny_space, calibrated=False, warn=False)
    assert pred.predict(net) == pytest.approx(sum(0.02 + u.macs / 1e6 for u in decompose(net, hw.input_hw)))
    with pytest.raises(LatencyTableMissError, match="no latency entry for"):
        pred.predict_many(validation_archs(tiny_space, 4, 6, {net.digest()}))
