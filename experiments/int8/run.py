"""INT8 benchmark: QARepVGG vs RepVGG under post-training INT8 (FP32 vs INT8 mAP over training seeds and
calibration draws), selective quantization, FP32 vs INT8 latency. The analysis is PLAN.md's.

The two models are the S layout with all-QARepVGG blocks (the released S) and with all-RepVGG blocks (archs/),
trained with experiments/proxy_correlation's ground-truth recipe at seeds 0, 1, 2. Every stage writes one JSON
per (model, training seed) under raw/ (committed: the report is recomputed from it by a test); ONNX files and
frozen checkpoint copies go to --work (runs/int8/bench_s<seed>, not committed). Each command resumes: it skips
what raw/ already holds.

    python experiments/int8/run.py train --jobs 2        # the 6 trainings (~1,000 CPU-s each), 2 at a time
    python experiments/int8/run.py measure               # accuracy + selective of every finished training
    python experiments/int8/run.py latency --model qarepvgg --seed 0   # FP32 vs INT8 interleaved; an idle machine
    python experiments/int8/run.py report                # results.json, results.md, nas/quant/block_drop.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from experiments.int8.report import RAW, TRAINED, run_name, stage_path, training_path, write_report
from nas import NAS
from nas.io import write_text_atomic
from nas.quant import calibration_images, conv_nodes, quantize_onnx
from nas.quant.ptq import CALIB_METHODS, cpu_has_vnni, preprocess
from nas.quant.sensitivity import output_error, run_outputs, selective_exclude, sensitivity

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PC = HERE.parent / "proxy_correlation"
MODELS = tuple(TRAINED)
SEEDS = (0, 1, 2)


def _machine() -> str:
    from nas.latency.device import current_fingerprint, describe

    return describe(current_fingerprint("cpu"), "cpu")


def _ckpt(args, model: str) -> Path:
    if not training_path(RAW, model, args.seed).is_file():
        raise SystemExit(
            f"{training_path(RAW, model, args.seed)}: the training of {model} seed {args.seed} has not finished; "
            "run `python experiments/int8/run.py train` first"
        )
    src = PC / "runs" / "train" / run_name(model, args.seed) / "last.pt"
    if not src.is_file():
        raise SystemExit(
            f"{src}: the checkpoint is missing (trained on another machine?); delete "
            f"{training_path(RAW, model, args.seed)} and train it again"
        )
    dst = Path(args.work) / f"{model}.pt"
    if not dst.exists():
        shutil.copy(src, dst)
    return dst


def _save(args, stage: str, result: dict) -> None:
    result["machine"] = _machine()
    result["load_avg_1min"] = round(os.getloadavg()[0], 2)  # what else the 2 cores ran (2.0 = both busy)
    write_text_atomic(stage_path(RAW, args.seed, stage, args.model), json.dumps(result, indent=1) + "\n")


def train(args) -> int:
    """Every (model, seed) without its result file, `--jobs` at a time (1 torch thread each): a stopped
    training resumes from its last.pt."""
    todo = [(m, s) for s in args.seeds for m in MODELS if not training_path(RAW, m, s).is_file()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NAS_THREADS": "1"}
    pending, running, failed = list(todo), [], 0
    print(f"{len(todo)} trainings to run", flush=True)
    while pending or running:
        while pending and len(running) < args.jobs:
            m, s = pending.pop(0)
            cmd = [
                sys.executable,
                str(PC / "run.py"),
                "train-one",
                TRAINED[m],
                str(s),
                "--out",
                str(training_path(RAW, m, s)),
                "--run-name",
                run_name(m, s),
            ]
            print("start:", m, s, flush=True)
            running.append(((m, s), subprocess.Popen(cmd, env=env)))
        time.sleep(2.0)
        for item in list(running):
            if item[1].poll() is not None:
                running.remove(item)
                failed += bool(item[1].returncode)
                print(("failed" if item[1].returncode else "done") + ":", *item[0], flush=True)
    return 1 if failed else 0


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
        "complete": False,
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
        m = _val(q.path, args.imgsz)
        m["quantize_s"] = round(time.perf_counter() - t0, 1)
        m["output_error"] = output_error(ref, run_outputs(q.path, images))
        out["int8"][key] = m
        print(args.model, args.seed, key, m, flush=True)
        _save(args, "accuracy", out)
    # The quantization's own noise: minmax on other draws of the calibration images (draw 0 is the row above).
    draws = [{"draw": 0, **{k: out["int8"]["minmax"][k] for k in ("mAP50_95", "mAP50")}}]
    for seed in range(1, args.calib_draws):
        imgs = calibration_images("synthetic", args.calib, args.imgsz, seed=seed)
        q = quantize_onnx(fp32, work / f"{args.model}_{args.imgsz}_draw{seed}.onnx", imgs, method="minmax")
        draws.append({"draw": seed, **_val(q.path, args.imgsz)})
        print(args.model, args.seed, "draw", seed, draws[-1], flush=True)
    out["calib_draws"] = {"method": "minmax", "draws": draws}
    out["complete"] = True
    _save(args, "accuracy", out)


def selective(args) -> None:
    work = Path(args.work)
    fp32 = work / f"{args.model}_{args.imgsz}.onnx"
    if not fp32.is_file():
        NAS(_ckpt(args, args.model)).export(file=fp32, imgsz=args.imgsz, verbose=False)
    fp32_map = _val(fp32, args.imgsz)["mAP50_95"]
    pre = preprocess(fp32, work / f"{args.model}_{args.imgsz}_pre.onnx")
    images = calibration_images("synthetic", args.calib, args.imgsz, seed=0)
    t0 = time.perf_counter()
    layers = conv_nodes(pre)[:: args.layer_stride]  # a stride > 1 ranks a subset (time-boxed runs)
    log = lambda s: None  # noqa: E731
    base, ranked = sensitivity(pre, images[: args.sens_images], method=args.method, layers=layers, log=log)
    out = {
        "model": args.model,
        "train_seed": args.seed,
        "method": args.method,
        "fp32_mAP50_95": fp32_map,
        "sensitivity_images": args.sens_images,
        "layers_ranked": len(layers),
        "layers_total": len(conv_nodes(pre)),
        "sensitivity_s": round(time.perf_counter() - t0, 1),
        "full_int8_error": base,
        "ranking": [{"layer": r.layer, "gain": r.gain, "error_without": r.error_without} for r in ranked],
        "curve": [],
        "complete": False,
    }
    ref = run_outputs(pre, images)
    for k in args.ks:
        exclude = selective_exclude(ranked, k)
        q = quantize_onnx(
            pre, work / f"{args.model}_sel{k}.onnx", images, method=args.method, exclude=exclude, pre_processed=True
        )
        m = _val(q.path, args.imgsz)
        row = {"k": k, "float_layers": exclude, **m, "drop": fp32_map - m["mAP50_95"]}
        row["output_error"] = output_error(ref, run_outputs(q.path, images))["error"]
        out["curve"].append(row)
        print(args.model, args.seed, "k", row["k"], round(row["drop"], 3), flush=True)
        _save(args, "selective", out)
    out["complete"] = True
    _save(args, "selective", out)


def _done(args, stage: str) -> bool:
    p = stage_path(RAW, args.seed, stage, args.model)
    return p.is_file() and json.loads(p.read_text()).get("complete", False)


def measure(args) -> None:
    """accuracy and selective for every (model, seed) whose training has finished and whose stage file is not
    complete yet; then the report."""
    for seed in args.seeds:
        for m in MODELS:
            if not training_path(RAW, m, seed).is_file():
                continue
            a = argparse.Namespace(**{**vars(args), "model": m, "seed": seed})
            a.work = str(_work(Path(args.work_root), seed))
            Path(a.work).mkdir(parents=True, exist_ok=True)
            for stage, fn in (("accuracy", accuracy), ("selective", selective)):
                if not _done(a, stage):
                    fn(a)
    report(args)


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


def interleaved_ms(paths: dict[str, Path], x: np.ndarray, threads: int, rounds: int) -> dict[str, list[float]]:
    """Every round's ms of each model, timed in turn round after round (so machine load hits all alike)."""
    sessions = _sessions(paths, threads)
    for s in sessions.values():  # warm-up
        s.run(None, {"images": x})
    samples: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(rounds):
        for name, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, {"images": x})
            samples[name].append(round((time.perf_counter() - t0) * 1e3, 3))
    return samples


