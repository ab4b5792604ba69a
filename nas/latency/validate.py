"""Validation of a hardware's predictor against end-to-end measurements of held-out networks.

Samples networks from the space (never the calibration networks) plus the released references and
measures each interleaved with a fixed reference network (`nas.latency.interleave`), so that machine
drift cancels in the ratio network / reference. Reports, in absolute ms and in the ratio form, the share
within ±5% / ±10%, MAPE, Kendall τ and Spearman ρ, next to baselines fitted on the same calibration set
(raw LUT sum, FLOPs-only, params-only) and the noise floor measured the same way (a subset re-measured).
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
from nas.latency.counting import count_flops, count_params
from nas.latency.device import current_fingerprint
from nas.latency.hardware import Hardware, load_hardware
from nas.latency.interleave import measure_pairs
from nas.latency.predictor import LatencyPredictor, load_predictor, unit_features
from nas.latency.units import decompose
from nas.space.schema import ArchConfig

__all__ = [
    "baselines",
    "compare",
    "fit_linear",
    "metrics",
    "noise_floors",
    "pairwise_metrics",
    "validate",
    "validation_archs",
]


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


def pairwise_metrics(predicted: Sequence[float], measured_ratio: Sequence[float]) -> dict[str, float]:
    """The ratio form between every two held-out networks: for each pair i < j, predicted p_i / p_j against the
    measured ratio_i / ratio_j (each measured against the reference in its own window, so the quotient is
    drift-free and the reference's own prediction error cancels). Share within ±5% / ±10%, MAPE (%)."""
    p, r = np.asarray(predicted, float), np.asarray(measured_ratio, float)
    i, j = np.triu_indices(len(p), k=1)
    rel = np.abs((p[i] / p[j]) / (r[i] / r[j]) - 1)
    return {
        "n_pairs": len(rel),
        "within_5pct": float(np.mean(rel <= 0.05)) if len(rel) else float("nan"),
        "within_10pct": float(np.mean(rel <= 0.10)) if len(rel) else float("nan"),
        "mape_pct": float(100 * rel.mean()) if len(rel) else float("nan"),
    }


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


def _noise_floor(first: Sequence[float], again: Sequence[float]) -> dict[str, Any]:
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
    }


def _noise_note(noise: dict[str, Any]) -> str:
    if not noise["n"]:
        return ""
    return f"noise floor: {noise['within_5pct']:.0%} of {noise['n']} re-measurements within ±5%"


def compare(
    predicted: dict[str, np.ndarray], ref_predicted: dict[str, float], first: list[dict], clock: str = ""
) -> dict:
    """Absolute (ms) and ratio-to-reference metrics of every predictor against interleaved measurements.

    predicted: {predictor: ms per network}; ref_predicted: {predictor: ms of the reference};
    first: `measure_pairs` results in the same order; clock: "" (wall) or "cpu_" (process time).
    """
    ms = np.array([r[f"{clock}net_ms"] for r in first])
    ratio = np.array([r[f"{clock}ratio"] for r in first])
    return {
        "absolute": {k: metrics(v, ms) for k, v in predicted.items()},
        "ratio": {k: metrics(np.asarray(v) / ref_predicted[k], ratio) for k, v in predicted.items()},
    }


def noise_floors(first: list[dict], again: list[dict], clock: str = "") -> dict[str, Any]:
    """Noise floor of the absolute and the ratio form: re-measurements (`again`) against the first ones."""
    by = {r["digest"]: r for r in first}
    pairs = [(by[r["digest"]], r) for r in again if r["digest"] in by]
    out = {
        form: _noise_floor([a[f"{clock}{key}"] for a, _ in pairs], [b[f"{clock}{key}"] for _, b in pairs])
        for form, key in (("absolute", "net_ms"), ("ratio", "ratio"))
    }
    # the pairwise ratio form: the re-measured ratios as a "prediction" of the first ones
    out["pairwise"] = pairwise_metrics([b[f"{clock}ratio"] for _, b in pairs], [a[f"{clock}ratio"] for a, _ in pairs])
    return out


