"""Fast adaptation to this machine: a few whole networks measured here re-fit the calibration of a shipped table.

The per-unit table is kept: across two CPUs of one class the table's error is mostly one scale factor
(the same networks, predicted ~2.5x too slow on a faster machine, keep their order and their ratios).
`calibrate` measures `n` of the table's own calibration networks (spread over its latency range) and
fits, by leave-one-out, the simplest correction that holds: a scale of the shipped calibration, a scale
and an offset, or (from 12 networks on) a full re-fit of the calibration on the table's features.

The result is stored per machine beside, never over, the shipped table: in `$NAS_LATENCY_DIR`, else
`$XDG_CACHE_HOME/yolo-nas-search/latency/` (`~/.cache/...`), one JSON per (hardware, device fingerprint),
written atomically. `load_predictor` uses it when its fingerprint and its table match this machine.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nas.errors import ConfigError
from nas.io import write_text_atomic
from nas.latency.build import measure_archs
from nas.latency.device import current_fingerprint, describe
from nas.latency.hardware import Hardware, load_hardware
from nas.latency.predictor import Calibration, calibration_archs, fit_calibration, load_predictor, unit_features
from nas.latency.tables import LatencyTable
from nas.latency.units import decompose
from nas.latency.usercal import FORMAT, table_digest, user_calibration_path
from nas.space.schema import ArchConfig

__all__ = ["adapt", "calibrate", "spread_networks"]

_FULL_REFIT_MIN = 12  # networks needed before the full feature fit is tried (5 weights by leave-one-out)


def _scale_fit(p: np.ndarray, y: np.ndarray, offset: bool) -> tuple[float, float]:
    """(a, b) of y ~ a * p + b minimising relative error, a > 0, b >= 0."""
    from scipy.optimize import lsq_linear

    if not offset:
        r = p / y
        return float(max(r.sum() / (r @ r), 1e-6)), 0.0
    a = np.column_stack([p, np.ones_like(p)]) / y[:, None]
    res = lsq_linear(a, np.ones_like(y), bounds=([1e-6, 0.0], np.inf))
    return float(res.x[0]), float(res.x[1])


def _loo(p: np.ndarray, y: np.ndarray, offset: bool) -> float:
    errs = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        a, b = _scale_fit(p[keep], y[keep], offset)
        errs.append((a * p[i] + b) / y[i] - 1)
    return float(np.sqrt(np.mean(np.square(errs))))


def adapt(base: Calibration | None, x: np.ndarray, y: np.ndarray) -> tuple[Calibration, str]:
    """The best of: scale the shipped calibration, scale + offset, full re-fit (>= 12 networks); by leave-one-out.

    x: table features [N, len(FEATURES)] of the measured networks; y: their latencies measured here (ms).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(y) < 2:
        raise ConfigError(f"calibrate needs at least 2 measured networks, got {len(y)} (n=8 is the default)")
    if base is None:
        base = Calibration(("lut_ms",), (1.0,), 0.0, float("nan"), 0)
    p = base.apply(x)
    options: list[tuple[float, str, Calibration]] = []
    for offset, method in ((False, "scale"), (True, "scale+offset")):
        if offset and len(y) < 4:
            continue
        a, b = _scale_fit(p, y, offset)
        cal = Calibration(
            base.features, tuple(a * c for c in base.coef), a * base.intercept + b, _loo(p, y, offset), len(y)
        )
        options.append((cal.loo_rel_rmse, method, cal))
    if len(y) >= _FULL_REFIT_MIN:
        cal = fit_calibration(x, y)
        options.append((cal.loo_rel_rmse, "refit", cal))
    # simplest first; a more flexible fit must beat it by a margin, not by noise
    best = options[0]
    for opt in options[1:]:
        if opt[0] < best[0] - 0.005:
            best = opt
    return best[2], best[1]


def spread_networks(table: LatencyTable, space: Any, n: int, seed: int) -> list[ArchConfig]:
    """`n` of the table's calibration networks spread evenly over their latency range (or seeded new ones)."""
    archs, ms = table.calibration_set()
    if len(archs) >= n:
        order = np.argsort(ms)
        pos = np.unique(np.round(np.linspace(0, len(archs) - 1, n)).astype(int))
        return [archs[order[i]] for i in pos]
    return calibration_archs(space, n, seed)


class NoisyMeasurementWarning(UserWarning):
    """A calibration measured on a machine that looked busy: its timings disagree with each other."""


# p90/p10 of one network's repeated timings on an idle machine stay within a few percent; another job competing
# for the cores stretches them, and wall time runs ahead of this process's CPU time (one thread).
MAX_SPREAD = 1.2
MIN_CPU_SHARE = 0.8


