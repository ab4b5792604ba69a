"""Data-pipeline overhead: trainer images/s vs a bare forward+loss+backward+step loop on pre-loaded tensors.

Same model (the S layout, 8 classes), batch, resolution, optimizer and loss; the bare loop reuses one pre-loaded,
pre-augmented batch so it never waits for data. The trainer additionally streams and augments images in `workers`
processes, clips gradients and updates the EMA. Runs are interleaved (bare, trainer, bare, trainer, ...) so that
load from other jobs on a shared machine hits both alike.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import torch

from nas.io import write_text_atomic


def _bare(model, batch, steps: int, lr: float) -> float:
    from nas.train.loss import ppyoloe_loss
    from nas.train.schedule import param_groups

    opt = torch.optim.AdamW(param_groups(model, 1e-5), lr=lr)
    x = batch.images.float() / 255
    model.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss, _ = ppyoloe_loss(model(x), batch.boxes, batch.labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def overhead(args) -> int:
    from nas.models import build
    from nas.space import load_arch
    from nas.train.data import Key, TrainSet, collate
    from nas.train.options import TrainOptions
    from nas.train.run import load_train_split, train

    steps, reps = args.steps, args.reps
    imgsz, batch = args.overhead_imgsz, args.batch
    arch = load_arch("yolo_nas_s")
    arch = dataclasses.replace(arch, heads=dataclasses.replace(arch.heads, num_classes=8))
    opts = TrainOptions(
        data="synthetic", epochs=1, imgsz=imgsz, batch=batch, workers=args.workers, limit=steps * batch, val=False,
        lr0=1e-3, warmup_epochs=0.0, close_mosaic=0, device="cpu", verbose=False, plots=False,
    )  # fmt: skip
    ds = load_train_split("synthetic")
    ts = TrainSet(ds, opts)
    pre = collate([ts[Key(i, 0, True)] for i in range(batch)])
    runs = []
    for r in range(reps):
        torch.manual_seed(r)
        bare_s = _bare(build(arch), pre, steps, opts.lr0)
        torch.manual_seed(r)
        result = train(build(arch), opts, train_data=ds, save=False, log=print)
        trainer_s = result.history[-1]["elapsed_s"]
        runs.append({"bare_s": round(bare_s, 2), "trainer_s": trainer_s})
        print(runs[-1], flush=True)
    bare = sum(r["bare_s"] for r in runs)
    trainer = sum(r["trainer_s"] for r in runs)
    n = reps * steps * batch
    result = {
        "what": "images/s of the trainer vs a bare loop on pre-loaded tensors (same model, batch, size, loss, AdamW)",
        "model": "yolo_nas_s layout, 8 classes",
        "imgsz": imgsz,
        "batch": batch,
        "steps_per_run": steps,
        "reps": reps,
        "workers": args.workers,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
        + (f"; {args.note}" if args.note else ""),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "runs": runs,
        "bare_images_per_s": round(n / bare, 3),
        "trainer_images_per_s": round(n / trainer, 3),
        "trainer_vs_bare": round(bare / trainer, 3),
        "goal": "trainer within 10 % of the bare loop (ratio >= 0.9)",
    }
    write(Path(args.out), result)
    return 0


def write(out: Path, result: dict) -> None:
    """overhead.json and overhead.md (also re-renders the Markdown from a committed JSON)."""
    write_text_atomic(out / "overhead.json", json.dumps(result, indent=2) + "\n")
    md = [
        f"Data-pipeline overhead: `yolo_nas_s` layout (8 classes), {result['imgsz']} px, batch {result['batch']}, "
        f"{result['steps_per_run']} steps per run, {result['reps']} interleaved repetitions, {result['workers']} "
        f"loader worker(s), {result['threads']} torch thread(s). Machine: {result['machine']}.",
        "",
        "| loop | images/s |",
        "|---|---|",
        f"| bare (pre-loaded batch, forward + loss + backward + AdamW) | {result['bare_images_per_s']} |",
        f"| trainer (streamed + augmented, clipping, EMA) | {result['trainer_images_per_s']} |",
        "",
        f"Trainer / bare: {result['trainer_vs_bare']} (goal >= 0.9).",
        "",
        "| repetition | bare s | trainer s |",
        "|---|---|---|",
        *(f"| {i + 1} | {r['bare_s']} | {r['trainer_s']} |" for i, r in enumerate(result["runs"])),
    ]
    signs = {r["trainer_s"] > r["bare_s"] for r in result["runs"]}
    if len(signs) > 1:
        md += [
            "",
            "The repetitions disagree in sign (load changes between them): the difference is within the noise.",
        ]
    write_text_atomic(out / "overhead.md", "\n".join(md) + "\n")
