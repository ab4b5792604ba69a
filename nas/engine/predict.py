"""Predict: sources -> letterbox -> forward -> NMS -> boxes in original pixels (ultralytics' NAS predictor)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from nas.data.transforms import predict_transform, scale_boxes, sg_transform, to_tensor
from nas.engine.options import PredictOptions
from nas.engine.results import Boxes, Results
from nas.engine.sources import Image, iter_images, resolve_source
from nas.errors import ConfigError
from nas.models.postprocess import non_max_suppression
from nas.options import merge

__all__ = ["check_device", "forward", "model_outputs", "predict_iter"]


def forward(model: nn.Module, x: torch.Tensor, half: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(boxes, scores) in fp32; half=True runs the forward under CUDA fp16 autocast (the model is not converted)."""
    with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=half):
        boxes, scores = model_outputs(model(x))
    return boxes.float(), scores.float()


def check_device(model: nn.Module, half: bool) -> torch.device:
    device = getattr(model, "device", None) or next(model.parameters()).device  # OrtDetector: cpu, no parameters
    if half and device.type != "cuda":
        raise ConfigError("half=True needs the model on a CUDA device (device=cuda); fp16 on CPU is not supported")
    return device


def model_outputs(out: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(boxes [B, N, 4] xyxy input pixels, scores [B, N, C]) from a YOLO-NAS forward (eval or traced form)."""
    first = out[0]
    return (first[0], first[1]) if isinstance(first, (tuple, list)) else (out[0], out[1])


def _batches(images: Iterator[Image], batch: int) -> Iterator[list[Image]]:
    chunk: list[Image] = []
    for im in images:
        chunk.append(im)
        if len(chunk) == batch:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@torch.inference_mode()
def predict_iter(
    model: nn.Module, names: dict[int, str], source: Any, options: PredictOptions | None = None, **kwargs: Any
) -> Iterator[Results]:
    """Yield one `Results` per source image; the model must already be in eval mode on its device.

    Keywords are `PredictOptions` fields. preprocess="ultralytics" (default) is ultralytics' NAS predictor:
    letterbox to `imgsz` with minimal stride-32 padding when the batch shares one shape, else padding to
    imgsz x imgsz. preprocess="sg" is super-gradients' resize to imgsz - 4 and centre pad to imgsz x imgsz.
    """
    o = merge(PredictOptions, options, kwargs, "predict_iter")
    imgsz, half = o.imgsz, o.half
    device = check_device(model, half)
    for chunk in _batches(iter_images(resolve_source(source)), o.batch):
        t0 = time.perf_counter()
        if o.preprocess == "sg":
            pairs = [sg_transform(im.bgr, (imgsz, imgsz), imgsz - 4) for im in chunk]
        else:
            same_shape = len({im.bgr.shape for im in chunk}) == 1
            pairs = [predict_transform(im.bgr, imgsz, auto=same_shape) for im in chunk]
        x = to_tensor([p[0] for p in pairs]).to(device)
        t1 = time.perf_counter()
        boxes, scores = forward(model, x, half)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t2 = time.perf_counter()
        dets = non_max_suppression(boxes, scores, o.conf, o.iou, o.max_det, classes=o.classes, agnostic=o.agnostic)
        t3 = time.perf_counter()
        n = len(chunk)
        speed = {
            "preprocess": (t1 - t0) * 1e3 / n,
            "inference": (t2 - t1) * 1e3 / n,
            "postprocess": (t3 - t2) * 1e3 / n,
        }
        for im, (_, geometry), det in zip(chunk, pairs, dets):
            det = det.cpu()
            scale_boxes(det[:, :4], geometry)
            yield Results(im.bgr, im.path, names, Boxes(det, geometry.orig_hw), dict(speed))
