"""Tiny architectures, a tiny search space and a tiny hardware target: latency tests run in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nas.latency.hardware import Hardware, TimingSettings
from nas.space.io import load_arch
from nas.space.schema import ArchConfig
from nas.space.space import SearchSpace

TINY_HW = 64


def tiny_arch() -> ArchConfig:
    """A YOLO-NAS-topology network with 8-32 channels (S's structure, a fraction of its width)."""
    d = load_arch("yolo_nas_s").to_dict()
    d["name"] = "tiny"
    d["backbone"]["stem"]["out_channels"] = 8
    for st, (c, n, h) in zip(d["backbone"]["stages"], [(16, 1, 8), (16, 1, 8), (32, 1, 8), (32, 1, 16)]):
        st.update(out_channels=c, num_blocks=n, hidden_channels=h)
    d["backbone"]["context"]["out_channels"] = 32
    for st, c in zip(d["neck"]["up"] + d["neck"]["down"], [16, 8, 16, 32]):
        st.update(out_channels=c, num_blocks=1, hidden_channels=8)
    for h, c in zip(d["heads"]["heads"], [8, 16, 16]):
        h.update(inter_channels=c, width_mult=1.0)
    d["heads"]["num_classes"] = 4
    return ArchConfig.from_dict(d)


TINY_DIMS = {
    "backbone.stages.0.num_blocks": [1, 2],
    "neck.up.1.hidden_channels": [8, 16],
    "heads.heads.0.first_conv_group_size": [0, -1],
}


def tiny_space_dict(base_path: str) -> dict:
    return {"name": "tiny", "description": "tests", "base": base_path, "references": [], "dimensions": TINY_DIMS}


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory) -> dict[str, Path]:
    """tiny arch YAML, tiny space YAML and a tiny torch hardware YAML in a temporary folder."""
    root = tmp_path_factory.mktemp("tiny")
    arch = root / "tiny_arch.yaml"
    arch.write_text(tiny_arch().to_yaml())
    space = root / "tiny_space.yaml"
    space.write_text(yaml.safe_dump(tiny_space_dict(str(arch)), sort_keys=False))
    hw = root / "tiny_torch.yaml"
    hw.write_text(yaml.safe_dump(tiny_hw_dict("tiny_torch", "torch")))
    return {"arch": arch, "space": space, "hardware": hw, "root": root}


def tiny_hw_dict(name: str, backend: str) -> dict:
    return {
        "name": name,
        "backend": backend,
        "accelerator": "cpu",
        "precision": "fp32",
        "batch": 1,
        "input_hw": [TINY_HW, TINY_HW],
        "threads": 1,
        "device": "test CPU",
        "table": f"{name}.json",
        "timing": {"warmup": 1, "repeats": 3, "min_time_s": 0.0},
    }


@pytest.fixture(scope="session")
def tiny_space(tiny_files) -> SearchSpace:
    from nas.space.space import load_space

    return load_space(tiny_files["space"])


def tiny_hardware(tmp_path: Path, name: str = "tiny_torch", backend: str = "torch") -> Hardware:
    return Hardware(
        name=name,
        backend=backend,
        input_hw=(TINY_HW, TINY_HW),
        threads=1,
        device="test CPU",
        table=str(tmp_path / f"{name}.json"),
        timing=TimingSettings(warmup=1, repeats=3),
    )


def fake_timer(calls: list | None = None):
    """A deterministic stand-in for the harness: 'latency' = 0.02 ms + 1 ms per GMAC."""

    def time_unit(u) -> dict:
        if calls is not None:
            calls.append(u.key)
        return {"median_ms": 0.02 + u.macs / 1e6, "p10_ms": 0.0, "p90_ms": 0.0, "iqr_ms": 0.0, "cv": 0.0, "n": 1}

    return time_unit


@pytest.fixture(scope="session")
def tiny_table(tiny_files, tmp_path_factory):
    """A real table of the tiny space, timed with torch at 64x64 and calibrated on 5 networks."""
    from nas.latency.build import build_table
    from nas.latency.hardware import load_hardware

    hw = load_hardware(tiny_files["hardware"])
    return build_table(hw, space=str(tiny_files["space"]), calib=5, progress=False)


@pytest.fixture(autouse=True)
def _own_calibration_dir(tmp_path_factory, monkeypatch):
    """Per-machine calibrations of the tests go to a temporary folder, and each test may warn afresh."""
    from nas.latency import device

    monkeypatch.setenv("NAS_LATENCY_DIR", str(tmp_path_factory.mktemp("latency_user")))
    monkeypatch.setattr(device, "_WARNED", set())


_REAL_CPU_FINGERPRINT = __import__("nas.latency.device", fromlist=["x"]).cpu_fingerprint

CPUINFO_ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9654 96-Core Processor
stepping\t: 1
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni avx512_bf16

processor\t: 1
vendor_id\t: AuthenticAMD
"""


def fake_machine(monkeypatch, cpuinfo: str = CPUINFO_ZEN4, gpu: dict | None = None) -> dict:
    """Make this test run on a faked machine: /proc/cpuinfo text (and a GPU fingerprint) of our choice."""
    from nas.latency import device

    monkeypatch.setattr(device, "cpu_fingerprint", lambda cpuinfo_text=None: _REAL_CPU_FINGERPRINT(cpuinfo))
    if gpu is not None:
        monkeypatch.setattr(device, "gpu_fingerprint", lambda: dict(gpu))
    return device.current_fingerprint("cuda" if gpu is not None else "cpu")
