"""Exported detectors behind the torch module interface: `load_exported(path)` for every export format.

Each runtime takes the same pre-processed [B, 3, H, W] float tensor as the torch network and returns its
`(boxes, scores)`, so `predict_iter` and `validate` apply the same pre- and post-processing to all of them. A
graph exported with a fixed shape gets inputs that fit it: a batch runs one graph-batch at a time (the last one
padded), and an input smaller than the graph's H x W is padded at the bottom/right with the letterbox grey,
which moves no box (coordinates are measured from the top-left corner).

| format | file | runtime |
|---|---|---|
| onnx | `x.onnx` (FP32, FP16 or INT8 QDQ) | onnxruntime, CPU (`nas.engine.ort`) |
| openvino | `x_openvino_model/` (or its `x.xml`) | OpenVINO, CPU |
| torchscript | `x.torchscript` | torch.jit, the device it is moved to |
| engine | `x.engine` | TensorRT, CUDA |
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from nas.engine.detector import ExportedDetector, parse_metadata
from nas.engine.ort import OrtDetector
from nas.errors import CheckpointError, ConfigError

__all__ = [
    "OPENVINO_DIR_SUFFIX",
    "ExportedDetector",
    "OpenVINODetector",
    "TensorRTDetector",
    "TorchScriptDetector",
    "exported_format",
    "is_exported",
    "load_exported",
    "openvino_xml",
    "parse_metadata",
    "read_engine_file",
]

OPENVINO_DIR_SUFFIX = "_openvino_model"
TORCHSCRIPT_META = "nas_metadata.json"  # the extra file of a .torchscript archive that holds the metadata


def exported_format(source: Any) -> str | None:
    """The export format of a path ("onnx", "openvino", "torchscript", "engine"), or None for anything else."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".xml" or path.name.endswith(OPENVINO_DIR_SUFFIX):
        return "openvino"
    return {".torchscript": "torchscript", ".engine": "engine"}.get(suffix)


def is_exported(source: Any) -> bool:
    return exported_format(source) is not None


def openvino_xml(path: str | os.PathLike) -> Path:
    """The IR's .xml of an OpenVINO export given as its directory or its .xml."""
    path = Path(path)
    if path.is_dir():
        xmls = sorted(path.glob("*.xml"))
        if len(xmls) != 1:
            raise CheckpointError(f"{path}: expected one OpenVINO .xml in the directory, found {len(xmls)}")
        return xmls[0]
    if not path.is_file():
        raise CheckpointError(
            f"OpenVINO model {str(path)!r} does not exist; export one with `nas export format=openvino`"
        )
    return path


class OpenVINODetector(ExportedDetector):
    """An OpenVINO IR export (FP32, FP16 weights or INT8) compiled for the CPU."""

    runtime = "OpenVINO"

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        super().__init__()
        import openvino as ov

        xml = openvino_xml(path)
        core = ov.Core()
        try:
            model = core.read_model(str(xml))
        except Exception as e:  # OpenVINO raises RuntimeError subclasses of its own
            raise CheckpointError(f"{xml}: OpenVINO cannot read it ({e})") from None
        meta = {}
        if model.has_rt_info(["nas"]):
            meta = {k: v.astype(str) for k, v in model.get_rt_info()["nas"].items()}
        shape = model.inputs[0].get_partial_shape()
        dims = [d.get_length() if d.is_static else None for d in shape]
        self._setup(Path(path), meta, dims, model.inputs[0].get_element_type() == ov.Type.f16)
        # f32 inference precision: OpenVINO may otherwise pick bf16 on CPUs that have it (outputs would move)
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(model, "CPU", config)
        outs = self.compiled.outputs
        self._outputs = [next(o for o in outs if name in o.get_names()) for name in ("boxes", "scores")]
        self.request = self.compiled.create_infer_request()

    def _run(self, x: Tensor) -> tuple[np.ndarray, np.ndarray]:
        out = self.request.infer({0: np.ascontiguousarray(x.numpy())})
        return out[self._outputs[0]].copy(), out[self._outputs[1]].copy()


