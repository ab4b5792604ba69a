"""The options of `nas latency` and the shipped latency target: defaults and checks, once (torch-free: `nas help`
imports this module)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from nas.latency.hardware import CLOCKS
from nas.options import check_one_of

__all__ = ["HARDWARE", "LatencyOptions"]

HARDWARE = "cpu_ort"  # the shipped latency target


@dataclass(frozen=True)
class LatencyOptions:
    """`nas latency`: predicted (and, with measure=True, measured) latency on a target."""

    hardware: str | None = HARDWARE
    measure: bool = False
    clock: str | None = None

    HELP: ClassVar = {
        "hardware": "latency target (python -m nas.latency list)",
        "measure": "also measure it end to end on this machine (the target's runtime)",
        "clock": "measure=true on this clock: wall or process (CPU time, one thread; default: the target's)",
    }

    def __post_init__(self):
        if self.clock is not None:
            check_one_of("clock", self.clock, CLOCKS)
