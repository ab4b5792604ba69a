"""Validation: dataset -> protocol pre-processing -> forward -> multi-label NMS -> COCO mAP (pycocotools).

protocol="ultralytics" reproduces ultralytics' NAS validator (rect batches sorted by aspect ratio,
long side resized with ceil, LetterBox(batch shape, scaleup=False), multi-label NMS, conf 0.001,
detections mapped back with per-axis gains and rounded as its COCO JSON writer does).
protocol="sg" reproduces super-gradients' COCO recipe (resize to imgsz - 4, centre pad to imgsz x imgsz,
multi-label NMS with conf 0.01 and a 1,000-candidate cap) - the protocol of the published mAPs.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from nas.data.dataset import DataWarning
from nas.data.images import read_image
from nas.data.names import COCO80_NAMES
from nas.data.transforms import Geometry, rect_batch_shapes, scale_boxes, sg_transform, to_tensor, val_transform
from nas.engine.options import ValOptions
from nas.engine.predict import check_device, forward
from nas.errors import ConfigError, DataError
from nas.io import write_text_atomic
from nas.metrics import coco_evaluate, to_coco_detections
from nas.models.postprocess import non_max_suppression
from nas.options import merge

__all__ = ["default_data", "format_metrics", "val_batches", "validate"]


def default_data(data: Any, model: nn.Module) -> Any:
    """`data`, or for "auto" the dataset a model can be validated on without being told: COCO's coco8.yaml for a
    model of the 80 COCO classes (the released S/M/L), else the embedded synthetic set (8 classes)."""
    if not (isinstance(data, str) and data == "auto"):
        return data
    return "coco8.yaml" if model_outputs_classes(model) == len(COCO80_NAMES) else "synthetic"


def _plan(
    dataset: Any, imgsz: int, batch: int, protocol: str, rect: bool = True
) -> list[tuple[list[int], tuple[int, int]]]:
    """Batches of dataset indices with their input (h, w), in processing order (rect=False: all square)."""
    n = len(dataset.images)
    if protocol == "sg" or not rect:
        return [(list(range(s, min(s + batch, n))), (imgsz, imgsz)) for s in range(0, n, batch)]
    hw = [(rec.height, rec.width) for rec in dataset.images]
    order, shapes = rect_batch_shapes(hw, imgsz, batch)
    return [(order[k * batch : (k + 1) * batch].tolist(), shape) for k, shape in enumerate(shapes)]


def _load(
    dataset: Any,
    indices: list[int],
    input_hw: tuple[int, int],
    imgsz: int,
    protocol: str,
    skipped: list[tuple[int, str]] | None = None,
):
    """(indices read, images tensor or None, geometries); with `skipped`, an image that does not decode is recorded
    there and left out instead of raising."""
    images, geometries, kept = [], [], []
    for i in indices:
        rec = dataset.images[i]
        try:
            bgr = read_image(rec.path)
        except DataError as e:
            if skipped is None:
                raise
            skipped.append((i, str(e)))
            continue
        if bgr.shape[:2] != (rec.height, rec.width):
            raise DataError(
                f"{rec.path}: image is {bgr.shape[1]}x{bgr.shape[0]} (w x h) but its annotation record "
                f"(id {rec.id}) says {rec.width}x{rec.height}; fix the width/height in the annotations"
            )
        if protocol == "sg":
            out, geometry = sg_transform(bgr, input_hw, imgsz - 4)
        else:
            out, geometry = val_transform(bgr, imgsz, input_hw)
        images.append(out)
        geometries.append(geometry)
        kept.append(i)
    return kept, (to_tensor(images) if images else None), geometries


def val_batches(
    dataset: Any,
    imgsz: int,
    batch: int,
    protocol: str = "ultralytics",
    rect: bool = True,
    limit: int | None = None,
    skipped: list[tuple[int, str]] | None = None,
) -> Iterator[tuple[list[int], torch.Tensor, list[Geometry]]]:
    """The validation inputs of `dataset`: (indices, images tensor, letterbox geometries) per batch, preprocessed
    as `validate` preprocesses them (rect=False: square inputs), the next batch decoded while this one runs;
    `limit`: only the first that many images of the plan. `skipped`: images that do not decode are appended
    there as (index, reason) and left out (without it they raise DataError)."""
    plan = _plan(dataset, imgsz, batch, protocol, rect)
    if limit is not None:
        kept, left = [], limit
        for indices, hw in plan:
            if left <= 0:
                break
            kept.append((indices[:left], hw))
            left -= len(kept[-1][0])
        plan = kept
    return _prefetch(plan, lambda indices, input_hw: _load(dataset, indices, input_hw, imgsz, protocol, skipped))


def _prefetch(plan, load) -> Iterator[tuple[list[int], torch.Tensor, list[Geometry]]]:
    """Decode and letterbox the next batch in a thread while the current one runs (cv2 releases the GIL)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(load, *plan[0]) if plan else None
        for k in range(len(plan)):
            indices, x, geometries = future.result()
            future = pool.submit(load, *plan[k + 1]) if k + 1 < len(plan) else None
            if x is not None:  # a batch whose every image was skipped has nothing to run
                yield indices, x, geometries


