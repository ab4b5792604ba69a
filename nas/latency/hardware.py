"""Hardware targets: which backend, precision, batch, input size and threads a latency is measured on.

Targets are plain YAML files in `nas/conf/hardware/` (also the Hydra `hardware` group), selected by
name (`hardware=cpu_ort`) or given as a path to your own file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.errors import ConfigError
from nas.latency.device import current_fingerprint, device_slug
from nas.latency.units import check_input_hw
from nas.options import check, from_dict

__all__ = ["Hardware", "TimingSettings", "available_hardware", "hardware_dir", "load_hardware", "tables_dir"]

BACKENDS = ("onnxruntime", "torch")
ACCELERATORS = ("cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "int8")
CLOCKS = ("wall", "process")  # TimingSettings.clock


@dataclass(frozen=True)
class TimingSettings:
    """Warm-up runs, timed repeats, and a minimum measured time (fast units get more repeats).

    clock "wall" times what a user waits for. clock "process" times the CPU time of this process: on a
    machine shared with other jobs it hardly changes when the CPU is contended, so it shows whether the
    *predictor* is right even where wall-clock timings are noise; it needs one thread (no idle spinning).
    """

    warmup: int = 5
    repeats: int = 20
    min_time_s: float = 0.0
    max_repeats: int = 2000
    clock: str = "wall"

    def __post_init__(self):
        for name in ("warmup", "repeats", "max_repeats"):
            v = getattr(self, name)
            ok = isinstance(v, int) and not isinstance(v, bool) and v >= (0 if name == "warmup" else 1)
            check(ok, name, v, "a positive integer")
        check(isinstance(self.min_time_s, (int, float)) and self.min_time_s >= 0, "min_time_s", self.min_time_s,
              "a number >= 0")  # fmt: skip
        check(self.clock in CLOCKS, "clock", self.clock, "wall or process")


@dataclass(frozen=True)
class Hardware:
    """A latency target. `table` is a file name in `nas/latency/tables/` or a path (relative to `source`)."""

    name: str
    backend: str
    accelerator: str = "cpu"
    precision: str = "fp32"
    batch: int = 1
    input_hw: tuple[int, int] = field(default=(640, 640), metadata={"convert": lambda v: v})  # checked below
    threads: int | None = None
    device: str = ""
    table: str = ""
    cuda_graphs: bool = False
    compile: bool = False
    timing: TimingSettings = field(default_factory=TimingSettings)
    source: str = field(default="", compare=False, metadata={"internal": True})  # the file it was read from

    def __post_init__(self):
        where = self.source or f"hardware {self.name!r}"

        def bad(key: str, value: Any, allowed: str) -> ConfigError:
            return ConfigError(f"{where}: {key}: got {value!r}; expected {allowed}")

        if not isinstance(self.name, str) or not self.name:
            raise bad("name", self.name, "a non-empty string")
        if self.backend not in BACKENDS:
            raise bad("backend", self.backend, f"one of {', '.join(BACKENDS)}")
        if self.accelerator not in ACCELERATORS:
            raise bad("accelerator", self.accelerator, f"one of {', '.join(ACCELERATORS)}")
        if self.precision not in PRECISIONS:
            raise bad("precision", self.precision, f"one of {', '.join(PRECISIONS)}")
        if self.backend == "onnxruntime" and self.accelerator != "cpu":
            raise bad("accelerator", self.accelerator, "cpu for backend onnxruntime (CUDA timing uses backend torch)")
        if self.accelerator == "cpu" and self.precision == "fp16":
            raise bad("precision", self.precision, "fp32 (or int8 with onnxruntime) on the CPU")
        if not isinstance(self.batch, int) or self.batch < 1:
            raise bad("batch", self.batch, "an integer >= 1")
        try:
            object.__setattr__(self, "input_hw", check_input_hw(self.input_hw))
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise bad("threads", self.threads, "an integer >= 1 or null")
        if self.accelerator == "cpu" and self.threads is None:
            raise bad("threads", self.threads, "a fixed thread count for CPU timing (e.g. 2)")
        if self.timing.clock == "process" and (self.accelerator != "cpu" or self.threads != 1):
            raise bad("timing.clock", "process", "wall, or threads: 1 on the CPU (process time sums all threads)")
        if (self.cuda_graphs or self.compile) and self.accelerator != "cuda":
            raise bad("cuda_graphs" if self.cuda_graphs else "compile", True, "false on the CPU")

    @property
    def table_path(self) -> Path:
        """Where this target's lookup table lives (`{device}` in `table` is the CUDA device's short name)."""
        name = self.table or f"{self.name}.json"
        if "{device}" in name:
            name = name.replace("{device}", _cuda_device_slug(self))
        path = Path(name).expanduser()
        if path.is_absolute():
            return path
        src = Path(self.source) if self.source else None
        if src is not None and src.is_file() and src.parent.resolve() != hardware_dir().resolve():
            return src.parent / path  # a user's own hardware file: its table sits beside it
        return tables_dir() / path

    @property
    def settings(self) -> dict[str, Any]:
        """What a table's timings depend on (a table built with other settings is refused)."""
        d = self.to_dict()
        for key in ("device", "table", "name"):
            d.pop(key)
        return d

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source")
        d["input_hw"] = list(self.input_hw)
        return d

    def __str__(self) -> str:
        h, w = self.input_hw
        what = f"{self.backend} {self.accelerator} {self.precision}, batch {self.batch}, {h}x{w}"
        return f"{self.name} ({what}, threads {self.threads})" if self.threads else f"{self.name} ({what})"


