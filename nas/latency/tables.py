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
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import ConfigError, LatencyTableMissError
from nas.latency.device import current_fingerprint, describe, mismatches
from nas.latency.hardware import Hardware, load_hardware
from nas.latency.units import Unit, decompose
from nas.space.io import write_text_atomic
from nas.space.schema import ArchConfig

__all__ = ["FORMAT", "LatencyTable", "build_command", "build_table", "calibrate_table", "measure_archs"]

FORMAT = 1


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def build_command(hw: Hardware, space: str | None = None, out: str | os.PathLike | None = None) -> str:
    """The command that fills a table for `hw` (quoted in error messages)."""
    from nas.latency.hardware import hardware_dir

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


def _unit_timer(hw: Hardware) -> Callable[[Unit], dict[str, Any]]:
    from nas.latency.modules import unit_module
    from nas.latency.runtimes import make_runtime, measure

    runtime = make_runtime(hw)

    def time_unit(u: Unit) -> dict[str, Any]:
        module, inputs = unit_module(u, hw.batch)
        return measure(module, inputs, runtime, hw.timing).summary()

    return time_unit


def measure_archs(
    archs: Iterable[ArchConfig], hw: Hardware, progress: bool = False, desc: str = "networks"
) -> list[dict[str, Any]]:
    """Measure whole deployed networks end to end: one timing summary per architecture."""
    from tqdm.auto import tqdm

    from nas.latency.modules import deployed_model
    from nas.latency.runtimes import make_runtime, measure

    runtime = make_runtime(hw)
    out = []
    for arch in tqdm(list(archs), desc=desc, disable=not progress, unit="net"):
        model, inputs = deployed_model(arch, hw.input_hw, hw.batch)
        out.append(measure(model, inputs, runtime, hw.timing).summary())
    return out


def _prepare(hw: Hardware, out: str | Path | None) -> LatencyTable:
    from nas.latency.runtimes import environment

    table = LatencyTable.load(hw, out, must_exist=False)
    env = environment(hw)
    fp = current_fingerprint(hw.accelerator)
    old = table.data.get("environment") or {}
    if table.units and table.data.get("fingerprint"):
        diff = mismatches(table.data["fingerprint"], fp, hw)
        if diff:
            raise ConfigError(
                f"{table.path}: was measured on another device ({describe(table.data['fingerprint'], hw.accelerator)}; "
                f"differs in {sorted(diff)}); resuming would mix timings. Build into a new file with out=PATH, "
                "or delete it to start over"
            )
    if table.units and old:
        changed = {
            k: (old.get(k), env.get(k)) for k in ("cpu", "gpu", "torch", "onnxruntime") if old.get(k) != env.get(k)
        }
        if changed:
            raise ConfigError(
                f"{table.path}: was measured in another environment {changed}; resuming would mix timings. "
                "Build into a new file with out=PATH, or delete it to start over"
            )
    table.data["environment"] = env
    table.data["fingerprint"] = fp
    table.data["hardware"] = hw.to_dict()
    return table


def build_table(
    hardware: Hardware | str,
    space: Any = "yolo_nas",
    limit: int | None = None,
    calib: int = 40,
    seed: int = 0,
    out: str | Path | None = None,
    progress: bool = True,
    save_every_s: float = 20.0,
    timer: Callable[[Unit], dict[str, Any]] | None = None,
    first: Iterable[ArchConfig] = (),
) -> LatencyTable:
    """Time every unit of `space` missing from the table, then `calib` whole networks; resumable.

    Units are timed in a seeded shuffled order, so that `limit=` gives a representative sample and the
    progress bar's ETA is honest; the units of the networks in `first` go before all others (a reduced
    set that predicts those networks, e.g. on a GPU lent for minutes). `limit` caps the units timed in
    this call (calibration waits until every unit is there). The table is written atomically every
    `save_every_s` and on exit.
    """
    from tqdm.auto import tqdm

    from nas.latency.spacemap import SpaceMap
    from nas.space.space import SearchSpace, load_space

    hw = load_hardware(hardware)
    sp = space if isinstance(space, SearchSpace) else load_space(space)
    table = _prepare(hw, out)
    if sp.name not in table.data["spaces"]:
        table.data["spaces"].append(sp.name)
    todo = [u for u in SpaceMap(sp, hw.input_hw).units() if u not in table]
    np.random.default_rng(seed).shuffle(todo)  # type: ignore[arg-type]
    early = {u.key for a in first for u in decompose(a, hw.input_hw)}
    todo.sort(key=lambda u: u.key not in early)  # stable: the shuffled order holds within each group
    if limit is not None:
        todo = todo[:limit]
    time_unit = timer or _unit_timer(hw)
    last = time.monotonic()
    try:
        for u in tqdm(todo, desc=f"{hw.name} units", disable=not progress, unit="unit", smoothing=0.05):
            t0 = time.monotonic()
            entry = time_unit(u)
            entry["build_s"] = round(time.monotonic() - t0, 4)  # export + warm-up + timing: for ETAs
            entry["gmacs"] = round(u.macs / 1e9, 6)
            table.units[u.key] = entry
            if time.monotonic() - last >= save_every_s:
                table.save()
                last = time.monotonic()
        missing = [u for u in SpaceMap(sp, hw.input_hw).units() if u not in table]
        if not missing and calib > 0:
            calibrate_table(table, sp, calib, seed, progress, save_every_s)
    finally:
        table.save()
    return table


def calibrate_table(
    table: LatencyTable, space: Any, n: int, seed: int = 0, progress: bool = True, save_every_s: float = 20.0
) -> None:
    """Measure `n` seeded random networks of the space end to end (skipping those already measured), then fit."""
    from tqdm.auto import tqdm

    from nas.latency.predictor import calibration_archs, fit_table

    hw = table.hardware
    archs = calibration_archs(space, n, seed)
    todo = [a for a in archs if a.digest() not in table.calibration_archs]
    last = time.monotonic()
    for arch in tqdm(todo, desc=f"{hw.name} calibration", disable=not progress, unit="net"):
        (summary,) = measure_archs([arch], hw)
        table.calibration_archs[arch.digest()] = {
            "space": space.name,
            "arch": arch.to_dict(),
            "measured_ms": summary["median_ms"],
            "timing": summary,
        }
        if time.monotonic() - last >= save_every_s:
            table.save()
            last = time.monotonic()
    table.data["calibration"]["seed"] = seed
    table.data["calibration"]["fit"] = fit_table(table).to_dict()
