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


def _fresh_sums() -> dict[str, float]:
    return {"loss": 0.0, "cls": 0.0, "iou": 0.0, "dfl": 0.0, "n": 0.0}  # sums of the finite steps, their count


@dataclass
class _Loop:
    """What `run_epochs` carries from step to step and into last.pt's train state."""

    run: Run
    net: nn.Module  # what a step calls: the model, DDP-wrapped and/or compiled
    opt: torch.optim.Optimizer
    ema: EMA | None
    scaler: torch.amp.GradScaler
    sampler: EpochBatches
    dtype: torch.dtype | None  # autocast's, None without
    by_hand: bool  # gradients averaged by hand (a custom step under DDP)
    warmup: int  # steps
    loader: Any = None
    start_epoch: int = 0
    start_batch: int = 0
    global_step: int = 0
    sums: dict[str, float] = field(default_factory=_fresh_sums)
    skipped: int = 0
    best_fitness: float = -math.inf
    t0: float = 0.0
    lr: float = 0.0
    best_path: Path | None = None
    last_path: Path | None = None

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.run.model

    def state(self, epoch: int, batch: int) -> dict:
        """last.pt's train state: resuming from it continues bit for bit."""
        return {
            "model": self.run.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "epoch": epoch,
            "batch": batch,
            "global_step": self.global_step,
            "sums": dict(self.sums),
            "skipped": self.skipped,
            "best_fitness": self.best_fitness,
            "elapsed_s": time.perf_counter() - self.t0,
            "history": self.run.history,
            "metrics_scale": "fraction",  # of the history's mAP entries; absent: points (0-100)
            "options": self.run.opts.to_dict(),
        }


def _wrap(run: Run) -> tuple[nn.Module, bool]:
    """(the network the steps call, whether gradients are averaged by hand) for the run's process group."""
    o, d, model = run.opts, run.dist, run.model
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
            net, device_ids=[d.device.index] if d.device.type == "cuda" else None,
            find_unused_parameters=o.freeze_epochs > 0,
        )  # fmt: skip
    return net, by_hand


def _restore(loop: _Loop, s: dict) -> None:
    """Continue from a last.pt's train state (the model's weights are loaded before the optimizer is built)."""
    run, o = loop.run, loop.run.opts
    loop.opt.load_state_dict(s["optimizer"])
    if loop.ema is not None:
        loop.ema.load_state_dict(s["ema"])
    loop.scaler.load_state_dict(s["scaler"])
    set_rng_state(s["rng"])
    loop.start_epoch, loop.start_batch, loop.global_step = int(s["epoch"]), int(s["batch"]), int(s["global_step"])
    loop.sums, loop.skipped = {k: float(v) for k, v in s["sums"].items()}, int(s["skipped"])
    loop.best_fitness = float(s["best_fitness"])
    run.history = list(s["history"])
    if s.get("metrics_scale") != "fraction":  # written when the trainer kept mAP in points (0-100)
        run.history = [from_points(r) for r in run.history]
        if o.val:  # then the best fitness is an mAP (without validation it is minus a loss)
            loop.best_fitness /= 100
    if run.dist.main and run.log is not None:
        run.log.truncate_steps(loop.global_step)


def _setup(run: Run) -> _Loop:
    o, d, model = run.opts, run.dist, run.model
    model.to(d.device)
    for p in model.parameters():  # an EMA copy (NAS.train after NAS.train) comes without gradients
        p.requires_grad_(id(p) not in placeholders(model))
    s = run.resume_state
    if s is not None:
        model.load_state_dict(s["model"], strict=True)
    opt = torch.optim.AdamW(param_groups(model, o.weight_decay), lr=o.lr0)
    net, by_hand = _wrap(run)
    ema = EMA(model, o.ema_decay) if o.ema_decay > 0 else None
    dtype = _amp_dtype(o, d.device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)
    sampler = EpochBatches(len(run.train_set), o.batch, o.seed, d.rank, d.world, max(0, o.epochs - o.close_mosaic))
    warmup = max(1, round(o.warmup_epochs * sampler.steps)) if o.warmup_epochs > 0 else 0
    loop = _Loop(run, net, opt, ema, scaler, sampler, dtype, by_hand, warmup)
    elapsed0 = 0.0
    if s is not None:
        _restore(loop, s)
        elapsed0 = float(s["elapsed_s"])
    if o.compile:
        loop.net = torch.compile(loop.net)
    loop.loader = make_loader(run.train_set, sampler, loader_workers(o.workers, d.world))
    if run.run_dir and (run.run_dir / "best.pt").is_file():
        loop.best_path = run.run_dir / "best.pt"
    loop.t0 = time.perf_counter() - elapsed0
    loop.lr = o.lr0
    return loop


def _forward_backward(loop: _Loop, x: torch.Tensor, batch: Any, epoch: int, k: int) -> tuple[Any, Any, bool]:
    """(loss, its terms, whether loss and gradients are finite) of one step, gradients accumulated."""
    run, o, d = loop.run, loop.run.opts, loop.run.dist
    normalizer = d.loss_normalizer if d.world > 1 else None
    try:
        if run.step_loss is not None:
            loss, parts = run.step_loss(loop.net, x, batch, normalizer, loop.global_step, loop.dtype, loop.scaler)
        else:
            ctx = torch.autocast("cuda", dtype=loop.dtype) if loop.dtype is not None else contextlib.nullcontext()
            with ctx:
                out = loop.net(x)
            loss, parts = ppyoloe_loss(out, batch.boxes, batch.labels, normalizer)
        finite = not d.any(not bool(torch.isfinite(loss)))
        if finite:
            loop.scaler.scale(loss).backward()
            if loop.by_hand:
                d.average_gradients(run.model)
            if o.clip_grad > 0:
                loop.scaler.unscale_(loop.opt)
                gnorm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), o.clip_grad)
                finite = loop.scaler.is_enabled() or bool(torch.isfinite(gnorm))
    except torch.cuda.OutOfMemoryError:
        raise TrainingError(
            f"CUDA out of memory at epoch {epoch + 1}, batch {k} (batch={o.batch}, imgsz={o.imgsz}); "
            f"use a smaller batch (e.g. batch={max(1, o.batch // 2)}) or a smaller imgsz"
        ) from None
    return loss, parts, finite