def latency(args) -> None:
    """FP32 vs INT8 (and reduce-range, and the selective models of this seed's selective stage) at deployment
    size, every round's ms recorded. Pause other work first (--paused-trainings records that it was)."""
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
    sel = stage_path(RAW, args.seed, "selective", args.model)
    if sel.exists():  # the selective models at deployment size
        s = json.loads(sel.read_text())
        pre = preprocess(fp32, work / f"{args.model}_{args.latency_imgsz}_pre.onnx")
        for row in s["curve"]:
            if row["k"] in args.latency_ks and row["k"] > 0:
                q = work / f"{args.model}_{args.latency_imgsz}_sel{row['k']}.onnx"
                quantize_onnx(pre, q, images, exclude=row["float_layers"], pre_processed=True)
                paths[f"int8_k{row['k']}"] = q
    x = images[:1]
    out = {
        "model": args.model,
        "train_seed": args.seed,
        "imgsz": args.latency_imgsz,
        "rounds": args.rounds,
        "avx512_vnni": cpu_has_vnni(),
        "paused_trainings": args.paused_trainings,
        "threads": {},
    }
    for threads in (1, 2):
        samples = interleaved_ms(paths, x, threads, args.rounds)
        out["threads"][str(threads)] = {"samples_ms": samples}
        print(threads, {k: statistics.median(v) for k, v in samples.items()}, flush=True)
        _save(args, "latency", out)


