"""Short training as an accuracy proxy: the trainer of `nas.train` with a short preset, nothing written to disk.

The loss (TAL + varifocal + GIoU + DFL), EMA, parameter groups and schedule live in `nas.train`; this module only
names the preset and returns what the search and the experiments use: the EMA model and the per-epoch history.

    from nas.proxy.train import SHORT, train
    ema_model, history = train(model, "synthetic", SHORT.replace(epochs=10, imgsz=256), val_data="synthetic")
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from nas.data import load_dataset
from nas.train.options import TrainOptions
from nas.train.run import train as run

__all__ = ["SHORT", "train"]

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
    per_class} (mAP in percent))."""
    train_ds = load_dataset(data, "train")
    val_ds = load_dataset(val_data, "val") if val_data is not None else None
    opts = opts.replace(val=val_ds is not None, verbose=log is not None)
    result = run(model, opts, train_data=train_ds, val_data=val_ds, save=False, on_epoch=on_epoch, log=log or print)
    return result.model, result.history
