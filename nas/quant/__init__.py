"""INT8 post-training quantization (onnxruntime static QDQ) and selective quantization by per-layer sensitivity."""

from nas.quant.ptq import CALIB_METHODS, QuantResult, calibration_images, conv_nodes, quantize_onnx, tail_nodes

__all__ = ["CALIB_METHODS", "QuantResult", "calibration_images", "conv_nodes", "quantize_onnx", "tail_nodes"]
