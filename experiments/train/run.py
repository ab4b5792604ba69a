"""Trainer benchmarks (issue 11): data-pipeline overhead and quality on the embedded synthetic set.

    python experiments/train/run.py quality            # S layout from scratch, 256 px, 30 epochs, batch 8 (hours on CPU)
    python experiments/train/run.py overhead           # trainer images/s vs a bare loop on pre-loaded tensors (128 px)

`quality` trains with the trainer's augmentation (mosaic, random affine, HSV, flip) and the recipe that
experiments/synthetic_difficulty used with flip only (AdamW lr 1e-3, 100 warm-up steps, EMA), writes one row per
epoch to quality.json / quality.md as it finishes, and resumes from its last.pt (runs/train/quality/, not committed)
when started again. `overhead` writes overhead.json / overhead.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from nas.io import write_text_atomic
from nas.train.outputs import epoch_table, in_points

HERE = Path(__file__).resolve().parent
BASELINE = {"source": "experiments/synthetic_difficulty (flip only)", "epochs": 30, "mAP50_95": 16.2, "mAP50": 23.9}


def _machine(threads: int) -> str:
    return f"{platform.processor() or platform.machine()}, {threads} torch thread(s), torch {torch.__version__}"


def write_quality(out: Path, opts, history: list[dict], threads: int, note: str = "") -> None:
    best = max(history, key=lambda r: r["mAP50_95"]) if history else None
    result = {
        "what": "yolo_nas_s layout (8 classes) from random init on the synthetic set with the trainer's augmentation",
        "options": opts.to_dict(),
        "baseline": BASELINE,
        "machine": _machine(threads) + (f"; {note}" if note else ""),
        "history": history,
        "best": best,
    }
    write_text_atomic(out / "quality.json", json.dumps(result, indent=2) + "\n")
    lines = [
        f"Quality: `yolo_nas_s` layout, 8 classes, random init, synthetic set, {opts.imgsz} px, batch {opts.batch}, "
        f"{opts.epochs} epochs, AdamW lr {opts.lr0}, EMA; augmentation: mosaic p {opts.mosaic} (off for the last "
        f"{opts.close_mosaic} epochs), affine scale ±{opts.scale} translate {opts.translate}, HSV, flip {opts.fliplr}. "
        f"Baseline (flip only, same recipe otherwise): {BASELINE['mAP50_95']} mAP50-95 / {BASELINE['mAP50']} mAP50 "
        f"at {BASELINE['epochs']} epochs. Machine: {result['machine']}.",
        "",
        *epoch_table(history),
    ]
    if best is not None:
        lines += [
            "",
            f"Best so far: epoch {best['epoch']}, {best['mAP50_95']:.1f} mAP50-95 / {best['mAP50']:.1f} mAP50.",
        ]
    base = _baseline_curve()
    if base and history:
        lines += [
            "",
            f"Side by side with the flip-only run, epoch by epoch ({BASELINE_RUN.relative_to(HERE.parents[1])}):",
            "",
            "| epoch | augmented mAP50-95 | flip only | difference |",
            "|---|---|---|---|",
            *(
                f"| {r['epoch']} | {r['mAP50_95']:.1f} | {base[r['epoch']]:.1f} | {r['mAP50_95'] - base[r['epoch']]:+.1f} |"
                for r in history
                if r["epoch"] in base and "mAP50_95" in r
            ),
        ]
    write_text_atomic(out / "quality.md", "\n".join(lines) + "\n")


BASELINE_RUN = HERE.parent / "synthetic_difficulty" / "s_e30" / "results.json"


def _baseline_curve() -> dict[int, float]:
    """mAP50-95 per epoch of the committed flip-only run the baseline numbers come from."""
    if not BASELINE_RUN.is_file():
        return {}
    return {h["epoch"]: h["mAP50_95"] for h in json.loads(BASELINE_RUN.read_text())["history"]}


def quality_report(args) -> int:
    """Rewrite quality.md from quality.json (e.g. after a change of the table)."""
    from nas.train.options import TrainOptions

    res = json.loads((Path(args.out) / "quality.json").read_text())
    opts = TrainOptions(**res["options"])
    machine = res["machine"]
    threads = int(machine.split(", ")[1].split()[0]) if ", " in machine else args.threads
    note = machine.split("; ", 1)[1] if "; " in machine else ""
    write_quality(Path(args.out), opts, res["history"], threads, note)
    return 0


def quality(args) -> int:
    from nas.models import build
    from nas.space import load_arch
    from nas.train.options import TrainOptions
    from nas.train.run import train

    out = Path(args.out)
    run_dir = Path(args.project) / "train" / "quality"
    last = run_dir / "last.pt"
    opts = TrainOptions(
        data="synthetic",
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        workers=args.workers,
        lr0=1e-3,
        warmup_epochs=2.0,  # 100 steps of 50, as synthetic_difficulty's warmup_steps=100
        weight_decay=1e-5,
        close_mosaic=args.close_mosaic,
        limit=args.limit,
        project=args.project,
        name="quality",
        exist_ok=True,
        device="cpu",
        seed=0,
    )
    previous = json.loads((out / "quality.json").read_text())["history"] if (out / "quality.json").is_file() else []
    history = {r["epoch"]: r for r in previous} if last.is_file() else {}

    def on_epoch(row: dict, _model) -> None:
        history[row["epoch"]] = in_points(row)  # quality.json and its report are in points (0-100)
        write_quality(out, opts, [history[k] for k in sorted(history)], args.threads, args.note)

    log = lambda s: print(s, flush=True)  # noqa: E731
    if last.is_file():
        print(f"resuming {last}", flush=True)
        train(None, opts.replace(resume=str(last)), on_epoch=on_epoch, log=log)
    else:
        arch = load_arch("yolo_nas_s")
        arch = dataclasses.replace(arch, heads=dataclasses.replace(arch.heads, num_classes=8))
        torch.manual_seed(0)
        train(build(arch), opts, on_epoch=on_epoch, log=log)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("quality", "quality-report", "overhead"))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--close-mosaic", type=int, default=5)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--note", default="", help="quality: what else ran on the machine (goes into the results)")
    ap.add_argument("--steps", type=int, default=30, help="overhead: optimizer steps per timed run")
    ap.add_argument("--reps", type=int, default=3, help="overhead: interleaved repetitions")
    ap.add_argument("--overhead-imgsz", type=int, default=128)
    ap.add_argument("--project", default=str(HERE / "runs"))
    ap.add_argument("--out", default=str(HERE))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.what == "quality":
        return quality(args)
    if args.what == "quality-report":
        return quality_report(args)
    sys.path.insert(0, str(HERE))
    from overhead import overhead

    return overhead(args)


if __name__ == "__main__":
    raise SystemExit(main())
