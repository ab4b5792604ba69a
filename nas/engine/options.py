"""The options of each model-zoo command (predict, val, export, info, latency): defaults and checks, once.

`nas MODE key=value` (the CLI), the `NAS` methods and the engine functions all take these objects, so a
default or a check lives here and nowhere else. Values are checked when an object is made, before a
model is loaded or a run directory created. Light on purpose: `nas help` imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from nas.errors import ConfigError

__all__ = [
    "BENCHMARK_VARIANTS",
    "EXPORT_FORMATS",
    "PREPROCESS_MODES",
    "PROTOCOLS",
    "BenchmarkOptions",
    "ExportOptions",
    "ExportTarget",
    "InferenceOptions",
    "InfoOptions",
    "LatencyOptions",
    "PredictOptions",
    "ValData",
    "ValOptions",
    "check_imgsz",
]

IMGSZ = 640  # the released models' input size
HARDWARE = "cpu_ort"  # the shipped latency target
PREPROCESS_MODES = ("ultralytics", "sg")
# val protocol -> (default conf, pre-NMS candidate cap)
PROTOCOLS = {"ultralytics": (0.001, 30000), "sg": (0.01, 1000)}
EXPORT_FORMATS = ("onnx", "openvino", "torchscript", "engine")  # nas.export.formats.EXPORTERS, in this order
# OpenVINO INT8 routes: OpenVINO's own post-training quantization, or reading our onnxruntime QDQ graph
OV_INT8_ROUTES = ("qdq", "nncf")
# nas.quant.CALIB_METHODS, repeated here so that `nas help` need not import onnxruntime's quantizer (a test
# keeps the two equal)
CALIB_METHODS = ("minmax", "percentile", "entropy")


def check_imgsz(imgsz: int | tuple[int, int], stride: int = 32) -> tuple[int, int]:
    """(h, w) of an int or (h, w) size; ConfigError unless each is a positive multiple of `stride`."""
    hw = (imgsz, imgsz) if isinstance(imgsz, int) and not isinstance(imgsz, bool) else imgsz
    if (
        not isinstance(hw, (tuple, list))
        or len(hw) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v < stride or v % stride for v in hw)
    ):
        raise ConfigError(f"imgsz={imgsz!r}: expected a positive multiple of {stride} (e.g. 320, 640)")
    return int(hw[0]), int(hw[1])


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r}: expected a positive integer")


def _fraction(name: str, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1):
        raise ConfigError(f"{name}={value!r}: expected a number in [0, 1]")


def _one_of(name: str, value: object, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r}; expected one of {', '.join(choices)}")


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
        _positive_int("max_det", self.max_det)
        _positive_int("batch", self.batch)
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
        _one_of("preprocess", self.preprocess, PREPROCESS_MODES)


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
        _one_of("protocol", self.protocol, PROTOCOLS)
        super().__post_init__()

    @property
    def resolved_conf(self) -> float:
        return PROTOCOLS[self.protocol][0] if self.conf is None else self.conf

    @property
    def max_nms(self) -> int:
        return PROTOCOLS[self.protocol][1]


@dataclass(frozen=True)
class ExportOptions(InferenceOptions):
    """`nas export` / `NAS.export`: the graph's input and, with nms=True, the in-graph NMS (predict semantics)."""

    imgsz: int | tuple[int, int] = IMGSZ
    dynamic: bool = False
    fuse: bool = True
    nms: bool = False
    opset: int | None = None
    int8: bool = False
    data: Any = "synthetic"
    calib: int = 32
    calib_method: str = "minmax"
    ov_int8: str = "qdq"  # measured on S (experiments/benchmark): as fast as NNCF's, 0.2 mAP closer to FP32

    HELP: ClassVar = {
        "conf": "in-graph NMS confidence threshold",
        "imgsz": "input size (multiple of 32)",
        "batch": "batch size of the graph",
        "dynamic": "dynamic batch, height and width",
        "fuse": "fuse before export",
        "nms": "NMS in the graph (outputs num_dets, boxes, scores, classes)",
        "opset": "ONNX opset (default 17)",
        "int8": "INT8 post-training quantization (onnxruntime QDQ): writes <stem>_int8.onnx",
        "data": "int8 calibration images: synthetic, a data YAML or a COCO JSON (its train split)",
        "calib": "int8: number of calibration images",
        "calib_method": "int8 calibration: minmax, percentile or entropy",
        "ov_int8": "format=openvino int8: qdq (our onnxruntime QDQ graph) or nncf (OpenVINO's quantizer)",
    }
    CHOICES: ClassVar = {"calib_method": CALIB_METHODS, "ov_int8": OV_INT8_ROUTES}
    ORDER: ClassVar = (
        "imgsz", "batch", "dynamic", "fuse", "nms", "conf", "iou", "max_det", "half", "opset",
        "int8", "data", "calib", "calib_method", "ov_int8",
    )  # fmt: skip

    def __post_init__(self):
        super().__post_init__()
        if self.opset is not None:
            _positive_int("opset", self.opset)
        if not isinstance(self.int8, bool):
            raise ConfigError(f"int8={self.int8!r}: expected true or false")
        _positive_int("calib", self.calib)
        _one_of("calib_method", self.calib_method, CALIB_METHODS)
        _one_of("ov_int8", self.ov_int8, OV_INT8_ROUTES)


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
class ExportTarget:
    """What `nas export` / `NAS.export` writes: the format and the file (None: beside the checkpoint)."""

    format: str = "onnx"
    file: str | None = None

    HELP: ClassVar = {"format": "export format", "file": "output path (default: beside the checkpoint)"}
    CHOICES: ClassVar = {"format": EXPORT_FORMATS}

    def __post_init__(self):
        if self.format not in EXPORT_FORMATS:
            raise ConfigError(f"format={self.format!r}; supported export formats: {', '.join(EXPORT_FORMATS)}")


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
        "hardware": "latency target (python -m nas.latency list)",
    }

    def __post_init__(self):
        check_imgsz(self.imgsz)


