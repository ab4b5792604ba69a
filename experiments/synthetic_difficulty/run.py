"""Is the embedded synthetic set neither trivial nor hopeless? Train a small detector on it, then val it.

A YOLO-NAS-family network (default: the released S layout with the set's 8 classes, from random initialization)
is trained on the synthetic train split with YOLO-NAS's own loss and a scaled-down version of its recipe
(`nas.proxy.train`, i.e. the trainer of `nas.train`: Task-Aligned Assigner, varifocal + GIoU + DFL, AdamW,
warm-up + cosine, EMA; letterboxed inputs and horizontal flips only, as the committed results were made; the
trainer's full augmentation is measured in experiments/train). After every epoch the EMA weights are validated on the val split by pycocotools
(the same `NAS.val` protocol users get). The point is the curve: mAP must rise clearly above 0 and stay well
below 100 for the set to rank architectures.

    python experiments/synthetic_difficulty/run.py --epochs 20 --imgsz 256          # S layout (≈40 min on 2 CPU cores)
    python experiments/synthetic_difficulty/run.py --epochs 1 --imgsz 64 --limit 16 --out /tmp/sd   # smoke

Writes results.json and results.md into --out (default: this folder) after every epoch.
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

from nas.data import load_dataset
from nas.io import write_text_atomic
from nas.models import build
from nas.models.checkpoints import save_checkpoint
from nas.proxy.train import SHORT, train
from nas.space import load_arch
from nas.train.options import TrainOptions
from nas.train.outputs import epoch_table, in_points

HERE = Path(__file__).resolve().parent


def write_results(args, cfg: TrainOptions, arch, n: int, n_val: int, history: list[dict]) -> None:
    """results.json + results.md into --out (atomically, so a half-written file never replaces a good one)."""
    result = {
        "arch": args.arch,
        "num_classes": arch.num_classes,
        "config": cfg.to_dict(),
        "train_images": n,
        "val_images": n_val,
        "threads": args.threads,
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
        "history": history,
        "final": history[-1] if history else None,
        "best_mAP50_95": max((r["mAP50_95"] for r in history), default=None),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "results.json", json.dumps(result, indent=2) + "\n")
    lines = [
        f"Synthetic set difficulty: `{args.arch}` layout ({arch.num_classes} classes) from random init, trained with "
        f"YOLO-NAS's loss (TAL + VFL + GIoU + DFL) on {n} train images at {cfg.imgsz}, batch {cfg.batch}, "
        f"AdamW lr {cfg.lr0}, {cfg.epochs} epochs, EMA; validated (EMA weights, pycocotools) on {n_val} val images.",
        "",
        *epoch_table(history),
    ]
    last = history[-1] if history else {}
    if "per_class" in last:
        sizes = ", ".join(
            f"{k[4:]} {last[k]:.1f}" for k in ("mAP_small", "mAP_medium", "mAP_large") if last[k] is not None
        )
        lines += [
            "",
            f"Last epoch: mAP75 {last['mAP75']:.1f}; by object size (COCO areas) {sizes}.",
            "",
            "| class | " + " | ".join(last["per_class"]) + " |",
            "|---|" + "---|" * len(last["per_class"]),
            "| AP50-95 | " + " | ".join(f"{v:.1f}" for v in last["per_class"].values()) + " |",
        ]
    write_text_atomic(out / "results.md", "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="yolo_nas_s", help="a released name or an ArchConfig YAML")
    ap.add_argument("--data", default="synthetic")
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-5)
    ap.add_argument("--warmup-steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--limit", type=int, default=None, help="train on the first N images only (val is always whole)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--save", default=None, help="also save the EMA weights here after every epoch (a checkpoint)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    train_ds = load_dataset(args.data, "train")
    n_classes = len(train_ds.category_ids)
    n_train = len(train_ds) if args.limit is None else min(args.limit, len(train_ds))
    val_ds = load_dataset(args.data, "val")
    n_val = len(val_ds)
    arch = load_arch(args.arch)
    arch = dataclasses.replace(arch, heads=dataclasses.replace(arch.heads, num_classes=n_classes))
    steps_per_epoch = max(1, n_train // args.batch)
    # flip only (no mosaic, affine, HSV): the pipeline the committed results were made with
    cfg = SHORT.replace(
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        lr0=args.lr,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_steps / steps_per_epoch,
        clip_grad=0.0,
        mosaic=0.0,
        scale=0.0,
        translate=0.0,
        hsv_h=0.0,
        hsv_s=0.0,
        hsv_v=0.0,
        seed=args.seed,
        limit=args.limit,
    )
    history: list[dict] = []

    def on_epoch(row: dict, ema_model: torch.nn.Module) -> None:
        history.append(in_points(row))  # results.json / results.md are in points (0-100); the checkpoint 0-1
        write_results(args, cfg, arch, n_train, n_val, history)  # a killed run keeps its curve
        if args.save:
            names = [train_ds.names[i] for i in range(n_classes)]
            save_checkpoint(args.save, ema_model, arch, {"class_names": names, "train": row})

    train(build(arch), train_ds, cfg, val_data=val_ds, on_epoch=on_epoch, log=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
