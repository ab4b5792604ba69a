"""The check every non-ONNX export gets: its runtime's outputs against torch on the export's check input, and
the checked FP32 ONNX graph that OpenVINO and TensorRT start from.

FP32 (and FP16-weight) files must match torch within the model's own fp32 noise (`nas.export.check.check_outputs`);
INT8 files are compared with their FP32 counterpart in the same runtime on the calibration images
(`nas.quant.sensitivity.output_error`), as the INT8 ONNX export is.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.errors import ConfigError
from nas.export.check import NOISE_FACTOR, check_outputs
from nas.export.onnx import ExportResult, export_onnx
from nas.export.options import ExportOptions
from nas.models.reparam import fuse as fuse_model
from nas.options import check_imgsz
from nas.quant.sensitivity import output_error

__all__ = ["FP16_FLOOR", "RuntimeExportResult", "check_input", "check_runtime", "export_fp32_onnx", "int8_error"]

# fp16-rounded weights move outputs by more than fp32 noise; the ONNX export's fp16 floor (nas.export.check)
FP16_FLOOR = {"boxes": 1.0, "scores": 1e-2}


@dataclass
class RuntimeExportResult(ExportResult):
    """An export in another format than ONNX: the file (or directory) and its runtime's check."""

    fmt: str = "onnx"
    runtime: str = "onnxruntime"

    def __str__(self) -> str:
        size = _size_mb(self.path)
        if self.int8:
            e = self.int8["output_error"]
            how = f"{self.int8.get('route', '')} {self.int8.get('method', '')}".strip()
            return (
                f"exported {self.fmt} INT8 {self.path} ({size:.1f} MB; {how}, {self.int8.get('calib_images')} "
                f"calibration images): INT8 vs FP32 in {self.runtime}: box error {e['box_error']:.4f}, "
                f"score error {e['score_error']:.4f}"
            )
        diffs = ", ".join(
            f"{k} {v:.2e}" + (f" / tolerance {self.tolerance[k]:.2e}" if k in self.tolerance else "")
            for k, v in self.max_abs_diff.items()
        )
        state = "matches torch" if self.ok else "DIFFERS from torch: " + "; ".join(self.mismatches)
        return f"exported {self.fmt} {self.path} ({size:.1f} MB); {self.runtime} {state} (max abs diff: {diffs})"


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files) / 1e6


def check_input(model: nn.Module, o: ExportOptions) -> tuple[nn.Module, torch.Tensor]:
    """(the network as exported: a fused eval copy if o.fuse, the check input of `export_onnx`)."""
    m = copy.deepcopy(model).eval()
    if o.fuse:
        fuse_model(m, "full")
    h, w = check_imgsz(o.imgsz)
    x = torch.rand(o.batch, 3, h, w, generator=torch.Generator().manual_seed(0))
    return m.float().cpu().requires_grad_(False), x


def check_runtime(result: ExportResult, model: nn.Module, o: ExportOptions, detector: nn.Module) -> None:
    """Fill `result` with the detector's raw outputs vs torch's on the check input (fp16 weights: fp16 floor)."""
    m, x = check_input(model, o)
    with torch.no_grad():
        boxes, scores = detector(x.to(getattr(detector, "device", x.device)))
    check = check_outputs(m, x, {"boxes": boxes.float().cpu().numpy(), "scores": scores.float().cpu().numpy()})
    result.max_abs_diff.update(check.max_abs_diff)
    result.noise.update(check.noise)
    if not o.half:
        result.tolerance.update(check.tolerance)
        result.mismatches += check.mismatches
        return
    for name, diff in check.max_abs_diff.items():
        result.tolerance[name] = tol = max(FP16_FLOOR[name], NOISE_FACTOR * check.noise[name])
        if not diff <= tol:
            result.mismatches.append(f"{name} differ from torch by {diff:.3g} > fp16 tolerance {tol:.3g}")


def int8_error(fp32: nn.Module, int8: nn.Module, images: np.ndarray) -> dict[str, float]:
    """`output_error` of an INT8 detector against its FP32 counterpart on calibration images (one at a time)."""
    outs: list[list[Any]] = [[], []]
    for k, det in enumerate((fp32, int8)):
        with torch.no_grad():
            b, s = zip(*(det(torch.from_numpy(images[i : i + 1])) for i in range(len(images))))
        outs[k] = [torch.cat(b).cpu().numpy(), torch.cat(s).cpu().numpy()]
    return output_error(tuple(outs[0]), tuple(outs[1]))


def export_fp32_onnx(
    model: nn.Module, path: str | os.PathLike, o: ExportOptions, metadata: dict[str, Any] | None, purpose: str
) -> dict[str, str]:
    """Write the FP32 ONNX graph another runtime starts from (traced in fp32 on the CPU: half and int8 are its own
    steps) to `path`; ConfigError unless it matches torch. Returns its string metadata."""
    result = export_onnx(model, path, dataclasses.replace(o, half=False, int8=False, nms=False), metadata=metadata)
    if not result.ok:
        raise ConfigError(f"the FP32 ONNX graph {purpose} differs from torch: {result}")
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
