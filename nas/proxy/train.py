"""Training as an accuracy proxy: the trainer of `nas.train` with short presets, nothing written to disk.

`train` (the SHORT preset) returns the EMA model and the per-epoch history (experiments/synthetic_difficulty).
The search's training proxies train each candidate a few epochs from scratch (`short_train_score`) or from weights
inherited from a trained parent (`inherit_score`) and score it on the val split; slower than the zero-cost proxies
by orders of magnitude, the usual stronger baseline. `experiments/proxy_correlation` measures both against
trained mAP. Every score is "larger is better":
- `mAP50_95`: of the EMA weights after the short training (percent), on the val split of `data`;
- `tse`: training speed estimation (Ru et al. 2021): minus the mean training loss over all epochs - informative
  after one epoch already, when the mAP of a detector trained from scratch is still near 0;
- `loss`: minus the last epoch's mean training loss.

    from nas.proxy.train import SHORT, inherit_score, proxy_options, short_train_score, train
    ema_model, history = train(model, "synthetic", SHORT.replace(epochs=10, imgsz=256), val_data="synthetic")
    short_train_score(arch, proxy_options(epochs=2, imgsz=128))     # {"mAP50_95": ..., "tse": ..., "seconds": ...}
    inherit_score(arch, "runs/l/last.pt", proxy_options(epochs=1))  # inherited from a trained L, 1 epoch of tuning
    inherit_score(arch, "runs/l/last.pt", proxy_options(epochs=0), bn_images=64)  # as inherited, BatchNorm re-estimated
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nas.data import load_dataset
from nas.engine.val import val_batches, validate
from nas.errors import ConfigError
from nas.models import build
from nas.models.checkpoints import read_checkpoint
from nas.models.inherit import inherit_weights
from nas.space.schema import ArchConfig
from nas.train.options import TrainOptions
from nas.train.outputs import in_points
from nas.train.run import train as run

__all__ = ["PROXY", "SCORES", "SHORT", "inherit_score", "proxy_options", "recalibrate_bn", "short_train_score", "train"]

# A few epochs at a small size; workers 0 keeps many short runs in one process cheap.
SHORT = TrainOptions(epochs=10, imgsz=320, batch=8, lr0=2e-3, warmup_epochs=1.0, workers=0, verbose=False)


def train(
    model: nn.Module,
    data,
    opts: TrainOptions = SHORT,
    *,
    val_data=None,
    on_epoch: Callable[[dict, nn.Module], None] | None = None,
    log: Callable[[str], None] | None = print,
) -> tuple[nn.Module, list[dict]]:
    """Train `model` in place on the train split of `data`; validate the EMA weights on `val_data` after each epoch.

    `data` / `val_data` are anything `nas.data.load_dataset` takes, including an already loaded dataset.
    `on_epoch(row, ema_model)` is called after every epoch. Returns (the EMA model, history rows {epoch, steps,
    loss, cls, iou, dfl, lr, elapsed_s and, with val_data, mAP50_95, mAP50, mAP75, mAP_small/medium/large,
    per_class} (mAP as fractions, 0-1, as `nas val` gives them))."""
    train_ds = load_dataset(data, "train")
    val_ds = load_dataset(val_data, "val") if val_data is not None else None
    opts = opts.replace(val=val_ds is not None, verbose=log is not None)
    result = run(model, opts, train_data=train_ds, val_data=val_ds, save=False, on_epoch=on_epoch, log=log or print)
    return result.model, result.history


SCORES = ("mAP50_95", "tse", "loss")


# The training proxies' preset (the search's proxy.train_* and rerank.train_* and experiments/proxy_correlation set
# data, epochs, imgsz and seed): a few epochs at a small size on the CPU, validated once, at the end.
PROXY = TrainOptions(
    epochs=2, imgsz=128, batch=8, lr0=1e-3, warmup_epochs=1.0, close_mosaic=0, workers=0, device="cpu", val_period=2,
    verbose=False, plots=False,
)  # fmt: skip


def proxy_options(**changes: Any) -> TrainOptions:
    """PROXY with `changes` (TrainOptions keys); the warm-up (half the epochs, at most one) and the one validation at
    the end follow `epochs`. `epochs=0` is inherit_score's mode: the inherited weights evaluated as they are."""
    epochs = max(1, changes.get("epochs", PROXY.epochs))
    return PROXY.replace(**{"warmup_epochs": min(1.0, epochs / 2), "val_period": epochs, **changes})


_TUNE = proxy_options(epochs=1)  # inherit_score's default: one epoch of fine-tuning


