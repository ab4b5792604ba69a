"""`nas.train.run.train(model, opts)`: datasets, fine-tuning, resume and run directory around `run_epochs`.

from nas.models import build
from nas.train.options import TrainOptions
from nas.train.run import train
result = train(build("yolo_nas_s"), TrainOptions(data="synthetic", epochs=30, imgsz=256, batch=8))
result.metrics["mAP50_95"], result.best      # best epoch (a fraction, 0-1), runs/train/exp/best.pt
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas.data import load_dataset
from nas.errors import CheckpointError, ConfigError, DataError
from nas.io import increment_dir, write_text_atomic
from nas.models import build
from nas.options import merge
from nas.train.data import TrainSet
from nas.train.dist import setup
from nas.train.finetune import adapt_classes
from nas.train.options import TrainOptions
from nas.train.outputs import RunLog, summary_table
from nas.train.qat import export_qat, qat_recipe, start_qat
from nas.train.state import read_train_state
from nas.train.trainer import Run, TrainResult, run_epochs

__all__ = ["load_train_split", "train"]

# Options a resumed run may change when they are given (differ from their defaults); everything else, and these
# when left at their defaults, come from its checkpoint: a workers=1 run resumes with 1 loader process.
RESUME_OVERRIDES = ("device", "workers", "verbose", "plots", "logger")


def load_train_split(data: Any, limit: int | None = None):
    """The train split, checked before the first epoch as `nas val` checks its split: damaged images and malformed
    rows (a class id outside the names included) are skipped, one `DataWarning` per reason naming file:line and
    the count (docs/data.md, "Damaged data")."""
    ds = load_dataset(data, "train")
    if len(ds) == 0:
        raise DataError(f"{data!r}: the train split has no images")
    return ds


def _val_split(data: Any):
    try:
        return load_dataset(data, "val")
    except DataError as e:
        raise DataError(
            f"{e}\n(training validates every epoch on the 'val' split; add one, or pass val=false)"
        ) from None


def _resume_from(model: nn.Module | None, opts: TrainOptions) -> tuple[Path, TrainOptions, dict, Any]:
    if opts.resume is True:
        path = (getattr(model, "checkpoint_meta", None) or {}).get("path")
        if path is None:
            raise ConfigError("resume=true needs model= the last.pt of a run (or resume=path/to/last.pt)")
    else:
        path = os.fspath(opts.resume)
    arch, _meta, state = read_train_state(path, None if opts.resume is True or model is None else model.arch)
    saved = state.get("options")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: the train state records no options")
    defaults = TrainOptions()
    keep = {k: getattr(opts, k) for k in RESUME_OVERRIDES if getattr(opts, k) != getattr(defaults, k)}
    resumed = TrainOptions(**{**saved, **keep, "resume": opts.resume})
    return Path(path), resumed, state, arch


def train(
    model: nn.Module | None,
    opts: TrainOptions | None = None,
    *,
    train_data: Any = None,
    val_data: Any = None,
    pretrained: bool = False,
    save: bool = True,
    on_epoch: Any = None,
    log: Any = print,
    **overrides: Any,
) -> TrainResult:
    """Train `model` (a YOLO-NAS module; None with `resume=path`) with `opts` (+ `overrides`, option names).

    `train_data` / `val_data`: already loaded datasets instead of `opts.data`'s splits. `pretrained`: report the
    class-layer re-initialization when the dataset's classes differ from the model's. `save=False` writes nothing
    (no run directory). `on_epoch(row, ema_model)` is called on rank 0 after every epoch."""
    opts = merge(TrainOptions, opts, overrides, "nas.train.run.train")
    if opts.epochs == 0:  # an option value of the training proxies (nas.proxy.train), which then skip the trainer
        raise ConfigError("epochs=0: nothing to train; set epochs >= 1, or evaluate the weights with `nas val`")
    if opts.qat:
        opts = qat_recipe(opts)
    resume_state, run_dir, qat_images = None, None, None
    if opts.resume:
        path, opts, resume_state, arch = _resume_from(model, opts)
        run_dir = path.parent
        model = build(arch)
    elif model is None:
        raise ConfigError("train() needs a model (or resume=path/to/last.pt)")
    if getattr(model, "fusion", "none") != "none":
        raise ConfigError(f"the model is fused ({model.fusion}); train the unfused network (load it without fuse=)")
    d = setup(opts.device)
    if opts.sync_bn and d.device.type != "cuda":
        raise ConfigError("sync_bn=true needs CUDA devices (SyncBatchNorm does not run on CPU); use sync_bn=false")
    torch.manual_seed(opts.seed)
    train_ds = train_data if train_data is not None else load_train_split(opts.data)
    val_ds = None
    if opts.val:
        val_ds = val_data if val_data is not None else _val_split(opts.data)
    nc = len(train_ds.category_ids)
    if val_ds is not None and len(val_ds.category_ids) != nc:
        raise DataError(f"the train split has {nc} classes but the val split {len(val_ds.category_ids)}")
    model, adaptation = adapt_classes(model, nc)
    if opts.qat:
        model, qat_images = start_qat(model, opts, pretrained)
    say = log if (d.main and opts.verbose) else None
    if adaptation is not None and pretrained and say is not None:
        say(adaptation.summary())
    train_set = TrainSet(train_ds, opts)
    created = save and d.main and run_dir is None
    if created:
        run_dir = increment_dir(Path(opts.project) / "train" / opts.name, opts.exist_ok)
    if not save:
        run_dir = None
    runlog = RunLog(run_dir, opts.logger, opts.to_dict(), opts.name) if run_dir is not None and d.main else None
    names = [train_ds.names[i] for i in range(nc)]
    run = Run(
        opts, model, train_set, val_ds, names, d, run_dir if d.main else None, runlog, say, on_epoch, resume_state
    )
    if say is not None:
        where = f" -> {run_dir}" if run_dir is not None else ""
        say(f"training {model.arch.name} on {len(train_set)} images of {train_ds.name!r} ({nc} classes), "
            f"{opts.epochs} epochs, imgsz {opts.imgsz}, batch {opts.batch} on {d.world} x {d.device}{where}")  # fmt: skip
    try:
        result = run_epochs(run)
        result.adaptation = adaptation
        if opts.qat and run_dir is not None and d.main:
            info = export_qat(result.model, qat_images, run_dir, names)
            write_text_atomic(run_dir / "qat.json", json.dumps(info, indent=1, default=str) + "\n")
            result.best = Path(info["path"])
    except BaseException:
        if created and run_dir is not None and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()  # failed before writing anything (batch > images, ...): leave no empty runs/train/exp
        raise
    finally:
        if runlog is not None:
            runlog.finish()
        d.close()
    if result.metrics.get("per_class") is not None:
        m = result.metrics
        table = summary_table(m)
        if say is not None:
            say(f"best epoch {m['epoch']} (EMA weights, val):\n{table}")
        if run_dir is not None and d.main:
            (run_dir / "summary.md").write_text(table + "\n")
    return result
