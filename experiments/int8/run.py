"""INT8 benchmark: FP32 vs INT8 mAP and latency, calibration methods, selective quantization, QARepVGG vs RepVGG.

The two models are the S layout with all-QARepVGG blocks (the released S) and with all-RepVGG blocks (archs/),
trained with the same recipe and seed on the embedded synthetic set: the ground-truth recipe of
experiments/proxy_correlation (160 px, 20 epochs), seeds 0 and 1 (the second seed measures whether the
difference is more than noise); both are ground-truth units there (results/gt, results/extra):

    python experiments/proxy_correlation/run.py train-one yolo_nas_s 1                     # and yolo_nas_s_repvgg

Each stage below writes one JSON into --work (runs/int8/bench, or bench_s<seed> for `--seed` > 0); `report`
collects every seed's files into results.json + results.md here
and writes nas/quant/block_drop.json (the measured drops behind the `int8_drop` objective).

    python experiments/int8/run.py accuracy --model qarepvgg      # FP32 vs INT8 mAP, 3 calibration methods
    python experiments/int8/run.py accuracy --model repvgg
    python experiments/int8/run.py selective --model qarepvgg     # leave-one-out sensitivity, curve over k
    python experiments/int8/run.py latency --model qarepvgg       # FP32 vs INT8 interleaved, 1 and 2 threads
    python experiments/int8/run.py report                         # results.json, results.md, block_drop.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from experiments.int8.report import trained_run, work_dir, write_report
from nas import NAS
from nas.io import write_text_atomic
from nas.quant import calibration_images, conv_nodes, quantize_onnx
from nas.quant.ptq import CALIB_METHODS, cpu_has_vnni, preprocess
from nas.quant.sensitivity import output_error, run_outputs, selective_exclude, sensitivity

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MODELS = ("qarepvgg", "repvgg")


def _ckpt(args, model: str) -> Path:
    src = Path(args.runs) / trained_run(model, args.seed) / "last.pt"
    dst = Path(args.work) / f"{model}.pt"
    if not dst.exists():  # a frozen copy: the training may still be overwriting its checkpoint
        shutil.copy(src, dst)
    return dst


def _save(args, name: str, result: dict) -> None:
    result["load_avg_1min"] = round(os.getloadavg()[0], 2)  # what else the 2 cores ran (2.0 = both busy)
    write_text_atomic(Path(args.work) / f"{name}.json", json.dumps(result, indent=1) + "\n")


def _val(path: Path, imgsz: int) -> dict:
    m = NAS(path).val("synthetic", imgsz=imgsz, batch=1, verbose=False)
    return {"mAP50_95": 100 * m["mAP50_95"], "mAP50": 100 * m["mAP50"]}


def accuracy(args) -> None:
    work = Path(args.work)
    ckpt = _ckpt(args, args.model)
    model = NAS(ckpt)
    fp32 = work / f"{args.model}_{args.imgsz}.onnx"
    model.export(file=fp32, imgsz=args.imgsz, verbose=False)
    images = calibration_images("synthetic", args.calib, args.imgsz, seed=0)
    train_meta = model.model.checkpoint_meta.get("train", {})
    out = {
        "model": args.model,
        "train_seed": args.seed,
        "checkpoint_epoch": train_meta.get("epoch"),
        "imgsz": args.imgsz,
        "calib_images": len(images),
        "fp32": _val(fp32, args.imgsz),
        "int8": {},
    }
    ref = run_outputs(fp32, images)
    # per-tensor weights too: the setting of the QARepVGG paper's RepVGG failure (per-channel scales absorb
    # much of the per-channel weight spread that re-parameterization creates)
    variants = [(m, m, True) for m in args.methods] + [("minmax_per_tensor", "minmax", False)]
    for key, method, per_channel in variants:
        t0 = time.perf_counter()
        q = quantize_onnx(
            fp32, work / f"{args.model}_{args.imgsz}_{key}.onnx", images, method=method, per_channel=per_channel
        )
        quant_s = time.perf_counter() - t0
        m = _val(q.path, args.imgsz)
        m.update(drop=out["fp32"]["mAP50_95"] - m["mAP50_95"], quantize_s=round(quant_s, 1))
        m["output_error"] = output_error(ref, run_outputs(q.path, images))
        out["int8"][key] = m
        print(args.model, key, m, flush=True)
        _save(args, f"accuracy_{args.model}", out)
    # The quantization's own noise: the same method on other draws of the calibration images.
    out["calib_draws"] = {"method": args.methods[0], "seeds": [0], "drop": [out["int8"][args.methods[0]]["drop"]]}
    for seed in range(1, args.calib_draws):
        imgs = calibration_images("synthetic", args.calib, args.imgsz, seed=seed)
        q = quantize_onnx(fp32, work / f"{args.model}_{args.imgsz}_draw{seed}.onnx", imgs, method=args.methods[0])
        out["calib_draws"]["seeds"].append(seed)
        out["calib_draws"]["drop"].append(out["fp32"]["mAP50_95"] - _val(q.path, args.imgsz)["mAP50_95"])
        print(args.model, "draw", seed, out["calib_draws"]["drop"][-1], flush=True)
        _save(args, f"accuracy_{args.model}", out)


def selective(args) -> None:
    work = Path(args.work)
    acc = json.loads((work / f"accuracy_{args.model}.json").read_text())
    per_channel = [k for k in acc["int8"] if k in CALIB_METHODS]  # what selective quantization builds on
    method = min(per_channel, key=lambda k: acc["int8"][k]["drop"]) if args.method is None else args.method
    fp32 = work / f"{args.model}_{args.imgsz}.onnx"
    pre = preprocess(fp32, work / f"{args.model}_{args.imgsz}_pre.onnx")
    images = calibration_images("synthetic", args.calib, args.imgsz, seed=0)
    t0 = time.perf_counter()
    layers = conv_nodes(pre)[:: args.layer_stride]  # a stride > 1 ranks a subset (time-boxed runs)
    log = lambda s: print(s, flush=True)  # noqa: E731
    base, ranked = sensitivity(pre, images[: args.sens_images], method=method, layers=layers, log=log)
    sens_s = time.perf_counter() - t0
    out = {
        "model": args.model,
        "method": method,
        "sensitivity_images": args.sens_images,
        "layers_ranked": len(layers),
        "layers_total": len(conv_nodes(pre)),
        "sensitivity_s": round(sens_s, 1),
        "full_int8_error": base,
        "ranking": [{"layer": r.layer, "gain": r.gain, "error_without": r.error_without} for r in ranked],
        "curve": [],
    }
    ref = run_outputs(pre, images)
    fp32_map = acc["fp32"]["mAP50_95"]
    for k in args.ks:
        exclude = selective_exclude(ranked, k)
        q = quantize_onnx(
            pre, work / f"{args.model}_sel{k}.onnx", images, method=method, exclude=exclude, pre_processed=True
        )
        m = _val(q.path, args.imgsz)
        row = {"k": k, "float_layers": exclude, **m, "drop": fp32_map - m["mAP50_95"]}
        row["output_error"] = output_error(ref, run_outputs(q.path, images))["error"]
        out["curve"].append(row)
        print(row["k"], row["mAP50_95"], row["drop"], row["output_error"], flush=True)
        _save(args, f"selective_{args.model}", out)


def _sessions(paths: dict[str, Path], threads: int) -> dict:
    import onnxruntime as ort

    out = {}
    for name, path in paths.items():
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        out[name] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return out


def interleaved_ms(paths: dict[str, Path], x: np.ndarray, threads: int, rounds: int) -> dict[str, float]:
    """Median ms of each model, timed in turn round after round (so machine load hits all alike)."""
    sessions = _sessions(paths, threads)
    for s in sessions.values():  # warm-up
        s.run(None, {"images": x})
    samples: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(rounds):
        for name, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, {"images": x})
            samples[name].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in samples.items()}


def latency(args) -> None:
    work = Path(args.work)
    model = NAS(_ckpt(args, args.model))
    fp32 = work / f"{args.model}_{args.latency_imgsz}.onnx"
    model.export(file=fp32, imgsz=args.latency_imgsz, verbose=False)
    images = calibration_images("synthetic", 4, args.latency_imgsz, seed=0)
    paths = {"fp32": fp32}
    for rr in (False, True):
        q = work / f"{args.model}_{args.latency_imgsz}_int8{'_rr' if rr else ''}.onnx"
        quantize_onnx(fp32, q, images, reduce_range=rr)
        paths["int8_reduce_range" if rr else "int8"] = q
    sel = work / f"selective_{args.model}.json"
    if sel.exists():  # the selective models at deployment size
        s = json.loads(sel.read_text())
        pre = preprocess(fp32, work / f"{args.model}_{args.latency_imgsz}_pre.onnx")
        for row in s["curve"]:
            if row["k"] in args.latency_ks and row["k"] > 0:
                q = work / f"{args.model}_{args.latency_imgsz}_sel{row['k']}.onnx"
                quantize_onnx(pre, q, images, exclude=row["float_layers"], pre_processed=True)
                paths[f"int8_k{row['k']}"] = q
    x = images[:1]
    out = {"model": args.model, "imgsz": args.latency_imgsz, "rounds": args.rounds, "threads": {}}
    for threads in (1, 2):
        ms = interleaved_ms(paths, x, threads, args.rounds)
        out["threads"][str(threads)] = {"ms": ms, "speedup": {k: ms["fp32"] / v for k, v in ms.items()}}
        print(threads, out["threads"][str(threads)], flush=True)
        _save(args, f"latency_{args.model}", out)


def report(args) -> None:
    write_report(Path(args.work), HERE, _machine())


def _machine() -> dict:
    import onnxruntime

    return {
        "cpu": next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?"),
        "avx512_vnni": cpu_has_vnni(),
        "cores": __import__("os").cpu_count(),
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["accuracy", "selective", "latency", "report"])
    ap.add_argument("--model", choices=MODELS, default="qarepvgg")
    ap.add_argument(
        "--runs",
        default=str(HERE.parent / "proxy_correlation" / "runs" / "train"),
        help="where experiments/proxy_correlation trained gt_<arch>_s<seed>/",
    )
    ap.add_argument("--seed", type=int, default=0, help="the training seed of the pair (0 or 1)")
    ap.add_argument("--work", default=str(ROOT / "runs" / "int8" / "bench"), help="seed 0's; seed N: <work>_sN")
    ap.add_argument("--imgsz", type=int, default=160, help="accuracy size (the training size)")
    ap.add_argument("--calib", type=int, default=32)
    ap.add_argument("--calib-draws", type=int, default=3, help="accuracy: calibration draws of the first method")
    ap.add_argument("--methods", nargs="+", default=["minmax", "percentile", "entropy"])
    ap.add_argument("--method", default=None, help="selective: calibration method (default: the best by drop)")
    ap.add_argument("--sens-images", type=int, default=8)
    ap.add_argument("--layer-stride", type=int, default=1, help="rank every N-th convolution only")
    ap.add_argument("--ks", type=int, nargs="+", default=[0, 1, 2, 4, 8, 16])
    ap.add_argument("--latency-imgsz", type=int, default=640)
    ap.add_argument("--latency-ks", type=int, nargs="+", default=[2, 8, 16])
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args(argv)
    args.work = str(work_dir(Path(args.work), args.seed if args.stage != "report" else 0))
    Path(args.work).mkdir(parents=True, exist_ok=True)
    {"accuracy": accuracy, "selective": selective, "latency": latency, "report": report}[args.stage](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
