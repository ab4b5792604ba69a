"""`TrainOptions`: every option of a training run, with its default and its check, in one place.

The CLI (`nas train key=value ...`), the API (`NAS(...).train(**kwargs)`), the trainer, the short-training proxy
and the experiments all build this one frozen dataclass; key names follow ultralytics where it has one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from nas.errors import ConfigError

__all__ = ["AMP_MODES", "LOGGERS", "TrainOptions"]

AMP_MODES = ("auto", "bf16", "fp16", "off")
LOGGERS = ("none", "wandb")


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainOptions:
    data: str = _opt("synthetic", "dataset: synthetic, a shipped config, a data YAML or a COCO JSON")
    epochs: int = _opt(100, "number of epochs")
    imgsz: int = _opt(640, "square training and validation size (multiple of 32)")
    batch: int = _opt(16, "global batch size (split over the processes under torchrun)")
    device: str | None = _opt(None, "cpu, cuda, cuda:N or N (default: cuda if available, else cpu)")
    workers: int = _opt(8, "data-loader worker processes per process (0: load in the main process)")
    resume: bool | str = _opt(False, "true (model= is a last.pt) or the path of a last.pt to continue")
    weights: str | None = _opt(None, "initial weights of a YAML model: released name, checkpoint or auto")
    lr0: float = _opt(5e-4, "peak learning rate (AdamW)")
    lrf: float = _opt(0.1, "final learning rate as a fraction of lr0 (cosine)")
    weight_decay: float = _opt(1e-5, "AdamW weight decay (none on norms and biases)")
    warmup_epochs: float = _opt(3.0, "linear warm-up length in epochs")
    ema_decay: float = _opt(0.9997, "EMA decay cap (threshold ramp (1+s)/(10+s)); 0 disables the EMA")
    clip_grad: float = _opt(10.0, "gradient-norm clipping threshold (0: off)")
    amp: str = _opt("auto", "mixed precision on CUDA: auto (bf16 where supported, else fp16), bf16, fp16, off")
    compile: bool = _opt(False, "torch.compile the model")
    sync_bn: bool = _opt(False, "SyncBatchNorm under DDP")
    freeze_epochs: int = _opt(0, "freeze the backbone for the first N epochs")
    mosaic: float = _opt(1.0, "probability of a 4-image mosaic")
    close_mosaic: int = _opt(10, "turn mosaic off for the last N epochs")
    degrees: float = _opt(0.0, "random rotation range in degrees")
    translate: float = _opt(0.25, "random translation of the image centre, fraction of imgsz")
    scale: float = _opt(0.5, "random scale gain: factor U(1-scale, 1+scale)")
    fliplr: float = _opt(0.5, "horizontal flip probability")
    hsv_h: float = _opt(0.1, "hue shift, fraction of the hue circle (super-gradients: 18/180)")
    hsv_s: float = _opt(0.12, "saturation shift, fraction of 255 (super-gradients: 30)")
    hsv_v: float = _opt(0.12, "value shift, fraction of 255 (super-gradients: 30)")
    seed: int = _opt(0, "seed of the initialization, the data order and the augmentation")
    limit: int | None = _opt(None, "train on the first N images only")
    val: bool = _opt(True, "validate the EMA weights after every epoch")
    project: str = _opt("runs", "parent folder; the run goes to <project>/train/<name>")
    name: str = _opt("exp", "run directory name (exp, exp2, ... when taken)")
    exist_ok: bool = _opt(False, "reuse <project>/train/<name> instead of incrementing")
    save_period_steps: int = _opt(0, "also write last.pt every N optimizer steps inside an epoch (0: epoch ends only)")
    max_bad_steps: int = _opt(5, "stop after this many consecutive non-finite losses")
    logger: str = _opt("none", "none or wandb (offline unless WANDB_MODE says otherwise)")
    plots: bool = _opt(True, "write the training-curves PNG")
    verbose: bool = _opt(True, "progress bar and per-epoch lines")

    def __post_init__(self):
        if self.imgsz < 32 or self.imgsz % 32:
            raise ConfigError(f"imgsz={self.imgsz}: must be a positive multiple of 32 (e.g. 640)")
        for key in ("epochs", "batch"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}={getattr(self, key)}: must be >= 1")
        for key in ("workers", "freeze_epochs", "close_mosaic", "save_period_steps"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key}={getattr(self, key)}: must be >= 0")
        if self.max_bad_steps < 1:
            raise ConfigError(f"max_bad_steps={self.max_bad_steps}: must be >= 1")
        for key in ("lr0", "weight_decay", "warmup_epochs", "clip_grad"):
            v = getattr(self, key)
            if not (math.isfinite(v) and v >= 0) or (key == "lr0" and v == 0):
                raise ConfigError(f"{key}={v}: must be a finite number > 0" if key == "lr0" else f"{key}={v}: >= 0")
        for key in ("lrf", "mosaic", "fliplr", "ema_decay", "hsv_h", "hsv_s", "hsv_v", "translate", "scale"):
            v = getattr(self, key)
            if not 0 <= v <= 1:
                raise ConfigError(f"{key}={v}: must lie in [0, 1]")
        if self.scale >= 1:
            raise ConfigError(f"scale={self.scale}: must be < 1 (the factor is U(1-scale, 1+scale))")
        if not 0 <= self.degrees <= 180:
            raise ConfigError(f"degrees={self.degrees}: must lie in [0, 180]")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"amp={self.amp!r}: expected one of {', '.join(AMP_MODES)}")
        if self.logger not in LOGGERS:
            raise ConfigError(f"logger={self.logger!r}: expected one of {', '.join(LOGGERS)}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit={self.limit}: must be >= 1 (or none)")
        if not self.name or "/" in self.name:
            raise ConfigError(f"name={self.name!r}: a non-empty folder name without '/'")

    def replace(self, **changes: Any) -> TrainOptions:
        """A copy with `changes` (checked); unknown keys are refused with the list of valid ones."""
        unknown = sorted(set(changes) - set(self.keys()))
        if unknown:
            raise ConfigError(f"unknown train option(s) {', '.join(unknown)}; valid: {', '.join(self.keys())}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
