"""Small on-disk dataset fixtures written by the tests themselves."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest


def write_image(path: Path, width: int, height: int) -> Path:
    """A small grey JPEG of the given size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((height, width, 3), 114, np.uint8))
    return path


def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def coco_layout(tmp_path: Path):
    """root/annotations/instances_val2017.json + root/images/val2017/*.jpg; returns a writer of the JSON."""
    root = tmp_path / "coco"
    sizes = {1: (64, 48), 2: (80, 80), 3: (40, 60)}
    for i, (w, h) in sizes.items():
        write_image(root / "images" / "val2017" / f"{i:012d}.jpg", w, h)

    def make(annotations: list[dict], images: list[dict] | None = None, categories: list[dict] | None = None) -> Path:
        images = images or [
            {"id": i, "file_name": f"{i:012d}.jpg", "width": w, "height": h} for i, (w, h) in sizes.items()
        ]
        categories = categories or [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 7, "name": "train"}]
        data = {"images": images, "annotations": annotations, "categories": categories}
        return write_json(root / "annotations" / "instances_val2017.json", data)

    return make


@pytest.fixture
def yolo_layout(tmp_path: Path):
    """An ultralytics layout tmp/ds/{images,labels}/val with a data YAML; returns a writer of labels + YAML."""
    root = tmp_path / "ds"
    sizes = {"a": (200, 100), "b": (64, 64), "c": (50, 80)}
    for stem, (w, h) in sizes.items():
        write_image(root / "images" / "val" / f"{stem}.jpg", w, h)

    def make(labels: dict[str, str], yaml_text: str | None = None) -> Path:
        for stem, text in labels.items():
            p = root / "labels" / "val" / f"{stem}.txt"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        y = tmp_path / "data.yaml"
        y.write_text(yaml_text or "path: ds\ntrain: images/val\nval: images/val\nnames: [cat, dog, bird]\n")
        return y

    return make
