"""Latency predictor benchmark on the measurements of `measure_here.py`: ratio form and milliseconds.

For every CPU target measured (results/<machine>/<target>/{heldout,again,calib}/*.json, each network
timed interleaved with the released S) put side by side, in the ratio form (network / S, drift-free)
and in milliseconds (after adapting to this machine on the `calib` networks):

- LUT + calibration (the shipped predictor; its calibration fitted on the table's 40 networks);
- LUT + per-unit-type calibration (one weight per unit kind's table time, and per kind's GMACs);
- raw LUT sum; FLOPs-only and params-only lines (fitted on the same 40 networks);

with the noise floor measured the same way (a subset re-measured after all others). Both clocks are
reported: wall (what a user waits for) and process CPU time (less sensitive to the other jobs).

    python experiments/latency_predictor/run.py machine=machine_b      # here=false: write only results/machine_b/

Writes results.json and results.md next to this file.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import numpy as np  # noqa: E402

from nas.io import write_text_atomic  # noqa: E402
from nas.latency.device import describe  # noqa: E402
from nas.options import from_args  # noqa: E402

KINDS = ("conv", "upsample", "csp_in", "bottlenecks", "concat_conv", "spp", "decode")
LABELS = {
    "lut_cal": "LUT + calibration",
    "lut_kind": "LUT + per-unit-type calibration",
    "lut_raw": "LUT sum (raw)",
    "flops": "FLOPs, linear fit",
    "params": "params, linear fit",
}


def features(arch, table) -> dict[str, np.ndarray]:
    """Per-network features of every predictor (from the table and the ArchConfig alone)."""
    from nas.latency.counting import count_flops, count_params
    from nas.latency.predictor import unit_features
    from nas.latency.units import decompose

    units = decompose(arch, table.hardware.input_hw)
    base = unit_features(units, table)
    lut_kind, mac_kind = np.zeros(len(KINDS)), np.zeros(len(KINDS))
    for u in units:
        lut_kind[KINDS.index(u.kind)] += table.latency_ms(u)
        mac_kind[KINDS.index(u.kind)] += u.macs / 1e9
    return {
        "base": base,
        "lut_raw": base[:1],
        "lut_kind": np.concatenate([lut_kind, mac_kind]),
        "flops": np.array([count_flops(arch, table.hardware.input_hw) / 1e9]),
        "params": np.array([count_params(arch, fused=True) / 1e6]),
    }


def nnls_rel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative weights and intercept minimising relative error (as the shipped calibration)."""
    from scipy.optimize import lsq_linear

    a = np.column_stack([x, np.ones(len(y))]) / y[:, None]
    return lsq_linear(a, np.ones(len(y)), bounds=(0, np.inf)).x


def loo_rel_rmse(x: np.ndarray, y: np.ndarray) -> float:
    errs = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        w = nnls_rel(x[keep], y[keep])
        errs.append((np.r_[x[i], 1.0] @ w) / y[i] - 1)
    return float(np.sqrt(np.mean(np.square(errs))))


def predictors(table, fit_archs, fit_ms, archs) -> dict[str, np.ndarray]:
    """ms of `archs` by every predictor, each fitted on (fit_archs, fit_ms)."""
    from nas.latency.predictor import fit_calibration

    f_fit = [features(a, table) for a in fit_archs]
    f_new = [features(a, table) for a in archs]
    out = {}
    cal = fit_calibration(np.stack([f["base"] for f in f_fit]), fit_ms)
    out["lut_cal"] = cal.apply(np.stack([f["base"] for f in f_new]))
    out["lut_raw"] = np.array([f["lut_raw"][0] for f in f_new])  # the plain sum of the table's unit times
    for key in ("lut_kind", "flops", "params"):
        x = np.stack([f[key] for f in f_fit])
        w = nnls_rel(x, fit_ms)
        out[key] = np.column_stack([np.stack([f[key] for f in f_new]), np.ones(len(archs))]) @ w
    return out


