"""TensorRT engine export (CUDA only): the checked FP32 ONNX built into an FP32 or FP16 engine.

The file is a 4-byte little-endian length, the metadata JSON (arch, names, imgsz, ...), then the serialized
engine, so `NAS("x.engine")` knows what it runs. An engine is specific to the GPU model and the TensorRT version
it was built with. INT8 engines are not built here: TensorRT wants symmetric int8 activations, while our QDQ
graphs (onnxruntime's) carry asymmetric u8 ones.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from nas.engine.exported import TensorRTDetector, check_tensorrt
from nas.errors import ConfigError
from nas.export.options import ExportOptions
from nas.export.runtime_check import RuntimeExportResult, check_runtime, export_fp32_onnx
from nas.io import atomic_path
from nas.options import check_imgsz, merge

__all__ = ["WORKSPACE_BYTES", "export_engine"]

WORKSPACE_BYTES = 4 << 30
MAX_DYNAMIC = 4  # a dynamic engine's profile: batch 1..batch x MAX_DYNAMIC, sides 32..2 x imgsz


def export_engine(
    model: nn.Module,
    file: str | os.PathLike,
    options: ExportOptions | None = None,
    *,
    metadata: dict[str, Any] | None = None,
    **kwargs: Any,
) -> RuntimeExportResult:
    """Build a TensorRT engine of `model` at `file` and check it against torch on the GPU.

    Keywords are `ExportOptions` fields; half=True builds FP16 kernels (the input stays fp32).
    """
    trt = check_tensorrt()
    o = merge(ExportOptions, options, kwargs, "export_engine")
    if o.int8:
        raise ConfigError(
            "format=engine builds FP32/FP16 engines; for INT8 on a CPU use format=onnx or openvino int8=true"
        )
    if o.nms:
        raise ConfigError("format=engine exports the raw outputs (boxes, scores); drop nms=true")
    h, w = check_imgsz(o.imgsz)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    with tempfile.TemporaryDirectory(prefix="nas-trt-") as tmp:
        onnx_path = Path(tmp) / "fp32.onnx"
        meta = export_fp32_onnx(model, onnx_path, o, metadata, "TensorRT would build")
        if not parser.parse(onnx_path.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ConfigError(f"TensorRT cannot parse the ONNX graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if o.half:
        config.set_flag(trt.BuilderFlag.FP16)
    if o.dynamic:
        profile = builder.create_optimization_profile()
        name = network.get_input(0).name
        profile.set_shape(name, (1, 3, 32, 32), (o.batch, 3, h, w), (o.batch * MAX_DYNAMIC, 3, 2 * h, 2 * w))
        config.add_optimization_profile(profile)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise ConfigError("TensorRT failed to build the engine (see its log above)")
    meta["half"] = json.dumps(o.half)
    header = json.dumps(meta).encode()
    path = Path(file)
    with atomic_path(path) as tmp_path:
        tmp_path.write_bytes(len(header).to_bytes(4, "little") + header + bytes(blob))
    result = RuntimeExportResult(path, fmt="engine", runtime="TensorRT")
    check_runtime(result, model, o, TensorRTDetector(path))
    return result
