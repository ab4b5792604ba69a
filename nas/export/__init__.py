"""Deployment exports (ONNX, optionally with NMS in the graph), checked against torch in onnxruntime."""

from nas.export.onnx import ExportResult, export_onnx, onnx_predict

__all__ = ["ExportResult", "export_onnx", "onnx_predict"]
