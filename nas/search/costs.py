"""The cost objectives of a search, from the `ArchConfig` alone (no model is built): `flops_g` and `params_m`
(`nas.latency.counting`, the numbers `nas info` prints) and the latencies predicted by nas.latency's predictor,
`latency_ms` on the selected hardware and `int8_latency_ms` on the `cpu_ort_int8` target."""

from __future__ import annotations

from typing import Any

from nas.errors import ConfigError
from nas.latency import arch_cost, load_hardware, load_predictor
from nas.space import ArchConfig

__all__ = ["COST_IMGSZ", "INT8_HARDWARE", "CostModel", "hardware_name"]

INT8_HARDWARE = "cpu_ort_int8"
COST_IMGSZ = 640  # resolution of `flops_g` when the hardware does not name one


def hardware_name(hardware: Any) -> str | None:
    """The name of `hardware=`: a name, None (no hardware), or a composed hardware YAML with its `name`."""
    if hardware is None or isinstance(hardware, str):
        return hardware
    if isinstance(hardware, dict) and "name" in hardware:
        return str(hardware["name"])
    raise ConfigError(f"hardware={hardware!r}: expected a hardware name (e.g. cpu_ort) or a mapping with a `name`")


class CostModel:
    """The cost metrics of architectures on one hardware target; predictors are loaded when first needed.

    Args:
        hardware: a hardware name, the composed hardware YAML (with any overrides), or None (no latency).
        int8_latency: also predict `int8_latency_ms`.
    """

    def __init__(self, hardware: Any, int8_latency: bool = False):
        self.hardware = hardware_name(hardware)
        self.hardware_spec = hardware
        self.int8_latency = int8_latency
        self._predictor: Any = None
        self._int8_predictor: Any = None
        self._hw: Any = None
        self.cost_imgsz = self._hardware_imgsz() if self.hardware is not None else COST_IMGSZ

    def hardware_target(self) -> Any:
        """nas.latency's Hardware of the configured target."""
        if self._hw is None:
            self._hw = load_hardware(self.hardware_spec)
        return self._hw

    def _hardware_imgsz(self) -> int:
        h, w = self.hardware_target().input_hw
        if h != w:
            raise ConfigError(f"hardware {self.hardware!r}: input_hw {h}x{w}; flops_g assumes a square input")
        return int(h)

    def latency_ms(self, arch: ArchConfig) -> float:
        if self._predictor is None:
            self._predictor = load_predictor(self.hardware_target())
        return float(self._predictor.predict(arch))

    def int8_latency_ms(self, arch: ArchConfig) -> float:
        if self._int8_predictor is None:
            self._int8_predictor = load_predictor(load_hardware(INT8_HARDWARE))
        return float(self._int8_predictor.predict(arch))

    def costs(self, arch: ArchConfig) -> dict[str, float]:
        """The cost metrics of `arch` from its ArchConfig alone (no model): flops_g, params_m, latency_ms."""
        cost = arch_cost(arch, self.cost_imgsz)
        values = {"flops_g": cost.gflops, "params_m": cost.params_m}
        if self.hardware is not None:
            values["latency_ms"] = self.latency_ms(arch)
        if self.int8_latency:
            values["int8_latency_ms"] = self.int8_latency_ms(arch)
        return values
