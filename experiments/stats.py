"""Interval helpers shared by the experiments' reports (one place for the t interval of a mean over seeds)."""

from __future__ import annotations

import numpy as np


def t_interval(values: list[float], level: float = 0.95) -> list[float] | None:
    """The t interval of the mean of `values` (e.g. over training seeds); None for fewer than two values: one
    value has no interval, not a zero-width one."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return None
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return [float(v.mean()) - half, float(v.mean()) + half]
