"""Per-unit latency lookup tables: one JSON file per hardware, built on the target, resumable.

A table holds the median latency of every unit a search space can produce (see `nas.latency.units`),
measured in its deployed form with the hardware's runtime, plus the whole networks measured end to end
for the calibration (`nas.latency.predictor`). It records where and how it was measured (CPU/GPU model,
library versions, threads, input size, timing settings, dates) and the device's fingerprint
(`nas.latency.device`). Writes are atomic and periodic: a
killed build keeps what it measured and continues where it stopped.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import ConfigError, LatencyTableMissError
from nas.io import write_text_atomic
from nas.latency.hardware import Hardware, hardware_dir, load_hardware
from nas.latency.units import Unit
from nas.space.schema import ArchConfig

__all__ = ["FORMAT", "LatencyTable", "build_command"]

FORMAT = 1


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def build_command(hw: Hardware, space: str | None = None, out: str | os.PathLike | None = None) -> str:
    """The command that fills a table for `hw` (quoted in error messages)."""
    src = Path(hw.source) if hw.source else None
    own_file = src is not None and src.is_file() and src.resolve().parent != hardware_dir().resolve()
    cmd = f"python -m nas.latency build hardware={hw.source if own_file else hw.name}"
    return cmd + (f" space={space}" if space else "") + (f" out={out}" if out else "")


class LatencyTable:
    """Unit latencies (ms) of one hardware, and the whole networks measured for calibration."""

    def __init__(self, hardware: Hardware, path: Path, data: dict[str, Any] | None = None):
        self.hardware, self.path = hardware, Path(path)
        self.data = data or {
            "format": FORMAT,
            "hardware": hardware.to_dict(),
            "environment": {},
            "created": _now(),
            "updated": _now(),
            "spaces": [],
            "units": {},
            "calibration": {"archs": {}},
        }

    # ---- files -----------------------------------------------------------------------------------
    @classmethod
    def load(cls, hardware: Hardware | str, path: str | Path | None = None, must_exist: bool = True) -> LatencyTable:
        """The table of `hardware` (at `path` or the hardware's table path); an empty one if absent."""
        hw = load_hardware(hardware)
        p = Path(path) if path is not None else hw.table_path
        if not p.is_file():
            if must_exist:
                raise LatencyTableMissError(
                    f"no latency table for hardware {hw.name!r} at {p}; build it with `{build_command(hw)}`"
                )
            return cls(hw, p)
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"{p}: not a valid latency table ({e}); delete it and rebuild with `{build_command(hw)}`"
            ) from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or "units" not in data:
            raise ConfigError(f"{p}: not a latency table of format {FORMAT}; rebuild with `{build_command(hw)}`")
        table = cls(hw, p, data)
        table._check_settings()
        return table

    def _check_settings(self) -> None:
        stored = load_hardware({**self.data["hardware"], "name": self.hardware.name}).settings
        if stored != self.hardware.settings:
            diff = {k: (stored.get(k), v) for k, v in self.hardware.settings.items() if stored.get(k) != v}
            raise ConfigError(
                f"{self.path}: measured with other settings than hardware {self.hardware.name!r} "
                f"(field: (table, hardware) = {diff}); rebuild it, or build elsewhere with out=PATH"
            )

    def save(self) -> Path:
        self.data["updated"] = _now()
        return write_text_atomic(self.path, json.dumps(self.data, indent=1, sort_keys=False) + "\n")

    # ---- units -----------------------------------------------------------------------------------
    @property
    def units(self) -> dict[str, dict[str, Any]]:
        return self.data["units"]

    def __contains__(self, unit: Unit | str) -> bool:
        return (unit.key if isinstance(unit, Unit) else unit) in self.units

    def __len__(self) -> int:
        return len(self.units)

    def latency_ms(self, unit: Unit, space: str | None = None) -> float:
        entry = self.units.get(unit.key)
        if entry is None:
            raise self.miss([unit], space)
        return float(entry["median_ms"])

    def miss(self, units: list[Unit], space: str | None = None) -> LatencyTableMissError:
        more = f" (and {len(units) - 1} more)" if len(units) > 1 else ""
        return LatencyTableMissError(
            f"no latency entry for {units[0].key}{more} in {self.path.name} ({self.path}); "
            f"run `{build_command(self.hardware, space)}`"
        )

    # ---- calibration networks --------------------------------------------------------------------
    @property
    def calibration_archs(self) -> dict[str, dict[str, Any]]:
        """{arch digest: {"arch": ArchConfig dict, "measured_ms": ..., "timing": ...}}."""
        return self.data["calibration"]["archs"]

    def eta_s(self, units: Iterable[Unit]) -> float | None:
        """Seconds to time the missing ones of `units` at the rate measured so far (s ~ a + b * GMACs)."""
        todo = [u for u in units if u not in self]
        done = [(e["gmacs"], e["build_s"]) for e in self.units.values() if "build_s" in e and "gmacs" in e]
        if not todo:
            return 0.0
        if len(done) < 5:
            return None
        x, secs = np.array(done, dtype=float).T
        coef, *_ = np.linalg.lstsq(np.column_stack([np.ones_like(x), x]), secs, rcond=None)
        a, b = max(coef[0], 0.0), max(coef[1], 0.0)
        return float(sum(a + b * u.macs / 1e9 for u in todo))

    def calibration_set(self) -> tuple[list[ArchConfig], np.ndarray]:
        archs, ms = [], []
        for entry in self.calibration_archs.values():
            archs.append(ArchConfig.from_dict(entry["arch"]))
            ms.append(entry["measured_ms"])
        return archs, np.asarray(ms, dtype=float)
