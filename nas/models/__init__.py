"""Exact YOLO-NAS networks built from an `ArchConfig`, their fusion, and checkpoint loading."""

from nas.models.checkpoints import (
    Checkpoint,
    load_checkpoint,
    load_model,
    load_state_dict_strict,
    read_checkpoint,
    resolve_weights,
    save_checkpoint,
    weights_dir,
)
from nas.models.reparam import fuse, fuse_report
from nas.models.shapes import expected_shapes, infer_arch
from nas.models.yolo_nas import YoloNAS, build

__all__ = [
    "Checkpoint",
    "YoloNAS",
    "build",
    "expected_shapes",
    "fuse",
    "fuse_report",
    "infer_arch",
    "load_checkpoint",
    "load_model",
    "load_state_dict_strict",
    "read_checkpoint",
    "resolve_weights",
    "save_checkpoint",
    "weights_dir",
]