@dataclass(frozen=True)
class LatencyOptions:
    """`nas latency`: predicted (and, with measure=True, measured) latency on a target."""

    hardware: str | None = HARDWARE
    measure: bool = False
    clock: str | None = None

    HELP: ClassVar = {
        "hardware": InfoOptions.HELP["hardware"],
        "measure": "also measure it end to end on this machine (the target's runtime)",
        "clock": "measure=true on this clock: wall or process (CPU time, one thread; default: the target's)",
    }

    def __post_init__(self):
        if self.clock is not None:
            _one_of("clock", self.clock, ("wall", "process"))


# `nas benchmark` rows: a name -> (export format, what differs from the default export); "torch" runs the fused
# PyTorch network itself. nas.export.benchmark holds the same table (a test keeps the two equal).
BENCHMARK_VARIANTS = (
    "torch",
    "onnx",
    "onnx_int8",
    "openvino",
    "openvino_fp16",
    "openvino_int8",
    "openvino_int8_qdq",
    "torchscript",
    "engine",
    "engine_fp16",
)


@dataclass(frozen=True)
class BenchmarkOptions:
    """`nas benchmark`: every format's file size, mAP on `data` and latency, interleaved with the FP32 ONNX."""

    data: str = "synthetic"
    split: str = "val"
    formats: str = "all"
    imgsz: int = IMGSZ
    latency_imgsz: int | None = None
    rounds: int = 20
    calib: int = 32

    HELP: ClassVar = {
        "data": "dataset of the mAP: synthetic, a data YAML or a COCO JSON (INT8 calibrates on its train split)",
        "split": "dataset split of the mAP",
        "formats": f"comma-separated rows, or all: {', '.join(BENCHMARK_VARIANTS)}",
        "imgsz": "export and validation size (multiple of 32)",
        "latency_imgsz": "latency size (default: imgsz); other than imgsz, each format is exported at both",
        "rounds": "timed runs per format and thread count (interleaved round after round)",
        "calib": "INT8 calibration images (train split of data)",
    }

    def __post_init__(self):
        check_imgsz(self.imgsz)
        if self.latency_imgsz is not None:
            check_imgsz(self.latency_imgsz)
        _positive_int("rounds", self.rounds)
        _positive_int("calib", self.calib)
        self.variants  # noqa: B018 (checks the names)

    @property
    def variants(self) -> tuple[str, ...]:
        if self.formats == "all":
            return BENCHMARK_VARIANTS
        names = tuple(s.strip() for s in self.formats.split(",") if s.strip())
        for name in names:
            _one_of("formats", name, BENCHMARK_VARIANTS)
        if not names:
            raise ConfigError(f"formats={self.formats!r}: expected all or some of {', '.join(BENCHMARK_VARIANTS)}")
        return names