def report(args) -> None:
    r = write_report()
    print(json.dumps({k: r.get(k) for k in ("P1_drop", "P2_repvgg_minus_qarepvgg")}, indent=1, default=str))


def _work(root: Path, seed: int) -> Path:
    return root.with_name(f"{root.name}_s{seed}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["train", "measure", "accuracy", "selective", "latency", "report"])
    ap.add_argument("--model", choices=MODELS, default="qarepvgg")
    ap.add_argument("--seed", type=int, default=0, help="accuracy/selective/latency: the training seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="train/measure: the training seeds")
    ap.add_argument("--jobs", type=int, default=2, help="train: trainings at a time")
    ap.add_argument("--work", default=str(ROOT / "runs" / "int8" / "bench"), help="ONNX files: <work>_s<seed>")
    ap.add_argument("--imgsz", type=int, default=160, help="accuracy size (the training size)")
    ap.add_argument("--calib", type=int, default=32)
    ap.add_argument("--calib-draws", type=int, default=5, help="accuracy: calibration draws of minmax")
    ap.add_argument("--methods", nargs="+", default=["minmax", "percentile"], choices=CALIB_METHODS)
    ap.add_argument("--method", default="minmax", choices=CALIB_METHODS, help="selective: calibration method")
    ap.add_argument("--sens-images", type=int, default=8)
    ap.add_argument("--layer-stride", type=int, default=1, help="rank every N-th convolution only")
    ap.add_argument("--ks", type=int, nargs="+", default=[0, 1, 2, 4, 8, 16])
    ap.add_argument("--latency-imgsz", type=int, default=640)
    ap.add_argument("--latency-ks", type=int, nargs="+", default=[2, 8, 16])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--paused-trainings", action="store_true", help="latency: record that other work was paused")
    args = ap.parse_args(argv)
    if args.methods[0] != "minmax":
        ap.error("--methods: minmax first (the calibration draws and PLAN.md's endpoints use it)")
    args.work_root = args.work
    args.work = str(_work(Path(args.work), args.seed))
    if args.stage in ("accuracy", "selective", "latency"):
        Path(args.work).mkdir(parents=True, exist_ok=True)
    stages = {"train": train, "measure": measure, "accuracy": accuracy, "selective": selective}
    stages.update(latency=latency, report=report)
    return stages[args.stage](args) or 0


if __name__ == "__main__":
    raise SystemExit(main())
