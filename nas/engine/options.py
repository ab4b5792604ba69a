"""The options of the engine's commands (predict, val, info) and their shared base: defaults and checks, once.

`nas MODE key=value` (the CLI), the `NAS` methods and the engine functions all take these objects, so a
default or a check lives here and nowhere else (export's and benchmark's are in `nas.export.options`, latency's
in `nas.latency.options`). Values are checked when an object is made, before a model is loaded or a run
directory created. Light on purpose: `nas help` imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from nas.errors import ConfigError
from nas.latency.options import HARDWARE, LatencyOptions
from nas.options import check_imgsz, check_one_of, check_positive_int

__all__ = [
    "IMGSZ",
    "PREPROCESS_MODES",
    "PROTOCOLS",
    "InferenceOptions",
    "InfoOptions",
    "PredictOptions",
    "ValData",
    "ValOptions",
]

IMGSZ = 640  # the released models' input size
PREPROCESS_MODES = ("ultralytics", "sg")
# val protocol -> (default conf, pre-NMS candidate cap)
PROTOCOLS = {"ultralytics": (0.001, 30000), "sg": (0.01, 1000)}


def _fraction(name: str, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1):
        raise ConfigError(f"{name}={value!r}: expected a number in [0, 1]")


@dataclass(frozen=True)
class InferenceOptions:
    """What every forward + NMS command shares: thresholds, input size, batch, fp16."""

    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300
    half: bool = False
    imgsz: int = IMGSZ
    batch: int = 1

    HELP: ClassVar = {
        "conf": "confidence threshold",
        "iou": "NMS IoU threshold",
        "max_det": "detections kept per image",
        "half": "fp16 inference (CUDA only)",
        "imgsz": "inference size (multiple of 32)",
        "batch": "images per forward",
    }

    def __post_init__(self):
        check_imgsz(self.imgsz)
        _fraction("conf", self.conf)
        _fraction("iou", self.iou)
        check_positive_int("max_det", self.max_det)
        check_positive_int("batch", self.batch)
        if not isinstance(self.half, bool):
            raise ConfigError(f"half={self.half!r}: expected true or false")


@dataclass(frozen=True)
class PredictOptions(InferenceOptions):
    """`nas predict` / `NAS.predict`: ultralytics' NAS predictor defaults; preprocess="sg" is super-gradients'."""

    classes: list[int] | None = None
    agnostic: bool = False
    preprocess: str = "ultralytics"

    HELP: ClassVar = {
        "classes": "keep only these class ids, e.g. 0,2",
        "agnostic": "class-agnostic NMS",
        "preprocess": "letterbox: ultralytics or sg",
    }
    CHOICES: ClassVar = {"preprocess": PREPROCESS_MODES}

    def __post_init__(self):
        super().__post_init__()
        check_one_of("preprocess", self.preprocess, PREPROCESS_MODES)


@dataclass(frozen=True)
class ValOptions(InferenceOptions):
    """`nas val` / `NAS.val`: conf=None takes the protocol's default (ultralytics 0.001, sg 0.01)."""

    conf: float | None = None
    batch: int = 8
    protocol: str = "ultralytics"

    HELP: ClassVar = {
        "conf": "confidence threshold (default: 0.001 ultralytics, 0.01 sg)",
        "imgsz": "validation size (multiple of 32)",
        "protocol": "pre-processing protocol",
    }
    CHOICES: ClassVar = {"protocol": tuple(PROTOCOLS)}
    ORDER: ClassVar = ("imgsz", "batch", "conf", "iou", "max_det", "half", "protocol")

    def __post_init__(self):
        check_one_of("protocol", self.protocol, PROTOCOLS)
        super().__post_init__()

    @property
    def resolved_conf(self) -> float:
        return PROTOCOLS[self.protocol][0] if self.conf is None else self.conf

    @property
    def max_nms(self) -> int:
        return PROTOCOLS[self.protocol][1]


@dataclass(frozen=True)
class ValData:
    """The dataset `nas val` / `NAS.val` reads: synthetic, a data YAML or a COCO JSON, and its split."""

    data: str = "auto"
    split: str = "val"

    HELP: ClassVar = {
        "data": "synthetic, a data YAML (coco8.yaml, ...) or a COCO JSON; auto: coco8.yaml for a model of the 80 "
        "COCO classes (the released S/M/L), else synthetic",
        "split": "dataset split",
    }


@dataclass(frozen=True)
class InfoOptions:
    """`nas info` / `NAS.info`: the summary's GFLOPs resolution and the latency target (None: no latency)."""

    imgsz: int = IMGSZ
    detailed: bool = False
    fuse: bool = False
    hardware: str | None = HARDWARE

    HELP: ClassVar = {
        "imgsz": "input size for the GFLOPs count",
        "detailed": "per-layer table",
        "fuse": "fuse (re-parameterize) before counting",
        "hardware": LatencyOptions.HELP["hardware"],
    }

    def __post_init__(self):
        check_imgsz(self.imgsz)