def _cuda_device_slug(hw: Hardware) -> str:
    slug = device_slug(current_fingerprint("cuda"))
    if not slug:
        raise ConfigError(
            f"hardware {hw.name!r} names its table after the CUDA device ({hw.table!r}), but no CUDA device is "
            "visible here; on a GPU machine it is found, or copy the hardware file and set `table:` to a table "
            "built elsewhere (e.g. cuda_fp16_h200.json)"
        )
    return slug


def hardware_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "conf" / "hardware"


def tables_dir() -> Path:
    return Path(__file__).resolve().parent / "tables"


def available_hardware() -> list[str]:
    """Names of the shipped hardware targets."""
    return sorted(p.stem for p in hardware_dir().glob("*.yaml"))


_FIELDS = {f.name for f in dataclasses.fields(Hardware)} - {"source"}


def _from_mapping(data: Any, source: str) -> Hardware:
    return from_dict(Hardware, data, source=source, extra={"source": source})


def load_hardware(hardware: str | os.PathLike | Mapping[str, Any] | Hardware, **overrides: Any) -> Hardware:
    """A shipped target by name (`"cpu_ort"`), a hardware YAML file, or a mapping (e.g. Hydra's `cfg.hardware`)."""
    if isinstance(hardware, Hardware):
        hw = hardware
    elif isinstance(hardware, Mapping):
        hw = _from_mapping(hardware, "hardware config")
    else:
        import yaml

        key = str(hardware)
        shipped = hardware_dir() / f"{key}.yaml"
        path = shipped if shipped.is_file() else Path(key).expanduser()
        if not path.is_file() or path.suffix not in (".yaml", ".yml"):
            raise ConfigError(
                f"unknown hardware {key!r}: available hardware is {', '.join(available_hardware())} "
                f"(or pass the path of a hardware YAML file; see {hardware_dir()})"
            )
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: malformed YAML: {e}") from None
        hw = _from_mapping(data, str(path))
    if overrides:
        timing = {k: overrides.pop(k) for k in ("warmup", "repeats", "min_time_s", "clock") if k in overrides}
        if timing:
            overrides["timing"] = dataclasses.replace(hw.timing, **timing)
        unknown = sorted(set(overrides) - _FIELDS)
        if unknown:
            raise ConfigError(f"unknown hardware override(s) {unknown}; allowed: {sorted(_FIELDS)}")
        hw = dataclasses.replace(hw, **overrides)
    return hw