def load_pairs(folder: Path) -> dict[str, dict]:
    return {json.loads(p.read_text())["digest"]: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def evaluate(machine: Path, target: str) -> dict | None:
    from nas.latency.calibrate import adapt
    from nas.latency.predictor import Calibration
    from nas.latency.tables import LatencyTable
    from nas.latency.validate import metrics, noise_floors, pairwise_metrics, validation_archs
    from nas.space.io import load_arch
    from nas.space.space import load_space

    table_name = target.removesuffix("_2t")
    held = load_pairs(machine / target / "heldout")
    if len(held) < 3:  # the table gives n: a handful is reported as such, not left out
        return None
    table = LatencyTable.load(table_name)
    space = load_space("yolo_nas")
    archs = [a for a in validation_archs(space, 100, 1, set(table.calibration_archs)) if a.digest() in held]
    first = [held[a.digest()] for a in archs]
    again = list(load_pairs(machine / target / "again").values())
    s = load_arch("yolo_nas_s")
    cal_archs, cal_ms = table.calibration_set()
    shipped_target = not target.endswith("_2t")
    res: dict = {"target": target, "table": table.path.name, "n_heldout": len(archs), "n_again": len(again)}
    res["table_device"] = describe(table.data.get("fingerprint"))
    fp_here = json.loads((machine / "fingerprint.json").read_text())
    res["table_built_here"] = (table.data.get("fingerprint") or {}).get("cpu") == fp_here.get("cpu")

    # ratio form: every predictor fitted on the table's 40 networks (for 2 threads: on the calib networks here)
    calib_here = load_pairs(machine / target / "calib")
    c_archs = [a for a in cal_archs if a.digest() in calib_here]  # the table's networks measured here
    if shipped_target:
        fit_archs, fit_ms, fit_on = cal_archs, cal_ms, f"the table's {len(cal_ms)} calibration networks"
    else:
        fit_archs = c_archs
        fit_ms = np.array([calib_here[a.digest()]["ratio"] for a in c_archs]) * np.median([r["ref_ms"] for r in first])
        fit_on = f"{len(c_archs)} networks measured here at 2 threads (drift-corrected: ratio x median S)"
    if len(fit_archs) < 3:
        return None
    # on a shipped target, lut_cal re-fitted on the table's own networks is the shipped calibration itself
    preds = predictors(table, fit_archs, fit_ms, [*archs, s])
    res["fit_on"] = fit_on
    res["loo_rel_rmse_on_fit_set"] = {
        k: loo_rel_rmse(np.stack([features(a, table)[k] for a in fit_archs]), fit_ms) for k in ("lut_kind", "flops")
    }
    for clock in ("", "cpu_"):
        ratio = np.array([r[f"{clock}ratio"] for r in first])
        res[f"{clock or 'wall_'}ratio"] = {k: metrics(v[:-1] / v[-1], ratio) for k, v in preds.items()}
        res[f"{clock or 'wall_'}pairwise"] = {k: pairwise_metrics(v[:-1], ratio) for k, v in preds.items()}
        res[f"{clock or 'wall_'}noise_floor"] = noise_floors(first, again, clock)

    # the held-out networks' features and the shipped calibration, shared by both milliseconds comparisons below
    f_h = [features(a, table) for a in archs]
    x_h, flops_h = np.stack([f["base"] for f in f_h]), np.array([f["flops"][0] for f in f_h])
    base = Calibration.from_dict(table.data["calibration"]["fit"])
    # milliseconds after adapting to this machine on the calib networks (what `calibrate` does)
    if shipped_target and len(c_archs) >= 2:
        x_c = np.stack([features(a, table)["base"] for a in c_archs])
        for clock in ("", "cpu_"):
            y_c = np.array([calib_here[a.digest()][f"{clock}net_ms"] for a in c_archs])
            y_h = np.array([r[f"{clock}net_ms"] for r in first])
            cal, method = adapt(base, x_c, y_c)
            flops_c = np.array([features(a, table)["flops"][0] for a in c_archs])
            w = nnls_rel(flops_c[:, None], y_c)
            res[f"{clock or 'wall_'}absolute"] = {
                "shipped": metrics(base.apply(x_h), y_h),
                f"adapted ({method}, n={len(y_c)})": metrics(cal.apply(x_h), y_h),
                f"FLOPs line fitted on the same {len(y_c)}": metrics(w[0] * flops_h + w[1], y_h),
            }
    # milliseconds after the `calibrate` run itself: the calibration file it stored, applied as stored, beside a
    # FLOPs line fitted on the very networks it measured (its record keeps them)
    stored = sorted((machine / "calibrations").glob(f"{target}.*.calibration.json"))
    if shipped_target and stored:
        doc = json.loads(stored[-1].read_text())
        cal = Calibration.from_dict(doc["fit"])
        nets = doc["networks"]
        from nas.space.schema import ArchConfig

        flops_c = np.array([features(ArchConfig.from_dict(n["arch"]), table)["flops"][0] for n in nets])
        y_c = np.array([n["measured_ms"] for n in nets])
        w = nnls_rel(flops_c[:, None], y_c)
        for clock in ("", "cpu_"):
            y_h = np.array([r[f"{clock}net_ms"] for r in first])
            y_d = drift_corrected(first, clock)
            p_cal, p_flops = cal.apply(x_h), w[0] * flops_h + w[1]
            res.setdefault(f"{clock or 'wall_'}absolute", {"shipped": metrics(base.apply(x_h), y_h)})
            res[f"{clock or 'wall_'}absolute"].update(
                {
                    f"`calibrate` as stored ({doc['method']}, n={len(nets)})": metrics(p_cal, y_h),
                    f"FLOPs line fitted on its {len(nets)}": metrics(p_flops, y_h),
                    "`calibrate` as stored, vs drift-corrected ms (x median S / S in its window)": metrics(p_cal, y_d),
                    f"FLOPs line fitted on its {len(nets)}, vs drift-corrected ms": metrics(p_flops, y_d),
                }
            )
    res["median_s_ms"] = {c: float(np.median([r[f"{c}ref_ms"] for r in first])) for c in ("", "cpu_")}
    return res


def drift_corrected(pairs: list[dict], clock: str = "") -> np.ndarray:
    """Each network's ms with the machine's drift taken out: scaled by the run's median S over the S timed in
    the network's own window (the reference reads off the machine's state at that time)."""
    net = np.array([r[f"{clock}net_ms"] for r in pairs], dtype=float)
    ref = np.array([r[f"{clock}ref_ms"] for r in pairs], dtype=float)
    return net * np.median(ref) / ref


def markdown(results: dict) -> str:
    fp = results["fingerprint"]
    lines = ["# Latency predictor: ratio form and milliseconds, LUT vs FLOPs", ""]
    lines += [f"This run's machine: {fp['device']}. Tables:", ""]
    for t, r in results["targets"].items():
        where = "built on this machine" if r.get("table_built_here") else "built on another machine"
        lines.append(f"- `{r['table']}` ({t}): {where}, {r.get('table_device', results['table_device'])}")
    lines += [
        "",
        "Every held-out network (seeded, disjoint from the calibration networks, plus S/M/L) was timed",
        "interleaved with the released S, run by run, 5 rounds; the ratio network / S is compared with the",
        f"predicted ratio. Conditions: {results.get('note') or 'not recorded'}.",
        "",
    ]
    for clock in ("cpu_", "wall_"):
        name = "process CPU time" if clock == "cpu_" else "wall clock"
        lines += [f"## Ratio to S ({name})", ""]
        lines.append("| target | predictor | n | within ±5% | within ±10% | MAPE % | Kendall τ |")
        lines.append("|---|---|---:|---:|---:|---:|---:|")
        for t, r in results["targets"].items():
            for k, m in r[f"{clock}ratio"].items():
                lines.append(
                    f"| {t} | {LABELS[k]} | {m['n']} | {m['within_5pct']:.1%} | {m['within_10pct']:.1%} | "
                    f"{m['mape_pct']:.2f} | {m['kendall_tau']:.3f} |"
                )
            nf = r[f"{clock}noise_floor"]["ratio"]
            if nf["n"]:
                lines.append(
                    f"| {t} | *noise floor: re-measured* | {nf['n']} | {nf['within_5pct']:.0%} | "
                    f"{nf['within_10pct']:.0%} | {nf['median_abs_diff_pct']:.2f} (median) | |"
                )
        lines.append("")
    lines += [
        "## Pairwise ratios (process CPU time)",
        "",
        "Every two held-out networks i < j: predicted p_i / p_j against measured ratio_i / ratio_j (each ratio to the",
        "S timed in its own window: drift-free, and the reference's own prediction error cancels; what a search",
        "compares). Noise floor: the re-measured networks' ratios against their first ones, pair by pair.",
        "",
        "| target | predictor | pairs | within ±5% | within ±10% | MAPE % |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for t, r in results["targets"].items():
        if "cpu_pairwise" not in r:
            continue
        for k, m in r["cpu_pairwise"].items():
            lines.append(
                f"| {t} | {LABELS[k]} | {m['n_pairs']} | {m['within_5pct']:.1%} | {m['within_10pct']:.1%} | "
                f"{m['mape_pct']:.2f} |"
            )
        nf = r["cpu_noise_floor"].get("pairwise")
        if nf and nf["n_pairs"]:
            lines.append(
                f"| {t} | *noise floor: re-measured* | {nf['n_pairs']} | {nf['within_5pct']:.1%} | "
                f"{nf['within_10pct']:.1%} | {nf['mape_pct']:.2f} |"
            )
    lines.append("")
    lines += ["## Milliseconds after `calibrate` on this machine", ""]
    lines.append("| target | clock | predictor | n | within ±5% | within ±10% | MAPE % | noise floor ±10% (ms) |")
    lines.append("|---|---|---|---:|---:|---:|---:|---:|")
    for t, r in results["targets"].items():
        for clock in ("cpu_", "wall_"):
            if f"{clock}absolute" not in r:
                continue
            nf = r[f"{clock}noise_floor"]["absolute"]
            for k, m in r[f"{clock}absolute"].items():
                lines.append(
                    f"| {t} | {clock.strip('_')} | {k} | {m['n']} | {m['within_5pct']:.1%} | {m['within_10pct']:.1%} | "
                    f"{m['mape_pct']:.2f} | {nf.get('within_10pct', float('nan')):.0%} of {nf['n']} |"
                )
    lines += ["", "Fits:", ""]
    for t, r in results["targets"].items():
        loo = r["loo_rel_rmse_on_fit_set"]
        lines.append(
            f"- **{t}** ({r['n_heldout']} held-out, {r['n_again']} re-measured; median S here "
            f"{r['median_s_ms']['']:.0f} ms wall, {r['median_s_ms']['cpu_']:.0f} ms CPU): fitted on {r['fit_on']}; "
            f"leave-one-out relative RMSE per-unit-type {loo['lut_kind']:.2%}, FLOPs {loo['flops']:.2%}"
        )
    for c in results.get("calibrate_runs", []):
        lines.append(
            f"- `python -m nas.latency calibrate hardware={c['hardware']} n={c['fit']['n']}` "
            f"(clock {c.get('clock') or 'wall'}) on this machine: {c['method']} fit, leave-one-out relative RMSE "
            f"{c['fit']['loo_rel_rmse']:.1%}, {c['measure_seconds']:.0f} s wall"
        )
    lines += ["", f"Command: `{results['command']}`", ""]
    return "\n".join(lines)


@dataclass(frozen=True)
class Options:
    machine: str = "machine_b"  # results/<machine>/: measure_here.py's measurements
    targets: str = "cpu_ort,cpu_torch,cpu_ort_2t,cpu_ort_int8"  # comma-separated
    note: str = ""  # written into results.json
    here: bool = True  # false: write only results/<machine>/, not the latest run beside this script


def main(argv: list[str]) -> int:
    opts = from_args(Options, argv, "run.py")
    machine = HERE / "results" / opts.machine
    os.environ["NAS_LATENCY_DIR"] = tempfile.mkdtemp()  # the shipped calibrations, not this machine's
    from nas.latency.tables import LatencyTable

    fp = json.loads((machine / "fingerprint.json").read_text())
    targets = opts.targets.split(",")
    results: dict = {
        "fingerprint": fp,
        "table_device": describe(LatencyTable.load("cpu_ort").data.get("fingerprint")),
        "table_fingerprint": LatencyTable.load("cpu_ort").data.get("fingerprint"),
        "targets": {},
        "note": opts.note,
        "command": "python experiments/latency_predictor/run.py " + " ".join(argv),
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    results["calibrate_runs"] = [
        {k: r.get(k) for k in ("hardware", "method", "clock", "measure_seconds", "measure_cpu_seconds", "fit")}
        for r in (json.loads(p.read_text()) for p in sorted((machine / "calibrations").glob("*.calibration.json")))
    ]
    for t in targets:
        if (machine / t / "heldout").is_dir():
            r = evaluate(machine, t)
            if r is not None:
                results["targets"][t] = r
    # the latest run beside this script (here=false: only the machine's folder), each machine's in its folder
    for folder in (HERE, machine) if opts.here else (machine,):
        write_text_atomic(folder / "results.json", json.dumps(results, indent=1) + "\n")
        write_text_atomic(folder / "results.md", markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
