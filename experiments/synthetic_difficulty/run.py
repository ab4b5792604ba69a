"""Is the embedded synthetic set neither trivial nor hopeless? Train a small detector on it, then val it.

A YOLO-NAS-family network (default: the released S layout with 8 classes, from random initialization)
is trained on the synthetic train split with a plain detection loss — BCE on all anchors plus 1 − GIoU on
positives, an anchor being positive for the smallest ground-truth box containing its centre (the loss the
gradient zero-cost proxies use, `nas.proxy.batch.detection_loss`) — with AdamW, a linear warm-up and a
cosine schedule, letterboxed inputs and horizontal flips. After every epoch it is validated on the val split
by pycocotools (the same `NAS.val` protocol users get). The point is the curve: mAP must rise clearly
above 0 and stay well below 100 for the set to rank architectures.

    python experiments/synthetic_difficulty/run.py                                  # S layout, 320, 8 epochs
    python experiments/synthetic_difficulty/run.py --epochs 1 --imgsz 128 --limit 16 --out /tmp/sd   # smoke

Writes results.json and results.md into --out (default: this folder).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from nas.data import load_dataset
from nas.data.transforms import letterbox
from nas.engine.val import validate
from nas.models import build
from nas.proxy.batch import ProxyBatch, detection_loss
from nas.space import load_arch
from nas.space.io import write_text_atomic

HERE = Path(__file__).resolve().parent


def letterbox_with_boxes(img: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The val pipeline's letterbox (`nas.data.transforms.letterbox`) to a square, with the boxes moved alike."""
    r = min(size / img.shape[0], size / img.shape[1])
    out, (top, left) = letterbox(img, (size, size))
    return out, boxes * r + np.array([left, top, left, top], dtype=np.float32)


def load_split(data: str, split: str, size: int, limit: int | None) -> tuple[torch.Tensor, list, list]:
    """All images of a split, letterboxed to `size` (uint8 NCHW), with boxes (xyxy px) and class ids."""
    ds = load_dataset(data, split)
    n = len(ds) if limit is None else min(limit, len(ds))
    images, boxes, labels = [], [], []
    for i in range(n):
        rec, xyxy, cls = ds[i]
        img = cv2.cvtColor(cv2.imread(str(rec.path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        img, b = letterbox_with_boxes(img, np.asarray(xyxy, dtype=np.float32).reshape(-1, 4), size)
        images.append(torch.from_numpy(img).permute(2, 0, 1))
        boxes.append(torch.from_numpy(b))
        labels.append(torch.from_numpy(np.asarray(cls, dtype=np.int64).reshape(-1)))
    return torch.stack(images), boxes, labels


def batches(n: int, batch: int, gen: torch.Generator):
    perm = torch.randperm(n, generator=gen).tolist()
    for i in range(0, n - batch + 1, batch):
        yield perm[i : i + batch]


def flip(images: torch.Tensor, boxes: list[torch.Tensor], mask: torch.Tensor):
    """Horizontal flip of the images (and their boxes) where `mask` is set."""
    w = images.shape[-1]
    images = torch.where(mask[:, None, None, None], images.flip(-1), images)
    out = []
    for b, m in zip(boxes, mask.tolist()):
        out.append(torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1) if m and len(b) else b)
    return images, out


def write_results(args, arch, n: int, n_val: int, history: list[dict]) -> None:
    """results.json + results.md into --out (atomically, so a half-written file never replaces a good one)."""
    result = {
        "arch": args.arch,
        "num_classes": arch.num_classes,
        "imgsz": args.imgsz,
        "epochs": args.epochs,
        "batch": args.batch,
        "lr": args.lr,
        "train_images": n,
        "val_images": n_val,
        "threads": args.threads,
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
        "history": history,
        "final": history[-1] if history else None,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "results.json", json.dumps(result, indent=2) + "\n")
    lines = [
        f"Synthetic set difficulty: `{args.arch}` layout ({arch.num_classes} classes) from random init, "
        f"{n} train images at {args.imgsz}, batch {args.batch}, AdamW lr {args.lr}; val on {n_val} images "
        "(pycocotools).",
        "",
        "| epoch | train loss | mAP50-95 | mAP50 | elapsed |",
        "|---|---|---|---|---|",
        *(
            f"| {r['epoch']} | {r['train_loss']:.3f} | {r['mAP50_95']:.1f} | {r['mAP50']:.1f} | {r['elapsed_s']:.0f} s |"
            for r in history
        ),
    ]
    write_text_atomic(out / "results.md", "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="yolo_nas_s", help="a released name or an ArchConfig YAML")
    ap.add_argument("--data", default="synthetic")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--warmup-steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--limit", type=int, default=None, help="train on the first N images only (val is always whole)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE))
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    train_ds = load_dataset(args.data, "train")
    val_ds = load_dataset(args.data, "val")
    arch = load_arch(args.arch)
    arch = dataclasses.replace(arch, heads=dataclasses.replace(arch.heads, num_classes=len(train_ds.category_ids)))
    model = build(arch)
    images, boxes, labels = load_split(args.data, "train", args.imgsz, args.limit)
    n = len(images)
    steps_per_epoch = n // args.batch
    total = steps_per_epoch * args.epochs
    decay = [p for name, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for name, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr
    )

    def lr_at(step: int) -> float:
        if step < args.warmup_steps:
            return args.lr * (step + 1) / args.warmup_steps
        t = (step - args.warmup_steps) / max(1, total - args.warmup_steps)
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))

    gen = torch.Generator().manual_seed(args.seed)
    history, step, t0 = [], 0, time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        losses = []
        for idx in batches(n, args.batch, gen):
            x = images[idx].float() / 255.0
            x, b = flip(x, [boxes[i] for i in idx], torch.rand(len(idx), generator=gen) < 0.5)
            loss = detection_loss(model, ProxyBatch(x, tuple(b), tuple(labels[i] for i in idx), "train"))
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
        model.eval()
        m = validate(model, val_ds, imgsz=args.imgsz, batch=16, verbose=False)
        row = {
            "epoch": epoch + 1,
            "steps": step,
            "train_loss": round(float(np.mean(losses)), 4),
            "mAP50_95": round(100 * m["mAP50_95"], 2),
            "mAP50": round(100 * m["mAP50"], 2),
            "elapsed_s": round(time.perf_counter() - t0, 1),
        }
        history.append(row)
        print(json.dumps(row), flush=True)
        write_results(args, arch, n, len(val_ds), history)  # after every epoch: a killed run keeps its curve

    return 0


if __name__ == "__main__":
    raise SystemExit(main())
