"""Latency predictor benchmark: LUT + calibration vs raw LUT sum, FLOPs-only and params-only predictors.

For each hardware target: validate its table on held-out networks (or reuse an existing validation JSON),
then put the predictor and the baselines (each baseline a linear fit on the same calibration networks)
side by side: share within ±5% / ±10%, MAPE, Kendall τ, Spearman ρ, and the measurement's own noise
floor. Also measures the vectorized predictor's throughput on one core.

    python experiments/latency_predictor/run.py                       # cpu_ort and cpu_torch, n=100
    python experiments/latency_predictor/run.py hardware=cpu_ort n=100 noise=20 reuse=1

Writes results/<hardware>/validation.{json,png}, results.json and results.md next to this file.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # run from anywhere inside the repository

import numpy as np  # noqa: E402

from nas.errors import LatencyTableMissError  # noqa: E402
from nas.io import write_text_atomic  # noqa: E402
from nas.latency.hardware import load_hardware  # noqa: E402

ROWS = (("predictor", "LUT + calibration"), ("lut_sum_raw", "LUT sum (raw)"), ("flops_linear", "FLOPs, linear fit"))
ROWS += (("params_linear", "params, linear fit"),)


def throughput(hardware: str, space: str, n: int = 200_000) -> dict:
    """Architectures per second of `predict_many` on a choice-index matrix (single-threaded numpy)."""
    from nas.latency.predictor import LatencyPredictor, load_predictor
    from nas.latency.spacemap import SpaceMap
    from nas.latency.tables import LatencyTable
    from nas.space.space import load_space

    hw = load_hardware(hardware)
    sp = load_space(space)
    try:
        pred = load_predictor(hw, space=sp)
        source = hw.table_path.name
    except LatencyTableMissError:  # no table yet: time the same code path on an in-memory table of made-up values
        table = LatencyTable(hw, hw.table_path)
        for u in SpaceMap(sp, hw.input_hw).units():
            table.units[u.key] = {"median_ms": 1.0 + u.macs / 1e9}
        pred, source = LatencyPredictor(table, None, sp), "synthetic table (timing only)"
    rng = np.random.default_rng(0)
    idx = np.column_stack([rng.integers(len(d.choices), size=n) for d in sp.dimensions])
    pred.predict_many(idx[:10])  # builds the per-slot arrays once
    t0 = time.perf_counter()
    pred.predict_many(idx)
    dt = time.perf_counter() - t0
    one = sp.references[next(iter(sp.references))] if sp.references else sp.base
    t0 = time.perf_counter()
    for _ in range(200):
        pred.predict(one)
    scalar = (time.perf_counter() - t0) / 200
    return {"archs_per_s": n / dt, "n": n, "seconds": dt, "scalar_predict_ms": 1e3 * scalar, "table": source}


def markdown(results: dict) -> str:
    lines = ["# Latency predictor: LUT + calibration vs FLOPs / params", ""]
    lines.append("Held-out networks sampled from the space plus the released S/M/L, measured end to end with the")
    lines.append("harness; every baseline is a linear fit on the same calibration networks as the predictor.")
    lines.append("")
    lines.append("| hardware | predictor | n | within ±5% | within ±10% | MAPE % | Kendall τ | Spearman ρ |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results["hardware"].items():
        for key, label in ROWS:
            m = r["predictor"] if key == "predictor" else r["baselines"][key]
            lines.append(
                f"| {name} | {label} | {m['n']} | {m['within_5pct']:.1%} | {m['within_10pct']:.1%} | "
                f"{m['mape_pct']:.2f} | {m['kendall_tau']:.3f} | {m['spearman_rho']:.3f} |"
            )
    lines += [
        "",
        "Noise floor: the same networks measured again after the others (a perfect predictor cannot beat it).",
        "",
    ]
    lines.append("| hardware | re-measured | within ±5% | within ±10% | median diff % | CV of one measurement |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    for name, r in results["hardware"].items():
        nf = r["noise_floor"]
        if nf["n"]:
            lines.append(
                f"| {name} | {nf['n']} | {nf['within_5pct']:.0%} | {nf['within_10pct']:.0%} | "
                f"{nf['median_abs_diff_pct']:.2f} | {nf['cv_single_measurement']:.2%} |"
            )
    lines += ["", "Settings and calibration:", ""]
    for name, r in results["hardware"].items():
        hw, env, cal = r["hardware"], r["environment"], r["calibration"]
        feats = ", ".join(f"{c:.4g}·{f}" for f, c in zip(cal.get("features", []), cal.get("coef", [])))
        lines.append(
            f"- **{name}**: {hw['backend']} {hw['accelerator']} {hw['precision']}, batch {hw['batch']}, "
            f"{hw['input_hw'][0]}x{hw['input_hw'][1]}, threads {hw['threads']}; {env.get('cpu', '?')}, "
            f"torch {env.get('torch', '?')}, onnxruntime {env.get('onnxruntime', '-')}; calibration on "
            f"{cal.get('n_networks')} networks: {cal.get('intercept', 0):.4g} + {feats} "
            f"(leave-one-out relative RMSE {cal.get('loo_rel_rmse', float('nan')):.2%}); measuring took "
            f"{r['measure_seconds']:.0f} s"
        )
    t = results["throughput"]
    lines += [
        "",
        f"Vectorized prediction: {t['archs_per_s']:,.0f} architectures/s on one core ({t['n']:,} in "
        f"{t['seconds']:.3f} s, {t['table']}); scalar `predict(arch)`: {t['scalar_predict_ms']:.2f} ms.",
        "",
        f"Command: `{results['command']}`",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    args = dict(a.split("=", 1) for a in argv)
    names = args.get("hardware", "cpu_ort,cpu_torch").split(",")
    n, noise, seed = int(args.get("n", 100)), int(args.get("noise", 20)), int(args.get("seed", 1))
    space = args.get("space", "yolo_nas")
    out = Path(args.get("out", HERE))
    reuse = args.get("reuse", "0") == "1"
    from nas.latency.validate import validate

    results: dict = {"hardware": {}, "command": "python experiments/latency_predictor/run.py " + " ".join(argv)}
    for name in names:
        hw = load_hardware(name)
        dest = out / "results" / hw.name
        if reuse and (dest / "validation.json").is_file():
            r = json.loads((dest / "validation.json").read_text())
        else:
            r = validate(hw, n=n, seed=seed, noise=noise, space=space, out=dest)
        r.pop("rows", None)
        results["hardware"][hw.name] = r
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    results["throughput"] = throughput(names[0], space)
    write_text_atomic(out / "results.json", json.dumps(results, indent=1) + "\n")
    write_text_atomic(out / "results.md", markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
