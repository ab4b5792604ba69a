"""The options of `nas export` and `nas benchmark`: defaults and checks, once.

`nas MODE key=value` (the CLI), `NAS.export` and the export functions all take these objects. Light on
purpose: `nas help` imports this module (no torch, no onnxruntime).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from nas.engine.options import IMGSZ, InferenceOptions
from nas.errors import ConfigError
from nas.options import check_imgsz, check_one_of, check_positive_int

__all__ = [
    "BENCHMARK_VARIANTS",
    "CALIB_METHODS",
    "EXPORT_FORMATS",
    "OV_INT8_ROUTES",
    "VARIANTS",
    "BenchmarkOptions",
    "ExportOptions",
    "ExportTarget",
]

EXPORT_FORMATS = ("onnx", "openvino", "torchscript", "engine")  # nas.export.formats.EXPORTERS, in this order
# OpenVINO INT8 routes: OpenVINO's own post-training quantization, or reading our onnxruntime QDQ graph
OV_INT8_ROUTES = ("qdq", "nncf")
# nas.quant.CALIB_METHODS, repeated here so that `nas help` need not import onnxruntime's quantizer (a test
# keeps the two equal)
CALIB_METHODS = ("minmax", "percentile", "entropy")


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
            check_positive_int("opset", self.opset)
        if not isinstance(self.int8, bool):
            raise ConfigError(f"int8={self.int8!r}: expected true or false")
        check_positive_int("calib", self.calib)
        check_one_of("calib_method", self.calib_method, CALIB_METHODS)
        check_one_of("ov_int8", self.ov_int8, OV_INT8_ROUTES)


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


# `nas benchmark` rows: name -> (export format, ExportOptions changes); None: the fused PyTorch network itself
VARIANTS: dict[str, tuple[str, dict[str, Any]] | None] = {
    "torch": None,
    "onnx": ("onnx", {}),
    "onnx_int8": ("onnx", {"int8": True}),
    "openvino": ("openvino", {}),
    "openvino_fp16": ("openvino", {"half": True}),
    "openvino_int8": ("openvino", {"int8": True, "ov_int8": "nncf"}),
    "openvino_int8_qdq": ("openvino", {"int8": True, "ov_int8": "qdq"}),
    "torchscript": ("torchscript", {}),
    "engine": ("engine", {}),
    "engine_fp16": ("engine", {"half": True}),
}
BENCHMARK_VARIANTS = tuple(VARIANTS)


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
        check_positive_int("rounds", self.rounds)
        check_positive_int("calib", self.calib)
        self.variants  # noqa: B018 (checks the names)

    @property
    def variants(self) -> tuple[str, ...]:
        if self.formats == "all":
            return BENCHMARK_VARIANTS
        names = tuple(s.strip() for s in self.formats.split(",") if s.strip())
        for name in names:
            check_one_of("formats", name, BENCHMARK_VARIANTS)
        if not names:
            raise ConfigError(f"formats={self.formats!r}: expected all or some of {', '.join(BENCHMARK_VARIANTS)}")
        return names