def baselines(table: Any, archs: Sequence[ArchConfig], input_hw: Any) -> dict[str, np.ndarray]:
    """FLOPs-only and params-only lines fitted on the table's calibration networks, and the raw LUT sum."""
    calib_archs, calib_ms = table.calibration_set()
    out = {"lut_sum_raw": np.array([unit_features(decompose(a, input_hw), table)[0] for a in archs])}
    for name, fn in (("flops_linear", lambda a: count_flops(a, input_hw)), ("params_linear", count_params)):
        slope, icpt = fit_linear([fn(a) for a in calib_archs], calib_ms)
        out[name] = np.array([slope * fn(a) + icpt for a in archs])
    return out


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
    reference: str | None = None,
    rounds: int = 5,
) -> dict[str, Any]:
    """Measure held-out networks interleaved with a reference network; compare predictors in ms and in ratio.

    Every network is timed run by run in alternation with `reference` (default: the space's released S,
    else its base), so both share one time window; the first `noise` networks are measured again after
    all the others (the noise floor, in both forms). Resumable: one JSON per network under `out`/pairs
    and `out`/again. Writes `out`/validation.json and validation.png.
    """
    hw = load_hardware(hardware)
    pred = predictor or load_predictor(hw, space=space)
    sp, table = pred.space, pred.table
    ref = sp.references[reference] if reference else sp.references.get("yolo_nas_s", sp.base)
    archs = validation_archs(sp, n, seed, set(table.calibration_archs))
    out_dir = Path(out) if out is not None else Path("runs") / "latency" / hw.name
    t0 = time.monotonic()
    first = measure_pairs(archs, hw, ref, rounds, out_dir=out_dir / "pairs", progress=progress, desc="validation")
    k = min(noise, len(archs))
    again = measure_pairs(archs[:k], hw, ref, rounds, out_dir=out_dir / "again", progress=progress, desc="again")
    elapsed = time.monotonic() - t0

    # one by one, not predict_many: a partial table (e.g. a GPU's reduced unit set) predicts these networks
    predicted = {"predictor": np.array([pred.predict(a) for a in archs]), **baselines(table, archs, hw.input_hw)}
    ref_pred = {
        "predictor": pred.predict(ref),
        **{k_: float(v[0]) for k_, v in baselines(table, [ref], hw.input_hw).items()},
    }
    clock = "" if hw.timing.clock == "wall" else "cpu_"
    rows = []
    for i, a in enumerate(archs):
        r = first[i]
        rows.append(
            {
                "name": a.name,
                "digest": a.digest(),
                "reference": a.name in sp.references,
                "measured_ms": r[f"{clock}net_ms"],
                "measured_ratio": r[f"{clock}ratio"],
                "reference_ms": r[f"{clock}ref_ms"],
                "predicted_ms": float(predicted["predictor"][i]),
                "predicted_ratio": float(predicted["predictor"][i] / ref_pred["predictor"]),
                "lut_sum_ms": float(predicted["lut_sum_raw"][i]),
                "gflops": count_flops(a, hw.input_hw) / 1e9,
                "params_m": count_params(a) / 1e6,
            }
        )
    result = {
        "hardware": hw.to_dict(),
        "table": str(table.path.name),
        "table_fingerprint": table.data.get("fingerprint"),
        "fingerprint": current_fingerprint(hw.accelerator),
        "environment": table.data.get("environment", {}),
        "space": sp.name,
        "seed": seed,
        "reference": ref.name,
        "rounds": rounds,
        "calibration": {
            **(pred.calibration.to_dict() if pred.calibration else {}),
            "source": pred.calibration_source,
            "n_networks": len(table.calibration_archs),
        },
        **compare(predicted, ref_pred, first, clock),
        "noise_floor": noise_floors(first, again, clock),
        "references": {r["name"]: r for r in rows if r["reference"]},
        "measure_seconds": round(elapsed, 1),
        "rows": rows,
    }
    write_text_atomic(out_dir / "validation.json", json.dumps(result, indent=1) + "\n")
    m, q = result["absolute"]["predictor"], result["ratio"]["predictor"]
    title = (
        f"{hw}\nms: {m['within_10pct']:.1%} within ±10%, MAPE {m['mape_pct']:.1f}%; ratio to {ref.name}: "
        f"{q['within_5pct']:.1%} within ±5%, τ {q['kendall_tau']:.3f}, n={m['n']}\n"
        + _noise_note(result["noise_floor"]["ratio"])
    )
    _scatter(out_dir / "validation.png", rows, title)
    result["out"] = str(out_dir)
    return result