def _with_classes(arch: ArchConfig, nc: int) -> ArchConfig:
    return arch if arch.num_classes == nc else arch.replace(heads=dataclasses.replace(arch.heads, num_classes=nc))


def _run(model: torch.nn.Module, opts: TrainOptions, train_ds: Any, t0: float, bn_images: int = 0) -> dict[str, Any]:
    val_ds = load_dataset(opts.data, "val")
    if opts.epochs == 0:
        if bn_images:
            recalibrate_bn(model, train_ds, opts.imgsz, bn_images, opts.batch)
        model.eval()
        m = validate(model, val_ds, imgsz=opts.imgsz, batch=opts.batch, verbose=False)
        return {"mAP50_95": 100 * float(m["mAP50_95"]), "tse": None, "loss": None, "seconds": time.perf_counter() - t0}
    result = run(model, opts, train_data=train_ds, val_data=val_ds, save=False, log=None)
    losses = [r["loss"] for r in result.history]
    finite = [v for v in losses if math.isfinite(v)]
    return {
        # the proxy scores stay in points (0-100), like the epochs=0 branch above and nas.supernet.score: the
        # search's trials, caches and experiments/proxy_correlation's records hold them so
        "mAP50_95": float(in_points(result.history[-1]).get("mAP50_95", 0.0)),
        "tse": -sum(finite) / len(finite) if finite else -math.inf,
        "loss": -losses[-1] if finite else -math.inf,
        "seconds": time.perf_counter() - t0,
    }


def recalibrate_bn(model: nn.Module, dataset: Any, imgsz: int, n_images: int, batch: int = 8) -> int:
    """Reset every BatchNorm's running statistics and re-estimate them (a cumulative average) from forward passes
    over the first `n_images` of `dataset` at `imgsz` (val preprocessing, square inputs, no gradient). Weights
    sliced from a larger parent keep its statistics, which no longer match their activations; this restores
    them (once-for-all's BN recalibration). Returns the number of images used."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # the cumulative average over all batches
    device = next(model.parameters()).device
    used = 0
    was_training = model.training
    model.train()
    try:
        with torch.no_grad():
            for indices, x, _ in val_batches(dataset, imgsz, batch, rect=False, limit=n_images):
                model(x.to(device))
                used += len(indices)
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
        model.train(was_training)
    return used


def short_train_score(arch: ArchConfig, opts: TrainOptions = PROXY) -> dict[str, Any]:
    """Train `arch` from an `opts.seed` initialization for `opts.epochs` on `opts.data`; its scores and seconds."""
    if opts.epochs < 1:  # epochs=0 would score the random initialization
        raise ConfigError(f"short training: epochs={opts.epochs}; it trains from scratch, so epochs >= 1")
    t0 = time.perf_counter()
    train_ds = load_dataset(opts.data, "train")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(opts.seed)
        model = build(_with_classes(arch, len(train_ds.category_ids)))
        return _run(model, opts, train_ds, t0)


def inherit_score(
    arch: ArchConfig,
    parent: str | os.PathLike | tuple[ArchConfig, dict],
    opts: TrainOptions = _TUNE,
    *,
    bn_images: int = 0,
) -> dict[str, Any]:
    """`arch` with weights inherited from a trained `parent` (checkpoint path, or (ArchConfig, state_dict)) by
    `nas.models.inherit`, evaluated after `opts.epochs` of fine-tuning (0: as inherited); scores, seconds and the
    inherited fraction. With epochs=0, `bn_images` > 0 re-estimates every BatchNorm's statistics on that many
    train images first (no gradient step), as once-for-all does for sliced sub-networks; 0: as inherited."""
    if bn_images < 0:
        raise ConfigError(f"bn_images={bn_images}: must be >= 0 (0: keep the inherited statistics)")
    t0 = time.perf_counter()
    train_ds = load_dataset(opts.data, "train")
    nc = len(train_ds.category_ids)
    if isinstance(parent, (str, os.PathLike)):
        ckpt = read_checkpoint(parent)
        parent = (ckpt.arch, ckpt.state_dict)
    if parent[0].num_classes != nc:
        raise ConfigError(
            f"inherit proxy: the parent has {parent[0].num_classes} classes but {opts.data!r} has {nc}; train the "
            "parent on the same data"
        )
    target = _with_classes(arch, nc)
    sd, report = inherit_weights(target, parent, seed=opts.seed)
    model = build(target)
    model.load_state_dict(sd)
    out = _run(model, opts, train_ds, t0, bn_images)
    out["inherited"] = report.fraction
    return out
