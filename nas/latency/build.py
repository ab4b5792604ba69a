"""Building a latency table on this machine: time every unit of a space, then whole networks for the calibration.

Resumable and written atomically as it goes. Imports torch (through the timed modules); reading a table
(`nas.latency.tables`) and predicting from it (`nas.latency.predictor`) do not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from nas.errors import ConfigError
from nas.latency.device import current_fingerprint, describe, mismatches
from nas.latency.hardware import Hardware, load_hardware
from nas.latency.modules import deployed_model, unit_module
from nas.latency.predictor import calibration_archs, fit_table
from nas.latency.runtimes import environment, make_runtime, measure
from nas.latency.spacemap import SpaceMap
from nas.latency.tables import LatencyTable
from nas.latency.units import Unit, decompose
from nas.space.schema import ArchConfig
from nas.space.space import SearchSpace, load_space

__all__ = ["build_table", "calibrate_table", "measure_archs"]


def _unit_timer(hw: Hardware) -> Callable[[Unit], dict[str, Any]]:
    runtime = make_runtime(hw)

    def time_unit(u: Unit) -> dict[str, Any]:
        module, inputs = unit_module(u, hw.batch)
        return measure(module, inputs, runtime, hw.timing).summary()

    return time_unit


def measure_archs(
    archs: Iterable[ArchConfig], hw: Hardware, progress: bool = False, desc: str = "networks"
) -> list[dict[str, Any]]:
    """Measure whole deployed networks end to end: one timing summary per architecture."""
    runtime = make_runtime(hw)
    out = []
    for arch in tqdm(list(archs), desc=desc, disable=not progress, unit="net"):
        model, inputs = deployed_model(arch, hw.input_hw, hw.batch)
        out.append(measure(model, inputs, runtime, hw.timing).summary())
    return out


def _prepare(hw: Hardware, out: str | Path | None) -> LatencyTable:
    table = LatencyTable.load(hw, out, must_exist=False)
    env = environment(hw)
    fp = current_fingerprint(hw.accelerator)
    old = table.data.get("environment") or {}
    if table.units and table.data.get("fingerprint"):
        diff = mismatches(table.data["fingerprint"], fp, hw)
        if diff:
            raise ConfigError(
                f"{table.path}: was measured on another device ({describe(table.data['fingerprint'], hw.accelerator)}"
                f"; differs in {sorted(diff)}); resuming would mix timings. Build into a new file with out=PATH, "
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