def _train_epoch(loop: _Loop, epoch: int) -> None:
    run, o, d, model = loop.run, loop.run.opts, loop.run.dist, loop.run.model
    frozen = epoch < o.freeze_epochs
    set_backbone_frozen(model, frozen)
    model.train()
    if frozen:
        set_backbone_frozen(model, True)  # model.train() put the frozen BN layers back in train mode
    loop.sampler.set_epoch(epoch, loop.start_batch)
    steps, total = loop.sampler.steps, loop.sampler.steps * o.epochs
    bad = 0
    bar = tqdm(
        loop.loader,
        total=steps,
        initial=loop.start_batch,
        desc=f"epoch {epoch + 1}/{o.epochs}",
        disable=not (o.verbose and d.main),
        dynamic_ncols=True,
    )
    for k, batch in enumerate(bar, start=loop.start_batch):
        x = batch.images.to(d.device, non_blocking=True).float().div_(255)
        loop.lr = lr = lr_at(loop.global_step, total, o.lr0, loop.warmup, o.lrf)
        for g in loop.opt.param_groups:
            g["lr"] = lr
        loss, parts, finite = _forward_backward(loop, x, batch, epoch, k)
        if finite:
            loop.scaler.step(loop.opt)
            loop.scaler.update()
            if loop.ema is not None:
                loop.ema.update(model)
            bad = 0
        else:
            bad += 1
            loop.skipped += 1
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
        loop.opt.zero_grad(set_to_none=True)
        value = float(d.mean(loss.detach())) if finite else float("nan")
        if finite:
            loop.sums["loss"] += value
            loop.sums["n"] += 1
            for key, v in parts.items():
                loop.sums[key] += float(d.mean(torch.tensor(v, device=d.device))) if d.world > 1 else v
        loop.global_step += 1
        if d.main and run.log is not None:
            run.log.write_step(loop.global_step, epoch + 1, k + 1, value, lr)
        bar.set_postfix(loss=f"{value:.3f}", lr=f"{lr:.2e}")
        mid = o.save_period_steps and loop.global_step % o.save_period_steps == 0 and k + 1 < steps
        if mid and d.main and run.run_dir is not None and not o.qat:
            meta = {"epoch": epoch, "batch": k + 1}
            loop.last_path = _save(run, "last.pt", loop.eval_model, meta, loop.state(epoch, k + 1))
    bar.close()


def _end_epoch(loop: _Loop, epoch: int) -> None:
    """The epoch's row (mean losses, validation), then on rank 0 the checkpoints, logs and callbacks."""
    run, o, d = loop.run, loop.run.opts, loop.run.dist
    done = max(1.0, loop.sums.pop("n"))
    row = {"epoch": epoch + 1, "steps": loop.global_step, **{k: round(v / done, 4) for k, v in loop.sums.items()}}
    row.update(lr=loop.lr, skipped_steps=loop.skipped)
    validated = o.val and run.val_set is not None and ((epoch + 1) % o.val_period == 0 or epoch + 1 == o.epochs)
    eval_model = loop.eval_model
    if d.main and validated:
        eval_model.eval()  # the EMA copy always is; the raw model (ema_decay=0) must not move its BN statistics
        m = validate(eval_model, run.val_set, imgsz=o.imgsz, batch=max(1, o.batch), verbose=False)
        row.update(metrics_row(m))
    row["elapsed_s"] = round(time.perf_counter() - loop.t0, 1)
    run.history.append(row)
    loop.sums = _fresh_sums()
    loop.start_batch = 0
    if not d.main:
        return
    fitness = row.get("mAP50_95", -row["loss"])
    improved = fitness > loop.best_fitness and (validated or not o.val)
    if improved:
        loop.best_fitness = fitness
    if run.run_dir is not None:
        meta = dict(row)
        if not o.qat:  # a QAT network is fused and fake-quantized: the run writes qat_int8.onnx instead
            loop.last_path = _save(run, "last.pt", eval_model, meta, loop.state(epoch + 1, 0))
        if improved and not o.qat:
            loop.best_path = _save(run, "best.pt", eval_model, meta, None)
        run.log.write_epochs(run.history)
        if o.plots:
            run.log.plot(run.history)
    if run.say is not None:
        run.say(" ".join(f"{k}={v}" for k, v in row.items() if not k.startswith("per_class")))
    if run.on_epoch is not None:
        run.on_epoch(row, eval_model)


def run_epochs(run: Run) -> TrainResult:
    """Train `run.model` for the remaining epochs (from its resume state, if any); the best epoch's row."""
    loop = _setup(run)
    for epoch in range(loop.start_epoch, run.opts.epochs):
        _train_epoch(loop, epoch)
        _end_epoch(loop, epoch)
        run.dist.barrier()
    best_row = max(run.history, key=lambda r: r.get("mAP50_95", -r["loss"])) if run.history else {}
    return TrainResult(
        best_row, loop.best_path, loop.last_path, run.run_dir, run.history, loop.eval_model, run.class_names
    )
