"""Deployment benchmark of S on the synthetic set (every format) and QAT vs PTQ, on this machine.

The model: the released S architecture trained from random init on the embedded synthetic set with the ground-truth
recipe of experiments/proxy_correlation (160 px, batch 8, 20 epochs, lr 0.001, seed 0):

    nas train model=yolo_nas_s.yaml data=synthetic epochs=20 imgsz=160 batch=8 lr0=0.001 warmup_epochs=2 \\
        close_mosaic=3 val_period=5 workers=0 seed=0 project=runs/bench name=s_syn

Stages (each writes one JSON under results/, named by the CPU; `report` rebuilds results.md from them):

    python experiments/benchmark/run.py formats --ckpt runs/bench/train/s_syn/best.pt   # nas benchmark, all rows
    python experiments/benchmark/run.py qat --ckpt ... --seeds 0 1                     # PTQ draws vs QAT seeds
    python experiments/benchmark/run.py report

Timing pauses the background trainings of this machine (`run.py train-one`, SIGSTOP) for the timed runs only and
resumes them whatever happens (SIGCONT in a finally block).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from experiments.benchmark.report import machine_tag, write_report
from nas import NAS
from nas.export.benchmark import benchmark
from nas.export.options import BenchmarkOptions
from nas.io import write_text_atomic
from nas.latency.device import current_fingerprint
from nas.quant import calibration_images, quantize_onnx
from nas.train.outputs import in_points

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PAUSE_PATTERN = "run.py train-one"


LOAD: list[float] = []  # 1-minute load average at the start of each timed block (2.0 = both cores busy)


@contextlib.contextmanager
def paused_trainings(extra_pids: list[int]):
    """SIGSTOP the background trainings (and `extra_pids`) while timing; SIGCONT them afterwards, always."""
    found = subprocess.run(["pgrep", "-f", PAUSE_PATTERN], capture_output=True, text=True).stdout.split()
    pids = [int(p) for p in found if int(p) != os.getpid()] + list(extra_pids)
    stopped = []
    try:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        time.sleep(1.0)
        LOAD.append(round(os.getloadavg()[0], 2))
        yield
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def formats(args) -> None:
    model = NAS(args.ckpt)
    opts = BenchmarkOptions(
        data="synthetic", imgsz=args.imgsz, latency_imgsz=args.latency_imgsz, rounds=args.rounds, calib=args.calib
    )
    with tempfile.TemporaryDirectory(prefix="nas-bench-", dir=ROOT / "runs") as work:
        out = benchmark(model.model, model.names, work, opts, timing_context=lambda: paused_trainings(args.pause_pid))
    out["load_avg_1min_while_timing"] = LOAD
    out["paused"] = PAUSE_PATTERN
    out["checkpoint"] = {"path": str(args.ckpt), "train": model.model.checkpoint_meta.get("train", {})}
    for row in out["rows"]:
        row["file"] = Path(row["file"]).name if row["file"] else None
    write_text_atomic(HERE / "results" / f"formats_{machine_tag(out['fingerprint'])}.json", json.dumps(out, indent=1))


def _val(path: Path, imgsz: int) -> float:
    return 100 * NAS(path).val("synthetic", imgsz=imgsz, verbose=False)["mAP50_95"]


def qat(args) -> None:
    """FP32 vs PTQ (calibration draws) vs QAT (training seeds), all as ONNX in onnxruntime on the val split."""
    tag = machine_tag(current_fingerprint())
    dst = HERE / "results" / f"qat_{'pt' if args.per_tensor else 'pc'}_{tag}.json"
    out = json.loads(dst.read_text()) if dst.exists() else {}
    out.update(
        checkpoint=str(args.ckpt),
        imgsz=args.imgsz,
        weights="per-tensor" if args.per_tensor else "per-channel",
        recipe_epochs=args.recipe_epochs,
        calib=args.calib,
        qat_limit=args.limit,
        fingerprint=current_fingerprint(),
    )
    work = ROOT / "runs" / "bench" / f"qat_{'pt' if args.per_tensor else 'pc'}"
    work.mkdir(parents=True, exist_ok=True)
    model = NAS(args.ckpt)
    fp32 = Path(model.export("onnx", file=work / "fp32.onnx", imgsz=args.imgsz, verbose=False))
    out["fp32"] = _val(fp32, args.imgsz)
    out.setdefault("ptq", {})
    for seed in args.calib_seeds:
        if str(seed) in out["ptq"]:
            continue
        images = calibration_images("synthetic", args.calib, args.imgsz, seed=seed)
        q = quantize_onnx(fp32, work / f"ptq_{seed}.onnx", images, per_channel=not args.per_tensor)
        out["ptq"][str(seed)] = _val(q.path, args.imgsz)
        print("ptq", seed, out["ptq"][str(seed)], flush=True)
        write_text_atomic(dst, json.dumps(out, indent=1))
    out.setdefault("qat", {})
    for seed in args.seeds:
        if str(seed) in out["qat"]:
            continue
        t0 = time.perf_counter()
        result = NAS(args.ckpt).train(
            data="synthetic", epochs=args.recipe_epochs, imgsz=args.imgsz, batch=8, lr0=1e-3, weight_decay=1e-5,
            workers=0, seed=seed, qat=True, limit=args.limit, qat_calib=args.calib, qat_per_channel=not args.per_tensor,
            project=str(work), name=f"qat_s{seed}", exist_ok=True, plots=False, verbose=False,
        )  # fmt: skip
        out["qat"][str(seed)] = {
            "mAP50_95": _val(result.best, args.imgsz),
            "simulated_mAP50_95": in_points(result.history[-1]).get("mAP50_95"),  # points, as _val's
            "train_s": round(time.perf_counter() - t0, 1),
            "epochs": len(result.history),
        }
        print("qat", seed, out["qat"][str(seed)], flush=True)
        write_text_atomic(dst, json.dumps(out, indent=1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["formats", "qat", "report"])
    ap.add_argument("--ckpt", type=Path, default=ROOT / "runs" / "bench" / "train" / "s_syn" / "best.pt")
    ap.add_argument("--imgsz", type=int, default=160, help="mAP size (the training size)")
    ap.add_argument("--latency-imgsz", type=int, default=640)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--calib", type=int, default=32)
    ap.add_argument("--pause-pid", type=int, nargs="*", default=[], help="more processes to pause while timing")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="qat: training seeds")
    ap.add_argument("--calib-seeds", type=int, nargs="+", default=[0, 1, 2], help="qat: PTQ calibration draws")
    ap.add_argument("--per-tensor", action="store_true", help="qat: per-tensor weight scales (PTQ and QAT)")
    ap.add_argument("--limit", type=int, default=None, help="qat: fine-tune on the first N train images only")
    ap.add_argument("--recipe-epochs", type=int, default=10, help="qat: the original recipe's epochs (QAT: /10)")
    args = ap.parse_args(argv)
    (HERE / "results").mkdir(exist_ok=True)
    (ROOT / "runs").mkdir(exist_ok=True)
    {"formats": formats, "qat": qat, "report": lambda a: write_report(HERE)}[args.stage](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
