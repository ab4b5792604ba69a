"""Exact YOLO-NAS networks built from an `ArchConfig`, their fusion, and checkpoint loading."""

from nas.models.reparam import fuse, fuse_report
from nas.models.yolo_nas import YoloNAS, build

__all__ = ["YoloNAS", "build", "fuse", "fuse_report"]
