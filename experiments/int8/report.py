"""The INT8 benchmark's report: results.json + results.md and nas/quant/block_drop.json, from the raw files alone.

Every number is recomputed from `raw/` (the trainings' result files and the stage files, one per model and
training seed) by `build`, a pure function of that folder; tests/quant/test_int8_report.py rebuilds the
committed files and fails on any difference. The endpoints and rules are PLAN.md's (P1-P5), declared before the
data.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from experiments.stats import t_interval
from nas.io import write_text_atomic
from nas.latency.device import short_describe

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
RAW = HERE / "raw"
BLOCK_DROP = ROOT / "nas" / "quant" / "block_drop.json"
# the two models: the S layout with all-QARepVGG blocks (the released S) and with all-RepVGG blocks (archs/),
# each the architecture name experiments/proxy_correlation/run.py train-one knows
TRAINED = {"qarepvgg": "yolo_nas_s", "repvgg": "yolo_nas_s_repvgg"}
METHOD = "minmax"  # the calibration of P1-P3 and of the search's table (PLAN.md)


def run_name(model: str, seed: int) -> str:
    """The training's run directory under experiments/proxy_correlation/runs/train/."""
    return f"int8_{model}_s{seed}"


def training_path(raw: Path, model: str, seed: int) -> Path:
    return raw / "train" / f"{model}_s{seed}.json"


def stage_path(raw: Path, seed: int, stage: str, model: str) -> Path:
    return raw / f"s{seed}" / f"{stage}_{model}.json"


def _read(p: Path) -> dict | None:
    return json.loads(p.read_text()) if p.is_file() else None


def _seeds(raw: Path) -> list[int]:
    return sorted(int(p.name[1:]) for p in raw.glob("s*") if p.is_dir() and p.name[1:].isdigit())


def _mean_ci(values: list[float]) -> dict[str, Any]:
    return {"values": values, "mean": statistics.fmean(values), "ci95": t_interval(values)}


def _verdict(ci: list[float] | None, above: str, below: str) -> str:
    if ci is None:
        return "one seed: no interval, no verdict"
    if ci[0] > 0:
        return above
    if ci[1] < 0:
        return below
    return f"not distinguishable (95% interval [{ci[0]:.2f}, {ci[1]:.2f}], half-width {(ci[1] - ci[0]) / 2:.2f})"


def _draw_drops(acc: dict) -> list[float]:
    return [acc["fp32"]["mAP50_95"] - d["mAP50_95"] for d in acc["calib_draws"]["draws"]]


