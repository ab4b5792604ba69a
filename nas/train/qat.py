"""`qat=true`: quantization-aware fine-tuning of a trained detector, exported as QDQ INT8 ONNX.

The recipe is super-gradients' (`modify_params_for_qat`, docs/export.md): the options given describe the original
training, and QAT runs a tenth of its epochs (at least one) at lr0 and weight decay x 0.01, cosine to 0.01 of that,
without EMA, mosaic or mixed precision. It starts from the PTQ calibration: `nas.quant.qat.prepare_qat` fuses the
network and fake-quantizes every convolution with the ranges our onnxruntime PTQ would use on the same
calibration images (`calib` images of the train split, min-max, per-channel weights); the run validates the
fake-quantized network, so its mAP is the simulated INT8 mAP. At the end the run writes `qat_int8.onnx` (QDQ,
`NAS("qat_int8.onnx")` predicts and validates it in onnxruntime) beside its results; no last.pt/best.pt (the
weights are those of the fused network) and no resume.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from nas.errors import ConfigError
from nas.export.formats import export_metadata
from nas.export.onnx import export_onnx
from nas.models.reparam import fuse
from nas.quant import calibration_images
from nas.quant.qat import export_qat_onnx, prepare_qat
from nas.train.options import TrainOptions

__all__ = ["QAT_FILE", "export_qat", "qat_exclude", "qat_recipe", "start_qat"]

QAT_FILE = "qat_int8.onnx"
LR_FACTOR = 0.01  # lr0 and weight decay, super-gradients' QAT rule
EPOCH_DIVISOR = 10


def qat_recipe(opts: TrainOptions) -> TrainOptions:
    """The QAT options derived from the original recipe `opts` (super-gradients' modifications)."""
    if opts.resume:
        raise ConfigError("qat=true runs are short and write no last.pt: start the QAT run again instead of resume")
    epochs = max(1, opts.epochs // EPOCH_DIVISOR)
    return opts.replace(
        epochs=epochs,
        lr0=opts.lr0 * LR_FACTOR,
        weight_decay=opts.weight_decay * LR_FACTOR,
        lrf=0.01,
        warmup_epochs=min(opts.warmup_epochs, epochs / EPOCH_DIVISOR),
        ema_decay=0.0,
        mosaic=0.0,
        close_mosaic=0,
        amp="off",
        sync_bn=False,
        freeze_epochs=0,
    )


def start_qat(model: nn.Module, opts: TrainOptions, pretrained: bool) -> tuple[nn.Module, np.ndarray]:
    """(the fake-quantized network to train, its calibration images) of a trained, unfused `model`."""
    if not pretrained:
        raise ConfigError("qat=true fine-tunes trained weights; pass model= a checkpoint (e.g. runs/train/exp/best.pt)")
    images = calibration_images(opts.data, opts.qat_calib, opts.imgsz, seed=opts.seed)
    exclude = qat_exclude(model, opts.qat_exclude)
    qat_model = prepare_qat(model, images, per_channel=opts.qat_per_channel, exclude=exclude)
    return qat_model, images


def qat_exclude(model: nn.Module, text: str | None) -> list[str]:
    """Module names of the convolutions `qat_exclude` keeps float ("heads": every head convolution but the
    stems, the skip list of super-gradients' unmerged YOLO-NAS quantization recipes), in the fused network."""
    if not text:
        return []
    fused = fuse(copy.deepcopy(model), "full")
    convs = [n for n, m in fused.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    if text == "heads":
        return [n for n in convs if re.match(r"heads\.head\d+\.(cls_convs|reg_convs|cls_pred|reg_pred)\b", n)]
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in convs]
    if unknown:
        raise ConfigError(f"qat_exclude: no convolution {unknown[0]!r} in the fused network (e.g. {convs[-1]!r})")
    return names


def export_qat(model: nn.Module, images: np.ndarray, run_dir: Path, class_names: list[str]) -> dict[str, Any]:
    """Write the QAT network as `run_dir/qat_int8.onnx`; returns what the run records about it."""
    meta = export_metadata(model.arch, dict(enumerate(class_names)))
    h, w = images.shape[2:]

    def fp32(float_model: nn.Module, path: Path):
        result = export_onnx(float_model, path, imgsz=(int(h), int(w)), metadata=meta)
        if not result.ok:
            raise ConfigError(f"the fine-tuned network's FP32 ONNX differs from torch: {result}")
        return result

    q, _ = export_qat_onnx(model, run_dir / QAT_FILE, images, fp32)
    return {"path": str(q.path), **dataclasses.asdict(q), **model.qat}
