"""Deployment exports (ONNX with optional in-graph NMS, OpenVINO, TorchScript, TensorRT), each checked against torch
in its own runtime and loadable with `NAS(path)`."""

from nas.export.formats import EXPORTERS, default_file, export
from nas.export.onnx import ExportResult, export_onnx, onnx_predict

__all__ = ["EXPORTERS", "ExportResult", "default_file", "export", "export_onnx", "onnx_predict"]
