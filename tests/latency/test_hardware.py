from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nas.errors import ConfigError
from nas.latency.hardware import Hardware, available_hardware, hardware_dir, load_hardware, tables_dir

from .conftest import tiny_hw_dict


def test_shipped_hardware():
    assert {"cpu_ort", "cpu_torch", "cuda_fp16"} <= set(available_hardware())
    ort, eager, cuda = (load_hardware(n) for n in ("cpu_ort", "cpu_torch", "cuda_fp16"))
    assert (ort.backend, ort.accelerator, ort.precision, ort.threads, ort.batch) == ("onnxruntime", "cpu", "fp32", 1, 1)
    assert (eager.backend, eager.accelerator, eager.precision) == ("torch", "cpu", "fp32")
    assert (cuda.backend, cuda.accelerator, cuda.precision, cuda.cuda_graphs) == ("torch", "cuda", "fp16", True)
    assert cuda.input_hw == (640, 640) and cuda.threads is None
    assert ort.table_path == tables_dir() / "cpu_ort.json"
    assert ort == load_hardware(hardware_dir() / "cpu_ort.yaml") == load_hardware(ort.to_dict())
    assert load_hardware(ort.to_dict()).table_path == ort.table_path  # a mapping (Hydra) names a shipped table


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ConfigError, match=r"unknown hardware 'tpu'.*cpu_ort, cpu_ort_int8, cpu_torch, cuda_fp16"):
        load_hardware("tpu")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"backend": "tensorrt"}, "backend: got 'tensorrt'; expected one of onnxruntime, torch"),
        ({"precision": "fp8"}, "precision: got 'fp8'"),
        ({"input_hw": [640, 600]}, "input_hw.*multiples of 32"),
        ({"threads": None}, "threads: got None; expected a fixed thread count"),
        ({"batch": 0}, "batch: got 0"),
        ({"cuda_graphs": True}, "cuda_graphs.*false on the CPU"),
        ({"colour": "red"}, r"unknown key\(s\) \['colour'\]"),
        ({"timing": {"repeats": 0}}, "timing.repeats: got 0"),
        ({"timing": {"rounds": 3}}, r"timing: unknown key\(s\) \['rounds'\]"),
    ],
)
def test_bad_fields_name_the_file_and_the_field(tmp_path, change, match):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({**tiny_hw_dict("mine", "torch"), **change}))
    with pytest.raises(ConfigError, match=match) as e:
        load_hardware(path)
    assert str(path) in str(e.value)


def test_own_hardware_file_keeps_its_table_beside_it(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(tiny_hw_dict("mine", "onnxruntime")))
    hw = load_hardware(str(path))
    assert hw.table_path == tmp_path / "mine.json"
    assert hw.input_hw == (64, 64) and hw.timing.repeats == 3


def test_overrides_and_settings():
    hw = load_hardware("cpu_ort", input_hw=320, repeats=7)
    assert (
        hw.input_hw == (320, 320)
        and hw.timing.repeats == 7
        and hw.timing.warmup == load_hardware("cpu_ort").timing.warmup
    )
    assert hw.settings != load_hardware("cpu_ort").settings
    assert "device" not in hw.settings  # a description, not a measurement setting
    with pytest.raises(ConfigError, match=r"unknown hardware override"):
        load_hardware("cpu_ort", colour="red")
    assert str(load_hardware("cpu_ort")) == "cpu_ort (onnxruntime cpu fp32, batch 1, 640x640, threads 1)"
    assert isinstance(load_hardware(hw), Hardware)


def test_hydra_composes_the_files_as_the_hardware_group():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    conf_dir = str(Path(hardware_dir()).parent)
    for name in available_hardware():
        with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
            cfg = compose(overrides=[f"+hardware={name}"])
        assert load_hardware(OmegaConf.to_object(cfg.hardware)) == load_hardware(name)


def test_list_says_which_tables_are_shipped_and_how_to_build_the_others(capsys, monkeypatch):
    from nas.latency.__main__ import main

    from .conftest import fake_machine

    fake_machine(monkeypatch, gpu={"name": None})
    assert main(["list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["cpu_ort"].endswith("table shipped")
    assert lines["cuda_fp16"].endswith("table cuda_fp16_<gpu>.json, named after the GPU found (none here)")
    fake_machine(monkeypatch, gpu={"name": "NVIDIA H200"})
    assert main(["list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["cuda_fp16"].endswith("no table yet: python -m nas.latency build hardware=cuda_fp16")