def load_signs(timings: Sequence[dict[str, Any]], seconds: float, cpu_seconds: float, hw: Hardware) -> dict[str, Any]:
    """How busy the machine looked while measuring: the median p90/p10 of each network's repeated timings and,
    for one thread on the wall clock, the share of the wall time this process spent on the CPU; `busy` when
    either is past its bound (MAX_SPREAD, MIN_CPU_SHARE)."""
    spreads = [t["p90_ms"] / t["p10_ms"] for t in timings if t.get("p10_ms") and t.get("p90_ms")]
    spread = float(np.median(spreads)) if spreads else None
    share = None
    if hw.timing.clock == "wall" and hw.threads == 1 and seconds > 1.0:
        share = cpu_seconds / seconds
    busy = (spread is not None and spread > MAX_SPREAD) or (share is not None and share < MIN_CPU_SHARE)
    return {"median_p90_over_p10": spread, "cpu_share": share, "busy": bool(busy)}


def calibrate(
    hardware: Hardware | str,
    n: int = 8,
    seed: int = 0,
    space: Any = None,
    path: str | os.PathLike | None = None,
    progress: bool = True,
    measure: Callable[[Sequence[ArchConfig], Hardware], list[dict[str, Any]]] | None = None,
    clock: str | None = None,
) -> dict[str, Any]:
    """Measure `n` whole networks here, re-fit the table's calibration, store it for this machine.

    `path`: the table (default: the hardware's). `clock="process"` times CPU time instead of wall time
    (one thread only): on a machine shared with other jobs it measures what the network costs, not the
    neighbours. `measure`: stands in for the harness (tests).
    Returns the stored record (fingerprint, measured networks, fit, where it was written).
    """
    hw = load_hardware(hardware)
    if n < 2:
        raise ConfigError(f"calibrate: n={n}; measure at least 2 networks (8 take ~2 min on one CPU core)")
    pred = load_predictor(hw, space=space, path=path, calibrated=False, warn=False)
    table = pred.table
    fit = table.data.get("calibration", {}).get("fit")
    base = Calibration.from_dict(fit) if fit else None
    archs = spread_networks(table, pred.space, n, seed)
    timing_hw = load_hardware(hw, clock=clock) if clock else hw
    t0, c0 = time.monotonic(), time.process_time()
    run = measure or (lambda a, h: measure_archs(a, h, progress, desc=f"{h.name} calibrate"))
    timings = run(archs, timing_hw)
    seconds, cpu_seconds = time.monotonic() - t0, time.process_time() - c0
    load = load_signs(timings, seconds, cpu_seconds, timing_hw)
    y = np.array([t["median_ms"] for t in timings], dtype=float)
    x = np.stack([unit_features(decompose(a, hw.input_hw), table) for a in archs])
    cal, method = adapt(base, x, y)
    fp = current_fingerprint(hw.accelerator)
    shipped = base.apply(x) if base is not None else x[:, 0]
    record = {
        "format": FORMAT,
        "hardware": hw.name,
        "settings": hw.settings,
        "table": str(table.path),
        "table_digest": table_digest(table),
        "table_fingerprint": table.data.get("fingerprint"),
        "fingerprint": fp,
        "device": describe(fp, hw.accelerator),
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "clock": timing_hw.timing.clock,
        "method": method,
        "fit": cal.to_dict(),
        "measure_seconds": round(seconds, 1),
        "measure_cpu_seconds": round(cpu_seconds, 1),  # < wall time on a machine shared with other jobs
        "load": load,
        "networks": [
            {
                "name": a.name,
                "digest": a.digest(),
                "arch": a.to_dict(),
                "measured_ms": float(y[i]),
                "shipped_ms": float(shipped[i]),
                "adapted_ms": float(cal.apply(x[i])),
                "timing": timings[i],
            }
            for i, a in enumerate(archs)
        ],
    }
    out = user_calibration_path(hw, fp)
    write_text_atomic(out, json.dumps(record, indent=1) + "\n")
    if load["busy"]:
        spread = load["median_p90_over_p10"]
        share = load["cpu_share"]
        warnings.warn(
            f"calibrate: the machine looked busy while measuring (repeated timings of a network spread "
            f"p90/p10 = {'n/a' if spread is None else f'{spread:.2f}'}, bound {MAX_SPREAD}; this process had "
            f"{'n/a' if share is None else f'{share:.0%}'} of the wall time on the CPU, bound {MIN_CPU_SHARE:.0%}): "
            f"the calibration stored in {out} may be slower than this machine is. Re-run when it is idle, or with "
            "clock=process (CPU time, what the network costs regardless of neighbours)",
            NoisyMeasurementWarning,
            stacklevel=2,
        )
    record["path"] = str(out)
    return record
