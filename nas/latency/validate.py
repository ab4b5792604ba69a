"""Validation of a hardware's predictor against end-to-end measurements of held-out networks.

Samples networks from the space (never the calibration networks) plus the released references,
measures each with the harness, and reports the share within ±5% / ±10%, MAPE, Kendall τ and
Spearman ρ, next to baselines fitted on the same calibration set (raw LUT sum, FLOPs-only,
params-only) and the noise floor of the measurement itself (the same networks measured again later).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nas.io import write_text_atomic
from nas.latency.build import measure_archs
from nas.latency.counting import count_flops, count_params
from nas.latency.hardware import Hardware, load_hardware
from nas.latency.predictor import LatencyPredictor, load_predictor
from nas.space.schema import ArchConfig

__all__ = ["fit_linear", "metrics", "validate", "validation_archs"]


def metrics(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """Share within ±5% / ±10%, MAPE (%), Kendall τ, Spearman ρ of predicted vs measured."""
    from scipy.stats import kendalltau, spearmanr

    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    rel = np.abs(p / m - 1)
    out = {
        "n": len(m),
        "within_5pct": float(np.mean(rel <= 0.05)),
        "within_10pct": float(np.mean(rel <= 0.10)),
        "mape_pct": float(100 * rel.mean()),
        "max_err_pct": float(100 * rel.max()),
    }
    out["kendall_tau"] = float(kendalltau(p, m).statistic) if len(m) > 1 else float("nan")
    out["spearman_rho"] = float(spearmanr(p, m).statistic) if len(m) > 1 else float("nan")
    return out


def fit_linear(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """(slope, intercept) of y ≈ slope * x + intercept minimising relative error, slope >= 0."""
    from scipy.optimize import lsq_linear

    x, y = np.asarray(x, float), np.asarray(y, float)
    a = np.column_stack([x, np.ones_like(x)]) / y[:, None]
    res = lsq_linear(a, np.ones_like(y), bounds=([0.0, -np.inf], np.inf))
    return float(res.x[0]), float(res.x[1])


def validation_archs(space: Any, n: int, seed: int, exclude: set[str]) -> list[ArchConfig]:
    """`n` distinct seeded random networks of the space plus its references; none of them in `exclude`."""
    rng = np.random.default_rng(seed)
    out: dict[str, ArchConfig] = {}
    for _ in range(100 * n + 100):
        if len(out) == n:
            break
        a = space.random(rng)
        if a.digest() not in exclude:
            out.setdefault(a.digest(), a)
    archs = list(out.values()) + list(space.references.values())
    overlap = {a.digest() for a in archs} & exclude
    assert not overlap, f"validation networks overlap the calibration set: {sorted(overlap)}"
    return archs


def _noise_floor(first: Sequence[float], again: Sequence[float], predicted: Sequence[float]) -> dict[str, Any]:
    """How well a measurement predicts a re-measurement of the same network: the best any predictor can do."""
    if not len(again):
        return {"n": 0}
    ratio = np.asarray(again) / np.asarray(first)
    return {
        "n": len(ratio),
        "within_5pct": float(np.mean(np.abs(ratio - 1) <= 0.05)),
        "within_10pct": float(np.mean(np.abs(ratio - 1) <= 0.10)),
        "median_abs_diff_pct": float(100 * np.median(np.abs(ratio - 1))),
        # log-ratio of two independent measurements has twice the variance of one
        "cv_single_measurement": float(np.std(np.log(ratio)) / np.sqrt(2)) if len(ratio) > 1 else 0.0,
        "predictor_within_10pct_of_remeasured": metrics(predicted, again)["within_10pct"],
    }


def _noise_note(noise: dict[str, Any]) -> str:
    if not noise["n"]:
        return ""
    return f"noise floor: {noise['within_10pct']:.0%} of {noise['n']} re-measurements within ±10%"


def _scatter(path: Path, rows: list[dict], title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    m = np.array([r["measured_ms"] for r in rows])
    p = np.array([r["predicted_ms"] for r in rows])
    ref = np.array([r["reference"] for r in rows])
    lo, hi = min(m.min(), p.min()) * 0.9, max(m.max(), p.max()) * 1.1
    xs = np.array([lo, hi])
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="tab:green", alpha=0.15, label="±10%")
    ax.plot(xs, xs, color="tab:green", lw=1)
    ax.scatter(m[~ref], p[~ref], s=14, color="tab:blue", label="sampled networks")
    for r in rows:
        if r["reference"]:
            ax.scatter([r["measured_ms"]], [r["predicted_ms"]], s=60, marker="*", color="tab:red", zorder=3)
            ax.annotate(r["name"].replace("yolo_nas_", "").upper(), (r["measured_ms"], r["predicted_ms"]), fontsize=9)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def validate(
    hardware: Hardware | str,
    n: int = 100,
    seed: int = 1,
    noise: int = 20,
    space: Any = None,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    predictor: LatencyPredictor | None = None,
) -> dict[str, Any]:
    """Measure held-out networks end to end, compare with the predictor; write validation.json + .png."""
    hw = load_hardware(hardware)
    pred = predictor or load_predictor(hw, space=space)
    sp = pred.space
    table = pred.table
    calib_digests = set(table.calibration_archs)
    archs = validation_archs(sp, n, seed, calib_digests)
    t0 = time.monotonic()
    measured = [s["median_ms"] for s in measure_archs(archs, hw, progress, desc=f"{hw.name} validation")]
    k = min(noise, len(archs))
    again = [s["median_ms"] for s in measure_archs(archs[:k], hw, progress, desc=f"{hw.name} re-measure")]
    elapsed = time.monotonic() - t0
    predicted = pred.predict_many(archs)

    calib_archs, calib_ms = table.calibration_set()
    lut_raw = np.array([pred.features(a)[0] for a in archs])
    baselines: dict[str, np.ndarray] = {"lut_sum_raw": lut_raw}
    for name, fn in (("flops_linear", lambda a: count_flops(a, hw.input_hw)), ("params_linear", count_params)):
        slope, icpt = fit_linear([fn(a) for a in calib_archs], calib_ms)
        baselines[name] = np.array([slope * fn(a) + icpt for a in archs])

    rows = []
    for i, a in enumerate(archs):
        rows.append(
            {
                "name": a.name,
                "digest": a.digest(),
                "reference": a.name in sp.references,
                "measured_ms": measured[i],
                "remeasured_ms": again[i] if i < k else None,
                "predicted_ms": float(predicted[i]),
                "lut_sum_ms": float(lut_raw[i]),
                "gflops": count_flops(a, hw.input_hw) / 1e9,
                "params_m": count_params(a) / 1e6,
            }
        )
    result = {
        "hardware": hw.to_dict(),
        "environment": table.data.get("environment", {}),
        "table": str(table.path.name),
        "space": sp.name,
        "seed": seed,
        "calibration": {**(pred.calibration.to_dict() if pred.calibration else {}), "n_networks": len(calib_ms)},
        "predictor": metrics(predicted, measured),
        "baselines": {name: metrics(v, measured) for name, v in baselines.items()},
        "references": {r["name"]: r for r in rows if r["reference"]},
        "noise_floor": _noise_floor(measured[:k], again, predicted[:k]),
        "measure_seconds": round(elapsed, 1),
        "rows": rows,
    }
    out_dir = Path(out) if out is not None else Path("runs") / "latency" / hw.name
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "validation.json", json.dumps(result, indent=1) + "\n")
    m = result["predictor"]
    title = (
        f"{hw}\n{m['within_10pct']:.1%} within ±10%, MAPE {m['mape_pct']:.1f}%, "
        f"Kendall τ {m['kendall_tau']:.3f}, n={m['n']}\n" + _noise_note(result["noise_floor"])
    )
    _scatter(out_dir / "validation.png", rows, title)
    result["out"] = str(out_dir)
    return result
