"""`export(model, format, file, options)`: one entry point for every export format, and each one's file name.

| format | file | loads back with | INT8 |
|---|---|---|---|
| onnx | `<stem>.onnx`, `<stem>_int8.onnx` | onnxruntime | onnxruntime static QDQ (`nas.quant`) |
| openvino | `<stem>_openvino_model/`, `<stem>_int8_openvino_model/` | OpenVINO | NNCF or our QDQ (`ov_int8`) |
| torchscript | `<stem>.torchscript` | torch.jit | - |
| engine | `<stem>.engine` | TensorRT (CUDA) | - |
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from nas.engine.exported import OPENVINO_DIR_SUFFIX
from nas.errors import ConfigError
from nas.export.onnx import ExportResult, export_onnx
from nas.export.openvino import export_openvino
from nas.export.options import EXPORT_FORMATS, ExportOptions
from nas.export.tensorrt import export_engine
from nas.export.torchscript import export_torchscript
from nas.options import merge
from nas.space.schema import ArchConfig

__all__ = ["EXPORTERS", "default_file", "export", "export_metadata"]

EXPORTERS = {
    "onnx": export_onnx,
    "openvino": export_openvino,
    "torchscript": export_torchscript,
    "engine": export_engine,
}
assert tuple(EXPORTERS) == EXPORT_FORMATS, "nas.export.options.EXPORT_FORMATS lists the formats for the CLI"


def export_metadata(arch: ArchConfig, names: dict[int, str]) -> dict[str, Any]:
    """What every export records about its model (so `NAS(path)` knows the architecture and the class names)."""
    return {
        "names": {str(k): v for k, v in names.items()},
        "arch_name": arch.name,
        "arch_digest": arch.digest(),
        "arch": arch.to_yaml(),
    }


def default_file(stem: str | os.PathLike, format: str, int8: bool = False) -> Path:
    """The file `NAS.export` writes for a model whose checkpoint (or architecture name) is `stem`."""
    stem = Path(stem)
    tag = "_int8" if int8 else ""
    suffix = {"onnx": ".onnx", "openvino": OPENVINO_DIR_SUFFIX, "torchscript": ".torchscript", "engine": ".engine"}
    if format not in suffix:
        raise ConfigError(f"format={format!r}; supported export formats: {', '.join(EXPORT_FORMATS)}")
    return stem.with_name(stem.name + tag + suffix[format])


def export(
    model: nn.Module,
    format: str,
    file: str | os.PathLike,
    options: ExportOptions | None = None,
    *,
    metadata: dict[str, Any] | None = None,
    **kwargs: Any,
) -> ExportResult:
    """Export `model` to `file` in `format`, checked in the format's runtime; keywords are `ExportOptions` fields."""
    if format not in EXPORTERS:
        raise ConfigError(f"format={format!r}; supported export formats: {', '.join(EXPORT_FORMATS)}")
    o = merge(ExportOptions, options, kwargs, "export")
    return EXPORTERS[format](model, file, o, metadata=metadata)
