"""Latency predictor: sum of measured unit latencies, calibrated on whole networks measured end to end.

The lookup-table sum misses what happens between units (fusion across unit borders, caches, the
framework's per-call overhead that every separately timed unit pays once). A small linear model on
[LUT sum, GMACs, activation traffic, unit count] corrects it: fitted to minimise *relative* error, the
feature set chosen by leave-one-out (the simplest within a margin), every weight and the intercept non-negative (and the LUT weight
positive), so that a prediction is always positive and never drops when a network gets more or wider
blocks. A per-unit overhead the sum over-counts is absorbed by a LUT weight below 1; at the table sizes
shipped (whole networks of 0.1-2 s) it is well under 1%.

Vectorized: every slot of the network is tabulated over a search space (`SpaceMap`), and because the
calibration is linear, each slot's calibrated contribution is one number per combination of the
choices it reads. A batch given as a choice-index matrix [N, D] is then a sum of gathers.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas.errors import LatencyTableMissError, SpaceError
from nas.latency.device import current_fingerprint, warn_mismatch
from nas.latency.hardware import Hardware, load_hardware
from nas.latency.spacemap import SlotSum, SpaceMap, choice_indices
from nas.latency.tables import LatencyTable, build_command
from nas.latency.units import Unit, decompose
from nas.latency.usercal import calibrate_command, load_user_fit
from nas.space.schema import ArchConfig
from nas.space.space import load_space

__all__ = [
    "FEATURES",
    "Calibration",
    "LatencyPredictor",
    "calibration_archs",
    "fit_calibration",
    "fit_table",
    "load_predictor",
]

FEATURES = ("lut_ms", "gmacs", "act_m", "n_units")
# Candidate feature sets, simplest first; the one with the lowest leave-one-out error is kept, but a
# richer set only when it beats the kept one by LOO_MARGIN (relative RMSE). A term fitted on one machine's
# noise does not hold on another: on cpu_torch a GMACs term won by 0.4 points on the machine that built the
# table and tripled the error of predicted ratios on another CPU (experiments/latency_predictor/results.md).
LOO_MARGIN = 0.005
CANDIDATES = (
    ("lut_ms",),
    ("lut_ms", "n_units"),
    ("lut_ms", "act_m"),
    ("lut_ms", "gmacs"),
    ("lut_ms", "act_m", "n_units"),
    ("lut_ms", "gmacs", "act_m", "n_units"),
)


def unit_features(units: Sequence[Unit], table: LatencyTable, space: str | None = None) -> np.ndarray:
    """[lut_ms, gmacs, act_m, n_units] of a list of units (lut_ms from the table)."""
    missing = [u for u in units if u not in table]
    if missing:
        raise table.miss(missing, space)
    lut = sum(table.latency_ms(u) for u in units)
    return np.array([lut, sum(u.macs for u in units) / 1e9, sum(u.act_elems for u in units) / 1e6, len(units)])


@dataclass(frozen=True)
class Calibration:
    """latency_ms = intercept + sum(coef[i] * feature[i]) over the chosen features."""

    features: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float
    loo_rel_rmse: float
    n: int

    def weights(self) -> np.ndarray:
        """Coefficient per entry of FEATURES (0 for unused ones)."""
        w = np.zeros(len(FEATURES))
        for f, c in zip(self.features, self.coef):
            w[FEATURES.index(f)] = c
        return w

    def apply(self, x: np.ndarray) -> np.ndarray:
        return self.intercept + np.asarray(x) @ self.weights()

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "coef": list(self.coef),
            "intercept": self.intercept,
            "loo_rel_rmse": self.loo_rel_rmse,
            "n": self.n,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls(tuple(d["features"]), tuple(d["coef"]), float(d["intercept"]), float(d["loo_rel_rmse"]), int(d["n"]))


def _fit(x: np.ndarray, y: np.ndarray, features: tuple[str, ...]) -> tuple[np.ndarray, float]:
    from scipy.optimize import lsq_linear

    cols = [FEATURES.index(f) for f in features]
    a = np.column_stack([x[:, cols], np.ones(len(y))]) / y[:, None]  # relative residuals
    # more compute, traffic or units never make a network faster; positive LUT weight: positive predictions
    lb = [1e-3 if f == "lut_ms" else 0.0 for f in features] + [0.0]
    res = lsq_linear(a, np.ones(len(y)), bounds=(lb, np.inf))
    return res.x[:-1], float(res.x[-1])


def fit_calibration(x: np.ndarray, y: np.ndarray) -> Calibration:
    """Fit on features [N, 4] (FEATURES order) and measured latencies [N]; feature set by leave-one-out.

    A richer feature set must beat the simpler one by LOO_MARGIN, not by the noise of its networks.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(y)
    if n < 3:
        raise ValueError(f"calibration needs at least 3 measured networks, got {n}")
    best: tuple[float, tuple[str, ...]] | None = None
    for feats in CANDIDATES:
        if len(feats) + 1 >= n:
            continue
        errs = []
        for i in range(n):
            keep = np.arange(n) != i
            coef, b = _fit(x[keep], y[keep], feats)
            pred = b + x[i, [FEATURES.index(f) for f in feats]] @ coef
            errs.append(pred / y[i] - 1)
        loo = float(np.sqrt(np.mean(np.square(errs))))
        if best is None or loo < best[0] - LOO_MARGIN:
            best = (loo, feats)
    assert best is not None
    coef, b = _fit(x, y, best[1])
    return Calibration(best[1], tuple(float(c) for c in coef), b, best[0], n)


