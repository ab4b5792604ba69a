"""Detection datasets: COCO JSON, ultralytics data YAML + YOLO labels, Pascal VOC XML, and the embedded synthetic set."""

from nas.data.dataset import DataWarning, DetectionDataset, ImageRecord, datasets_dir
from nas.data.load import SHIPPED_CONFIGS, load_dataset
from nas.data.names import COCO80_NAMES, COCO80_TO_91

__all__ = [
    "COCO80_NAMES",
    "COCO80_TO_91",
    "SHIPPED_CONFIGS",
    "DataWarning",
    "DetectionDataset",
    "ImageRecord",
    "datasets_dir",
    "load_dataset",
]
