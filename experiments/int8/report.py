"""Collect the INT8 benchmark's stage files into results.json + results.md, and nas/quant/block_drop.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nas.io import write_text_atomic

ROOT = Path(__file__).resolve().parents[2]
_PC = ROOT / "experiments" / "proxy_correlation" / "results"
TRAINED = {"qarepvgg": "yolo_nas_s", "repvgg": "yolo_nas_s_repvgg"}  # ground-truth units of proxy_correlation
_FOLDER = {"qarepvgg": "gt", "repvgg": "extra"}  # where proxy_correlation keeps their result files


def trained_run(model: str, seed: int) -> str:
    """The training's run directory name (proxy_correlation runs/train/) and result-file stem."""
    return f"gt_{TRAINED[model]}_s{seed}"


def training_result(model: str, seed: int) -> Path:
    return _PC / _FOLDER[model] / f"{TRAINED[model]}_s{seed}.json"


def work_dir(root: Path, seed: int) -> Path:
    """The stage files of training seed `seed`: `root` for seed 0, `<root>_s<seed>` beside it for the others."""
    return root if seed == 0 else root.with_name(f"{root.name}_s{seed}")


def seed_dirs(work: Path) -> dict[int, Path]:
    out = {0: work}
    for p in sorted(work.parent.glob(f"{work.name}_s*")):
        tail = p.name.rsplit("_s", 1)[1]
        if tail.isdigit() and p.is_dir():
            out[int(tail)] = p
    return out


def _load(work: Path, name: str) -> dict | None:
    p = work / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def _training(model: str, seed: int, recipes: list[dict]) -> dict | None:
    """The training's result file (torch eval of the EMA weights at the last epoch), or None."""
    path = training_result(model, seed)
    if not path.exists():
        return None
    t = json.loads(path.read_text())
    recipes.append(t["recipe"])
    return {k: t[k] for k in ("name", "seed", "mAP50_95", "mAP50", "train_s", "threads", "machine")}


def write_report(work: Path, out: Path, machine: dict[str, Any], recipe: dict[str, Any] | None = None) -> dict:
    """Seed 0's stage files in `work` (every stage), the other training seeds' accuracy stages beside it."""
    models, recipes = {}, []
    for m in TRAINED:
        entry = {k: _load(work, f"{k}_{m}") for k in ("accuracy", "selective", "latency")}
        entry["training"] = _training(m, 0, recipes)
        models[m] = entry
    seeds: dict[str, dict[str, Any]] = {}
    for seed, folder in seed_dirs(work).items():
        row = {}
        for m in TRAINED:
            acc = models[m]["accuracy"] if seed == 0 else _load(folder, f"accuracy_{m}")
            if acc and acc.get("int8", {}).get("minmax"):
                row[m] = {
                    "fp32_mAP50_95": acc["fp32"]["mAP50_95"],
                    "drop": {k: q["drop"] for k, q in acc["int8"].items()},
                    "minmax_drop_mean_draws": _minmax_drop(acc),
                    "training": models[m]["training"] if seed == 0 else _training(m, seed, recipes),
                }
        if row:
            seeds[str(seed)] = row
    if any(r != recipes[0] for r in recipes):
        raise SystemExit(f"{_PC}: the models were trained with different recipes: {recipes}")
    results = {
        "machine": machine,
        "recipe": recipe or _recipe(recipes[0] if recipes else None),
        "models": models,
        "seeds": seeds,
    }
    complete = [r for r in seeds.values() if set(r) == set(TRAINED)]
    if complete:  # the measured drops behind `int8_drop`: minmax, mean over calibration draws and training seeds
        mean = {m: sum(r[m]["minmax_drop_mean_draws"] for r in complete) / len(complete) for m in TRAINED}
        results["minmax_drop_mean"] = mean
        block = {
            "source": "experiments/int8/results.json (python experiments/int8/run.py report)",
            "what": "measured mAP50-95 drop (points, synthetic val) of post-training INT8 (nas.quant, minmax) of the "
            "S layout trained with all-QARepVGG vs all-RepVGG blocks, same recipe and seeds; mean over "
            f"{len(complete)} training seed(s) and the calibration draws",
            "drop": {m: round(v, 3) for m, v in mean.items()},
            "seeds": len(complete),
            "fp32_mAP50_95": {
                m: round(sum(r[m]["fp32_mAP50_95"] for r in complete) / len(complete), 2) for m in TRAINED
            },
        }
        write_text_atomic(ROOT / "nas" / "quant" / "block_drop.json", json.dumps(block, indent=1) + "\n")
    write_text_atomic(out / "results.json", json.dumps(results, indent=1) + "\n")
    write_text_atomic(out / "results.md", _markdown(results))
    return results