def fit_table(table: LatencyTable) -> Calibration:
    """Calibration of a table on its own measured networks."""
    archs, measured = table.calibration_set()
    x = np.stack([unit_features(decompose(a, table.hardware.input_hw), table) for a in archs])
    return fit_calibration(x, measured)


def calibration_archs(space: Any, n: int, seed: int = 0) -> list[ArchConfig]:
    """The `n` seeded random networks a table is calibrated on (never the released references)."""
    refs = {a.digest() for a in space.references.values()}
    rng = np.random.default_rng(seed)
    out: dict[str, ArchConfig] = {}
    for _ in range(100 * n + 100):  # bounded: a space with fewer than n distinct points would loop forever
        if len(out) == n:
            return list(out.values())
        a = space.random(rng)
        if a.digest() not in refs:
            out.setdefault(a.digest(), a)
    raise SpaceError(f"space {space.name!r} has fewer than {n} distinct non-reference architectures")


class LatencyPredictor:
    """Predicted latency (ms) of architectures on one hardware target."""

    def __init__(
        self, table: LatencyTable, calibration: Calibration | None, space: Any = None, source: str | None = None
    ):
        self.table, self.hardware, self.calibration = table, table.hardware, calibration
        self._space = space
        # where the calibration comes from (the table's, or this machine's own calibration file)
        self.calibration_source = source or ("given" if calibration is not None else "lookup-table sum")

    def __repr__(self) -> str:
        cal = f"calibrated on {self.calibration.n} networks" if self.calibration else "uncalibrated LUT sum"
        return f"LatencyPredictor({self.hardware}, {len(self.table)} units, {cal})"

    @property
    def space(self) -> Any:
        """The search space that choice-index matrices refer to (the table's first space by default)."""
        if self._space is None:
            self._space = load_space((self.table.data.get("spaces") or ["yolo_nas"])[0])
        return self._space

    def _weights(self) -> tuple[np.ndarray, float]:
        if self.calibration is None:
            return np.eye(len(FEATURES))[0], 0.0
        return self.calibration.weights(), self.calibration.intercept

    def features(self, arch: ArchConfig) -> np.ndarray:
        """[lut_ms, gmacs, act_m, n_units] of one architecture."""
        return unit_features(decompose(arch, self.hardware.input_hw), self.table, self._space_name())

    def _space_name(self) -> str | None:
        return self._space.name if self._space is not None else None

    def predict(self, arch: ArchConfig) -> float:
        """Predicted latency in ms."""
        w, b = self._weights()
        return float(b + self.features(arch) @ w)

    @functools.cached_property
    def _slot_sum(self) -> Any:
        """Calibrated contribution of every slot over the space, for `predict_many` on index matrices."""
        w, _ = self._weights()
        smap = SpaceMap(self.space, self.hardware.input_hw)
        missing = {u.key: u for u in smap.units() if u not in self.table}
        if missing:
            raise self.table.miss(list(missing.values()), self.space.name)
        return SlotSum(smap, lambda units: float(unit_features(units, self.table) @ w))

    def predict_many(self, archs: np.ndarray | Sequence[ArchConfig]) -> np.ndarray:
        """Predicted ms for a choice-index matrix [N, D] of `self.space` or a list of architectures."""
        if isinstance(archs, np.ndarray):
            return self._predict_indices(archs)
        archs = list(archs)
        if all(self.space.contains(a) for a in archs):
            return self._predict_indices(choice_indices(self.space, archs))
        return np.array([self.predict(a) for a in archs])

    def _predict_indices(self, idx: np.ndarray) -> np.ndarray:
        return self._weights()[1] + self._slot_sum(idx)


def load_predictor(
    hardware: Hardware | str | os.PathLike | dict = "cpu_ort",
    space: Any = None,
    calibrated: bool = True,
    path: str | os.PathLike | None = None,
    warn: bool = True,
) -> LatencyPredictor:
    """The predictor of a hardware target from its shipped (or own) table, or the table at `path`.

    The calibration is this machine's own (`python -m nas.latency calibrate`) when one was made here for
    this table, else the table's. Otherwise, if the table was measured on another device (or does not
    record which), one `DeviceMismatchWarning` per process says so and names the command that fixes it.
    `calibrated=False` uses the raw lookup-table sum (e.g. on a table whose calibration is not built yet).
    """
    hw = load_hardware(hardware)
    table = LatencyTable.load(hw, path)
    fingerprint = current_fingerprint(hw.accelerator)
    own = load_user_fit(table, fingerprint) if calibrated else None
    if own is None and warn:
        warn_mismatch(
            f"latency table {table.path}", table.data.get("fingerprint"), fingerprint, hw, calibrate_command(hw)
        )
    calibration, source = None, "lookup-table sum"
    if own is not None:
        calibration, source = Calibration.from_dict(own[0]), f"this machine's calibration {own[1]}"
    elif calibrated:
        source = f"the table's calibration ({table.path.name})"
        fit = table.data.get("calibration", {}).get("fit")
        if fit is None:
            raise LatencyTableMissError(
                f"{table.path}: the table has no calibration yet (whole networks measured end to end); "
                f"finish it with `{build_command(hw)}`, or use load_predictor(..., calibrated=False)"
            )
        calibration = Calibration.from_dict(fit)
    if isinstance(space, str):
        space = load_space(space)
    return LatencyPredictor(table, calibration, space, source)