def _coco_rows(det: torch.Tensor, geometry: Geometry, image_id: Any, category_ids: list[int]) -> list[dict]:
    """Detections as COCO result dicts in original pixels, rounded as ultralytics' JSON writer rounds them."""
    boxes = scale_boxes(det[:, :4].clone(), geometry)
    return to_coco_detections(image_id, boxes.numpy(), det[:, 4].numpy(), det[:, 5].numpy(), category_ids, rounded=True)


@torch.inference_mode()
def validate(
    model: nn.Module,
    dataset: Any,
    options: ValOptions | None = None,
    *,
    verbose: bool = True,
    save_dir: str | os.PathLike | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """COCO metrics of `model` (eval mode, on its device) on `dataset` (a `nas.data` DetectionDataset).

    Keywords are `ValOptions` fields; conf=None takes the protocol's default (ultralytics 0.001, sg 0.01).
    Returns the dict of `nas.metrics.coco_evaluate` plus "protocol", "imgsz", "num_detections" and
    "speed_ms". With `save_dir`, the COCO detections and the metrics are written there as predictions.json
    and metrics.json.
    """
    o = merge(ValOptions, options, kwargs, "validate")
    imgsz, batch, protocol, half = o.imgsz, o.batch, o.protocol, o.half
    conf, max_nms = o.resolved_conf, o.max_nms
    num_classes = model_outputs_classes(model)
    if num_classes != len(dataset.category_ids):
        raise ConfigError(
            f"the model predicts {num_classes} classes but the dataset has {len(dataset.category_ids)} "
            f"({', '.join(list(dataset.names.values())[:5])}, ...); validate on a dataset with the model's classes, "
            "or build/fine-tune a model with heads.num_classes equal to the dataset's"
            + (
                " (the released S/M/L predict the 80 COCO classes: data=coco8.yaml or data=coco.yaml)"
                if num_classes == len(COCO80_NAMES)
                else ""
            )
        )
    if not dataset.images:
        raise DataError("the dataset has no images to validate on")
    device = check_device(model, half)
    # A fixed-shape ONNX graph gets square imgsz inputs, as ultralytics' validator gives exported models
    rect = not getattr(model, "fixed_input", False)
    n_batches = len(_plan(dataset, imgsz, batch, protocol, rect))
    detections: list[dict] = []
    t_forward = t_nms = 0.0
    t_start = time.perf_counter()
    skipped: list[tuple[int, str]] = []  # images that stopped decoding since the split was loaded and checked
    batches = val_batches(dataset, imgsz, batch, protocol, rect, skipped=skipped)
    bar = tqdm(batches, total=n_batches, desc=f"val ({protocol}, imgsz {imgsz})", disable=not verbose)
    for indices, x, geometries in bar:
        t0 = time.perf_counter()
        boxes, scores = forward(model, x.to(device), half)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t1 = time.perf_counter()
        dets = non_max_suppression(
            boxes.float(), scores.float(), conf, o.iou, o.max_det, multi_label=True, max_nms=max_nms
        )
        t2 = time.perf_counter()
        t_forward, t_nms = t_forward + t1 - t0, t_nms + t2 - t1
        for i, det, geometry in zip(indices, dets, geometries):
            detections += _coco_rows(det.cpu(), geometry, dataset.images[i].id, dataset.category_ids)
    if skipped:
        warnings.warn(
            f"{len(skipped)} of {len(dataset.images)} images no longer decode and were left out of the evaluation "
            f"(their objects too); first: {skipped[0][1]}; replace the files",
            DataWarning,
            stacklevel=2,
        )
        dataset = dataset.subset(sorted(set(range(len(dataset.images))) - {i for i, _ in skipped}))
        if not dataset.images:
            raise DataError(f"none of the images decode (first: {skipped[0][1]}); replace the files")
    n = len(dataset.images)
    total = time.perf_counter() - t_start
    metrics = dict(coco_evaluate(dataset, detections))
    if skipped:
        metrics["skipped_images"] = [str(e) for _, e in skipped]
    metrics.update(
        protocol=protocol,
        # how images were letterboxed: per-batch rectangles (torch, dynamic ONNX) or imgsz squares (a fixed-shape
        # graph), which changes the mAP: compare formats (an INT8 drop) only at the same letterbox
        letterbox="square" if protocol == "sg" or not rect else "rect",
        scale="fraction",  # every mAP, P and R here is in [0, 1]
        imgsz=imgsz,
        num_images=n,
        num_detections=len(detections),
        speed_ms={"inference": t_forward * 1e3 / n, "nms": t_nms * 1e3 / n, "total": total * 1e3 / n},
    )
    if save_dir is not None:
        write_text_atomic(Path(save_dir) / "predictions.json", json.dumps(detections))
        write_text_atomic(Path(save_dir) / "metrics.json", json.dumps(metrics, indent=1, default=_jsonable))
    if verbose:
        print(format_metrics(metrics, dataset))
    return metrics


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    return str(value)


def model_outputs_classes(model: nn.Module) -> int:
    """Number of classes the detector predicts (from its architecture, or its score output width)."""
    arch = getattr(model, "arch", None)
    if arch is not None:
        return arch.num_classes
    num = getattr(model, "num_classes", None)
    if num is None:
        raise ConfigError(f"cannot tell how many classes {type(model).__name__} predicts (no .arch or .num_classes)")
    return int(num)


def format_metrics(metrics: dict[str, Any], dataset: Any) -> str:
    """The printed val table: all classes, then one row per class with ground truth (AP50-95, AP50)."""
    counts = _instance_counts(dataset)
    head = f"{'class':>22} {'images':>8} {'instances':>10} {'P':>6} {'R':>6} {'mAP50-95':>9} {'mAP50':>7} {'mAP75':>7}"
    lines = [
        f"protocol {metrics.get('protocol')}, {metrics.get('letterbox')} letterbox at imgsz {metrics.get('imgsz')}; "
        "mAP, P and R as fractions (0-1); P and R at the confidence of the best mean F1 (IoU 0.5)",
        head,
        f"{'all':>22} {metrics['num_images']:>8} {sum(counts.values()):>10} {metrics['precision']:>6.3f} "
        f"{metrics['recall']:>6.3f} {metrics['mAP50_95']:>9.4f} {metrics['mAP50']:>7.4f} {metrics['mAP75']:>7.4f}",
    ]
    ap50, pc, rc = metrics.get("per_class_AP50", {}), metrics["per_class_precision"], metrics["per_class_recall"]
    nan = float("nan")
    for name, ap in metrics.get("per_class", {}).items():
        lines.append(
            f"{name:>22} {'':>8} {counts.get(name, 0):>10} {pc.get(name, nan):>6.3f} {rc.get(name, nan):>6.3f} "
            f"{ap:>9.4f} {ap50.get(name, nan):>7.4f}"
        )
    speed = metrics["speed_ms"]
    lines.append(f"speed: {speed['inference']:.1f} ms inference, {speed['nms']:.1f} ms NMS per image")
    return "\n".join(lines)


def _instance_counts(dataset: Any) -> dict[str, int]:
    """Non-crowd ground-truth objects per class name."""
    names = {cid: dataset.names[k] for k, cid in enumerate(dataset.category_ids)}
    counts: dict[str, int] = {}
    for ann in dataset.coco_gt().dataset.get("annotations", []):
        name = names.get(ann["category_id"])
        if name is not None and not ann.get("iscrowd", 0):
            counts[name] = counts.get(name, 0) + 1
    return counts