class TorchScriptDetector(ExportedDetector):
    """A TorchScript trace of the fused detector (outputs boxes, scores); runs on the device it is moved to."""

    runtime = "TorchScript"

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"TorchScript model {str(path)!r} does not exist; export one with `nas export`")
        files = {TORCHSCRIPT_META: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch >= 2.10 points to torch.export
                self.module = torch.jit.load(str(path), map_location="cpu", _extra_files=files)
        except Exception as e:  # torch.jit raises RuntimeError for files that are no TorchScript archive
            raise CheckpointError(f"{path}: torch.jit cannot load it ({e})") from None
        meta = _as_text(json.loads(files[TORCHSCRIPT_META] or "{}"))
        arch_meta = parse_metadata(meta, path)[1]
        h, w = arch_meta.get("imgsz", [None, None])
        fixed = not arch_meta.get("dynamic", False)
        shape = [arch_meta.get("batch") if fixed else None, 3, h if fixed else None, w if fixed else None]
        self._setup(path, meta, shape, bool(arch_meta.get("half")))

    @property
    def device(self) -> torch.device:
        return next(iter(self.module.parameters()), torch.empty(0)).device

    def _run(self, x: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            boxes, scores = self.module(x.to(self.device))
        return boxes, scores

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        boxes, scores = super().forward(x.to(self.device))
        return boxes, scores


def read_engine_file(path: Path) -> tuple[dict[str, str], bytes]:
    """(metadata, serialized engine) of a `.engine` export: 4-byte little-endian length, metadata JSON, engine."""
    data = path.read_bytes()
    n = int.from_bytes(data[:4], "little")
    try:
        meta = json.loads(data[4 : 4 + n].decode())
    except (UnicodeDecodeError, ValueError):
        raise CheckpointError(
            f"{path}: no metadata header; export the engine with `nas export format=engine`"
        ) from None
    return _as_text(meta), data[4 + n :]


def _as_text(meta: dict[str, Any]) -> dict[str, str]:
    """JSON metadata as the string map that ONNX and OpenVINO files hold (what `parse_metadata` reads)."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}


def check_tensorrt() -> Any:
    """The tensorrt module, or a one-line ConfigError naming what is missing (tensorrt, CUDA)."""
    missing = []
    try:
        import tensorrt
    except ImportError:
        tensorrt = None
        missing.append("the tensorrt package (pip install tensorrt)")
    if not torch.cuda.is_available():
        missing.append("a CUDA GPU (torch.cuda.is_available() is False)")
    if missing:
        raise ConfigError(f"TensorRT engines need {' and '.join(missing)}; on a CPU export format=onnx or openvino")
    return tensorrt


class TensorRTDetector(ExportedDetector):
    """A TensorRT engine (FP32/FP16) run on the current CUDA device through torch tensors."""

    runtime = "TensorRT"

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        trt = check_tensorrt()
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"TensorRT engine {str(path)!r} does not exist; export one with `nas export`")
        meta, blob = read_engine_file(path)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(blob)
        if self.engine is None:
            raise CheckpointError(f"{path}: TensorRT cannot deserialize it (built with another TensorRT or GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self._input = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        shape = [d if d > 0 else None for d in self.engine.get_tensor_shape(self._input)]
        fp16 = self.engine.get_tensor_dtype(self._input) == trt.DataType.HALF
        self._setup(path, meta, shape, fp16)
        self._trt = trt

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device())

    def _run(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.to(self.device).contiguous()
        self.context.set_input_shape(self._input, tuple(x.shape))
        self.context.set_tensor_address(self._input, x.data_ptr())
        outs = {}
        for name in ("boxes", "scores"):
            dtype = torch.float16 if self.engine.get_tensor_dtype(name) == self._trt.DataType.HALF else torch.float32
            outs[name] = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype, device=self.device)
            self.context.set_tensor_address(name, outs[name].data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"{self.path}: TensorRT execution failed")
        stream.synchronize()
        return outs["boxes"], outs["scores"]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return super().forward(x.to(self.device))


def load_exported(path: str | os.PathLike) -> nn.Module:
    """The detector of an export file (or OpenVINO directory), by its format; CheckpointError if it is none."""
    fmt = exported_format(path)
    if fmt is None:
        raise CheckpointError(f"{path}: not an export (.onnx, _openvino_model/ or .xml, .torchscript, .engine)")
    loaders = {
        "onnx": OrtDetector,
        "openvino": OpenVINODetector,
        "torchscript": TorchScriptDetector,
        "engine": TensorRTDetector,
    }
    return loaders[fmt](path)
