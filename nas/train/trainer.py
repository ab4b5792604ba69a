"""`train(model, opts)`: the training run behind `nas train`, `NAS.train`, the short-training proxy and experiments.

Per step: forward (autocast on CUDA), YOLO-NAS's loss, a non-finite guard, backward (GradScaler for fp16),
gradient clipping, AdamW step at the scheduled LR, EMA update. Per epoch: validation of the EMA weights
(pycocotools), results.csv / results.png, last.pt and best.pt (by mAP50-95). Under torchrun: DDP, rank 0 writes.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from nas.engine.val import validate
from nas.errors import ConfigError, TrainingError
from nas.train.data import EpochBatches, TrainSet, loader_workers, make_loader
from nas.train.dist import Dist
from nas.train.ema import EMA
from nas.train.finetune import placeholders, set_backbone_frozen
from nas.train.loss import ppyoloe_loss
from nas.train.options import TrainOptions
from nas.train.outputs import from_points, metrics_row
from nas.train.schedule import lr_at, param_groups
from nas.train.state import rng_state, set_rng_state, write_checkpoint

__all__ = ["Run", "TrainResult", "run_epochs"]

LIKELY_CAUSES = (
    "likely causes: a learning rate too high for this batch (lower lr0 or raise warmup_epochs), fp16 overflow "
    "(amp=bf16 or amp=off), boxes far outside the images or weights that are already non-finite"
)


@dataclass
class TrainResult:
    """What a run returns: metrics of the best epoch (fractions, as `NAS.val`), paths, the per-epoch history."""

    metrics: dict[str, Any]
    best: Path | None
    last: Path | None
    run_dir: Path | None
    history: list[dict[str, Any]]
    model: nn.Module  # the EMA model of the last epoch
    class_names: list[str] = field(default_factory=list)
    adaptation: Any = None  # nas.train.finetune.ClassAdaptation when the class layers were re-initialized


@dataclass
class Run:
    """Everything one run holds; `run_epochs` drives it."""

    opts: TrainOptions
    model: nn.Module  # the raw (trained) module, unwrapped
    train_set: TrainSet
    val_set: Any
    class_names: list[str]
    dist: Dist
    run_dir: Path | None
    log: Any  # RunLog or None
    say: Any  # callable(str) or None
    on_epoch: Any = None
    resume_state: dict | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    # step_loss(net, x, batch, normalizer, global_step, amp_dtype, scaler) -> (loss, parts) replaces one forward +
    # the loss (the supernet's sandwich rule; it may back-propagate parts itself through `scaler`, the trainer
    # back-propagates the returned loss); extra_meta goes into every checkpoint's meta
    step_loss: Any = None
    extra_meta: dict[str, Any] = field(default_factory=dict)


def _amp_dtype(opts: TrainOptions, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or opts.amp == "off":
        return None
    if opts.amp == "bf16" or (opts.amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def _save(run: Run, name: str, ema_model: nn.Module, meta_train: dict, state: dict | None) -> Path:
    meta = {"class_names": run.class_names, "train": meta_train, **run.extra_meta}
    weights = ema_model.state_dict()
    return write_checkpoint(run.run_dir / name, run.model.arch, weights, meta, state)


def run_epochs(run: Run) -> TrainResult:
    o, d, model = run.opts, run.dist, run.model
    dev = d.device
    model.to(dev)
    for p in model.parameters():  # an EMA copy (NAS.train after NAS.train) comes without gradients
        p.requires_grad_(id(p) not in placeholders(model))
    s = run.resume_state
    if s is not None:
        model.load_state_dict(s["model"], strict=True)
    opt = torch.optim.AdamW(param_groups(model, o.weight_decay), lr=o.lr0)
    net: nn.Module = model
    # a custom step (the supernet's sandwich: several sub-networks per step) cannot run under DDP's wrapper: its
    # weights are broadcast and its gradients averaged by hand, after the step's backward passes
    by_hand = d.world > 1 and run.step_loss is not None
    if by_hand:
        if o.sync_bn:
            raise ConfigError("sync_bn=true is not supported with a custom training step (a supernet): drop sync_bn")
        d.broadcast_module(model)
    elif d.world > 1:  # wraps before the EMA copies the weights: DDP broadcasts rank 0's
        if o.sync_bn:
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[dev.index] if dev.type == "cuda" else None, find_unused_parameters=o.freeze_epochs > 0
        )
    ema = EMA(model, o.ema_decay) if o.ema_decay > 0 else None
    dtype = _amp_dtype(o, dev)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)
    sampler = EpochBatches(len(run.train_set), o.batch, o.seed, d.rank, d.world, max(0, o.epochs - o.close_mosaic))
    steps, total = sampler.steps, sampler.steps * o.epochs
    warmup = max(1, round(o.warmup_epochs * steps)) if o.warmup_epochs > 0 else 0
    start_epoch = start_batch = global_step = 0
    sums = {"loss": 0.0, "cls": 0.0, "iou": 0.0, "dfl": 0.0, "n": 0.0}  # sums of the finite steps, their count
    best_fitness, skipped, elapsed0 = -math.inf, 0, 0.0
    if s is not None:
        opt.load_state_dict(s["optimizer"])
        if ema is not None:
            ema.load_state_dict(s["ema"])
        scaler.load_state_dict(s["scaler"])
        set_rng_state(s["rng"])
        start_epoch, start_batch, global_step = int(s["epoch"]), int(s["batch"]), int(s["global_step"])
        sums, skipped = {k: float(v) for k, v in s["sums"].items()}, int(s["skipped"])
        best_fitness, elapsed0 = float(s["best_fitness"]), float(s["elapsed_s"])
        run.history = list(s["history"])
        if s.get("metrics_scale") != "fraction":  # written when the trainer kept mAP in points (0-100)
            run.history = [from_points(r) for r in run.history]
            if o.val:  # then the best fitness is an mAP (without validation it is minus a loss)
                best_fitness /= 100
        if d.main and run.log is not None:
            run.log.truncate_steps(global_step)
    if o.compile:
        net = torch.compile(net)
    loader = make_loader(run.train_set, sampler, loader_workers(o.workers, d.world))
    normalizer = d.loss_normalizer if d.world > 1 else None
    best_path = run.run_dir / "best.pt" if run.run_dir and (run.run_dir / "best.pt").is_file() else None
    last_path = None
    t0 = time.perf_counter() - elapsed0
    lr = o.lr0

    def state(epoch: int, batch: int) -> dict:
        return {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "scaler": scaler.state_dict(),
            "rng": rng_state(),
            "epoch": epoch,
            "batch": batch,
            "global_step": global_step,
            "sums": dict(sums),
            "skipped": skipped,
            "best_fitness": best_fitness,
            "elapsed_s": time.perf_counter() - t0,
            "history": run.history,
            "metrics_scale": "fraction",  # of the history's mAP entries; absent: points (0-100)
            "options": o.to_dict(),
        }

    eval_model = ema.module if ema is not None else model
    for epoch in range(start_epoch, o.epochs):
        frozen = epoch < o.freeze_epochs
        set_backbone_frozen(model, frozen)
        model.train()
        if frozen:
            set_backbone_frozen(model, True)  # model.train() put the frozen BN layers back in train mode
        sampler.set_epoch(epoch, start_batch)
        bad = 0
        bar = tqdm(
            loader,
            total=steps,
            initial=start_batch,
            desc=f"epoch {epoch + 1}/{o.epochs}",
            disable=not (o.verbose and d.main),
            dynamic_ncols=True,
        )
        for k, batch in enumerate(bar, start=start_batch):
            x = batch.images.to(dev, non_blocking=True).float().div_(255)
            lr = lr_at(global_step, total, o.lr0, warmup, o.lrf)
            for g in opt.param_groups:
                g["lr"] = lr
            try:
                if run.step_loss is not None:
                    loss, parts = run.step_loss(net, x, batch, normalizer, global_step, dtype, scaler)
                else:
                    ctx = torch.autocast("cuda", dtype=dtype) if dtype is not None else contextlib.nullcontext()
                    with ctx:
                        out = net(x)
                    loss, parts = ppyoloe_loss(out, batch.boxes, batch.labels, normalizer)
                finite = not d.any(not bool(torch.isfinite(loss)))
                if finite:
                    scaler.scale(loss).backward()
                    if by_hand:
                        d.average_gradients(model)
                    if o.clip_grad > 0:
                        scaler.unscale_(opt)
                        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), o.clip_grad)
                        finite = scaler.is_enabled() or bool(torch.isfinite(gnorm))
            except torch.cuda.OutOfMemoryError:
                raise TrainingError(
                    f"CUDA out of memory at epoch {epoch + 1}, batch {k} (batch={o.batch}, imgsz={o.imgsz}); "
                    f"use a smaller batch (e.g. batch={max(1, o.batch // 2)}) or a smaller imgsz"
                ) from None
            if finite:
                scaler.step(opt)
                scaler.update()
                if ema is not None:
                    ema.update(model)
                bad = 0
            else:
                bad += 1
                skipped += 1
                warnings.warn(
                    f"non-finite loss or gradients at epoch {epoch + 1}, batch {k} ({parts}): step skipped",
                    RuntimeWarning,
                    stacklevel=2,
                )
                if bad >= o.max_bad_steps:
                    raise TrainingError(
                        f"{bad} consecutive non-finite steps, the last at epoch {epoch + 1}, batch {k} "
                        f"(lr {lr:.3g}, loss terms {parts}); {LIKELY_CAUSES}"
                    )
            opt.zero_grad(set_to_none=True)
            value = float(d.mean(loss.detach())) if finite else float("nan")
            if finite:
                sums["loss"] += value
                sums["n"] += 1
                for key, v in parts.items():
                    sums[key] += float(d.mean(torch.tensor(v, device=dev))) if d.world > 1 else v
            global_step += 1
            if d.main and run.log is not None:
                run.log.write_step(global_step, epoch + 1, k + 1, value, lr)
            bar.set_postfix(loss=f"{value:.3f}", lr=f"{lr:.2e}")
            mid = o.save_period_steps and global_step % o.save_period_steps == 0 and k + 1 < steps
            if mid and d.main and run.run_dir is not None and not o.qat:
                last_path = _save(run, "last.pt", eval_model, {"epoch": epoch, "batch": k + 1}, state(epoch, k + 1))
        bar.close()
        done = max(1.0, sums.pop("n"))
        row = {"epoch": epoch + 1, "steps": global_step, **{k: round(v / done, 4) for k, v in sums.items()}}
        row.update(lr=lr, skipped_steps=skipped)
        validated = o.val and run.val_set is not None and ((epoch + 1) % o.val_period == 0 or epoch + 1 == o.epochs)
        if d.main and validated:
            eval_model.eval()  # the EMA copy always is; the raw model (ema_decay=0) must not move its BN statistics
            m = validate(eval_model, run.val_set, imgsz=o.imgsz, batch=max(1, o.batch), verbose=False)
            row.update(metrics_row(m))
        row["elapsed_s"] = round(time.perf_counter() - t0, 1)
        run.history.append(row)
        sums = {"loss": 0.0, "cls": 0.0, "iou": 0.0, "dfl": 0.0, "n": 0.0}
        start_batch = 0
        if d.main:
            fitness = row.get("mAP50_95", -row["loss"])
            improved = fitness > best_fitness and (validated or not o.val)
            if improved:
                best_fitness = fitness
            if run.run_dir is not None:
                meta = dict(row)
                if not o.qat:  # a QAT network is fused and fake-quantized: the run writes qat_int8.onnx instead
                    last_path = _save(run, "last.pt", eval_model, meta, state(epoch + 1, 0))
                if improved and not o.qat:
                    best_path = _save(run, "best.pt", eval_model, meta, None)
                run.log.write_epochs(run.history)
                if o.plots:
                    run.log.plot(run.history)
            if run.say is not None:
                run.say(" ".join(f"{k}={v}" for k, v in row.items() if not k.startswith("per_class")))
            if run.on_epoch is not None:
                run.on_epoch(row, eval_model)
        d.barrier()
    best_row = max(run.history, key=lambda r: r.get("mAP50_95", -r["loss"])) if run.history else {}
    return TrainResult(best_row, best_path, last_path, run.run_dir, run.history, eval_model, run.class_names)