def _minmax_drop(acc: dict) -> float:
    """The minmax drop, averaged over the calibration draws when there are several."""
    draws = acc.get("calib_draws") or {}
    if draws.get("method") == "minmax" and draws.get("drop"):
        return sum(draws["drop"]) / len(draws["drop"])
    return acc["int8"]["minmax"]["drop"]


def _loads(r: dict) -> str:
    """The 1-minute load average recorded as each stage finished (2 cores: 1.0 = one busy core)."""
    vals = [
        s["load_avg_1min"]
        for e in r["models"].values()
        for s in e.values()
        if isinstance(s, dict) and "load_avg_1min" in s
    ]
    return f"{min(vals):.1f}-{max(vals):.1f}" if vals else "not recorded"


def _best(acc: dict | None) -> str | None:
    if not acc or not acc.get("int8"):
        return None
    return min(acc["int8"], key=lambda k: acc["int8"][k]["drop"])


def _recipe(trained: dict | None) -> dict:
    """The training recipe of both models: as their result files record it, else experiments/proxy_correlation's
    ground-truth recipe (one place)."""
    import importlib.util

    if trained is None:
        path = Path(__file__).resolve().parents[1] / "proxy_correlation" / "run.py"
        spec = importlib.util.spec_from_file_location("proxy_correlation_run", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        trained = mod.RECIPE
    return {
        "trainer": "nas.train via experiments/proxy_correlation/run.py train-one NAME SEED (YOLO-NAS loss, AdamW, EMA, augmentation)",
        **trained,
        "data": "embedded synthetic set: 400 train / 100 val images, 8 classes",
        "seed": 0,
        "init": "random (no pretrained weights)",
    }


def _f(v: Any, nd: int = 2) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _markdown(r: dict) -> str:
    mach = r["machine"]
    rec = r["recipe"]
    lines = [
        "# INT8 post-training quantization benchmark",
        "",
        f"Machine: {mach['cpu']}, {mach['cores']} cores, AVX-512 VNNI: {mach['avx512_vnni']}, onnxruntime "
        f"{mach['onnxruntime']}. Load average while the stages ran: {_loads(r)} (2 cores). Only the latency stages "
        "need an idle machine: they ran alone; the accuracy stages may share it (it changes their seconds, not their "
        "mAP). FP32 and INT8 were timed interleaved in the same run, so their "
        "ratio is the robust number.",
        "",
        f"Models: the YOLO-NAS S layout (8 classes) with all-QARepVGG and with all-RepVGG blocks, trained from random "
        f"init with the same recipe and seed ({rec['trainer']}; {rec['data']}; {rec['imgsz']} px, batch "
        f"{rec['batch']}, {rec['epochs']} epochs, lr {rec['lr0']}, seed {rec['seed']}). mAP: pycocotools on "
        "the 100 val images, FP32 ONNX vs INT8 ONNX, both run in onnxruntime with the same pre/post-processing "
        "(square letterbox at the training size). INT8: onnxruntime static QDQ, per-channel s8 weights, u8 "
        "activations, post-processing tail float.",
        "",
        "## Accuracy: FP32 vs INT8 (mAP50-95, points)",
        "",
        "| model | epoch | FP32 mAP50-95 | calibration | images | INT8 mAP50-95 | drop | INT8 mAP50 | output error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m, e in r["models"].items():
        acc = e.get("accuracy")
        if not acc:
            continue
        for method, q in acc["int8"].items():
            lines.append(
                f"| {m} | {acc.get('checkpoint_epoch')} | {_f(acc['fp32']['mAP50_95'])} | {method} | "
                f"{acc['calib_images']} | {_f(q['mAP50_95'])} | **{_f(q['drop'])}** | {_f(q['mAP50'])} | "
                f"{_f(q['output_error']['error'], 4)} |"
            )
    draws = {m: (e.get("accuracy") or {}).get("calib_draws") for m, e in r["models"].items()}
    if any(d and len(d["drop"]) > 1 for d in draws.values()):
        lines += [
            "",
            "## The quantization's own noise: other draws of the calibration images",
            "",
            "| model | method | draws | drop per draw | mean drop | spread (max - min) |",
            "|---|---|---|---|---|---|",
        ]
        for m, d in draws.items():
            if d:
                v = d["drop"]
                lines.append(
                    f"| {m} | {d['method']} | {len(v)} | {', '.join(_f(x) for x in v)} | **{_f(sum(v) / len(v))}** | "
                    f"{_f(max(v) - min(v))} |"
                )
    seeds = r.get("seeds") or {}
    if len(seeds) > 1:
        keys = [
            k
            for k in ("minmax", "percentile", "minmax_per_tensor")
            if all(k in x["drop"] for v in seeds.values() for x in v.values())
        ]
        lines += [
            "",
            "## Training seeds: is the QARepVGG vs RepVGG difference more than noise?",
            "",
            "Each seed is a separate training of both models (same recipe); minmax drop averaged over the calibration "
            "draws.",
            "",
            "| seed | model | trained (torch) mAP50-95 | FP32 ONNX mAP50-95 | minmax drop (mean of draws) | "
            + " | ".join(f"{k} drop" for k in keys)
            + " |",
            "|---|---|---|---|---|" + "---|" * len(keys),
        ]
        for seed, row in seeds.items():
            for m, x in row.items():
                t = x.get("training") or {}
                lines.append(
                    f"| {seed} | {m} | {_f(t.get('mAP50_95'))} | {_f(x['fp32_mAP50_95'])} | "
                    f"**{_f(x['minmax_drop_mean_draws'])}** | " + " | ".join(_f(x["drop"][k]) for k in keys) + " |"
                )
        if r.get("minmax_drop_mean"):
            mean = r["minmax_drop_mean"]
            lines += [
                "",
                "Mean minmax drop over seeds: "
                + ", ".join(f"{m} **{_f(v)}**" for m, v in mean.items())
                + f" (RepVGG minus QARepVGG: {_f(mean['repvgg'] - mean['qarepvgg'])} points).",
            ]
    trained = {m: e.get("training") for m, e in r["models"].items() if e.get("training")}
    if trained:
        lines += [
            "",
            "Training of seed 0 (the ground-truth recipe of experiments/proxy_correlation, torch eval of the EMA weights at the last epoch):",
            "",
        ]
        for m, t in trained.items():
            lines.append(
                f"- {m} (`{t['name']}`, seed {t['seed']}): mAP50-95 {_f(t['mAP50_95'])}, mAP50 {_f(t['mAP50'])}; "
                f"{t['train_s']:.0f} s on {t['threads']} thread(s), {t['machine']}"
            )
    lat_rows = []
    for m, e in r["models"].items():
        lat = e.get("latency")
        if not lat:
            continue
        for th, t in lat["threads"].items():
            for k, ms in t["ms"].items():
                if k == "fp32":
                    continue
                lat_rows.append(
                    f"| {m} | {lat['imgsz']} | {th} | {k} | {_f(t['ms']['fp32'], 1)} | {_f(ms, 1)} | "
                    f"**{_f(t['speedup'][k])}x** |"
                )
    if lat_rows:
        lines += [
            "",
            "## Latency: FP32 vs INT8, interleaved in the same run (median ms, batch 1)",
            "",
            "| model | imgsz | threads | INT8 variant | FP32 ms | INT8 ms | speedup |",
            "|---|---|---|---|---|---|---|",
            *lat_rows,
        ]
    for m, e in r["models"].items():
        sel = e.get("selective")
        if not sel:
            continue
        lat = (e.get("latency") or {}).get("threads", {}).get("1", {}).get("ms", {})
        lines += [
            "",
            f"## Selective quantization: {m} ({sel['method']} calibration; leave-one-out sensitivity of "
            f"{sel.get('layers_ranked', '?')} of {sel.get('layers_total', '?')} convolutions on "
            f"{sel['sensitivity_images']} calibration images, {sel['sensitivity_s']:.0f} s)",
            "",
            "| k (layers kept float) | INT8 mAP50-95 | drop | output error | INT8 ms (1 thread, 640) |",
            "|---|---|---|---|---|",
        ]
        for row in sel["curve"]:
            ms = lat.get("int8" if row["k"] == 0 else f"int8_k{row['k']}")
            lines.append(
                f"| {row['k']} | {_f(row['mAP50_95'])} | {_f(row['drop'])} | {_f(row['output_error'], 4)} | {_f(ms, 1)} |"
            )
        top = ", ".join(f"`{x['layer']}`" for x in sel["ranking"][:5])
        lines += ["", f"Most sensitive layers: {top}."]
    return "\n".join(lines) + "\n"