def build(raw: Path = RAW) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(results, block_drop table) from `raw` alone. A seed counts when both models have their training and
    accuracy files (the pairing of P2)."""
    units: dict[str, dict[str, Any]] = {}
    machines: set[str] = set()
    for seed in _seeds(raw):
        row = {}
        for m in TRAINED:
            acc = _read(stage_path(raw, seed, "accuracy", m))
            train = _read(training_path(raw, m, seed))
            if acc is None or train is None:
                continue
            machines.add(acc["machine"])
            draws = _draw_drops(acc)
            row[m] = {
                "training": {
                    k: train[k] for k in ("name", "seed", "mAP50_95", "mAP50", "cpu_s_this_process", "machine")
                },
                "fp32_mAP50_95": acc["fp32"]["mAP50_95"],
                "drop": {k: acc["fp32"]["mAP50_95"] - q["mAP50_95"] for k, q in acc["int8"].items()},
                "output_error": {k: q["output_error"]["error"] for k, q in acc["int8"].items()},
                "draw_drops": draws,
                "drop_mean_draws": statistics.fmean(draws),
                "drop_sd_draws": statistics.stdev(draws) if len(draws) > 1 else None,
            }
            recipe = train["recipe"]
        if set(row) == set(TRAINED):
            units[str(seed)] = row
    if not units:
        return {"seeds": {}, "note": f"{raw}: no seed with both models trained and measured yet"}, None
    seeds = list(units)
    p1 = {m: _mean_ci([units[s][m]["drop_mean_draws"] for s in seeds]) for m in TRAINED}
    for m in TRAINED:
        sds = [units[s][m]["drop_sd_draws"] for s in seeds if units[s][m]["drop_sd_draws"] is not None]
        p1[m]["sd_over_seeds"] = statistics.stdev(p1[m]["values"]) if len(seeds) > 1 else None
        p1[m]["sd_over_draws_mean"] = statistics.fmean(sds) if sds else None  # P3
    p2 = _mean_ci([units[s]["repvgg"]["drop_mean_draws"] - units[s]["qarepvgg"]["drop_mean_draws"] for s in seeds])
    p2["verdict"] = _verdict(p2["ci95"], "QARepVGG quantizes better", "RepVGG quantizes better")
    p4 = _mean_ci([units[s]["repvgg"]["fp32_mAP50_95"] - units[s]["qarepvgg"]["fp32_mAP50_95"] for s in seeds])
    p4["verdict"] = _verdict(p4["ci95"], "RepVGG is more accurate in FP32", "QARepVGG is more accurate in FP32")
    results: dict[str, Any] = {
        "plan": "experiments/int8/PLAN.md",
        "machines": sorted(machines),
        "recipe": recipe,
        "method": METHOD,
        "seeds": units,
        "P1_drop": p1,
        "P2_repvgg_minus_qarepvgg": p2,
        "P4_fp32_repvgg_minus_qarepvgg": p4,
        "P5_selective": _selective(raw, seeds),
        "latency": _latency(raw),
    }
    block = {
        "source": "experiments/int8/results.json (python experiments/int8/run.py report)",
        "what": f"measured mAP50-95 drop (points, synthetic val) of post-training INT8 (nas.quant, {METHOD}) of the S "
        "layout trained with all-QARepVGG vs all-RepVGG blocks, same recipe and seeds; mean over "
        f"{len(seeds)} training seed(s) of the mean over the calibration draws",
        "drop": {m: round(p1[m]["mean"], 3) for m in TRAINED},
        "ci95": {m: None if p1[m]["ci95"] is None else [round(v, 3) for v in p1[m]["ci95"]] for m in TRAINED},
        "repvgg_minus_qarepvgg": p2["verdict"],
        "seeds": len(seeds),
        "fp32_mAP50_95": {m: round(statistics.fmean(units[s][m]["fp32_mAP50_95"] for s in seeds), 2) for m in TRAINED},
    }
    return results, block


def _selective(raw: Path, seeds: list[str]) -> dict[str, Any]:
    """P5: per model and k, drop(k) - drop(0) over the training seeds that have the selective stage."""
    out: dict[str, Any] = {}
    for m in TRAINED:
        curves = {s: _read(stage_path(raw, int(s), "selective", m)) for s in seeds}
        curves = {s: c for s, c in curves.items() if c and c.get("curve")}
        if not curves:
            continue
        ks = sorted(set.intersection(*({r["k"] for r in c["curve"]} for c in curves.values())))
        rows = []
        for k in ks:
            drop = {s: next(r["drop"] for r in c["curve"] if r["k"] == k) for s, c in curves.items()}
            base = {s: next(r["drop"] for r in c["curve"] if r["k"] == 0) for s, c in curves.items()}
            gain = _mean_ci([drop[s] - base[s] for s in curves])
            rows.append(
                {
                    "k": k,
                    "drop": _mean_ci(list(drop.values())),
                    "drop_minus_k0": gain,
                    "verdict": "recovers accuracy"
                    if gain["ci95"] is not None and gain["ci95"][1] < 0
                    else ("k = 0" if k == 0 else "noise-level"),
                }
            )
        first = next(iter(curves.values()))
        out[m] = {
            "seeds": list(curves),
            "method": first["method"],
            "sensitivity_images": first["sensitivity_images"],
            "layers_ranked": first["layers_ranked"],
            "layers_total": first["layers_total"],
            "sensitivity_s": [c["sensitivity_s"] for c in curves.values()],
            "top_layers": {s: [r["layer"] for r in c["ranking"][:5]] for s, c in curves.items()},
            "curve": rows,
        }
    return out


def _latency(raw: Path) -> dict[str, Any]:
    """Medians and FP32/INT8 ratios recomputed from every timed round."""
    out: dict[str, Any] = {}
    for seed in _seeds(raw):
        for m in TRAINED:
            lat = _read(stage_path(raw, seed, "latency", m))
            if not lat:
                continue
            per = {}
            for th, t in lat["threads"].items():
                ms = {k: statistics.median(v) for k, v in t["samples_ms"].items()}
                per[th] = {"ms": ms, "speedup": {k: ms["fp32"] / v for k, v in ms.items() if k != "fp32"}}
            out[f"{m}_s{seed}"] = {
                "model": m,
                "seed": seed,
                "imgsz": lat["imgsz"],
                "rounds": lat["rounds"],
                "machine": lat["machine"],
                "avx512_vnni": lat["avx512_vnni"],
                "paused_trainings": lat.get("paused_trainings"),
                "threads": per,
            }
    return out


def write_report(raw: Path = RAW, out: Path = HERE, block_path: Path = BLOCK_DROP) -> dict[str, Any]:
    results, block = build(raw)
    write_text_atomic(out / "results.json", json.dumps(results, indent=1) + "\n")
    write_text_atomic(out / "results.md", markdown(results))
    if block is not None:
        write_text_atomic(block_path, json.dumps(block, indent=1) + "\n")
    return results


def _f(v: Any, nd: int = 2) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _ci(c: dict[str, Any], nd: int = 2) -> str:
    ci = c["ci95"]
    return f"{_f(c['mean'], nd)}" + ("" if ci is None else f" [{_f(ci[0], nd)}, {_f(ci[1], nd)}]")


def markdown(r: dict[str, Any]) -> str:
    lines = ["# INT8 post-training quantization: QARepVGG vs RepVGG", ""]
    if not r.get("seeds"):
        return "\n".join([*lines, r.get("note", "no results yet"), ""])
    rec, seeds = r["recipe"], r["seeds"]
    lines += [
        "Recomputed from `raw/` by `python experiments/int8/run.py report` (a test rebuilds it); the endpoints and "
        "rules are [PLAN.md](PLAN.md)'s, declared before the data.",
        "",
        f"Models: the YOLO-NAS S layout with all-QARepVGG blocks (the released S) and with all-RepVGG blocks, trained "
        f"from random init with the ground-truth recipe of experiments/proxy_correlation (synthetic set, "
        f"{rec['imgsz']} px, {rec['epochs']} epochs, batch {rec['batch']}, lr {rec['lr0']}) at training seeds "
        f"{', '.join(seeds)}. mAP50-95 (points): pycocotools on the 100 val images, FP32 ONNX vs INT8 ONNX in "
        "onnxruntime with the same pre/post-processing. INT8: onnxruntime static QDQ, s8 weights (per-channel unless "
        "said), u8 activations, 32 calibration images per draw.",
        "",
        "Machine(s): " + "; ".join(r["machines"]) + ".",
        "",
        f"## P1-P3: the INT8 drop ({r['method']}, mean over the calibration draws), per training seed",
        "",
        "| seed | model | torch mAP50-95 | FP32 ONNX | drop per draw | drop (mean of draws) | sd over draws |",
        "|---|---|---|---|---|---|---|",
    ]
    for s, row in seeds.items():
        for m, x in row.items():
            lines.append(
                f"| {s} | {m} | {_f(x['training']['mAP50_95'])} | {_f(x['fp32_mAP50_95'])} | "
                f"{', '.join(_f(v) for v in x['draw_drops'])} | **{_f(x['drop_mean_draws'])}** | "
                f"{_f(x['drop_sd_draws'])} |"
            )
    p1, p2, p4 = r["P1_drop"], r["P2_repvgg_minus_qarepvgg"], r["P4_fp32_repvgg_minus_qarepvgg"]
    lines += [
        "",
        "| model | P1: drop, mean over seeds [95% t interval] | sd over seeds | P3: sd over draws (mean) |",
        "|---|---|---|---|",
    ]
    for m, c in p1.items():
        lines.append(f"| {m} | **{_ci(c)}** | {_f(c['sd_over_seeds'])} | {_f(c['sd_over_draws_mean'])} |")
    lines += [
        "",
        f"**P2, RepVGG drop minus QARepVGG drop** (paired by seed: {', '.join(_f(v) for v in p2['values'])}): "
        f"**{_ci(p2)}** — {p2['verdict']}.",
        "",
        f"**P4, FP32 mAP, RepVGG minus QARepVGG** (paired: {', '.join(_f(v) for v in p4['values'])}): "
        f"{_ci(p4)} — {p4['verdict']}.",
        "",
        "### Every calibration variant (drop, points)",
        "",
    ]
    keys = list(dict.fromkeys(k for row in seeds.values() for x in row.values() for k in x["drop"]))
    lines += ["| seed | model | " + " | ".join(keys) + " | output error (" + keys[0] + ") |"]
    lines += ["|---|---|" + "---|" * (len(keys) + 1)]
    for s, row in seeds.items():
        for m, x in row.items():
            lines.append(
                f"| {s} | {m} | "
                + " | ".join(_f(x["drop"].get(k)) for k in keys)
                + f" | {_f(x['output_error'][keys[0]], 4)} |"
            )
    for m, sel in r["P5_selective"].items():
        lines += [
            "",
            f"## P5: selective quantization, {m} ({sel['method']}; leave-one-out sensitivity of "
            f"{sel['layers_ranked']} of {sel['layers_total']} convolutions on {sel['sensitivity_images']} images; "
            f"seeds {', '.join(sel['seeds'])})",
            "",
            "| k (layers kept float) | drop, mean over seeds | drop(k) - drop(0) [95% t interval] | verdict |",
            "|---|---|---|---|",
        ]
        for row in sel["curve"]:
            lines.append(f"| {row['k']} | {_ci(row['drop'])} | {_ci(row['drop_minus_k0'])} | {row['verdict']} |")
    if r["latency"]:
        lines += [
            "",
            "## Latency: FP32 vs INT8, interleaved rounds (median ms, batch 1)",
            "",
            "| model | machine | VNNI | trainings paused | imgsz | threads | INT8 variant | FP32 ms | INT8 ms | speedup |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for lat in r["latency"].values():
            for th, t in lat["threads"].items():
                for k, sp in t["speedup"].items():
                    lines.append(
                        f"| {lat['model']} | {short_describe(lat['machine'])} | {lat['avx512_vnni']} | {lat['paused_trainings']} | "
                        f"{lat['imgsz']} | {th} | {k} | {_f(t['ms']['fp32'], 1)} | {_f(t['ms'][k], 1)} | "
                        f"**{_f(sp)}x** |"
                    )
    lines += ["", "## Trainings", "", "| model | seed | torch mAP50-95 | CPU s | machine |", "|---|---|---|---|---|"]
    for s, row in seeds.items():
        for m, x in row.items():
            t = x["training"]
            lines.append(
                f"| {m} (`{t['name']}`) | {s} | {_f(t['mAP50_95'])} | {_f(t['cpu_s_this_process'], 0)} | {short_describe(t['machine'])} |"
            )
    return "\n".join(lines) + "\n"
