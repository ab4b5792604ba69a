"""ONNX export (legacy TorchScript exporter), checked against torch in onnxruntime.

Outputs without NMS: "boxes" [B, N, 4] xyxy in input pixels and "scores" [B, N, C] (sigmoid).
With nms=True the graph ends in ONNX `NonMaxSuppression` with the predict semantics of
`nas.models.postprocess.non_max_suppression` (best class per box, score > conf, class offset 7,680,
IoU > iou suppresses, first max_det by score) and fixed-size, padded outputs: "num_dets" [B, 1] int64,
"boxes" [B, max_det, 4], "scores" [B, max_det], "classes" [B, max_det] int64 (-1 in padding rows).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from nas.errors import ConfigError
from nas.export.check import NOISE_FACTOR, check_outputs, failed_check_path
from nas.export.options import ExportOptions
from nas.models.postprocess import MAX_WH, nms, non_max_suppression, xywh2xyxy, xyxy2xywh
from nas.models.reparam import fuse as fuse_model
from nas.options import check_imgsz, merge
from nas.ort_session import cpu_session
from nas.quant import calibration_images, quantize_onnx
from nas.quant.sensitivity import output_error

__all__ = ["DEFAULT_OPSET", "ExportResult", "export_onnx", "export_onnx_int8", "onnx_predict"]

DEFAULT_OPSET = 17


@dataclass
class ExportResult:
    """The written file and how far onnxruntime's outputs are from torch's on a check input."""

    path: Path
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)
    tolerance: dict[str, float] = field(default_factory=dict)  # allowed per raw output (see nas.export.check)
    noise: dict[str, float] = field(default_factory=dict)  # torch's own fp32-vs-fp64 difference per raw output
    int8: dict[str, Any] | None = None  # INT8 exports: how it was quantized and its output error vs FP32

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def __str__(self) -> str:
        diffs = ", ".join(
            f"{k} {v:.2e}" + (f" / tolerance {self.tolerance[k]:.2e}" if k in self.tolerance else "")
            for k, v in self.max_abs_diff.items()
        )
        if self.tolerance:
            diffs += f"; tolerance = max(floor, {NOISE_FACTOR:g} x torch's own fp32-vs-fp64 difference)"
        state = "matches torch" if self.ok else "DIFFERS from torch: " + "; ".join(self.mismatches)
        text = f"exported {self.path} ({self.path.stat().st_size / 1e6:.1f} MB); onnxruntime {state} (max abs diff: {diffs or 'not checked'})"
        if not self.ok:
            text = (
                f"export check FAILED, file kept for inspection as {self.path} "
                f"({self.path.stat().st_size / 1e6:.1f} MB), not at the requested name: onnxruntime {state} "
                f"(max abs diff: {diffs})"
            )
        if self.int8:
            q, e = self.int8, self.int8["output_error"]
            text = (
                f"exported INT8 {self.path} ({self.path.stat().st_size / 1e6:.1f} MB; {q['method']} calibration on "
                f"{q['calib_images']} {q['data']} images): the FP32 export it was quantized from {state}; INT8 vs "
                f"FP32 on the calibration images: box error {e['box_error']:.4f}, score error {e['score_error']:.4f}"
                f"\n{INT8_ERROR_GUIDE}"
            )
        return text


# What the two numbers mean and what is acceptable, from the measurements in docs/quantization.md
INT8_ERROR_GUIDE = (
    "  (box error: score-weighted mean 1 - IoU of the INT8 box with the FP32 box over the top-100 anchors per image; "
    "score error: the same mean of the relative change of the top class score. Measured on the S layout "
    "(docs/quantization.md): box + score 0.11 cost 0.18 mAP50-95 points, 0.04 (2 layers kept float) cost 0.01; "
    "if yours is much larger, keep the most sensitive layers float (nas.quant.sensitivity). "
    "The drop itself: nas val model=<the FP32 .onnx> and model=<the INT8 .onnx> on your data, same imgsz)"
)


class _NMSOp(torch.autograd.Function):
    """ONNX NonMaxSuppression on one class; in torch the same greedy NMS as `nas.models.postprocess.nms`."""

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, max_det: int, iou: float, conf: float) -> Tensor:
        # The exporter replaces this node by `symbolic`; keep the tracer out of the data-dependent loop.
        state = torch._C._get_tracing_state()
        torch._C._set_tracing_state(None)
        try:
            rows = []
            for b in range(boxes.shape[0]):
                idx = (scores[b, 0] > conf).nonzero().squeeze(1)
                keep = idx[nms(boxes[b, idx], scores[b, 0, idx], iou, max_det)]
                rows.append(torch.stack([torch.full_like(keep, b), torch.zeros_like(keep), keep], dim=1))
            return torch.cat(rows)
        finally:
            torch._C._set_tracing_state(state)

    @staticmethod
    def symbolic(g, boxes, scores, max_det: int, iou: float, conf: float):
        def const(value, dtype):
            return g.op("Constant", value_t=torch.tensor([value], dtype=dtype))

        return g.op(
            "NonMaxSuppression",
            boxes,
            scores,
            const(max_det, torch.int64),
            const(iou, torch.float32),
            const(conf, torch.float32),
            center_point_box_i=0,
        )


class _Detect(nn.Module):
    """The exported graph: the detector, optionally followed by in-graph NMS with padded outputs.

    With NMS the raw boxes/scores are outputs too, so the check can feed onnxruntime's own raw outputs
    to the torch post-processing; they are removed from the graph before it is saved.
    """

    def __init__(self, model: nn.Module, nms: bool, conf: float, iou: float, max_det: int):
        super().__init__()
        self.model, self.nms, self.conf, self.iou, self.max_det = model, nms, conf, iou, max_det

    def forward(self, images: Tensor):
        out = self.model(images)  # while tracing, YOLO-NAS returns only (boxes, scores)
        boxes, scores = out[0] if isinstance(out[0], (tuple, list)) else out
        if not self.nms:
            return boxes, scores
        boxes, scores = raw_boxes, raw_scores = boxes.float(), scores.float()
        boxes = xywh2xyxy(xyxy2xywh(boxes))  # the float path of the torch post-processing
        conf, cls = scores.max(dim=2)  # [B, N]
        sel = _NMSOp.apply(boxes + cls[..., None].float() * MAX_WH, conf[:, None, :], self.max_det, self.iou, self.conf)
        keep = torch.zeros_like(conf)
        keep[sel[:, 0], sel[:, 2]] = 1.0
        # rank kept boxes per image by score; pad with max_det dummies so top-k works for any N
        ranked = torch.where(keep > 0, conf, torch.full_like(conf, -1.0))
        pad = torch.full_like(conf[:, :1], -1.0).expand(-1, self.max_det)
        top_scores, top_idx = torch.cat([ranked, pad], dim=1).topk(self.max_det, dim=1)
        valid = top_scores >= 0
        boxes = torch.cat([boxes, torch.zeros_like(boxes[:, :1]).expand(-1, self.max_det, -1)], dim=1)
        cls = torch.cat([cls, torch.zeros_like(cls[:, :1]).expand(-1, self.max_det)], dim=1)
        out_boxes = torch.gather(boxes, 1, top_idx[..., None].expand(-1, -1, 4)) * valid[..., None]
        out_scores = torch.where(valid, top_scores, torch.zeros_like(top_scores))
        out_classes = torch.where(valid, torch.gather(cls, 1, top_idx), torch.full_like(top_idx, -1))
        return valid.sum(dim=1, keepdim=True), out_boxes, out_scores, out_classes, raw_boxes, raw_scores


_NMS_OUTPUTS = ["num_dets", "boxes", "scores", "classes"]
_RAW = ["raw_boxes", "raw_scores"]


def export_onnx(
    model: nn.Module,
    file: str | os.PathLike,
    options: ExportOptions | None = None,
    *,
    metadata: dict[str, Any] | None = None,
    check: bool = True,
    **kwargs: Any,
) -> ExportResult:
    """Export a YOLO-NAS model (a fused copy; `model` is not modified) and check it in onnxruntime.

    Keywords are `ExportOptions` fields. dynamic=True makes batch, height and width dynamic. half=True
    exports fp16 weights and an fp16 "images" input (NMS outputs stay fp32); tracing in fp16 needs the
    model on a CUDA device. `metadata` lands in the model's metadata_props (values JSON-encoded).
    """
    import onnx

    o = merge(ExportOptions, options, kwargs, "export_onnx")
    if o.int8:
        return export_onnx_int8(model, file, o, metadata=metadata)
    batch, half, dynamic, fuse, nms, opset = o.batch, o.half, o.dynamic, o.fuse, o.nms, o.opset
    conf, iou, max_det = o.conf, o.iou, o.max_det
    h, w = check_imgsz(o.imgsz)
    m = copy.deepcopy(model).eval()
    if fuse:
        fuse_model(m, "full")
    device = next(m.parameters()).device
    dtype = torch.float16 if half else torch.float32
    if half and device.type != "cuda":
        raise ValueError(
            "half=True traces the model in fp16, which needs it on a CUDA device; move it with .to('cuda')"
        )
    m = m.to(dtype).requires_grad_(False)
    graph = _Detect(m, nms, conf, iou, max_det).eval()  # the exporter restores this mode afterwards
    x = torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)
    names = _NMS_OUTPUTS + _RAW if nms else ["boxes", "scores"]
    axes = None
    if dynamic:
        axes = {"images": {0: "batch", 2: "height", 3: "width"}}
        axes.update({n: {0: "batch"} if n in _NMS_OUTPUTS and nms else {0: "batch", 1: "anchors"} for n in names})
    path = Path(file)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
            torch.onnx.export(
                graph,
                (x,),
                str(tmp),
                dynamo=False,
                opset_version=DEFAULT_OPSET if opset is None else opset,
                input_names=["images"],
                output_names=names,
                dynamic_axes=axes,
                do_constant_folding=True,
            )
        result = ExportResult(path)
        if check:
            _check(result, graph, x, tmp)
        proto = onnx.load(str(tmp))
        for out in [o for o in proto.graph.output if o.name in _RAW]:
            proto.graph.output.remove(out)
        meta = {"imgsz": [h, w], "batch": batch, "stride": 32, "dynamic": dynamic, "half": half, "fused": fuse}
        meta.update({"nms": nms, **({"conf": conf, "iou": iou, "max_det": max_det} if nms else {})})
        meta.update(metadata or {})
        if check:
            meta["check"] = {"ok": result.ok, "max_abs_diff": result.max_abs_diff, "tolerance": result.tolerance}
        for key, value in meta.items():
            proto.metadata_props.add(key=key, value=value if isinstance(value, str) else json.dumps(value))
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        if not result.ok:  # keep the evidence, never under the requested name (nor over a good file there)
            result.path = failed_check_path(path)
        os.replace(tmp, result.path)
    finally:
        tmp.unlink(missing_ok=True)
    return result


def onnx_predict(path: str | os.PathLike, images: np.ndarray, threads: int | None = None) -> dict[str, np.ndarray]:
    """Run an exported model in onnxruntime (CPU) on a [B, 3, H, W] array; outputs by name."""
    session = cpu_session(path, threads, quiet=False)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: images})))


def _check(result: ExportResult, graph: _Detect, x: Tensor, file: Path) -> None:
    """onnxruntime vs torch on the check input: raw outputs within the model's own fp32 noise (`check_outputs`);
    with NMS, the in-graph NMS must equal the torch post-processing (`non_max_suppression`) run on onnxruntime's
    own raw outputs."""
    got = onnx_predict(file, x.cpu().numpy())
    raw = [got[n].astype(np.float32) for n in (_RAW if graph.nms else ["boxes", "scores"])]
    check = check_outputs(graph.model, x, raw)
    result.max_abs_diff.update(check.max_abs_diff)
    result.tolerance.update(check.tolerance)
    result.noise.update(check.noise)
    result.mismatches += check.mismatches
    if not graph.nms:
        return
    dets = non_max_suppression(torch.from_numpy(raw[0]), torch.from_numpy(raw[1]), graph.conf, graph.iou, graph.max_det)
    diff_boxes = diff_scores = 0.0
    for b, det in enumerate(dets):
        n = int(got["num_dets"][b, 0])
        if n != len(det):
            result.mismatches.append(f"image {b}: in-graph NMS kept {n} boxes, torch NMS {len(det)}")
            continue
        if not np.array_equal(got["classes"][b, :n], det[:, 5].long().numpy()):
            result.mismatches.append(f"image {b}: in-graph NMS classes differ from torch NMS")
        if n:
            diff_boxes = max(diff_boxes, float(np.abs(got["boxes"][b, :n] - det[:, :4].numpy()).max()))
            diff_scores = max(diff_scores, float(np.abs(got["scores"][b, :n] - det[:, 4].numpy()).max()))
    result.max_abs_diff.update(nms_boxes=diff_boxes, nms_scores=diff_scores)
    if diff_boxes > 1e-4 or diff_scores > 1e-6:
        result.mismatches.append(f"in-graph NMS boxes/scores differ by {diff_boxes:.3g} px / {diff_scores:.3g}")


def export_onnx_int8(
    model: nn.Module,
    file: str | os.PathLike,
    options: ExportOptions | None = None,
    *,
    metadata: dict[str, Any] | None = None,
    exclude: tuple[str, ...] | list[str] = (),
    reduce_range: bool = False,
    seed: int = 0,
    **kwargs: Any,
) -> ExportResult:
    """FP32 export (checked against torch, as `export_onnx`), then static QDQ INT8 quantization calibrated on
    `calib` images of `data`'s train split (`nas.quant.quantize_onnx`); the INT8 file goes to `file`.

    Keywords are `ExportOptions` fields (int8 is implied). The result's `int8` holds the settings and the
    INT8-vs-FP32 output error on the calibration images.
    """
    o = dataclasses.replace(merge(ExportOptions, options, kwargs, "export_onnx_int8"), int8=False)
    if o.half:
        raise ConfigError("int8=True quantizes the FP32 graph; drop half=True")
    images = calibration_images(o.data, o.calib, check_imgsz(o.imgsz), seed=seed)
    with tempfile.TemporaryDirectory(prefix="nas-int8-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        result = export_onnx(model, fp32, o, metadata=metadata)
        if not result.ok:  # the FP32 graph is wrong: quantizing it would hide that
            result.path = Path(shutil.move(result.path, failed_check_path(file)))
            return result
        q = quantize_onnx(fp32, file, images, method=o.calib_method, exclude=exclude, reduce_range=reduce_range)
        error = output_error(fp32, q.path, images)
    result.path = q.path
    name = o.data if isinstance(o.data, (str, os.PathLike)) else type(o.data).__name__
    result.int8 = {"method": o.calib_method, "calib_images": len(images), "data": str(name), **q.settings}
    result.int8.update(float_nodes=q.float_nodes, output_error=error)
    return result
