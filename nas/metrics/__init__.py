"""Detection metrics, one implementation each: IoU variants (`boxes`) and COCO mAP by pycocotools (`coco`).

Imported downward by `nas.models` (NMS), `nas.engine` (val), `nas.proxy` and training; imports no other
floor of the package but `nas.errors`.
"""

from __future__ import annotations

from nas.metrics.boxes import batch_box_iou, box_iou, paired_giou, paired_iou, xywh2xyxy, xyxy2xywh
from nas.metrics.coco import STAT_NAMES, coco_evaluate, ground_truth_detections, to_coco_detections

__all__ = [
    "STAT_NAMES",
    "batch_box_iou",
    "box_iou",
    "coco_evaluate",
    "ground_truth_detections",
    "paired_giou",
    "paired_iou",
    "to_coco_detections",
    "xywh2xyxy",
    "xyxy2xywh",
]
