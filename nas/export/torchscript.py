"""TorchScript export: a trace of the (fused) detector returning (boxes, scores), metadata in the archive.

`NAS("x.torchscript")` loads it with `torch.jit.load` (no Python model code needed) for predict and val; it runs
on the device it is moved to (`.to("cuda")`).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas.engine.exported import TORCHSCRIPT_META, TorchScriptDetector
from nas.errors import ConfigError
from nas.export.onnx import _Detect
from nas.export.options import ExportOptions
from nas.export.runtime_check import RuntimeExportResult, check_input, check_runtime
from nas.io import atomic_path
from nas.options import check_imgsz, merge

__all__ = ["export_torchscript"]


def export_torchscript(
    model: nn.Module,
    file: str | os.PathLike,
    options: ExportOptions | None = None,
    *,
    metadata: dict[str, Any] | None = None,
    **kwargs: Any,
) -> RuntimeExportResult:
    """Trace `model` (a fused copy; `model` is not modified) to `file` and check the loaded trace against torch.

    Keywords are `ExportOptions` fields; imgsz and batch are the trace's example input (dynamic=True records
    that other sizes are allowed: the trace has no shape-dependent branches). half=True traces in fp16 on CUDA.
    """
    o = merge(ExportOptions, options, kwargs, "export_torchscript")
    if o.nms or o.int8:
        raise ConfigError("format=torchscript exports the float raw outputs (boxes, scores); drop nms=true / int8=true")
    m, x = check_input(model, o)
    device = next(model.parameters()).device
    if o.half and device.type != "cuda":
        raise ConfigError(
            "half=True traces the model in fp16, which needs it on a CUDA device; move it with .to('cuda')"
        )
    dtype = torch.float16 if o.half else torch.float32
    graph = _Detect(m.to(device=device, dtype=dtype), False, o.conf, o.iou, o.max_det).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python values
        traced = torch.jit.trace(graph, x.to(device=device, dtype=dtype), check_trace=False)
    h, w = check_imgsz(o.imgsz)
    meta = {"imgsz": [h, w], "batch": o.batch, "stride": 32, "dynamic": o.dynamic, "half": o.half, "fused": o.fuse}
    meta.update(metadata or {})
    path = Path(file)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch >= 2.10 points to torch.export
        torch.jit.save(traced, str(tmp), _extra_files={TORCHSCRIPT_META: json.dumps(meta)})
    result = RuntimeExportResult(path, fmt="torchscript", runtime="TorchScript")
    detector = TorchScriptDetector(path)
    if o.half:
        detector.module.to(device)
    check_runtime(result, model, o, detector)
    return result
