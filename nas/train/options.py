"""`TrainOptions`: every option of a training run, with its default and its check, in one place.

The CLI (`nas train key=value ...`, keys and help from this class through `nas.options`), the API
(`NAS(...).train(**kwargs)`), the trainer, the short-training proxy and the experiments all build this one frozen
dataclass; key names follow ultralytics where it has one. Torch-free: `nas help` imports it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from nas.options import check, check_name, keys_of, replace

__all__ = ["AMP_MODES", "LOGGERS", "TrainOptions"]

AMP_MODES = ("auto", "bf16", "fp16", "off")
LOGGERS = ("none", "wandb")
_FRACTIONS = ("lrf", "mosaic", "fliplr", "ema_decay", "hsv_h", "hsv_s", "hsv_v", "translate")


@dataclass(frozen=True)
class TrainOptions:
    """Every option of a training run (docs/train.md)."""

    data: str = "synthetic"
    epochs: int = 100
    imgsz: int = 640
    batch: int = 16
    device: str | None = None
    workers: int | None = None
    resume: str | bool = False
    weights: str | None = None
    lr0: float = 0.0005
    lrf: float = 0.1
    weight_decay: float = 1e-05
    warmup_epochs: float = 3.0
    ema_decay: float = 0.9997
    clip_grad: float = 10.0
    amp: str = "auto"
    compile: bool = False
    sync_bn: bool = False
    freeze_epochs: int = 0
    mosaic: float = 1.0
    close_mosaic: int = 10
    degrees: float = 0.0
    translate: float = 0.25
    scale: float = 0.5
    fliplr: float = 0.5
    hsv_h: float = 0.1
    hsv_s: float = 0.12
    hsv_v: float = 0.12
    seed: int = 0
    limit: int | None = None
    val: bool = True
    val_period: int = 1
    project: str = "runs"
    name: str = "exp"
    exist_ok: bool = False
    save_period_steps: int = 0
    max_bad_steps: int = 5
    logger: str = "none"
    plots: bool = True
    verbose: bool = True
    qat: bool = False
    qat_calib: int = 32
    qat_per_channel: bool = True
    qat_exclude: str | None = None

    HELP: ClassVar = {
        "data": "dataset: synthetic, a shipped config, a data YAML or a COCO JSON",
        "epochs": "number of epochs (0, for the inherit proxy only: evaluate the weights untrained)",
        "imgsz": "square training and validation size (multiple of 32)",
        "batch": "global batch size (split over the processes under torchrun)",
        "device": "cpu, cuda, cuda:N or N (default: cuda if available, else cpu)",
        "workers": "data-loader worker processes per process (none: min(8, CPUs per process - 1); 0: main process)",
        "resume": "true (model= is a last.pt) or the path of a last.pt to continue",
        "weights": "initial weights of a YAML model: released name, checkpoint or auto",
        "lr0": "peak learning rate (AdamW)",
        "lrf": "final learning rate as a fraction of lr0 (cosine)",
        "weight_decay": "AdamW weight decay (none on norms and biases)",
        "warmup_epochs": "linear warm-up length in epochs",
        "ema_decay": "EMA decay cap (threshold ramp (1+s)/(10+s)); 0 disables the EMA",
        "clip_grad": "gradient-norm clipping threshold (0: off)",
        "amp": "mixed precision on CUDA: auto (bf16 where supported, else fp16), bf16, fp16, off",
        "compile": "torch.compile the model",
        "sync_bn": "SyncBatchNorm under DDP",
        "freeze_epochs": "freeze the backbone for the first N epochs",
        "mosaic": "probability of a 4-image mosaic",
        "close_mosaic": "turn mosaic off for the last N epochs",
        "degrees": "random rotation range in degrees",
        "translate": "random translation of the image centre, fraction of imgsz",
        "scale": "random scale gain: factor U(1-scale, 1+scale)",
        "fliplr": "horizontal flip probability",
        "hsv_h": "hue shift, fraction of the hue circle (super-gradients: 18/180)",
        "hsv_s": "saturation shift, fraction of 255 (super-gradients: 30)",
        "hsv_v": "value shift, fraction of 255 (super-gradients: 30)",
        "seed": "seed of the initialization, the data order and the augmentation",
        "limit": "train on the first N images only",
        "val": "validate the EMA weights (every val_period epochs and after the last)",
        "val_period": "validate every N epochs (and always after the last); best.pt only at validated epochs",
        "project": "parent folder; the run goes to <project>/train/<name>",
        "name": "run directory name (exp, exp2, ... when taken)",
        "exist_ok": "reuse <project>/train/<name> instead of incrementing",
        "save_period_steps": "also write last.pt every N optimizer steps inside an epoch (0: epoch ends only)",
        "max_bad_steps": "stop after this many consecutive non-finite losses",
        "logger": "none or wandb (offline unless WANDB_MODE says otherwise)",
        "plots": "write the training-curves PNG",
        "verbose": "progress bar and per-epoch lines",
        "qat": "quantization-aware fine-tuning of model= (trained): epochs/10, lr0 and weight_decay x 0.01, no "
        "mosaic/EMA; writes qat_int8.onnx (QDQ)",
        "qat_calib": "qat: calibration images of the train split (the PTQ ranges QAT starts from)",
        "qat_per_channel": "qat: per-channel weight scales (false: per-tensor)",
        "qat_exclude": "qat: convolutions kept float, comma-separated module names, or heads (every head conv "
        "but the stems, super-gradients' YOLO-NAS skips)",
    }

    CHOICES: ClassVar = {"amp": AMP_MODES, "logger": LOGGERS}

    def __post_init__(self):
        if isinstance(self.resume, str) and self.resume.lower() in ("true", "false", "1", "0", "yes", "no", ""):
            object.__setattr__(self, "resume", self.resume.lower() in ("true", "1", "yes"))  # key=value text
        check(self.imgsz >= 32 and self.imgsz % 32 == 0, "imgsz", self.imgsz, "a positive multiple of 32 (e.g. 640)")
        for key in ("batch", "max_bad_steps", "val_period", "qat_calib"):
            check(getattr(self, key) >= 1, key, getattr(self, key), "an integer >= 1")
        check(self.epochs >= 0, "epochs", self.epochs, "an integer >= 1 (0: evaluate the weights without training)")
        check(self.workers is None or self.workers >= 0, "workers", self.workers, "an integer >= 0 or none (auto)")
        for key in ("freeze_epochs", "close_mosaic", "save_period_steps"):
            check(getattr(self, key) >= 0, key, getattr(self, key), "an integer >= 0")
        check(math.isfinite(self.lr0) and self.lr0 > 0, "lr0", self.lr0, "a finite number > 0")
        for key in ("weight_decay", "warmup_epochs", "clip_grad"):
            v = getattr(self, key)
            check(math.isfinite(v) and v >= 0, key, v, "a finite number >= 0")
        for key in _FRACTIONS:
            check(0 <= getattr(self, key) <= 1, key, getattr(self, key), "a number in [0, 1]")
        check(0 <= self.scale < 1, "scale", self.scale, "a number in [0, 1) (the factor is U(1-scale, 1+scale))")
        check(0 <= self.degrees <= 180, "degrees", self.degrees, "a number in [0, 180]")
        check(self.amp in AMP_MODES, "amp", self.amp, f"one of {', '.join(AMP_MODES)}")
        check(self.logger in LOGGERS, "logger", self.logger, f"one of {', '.join(LOGGERS)}")
        check(self.limit is None or self.limit >= 1, "limit", self.limit, "an integer >= 1 or none")
        check_name(self.name)

    def replace(self, **changes: Any) -> TrainOptions:
        """A checked copy with `changes`; an unknown key is refused with the valid ones (`nas.options.replace`)."""
        return replace(self, **changes)

    @classmethod
    def keys(cls) -> list[str]:
        return keys_of(cls)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
