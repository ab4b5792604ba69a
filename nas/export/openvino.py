"""OpenVINO IR export: the checked FP32 ONNX converted by OpenVINO (FP32, or FP16-compressed weights), and INT8.

Layout (ultralytics'): `<stem>_openvino_model/<stem>.xml` + `.bin`, metadata (arch, names, imgsz, ...) in the IR's
runtime info under "nas", so `NAS("<stem>_openvino_model")` (or the .xml) predicts and validates it.

INT8 has two routes (`ExportOptions.ov_int8`):
- "qdq": our onnxruntime QDQ model (`nas.quant.quantize_onnx`, the `int8=True` ONNX export) read by OpenVINO, which
  turns each QuantizeLinear/DequantizeLinear pair into a FakeQuantize and runs the convolutions in INT8;
- "nncf": OpenVINO's own post-training quantization (`nncf.quantize`, preset "mixed": symmetric weights, asymmetric
  activations, fast bias correction) of the FP32 IR, calibrated on the same images, with the same post-processing
  tail (every node after the last convolutions) left float.
experiments/benchmark/results.md measures both on S (AMD EPYC Zen 4, AVX-512 VNNI, 640 px, 1 thread): qdq 99 ms and
0.01 mAP below FP32, nncf 95 ms and 0.22 below; the default is qdq (as fast within the noise, more accurate).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from nas.engine.exported import OPENVINO_DIR_SUFFIX, OpenVINODetector
from nas.errors import ConfigError
from nas.export.onnx import export_onnx_int8
from nas.export.options import ExportOptions
from nas.export.runtime_check import RuntimeExportResult, check_runtime, export_fp32_onnx, int8_error
from nas.options import check_imgsz, merge
from nas.quant import calibration_images, tail_nodes

__all__ = ["export_openvino", "openvino_dir"]


def openvino_dir(file: str | os.PathLike) -> tuple[Path, Path]:
    """(directory, .xml) of an OpenVINO export named by its directory or its .xml."""
    path = Path(file)
    if path.suffix.lower() == ".xml":
        return path.parent, path
    stem = path.name[: -len(OPENVINO_DIR_SUFFIX)] if path.name.endswith(OPENVINO_DIR_SUFFIX) else path.name
    return path, path / f"{stem}.xml"


def _import_openvino():
    try:
        import openvino as ov
    except ImportError:
        raise ConfigError(
            "format=openvino needs the openvino package: pip install 'yolo-nas-search[openvino]'"
        ) from None
    return ov


def _nncf_quantize(ov_model: Any, onnx_path: Path, images: np.ndarray) -> Any:
    """OpenVINO's post-training INT8 quantization of an FP32 IR, the post-processing tail kept float."""
    import nncf

    nncf.set_log_level(logging.ERROR)
    names = {op.get_friendly_name() for op in ov_model.get_ordered_ops()}
    tail = [n for n in tail_nodes(onnx_path) if n in names]
    batch = ov_model.inputs[0].get_partial_shape()[0]
    step = batch.get_length() if batch.is_static else 1
    data = nncf.Dataset([images[s : s + step] for s in range(0, len(images) // step * step, step)])
    return nncf.quantize(
        ov_model,
        data,
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(images),
        ignored_scope=nncf.IgnoredScope(names=tail, validate=False),
    )


def export_openvino(
    model: nn.Module,
    file: str | os.PathLike,
    options: ExportOptions | None = None,
    *,
    metadata: dict[str, Any] | None = None,
    **kwargs: Any,
) -> RuntimeExportResult:
    """Write an OpenVINO IR of `model` to the directory `file` (or to `file` if it is an .xml); returns where and
    how far OpenVINO's outputs are from torch (FP32/FP16) or from the FP32 IR (INT8, on the calibration images).

    Keywords are `ExportOptions` fields: half=True compresses the weights to FP16 (the CPU computes in FP32);
    int8=True quantizes (route `ov_int8`: "nncf" or "qdq") with `calib` images of `data`'s train split.
    """
    ov = _import_openvino()
    o = merge(ExportOptions, options, kwargs, "export_openvino")
    if o.nms:
        raise ConfigError("format=openvino exports the raw outputs (boxes, scores); drop nms=true")
    if o.int8 and o.half:
        raise ConfigError("int8=True quantizes the FP32 graph; drop half=True")
    out_dir, xml = openvino_dir(file)
    with tempfile.TemporaryDirectory(prefix="nas-ov-") as tmp:
        fp32_onnx = Path(tmp) / "fp32.onnx"  # half=True only compresses the IR's weights
        meta = {**export_fp32_onnx(model, fp32_onnx, o, metadata, "OpenVINO would convert"), "half": json.dumps(o.half)}
        images = calibration_images(o.data, o.calib, check_imgsz(o.imgsz)) if o.int8 else None
        fp32_ov = ov.convert_model(str(fp32_onnx))
        int8_info: dict[str, Any] | None = None
        if o.int8 and o.ov_int8 == "qdq":
            qdq = Path(tmp) / "int8.onnx"
            q = export_onnx_int8(model, qdq, dataclasses.replace(o, int8=False), metadata=metadata)
            ov_model = ov.convert_model(str(q.path))
            int8_info = {"route": "qdq", **q.int8}
            int8_info.pop("output_error", None)
        elif o.int8:
            ov_model = _nncf_quantize(fp32_ov, fp32_onnx, images)
            int8_info = {"route": "nncf", "method": "mixed preset", "calib_images": len(images)}
        else:
            ov_model = fp32_ov
        if int8_info is not None:
            meta["int8"] = json.dumps(int8_info)
        for key, value in meta.items():
            ov_model.set_rt_info(value, ["nas", key])
            fp32_ov.set_rt_info(value, ["nas", key])  # the INT8 check's reference
        stage = Path(tmp) / "ir"
        ov.save_model(ov_model, str(stage / xml.name), compress_to_fp16=o.half)
        result = RuntimeExportResult(out_dir, fmt="openvino", runtime="OpenVINO")
        detector = OpenVINODetector(stage / xml.name)
        if int8_info is None:
            check_runtime(result, model, o, detector)
        else:
            fp32_stage = Path(tmp) / "fp32_ir" / xml.name
            ov.save_model(fp32_ov, str(fp32_stage), compress_to_fp16=False)
            result.int8 = {**int8_info, "output_error": int8_error(OpenVINODetector(fp32_stage), detector, images)}
        if out_dir.exists() and xml.parent == out_dir and out_dir.name.endswith(OPENVINO_DIR_SUFFIX):
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for f in stage.iterdir():
            shutil.move(f, out_dir / f.name)
    return result
