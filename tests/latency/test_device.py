from __future__ import annotations

import json
import warnings

import pytest

from nas.errors import ConfigError
from nas.latency import device, load_hardware, load_predictor
from nas.latency.device import DeviceMismatchWarning, cpu_fingerprint, describe, device_slug, mismatches
from nas.latency.hardware import tables_dir
from nas.space.io import load_arch

from .conftest import CPUINFO_ZEN4, fake_machine

H200 = {"name": "NVIDIA H200", "capability": "9.0", "driver": "570.86", "cuda": "12.8", "cudnn": 90800}


def test_cpu_fingerprint_parses_cpuinfo():
    fp = cpu_fingerprint(CPUINFO_ZEN4)
    assert (fp["vendor"], fp["family"], fp["model"], fp["stepping"]) == ("AuthenticAMD", 25, 17, 1)
    assert fp["model_name"] == "AMD EPYC 9654 96-Core Processor" and fp["cores"] == 2
    assert fp["isa"] == {"avx2": True, "avx512f": True, "avx512_vnni": True, "avx512_bf16": True, "amx": False}
    here = device.current_fingerprint()
    assert set(here) == {"cpu", "libs"} and here["libs"]["torch"] and here["libs"]["onnxruntime"]


def test_shipped_tables_record_what_is_known_and_mark_the_rest_unknown():
    for name in ("cpu_ort", "cpu_torch"):
        fp = json.loads((tables_dir() / f"{name}.json").read_text())["fingerprint"]
        assert fp["cpu"]["model_name"] == "AMD EPYC" and fp["cpu"]["cores"] == 2
        assert fp["cpu"]["family"] is None and fp["cpu"]["model"] is None and set(fp["cpu"]["isa"].values()) == {None}
        assert fp["libs"]["torch"] == "2.13.0+cpu"
        assert "? family ?" in describe(fp)


def test_mismatch_names_unknown_and_differing_fields(monkeypatch):
    hw = load_hardware("cpu_ort")
    here = fake_machine(monkeypatch)
    assert mismatches(here, here, hw) == {}
    other = json.loads(json.dumps(here))
    other["cpu"]["model"], other["cpu"]["isa"]["avx512f"] = 1, False
    assert mismatches(other, here, hw) == {"CPU model": (1, 17), "avx512f": (False, True)}
    other["cpu"]["stepping"] = 2  # recorded, not a kernel choice: no mismatch on its own
    assert set(mismatches(other, here, hw)) == {"CPU model", "avx512f"}
    assert "cores" not in mismatches({}, here, hw) and "cores" in mismatches(
        {}, here, load_hardware("cpu_ort", threads=2)
    )
    other = json.loads(json.dumps(here))
    other["libs"]["onnxruntime"] = "1.20.0"
    assert mismatches(other, here, hw) == {"onnxruntime": ("1.20.0", here["libs"]["onnxruntime"])}
    assert mismatches(other, here, load_hardware("cpu_torch")) == {}  # eager timing does not use onnxruntime


def test_one_warning_names_both_devices_and_the_fix(monkeypatch):
    fake_machine(monkeypatch)
    s = load_arch("yolo_nas_s")
    with pytest.warns(DeviceMismatchWarning) as record:
        load_predictor("cpu_ort").predict(s)
        load_predictor("cpu_ort").predict(s)  # the search loads it again: still one warning
    assert len(record) == 1
    msg = str(record[0].message)
    assert "measured on AMD EPYC (? family ?" in msg and "this machine is AMD EPYC 9654" in msg
    assert "does not record CPU vendor, CPU family, CPU model, ISA flags" in msg
    assert "`python -m nas.latency calibrate hardware=cpu_ort`" in msg


def test_no_warning_on_the_machine_that_built_the_table(monkeypatch, tmp_path):
    here = fake_machine(monkeypatch)
    table = json.loads((tables_dir() / "cpu_ort.json").read_text())
    table["fingerprint"] = here
    own = tmp_path / "cpu_ort.json"
    own.write_text(json.dumps(table))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_predictor("cpu_ort", path=own)


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("NVIDIA H200", "h200"),
        ("NVIDIA H100 80GB HBM3", "h100"),
        ("Tesla T4", "tesla_t4"),
        ("NVIDIA A100-SXM4-40GB", "a100"),
    ],
)
def test_cuda_tables_are_named_after_the_device(monkeypatch, name, slug):
    assert device_slug({"gpu": {"name": name}}) == slug
    fake_machine(monkeypatch, gpu={**H200, "name": name})
    assert load_hardware("cuda_fp16").table_path == tables_dir() / f"cuda_fp16_{slug}.json"


def test_cuda_target_without_a_gpu_says_so(monkeypatch):
    fake_machine(monkeypatch, gpu={"name": None})
    hw = load_hardware("cuda_fp16")  # loading needs no GPU; finding its table does
    with pytest.raises(ConfigError, match=r"no CUDA device is visible here.*set `table:`"):
        _ = hw.table_path


def test_gpu_mismatch_and_description(monkeypatch):
    here = fake_machine(monkeypatch, gpu=H200)
    hw = load_hardware("cuda_fp16")
    other = json.loads(json.dumps(here))
    other["gpu"]["name"], other["gpu"]["capability"] = "NVIDIA H100 80GB HBM3", "9.0"
    assert mismatches(other, here, hw) == {"gpu": ("NVIDIA H100 80GB HBM3", "NVIDIA H200")}
    assert describe(here, "cuda").startswith("NVIDIA H200 (compute 9.0, driver 570.86, CUDA 12.8, cuDNN 90800")


def test_nas_latency_and_info_warn_once_through_the_predictor(monkeypatch, capsys):
    from nas.cli import main
    from nas.engine.info import _latency

    fake_machine(monkeypatch)
    with pytest.warns(DeviceMismatchWarning, match="calibrate hardware=cpu_ort") as record:
        assert main(["latency", "model=yolo_nas_s", "hardware=cpu_ort"]) == 0
        assert _latency(load_arch("yolo_nas_s"), "cpu_ort")["latency_ms"] > 0
    assert len(record) == 1 and "predicted" in capsys.readouterr().out


def test_gpu_lease_script_without_a_gpu_says_so_and_builds_nothing(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the script would build its table")
    script = Path(__file__).resolve().parents[2] / "experiments" / "latency_predictor" / "gpu_table.py"
    r = subprocess.run([sys.executable, str(script), "budget_s=10"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no CUDA device visible" in r.stderr
    assert not list((tables_dir()).glob("cuda_fp16_*.json"))
