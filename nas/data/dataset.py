"""`DetectionDataset`: images, boxes and classes of one split, with its COCO ground truth for pycocotools."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "REASONS",
    "DataWarning",
    "DetectionDataset",
    "ImageRecord",
    "SkipLog",
    "datasets_dir",
    "image_size",
    "sanitize_box",
]


def datasets_dir() -> Path:
    """Root of the shipped configs' datasets: `$NAS_DATASETS_DIR`, else ~/.cache/yolo-nas-search/datasets."""
    env = os.environ.get("NAS_DATASETS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "yolo-nas-search" / "datasets"


class DataWarning(UserWarning):
    """Records of a dataset were skipped or repaired; the message names the file, the first record and the fix."""


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One image: its id in the ground truth, its file and its size in pixels (as cv2 reads it)."""

    id: int
    path: Path
    width: int
    height: int


# What each `stats` key counts; every key but the `note`d ones also raises one summary `DataWarning`.
REASONS = {
    "malformed_image_record": "image records malformed (skipped)",
    "malformed_annotation": "annotations malformed (skipped)",
    "malformed_row": "label rows malformed (skipped)",
    "nonfinite_box": "boxes with non-finite coordinates (skipped)",
    "degenerate_box": "boxes with zero or negative size (skipped)",
    "outside_image": "boxes fully outside the image (skipped)",
    "clipped_box": "boxes partly outside the image (clipped to it)",
    "unknown_category": "objects of an unknown category (skipped)",
    "unknown_image": "annotations of an unknown image id (skipped)",
    "missing_image": "image files missing (skipped with their objects)",
    "unreadable_image": "image files unreadable (skipped with their objects)",
    "size_from_file": "image records without width/height (size read from the file)",
    "duplicate_row": "duplicate label rows (dropped)",
    "objects_of_skipped_images": "objects of skipped images (dropped)",
    "images_without_objects": "images without objects (kept as negatives)",
}


@dataclass
class SkipLog:
    """Counts skipped or repaired records per reason (a `REASONS` key) and warns once per reason."""

    source: str
    counts: dict[str, int] = field(default_factory=dict)
    _first: dict[str, tuple[str, str]] = field(default_factory=dict)

    def add(self, reason: str, record: str, fix: str) -> None:
        """Count one record under `reason`; the first one of each reason is quoted in the summary warning."""
        if reason not in REASONS:
            raise KeyError(f"unknown skip reason {reason!r}")
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self._first.setdefault(reason, (record, fix))

    def note(self, reason: str, n: int = 1) -> None:
        """Count a benign or derived condition: reported in stats, not warned about."""
        if reason not in REASONS:
            raise KeyError(f"unknown skip reason {reason!r}")
        if n:
            self.counts[reason] = self.counts.get(reason, 0) + n

    def emit(self) -> None:
        """One `DataWarning` per reason that was `add`ed."""
        for reason, (record, fix) in self._first.items():
            warnings.warn(
                f"{self.source}: {self.counts[reason]} {REASONS[reason]} [{reason}]; first: {record}; fix: {fix}",
                DataWarning,
                stacklevel=3,
            )


class DetectionDataset:
    """One split of a detection dataset.

    Boxes are kept as COCO `[x, y, w, h]` in original pixels (float64, exactly as in the source) together
    with each object's COCO `area` and `iscrowd`; `ds[i]` gives the non-crowd objects as xyxy float32.
    """

    def __init__(
        self,
        *,
        name: str,
        split: str,
        source: Path,
        names: dict[int, str],
        category_ids: list[int],
        images: list[ImageRecord],
        boxes_xywh: list[np.ndarray],
        classes: list[np.ndarray],
        areas: list[np.ndarray] | None = None,
        crowd: list[np.ndarray] | None = None,
        stats: dict[str, int] | None = None,
    ):
        if len(names) != len(category_ids) or sorted(names) != list(range(len(names))):
            raise ValueError(f"names must map 0..{len(category_ids) - 1} to class names, got keys {sorted(names)}")
        if len(set(category_ids)) != len(category_ids):
            raise ValueError(f"category ids must be unique, got {category_ids}")
        if not len(images) == len(boxes_xywh) == len(classes):
            raise ValueError("images, boxes_xywh and classes must have one entry per image")
        self.name = name
        self.split = split
        self.source = source
        self.names = dict(names)
        self.category_ids = list(category_ids)
        self.images = list(images)
        self._boxes = [np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in boxes_xywh]
        self._classes = [np.asarray(c, dtype=np.int64).reshape(-1) for c in classes]
        self._areas = (
            [np.asarray(a, dtype=np.float64).reshape(-1) for a in areas]
            if areas is not None
            else [b[:, 2] * b[:, 3] for b in self._boxes]
        )
        self._crowd = (
            [np.asarray(c, dtype=bool).reshape(-1) for c in crowd]
            if crowd is not None
            else [np.zeros(len(b), dtype=bool) for b in self._boxes]
        )
        self.stats = dict(stats or {})
        self._coco: Any = None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[ImageRecord, np.ndarray, np.ndarray]:
        """(image record, non-crowd boxes xyxy float32 [n, 4] in pixels, contiguous classes int64 [n])."""
        rec = self.images[i]
        keep = ~self._crowd[i]
        b = self._boxes[i][keep]
        xyxy = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)
        xyxy[:, 0::2] = xyxy[:, 0::2].clip(0, rec.width)
        xyxy[:, 1::2] = xyxy[:, 1::2].clip(0, rec.height)
        return rec, xyxy.astype(np.float32), self._classes[i][keep].copy()

    def __iter__(self) -> Iterator[tuple[ImageRecord, np.ndarray, np.ndarray]]:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return (
            f"DetectionDataset(name={self.name!r}, split={self.split!r}, images={len(self)}, "
            f"objects={self.num_objects}, classes={len(self.names)}, source={str(self.source)!r})"
        )

    def subset(self, indices: list[int]) -> DetectionDataset:
        """The images at `indices` (in that order) with their objects; the classes stay those of this dataset."""
        return DetectionDataset(
            name=self.name,
            split=self.split,
            source=self.source,
            names=self.names,
            category_ids=self.category_ids,
            images=[self.images[i] for i in indices],
            boxes_xywh=[self._boxes[i] for i in indices],
            classes=[self._classes[i] for i in indices],
            areas=[self._areas[i] for i in indices],
            crowd=[self._crowd[i] for i in indices],
            stats=self.stats,
        )

    @property
    def num_objects(self) -> int:
        """Number of annotated objects, crowd regions included."""
        return int(sum(len(c) for c in self._classes))

    def annotations(self, i: int) -> dict[str, np.ndarray]:
        """All objects of image `i` as stored: `bbox_xywh`, `cls`, `area`, `iscrowd`."""
        return {
            "bbox_xywh": self._boxes[i].copy(),
            "cls": self._classes[i].copy(),
            "area": self._areas[i].copy(),
            "iscrowd": self._crowd[i].copy(),
        }

    def class_counts(self) -> dict[str, int]:
        """Non-crowd objects per class name."""
        counts = np.zeros(len(self.names), dtype=np.int64)
        for c, crowd in zip(self._classes, self._crowd):
            counts += np.bincount(c[~crowd], minlength=len(self.names))
        return {self.names[k]: int(n) for k, n in enumerate(counts)}

    def coco_dict(self) -> dict[str, Any]:
        """The ground truth as a COCO instances dict (annotation ids 1..M: pycocotools treats id 0 as unmatched)."""
        images, anns = [], []
        for i, rec in enumerate(self.images):
            images.append({"id": rec.id, "file_name": rec.path.name, "width": rec.width, "height": rec.height})
            for b, c, a, z in zip(self._boxes[i], self._classes[i], self._areas[i], self._crowd[i]):
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": rec.id,
                        "category_id": self.category_ids[int(c)],
                        "bbox": [float(v) for v in b],
                        "area": float(a),
                        "iscrowd": int(z),
                    }
                )
        cats = [{"id": cid, "name": self.names[k]} for k, cid in enumerate(self.category_ids)]
        return {"images": images, "annotations": anns, "categories": cats}

    def coco_gt(self) -> Any:
        """The ground truth as an in-memory `pycocotools.coco.COCO` (built once, then cached)."""
        if self._coco is None:
            from pycocotools.coco import COCO

            coco = COCO()
            coco.dataset = self.coco_dict()
            with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress
                coco.createIndex()
            self._coco = coco
        return self._coco


def sanitize_box(
    box_xywh: tuple[float, float, float, float],
    width: int,
    height: int,
    log: SkipLog,
    record: str,
    tol_px: float = 1.0,
) -> tuple[float, float, float, float] | None:
    """The box if valid, clipped to the image if it sticks out by more than `tol_px`, None if unusable.

    Boxes within `tol_px` of the border are kept bit-exact so that a clean COCO file evaluates exactly as
    the official protocol does.
    """
    x, y, w, h = box_xywh
    if not all(np.isfinite(v) for v in box_xywh):
        log.add("nonfinite_box", record, "fix or remove these records")
        return None
    if w <= 0 or h <= 0:
        log.add("degenerate_box", record, "boxes need width > 0 and height > 0")
        return None
    x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, width), min(y + h, height)
    if x1 <= x0 or y1 <= y0:
        log.add(
            "outside_image",
            record,
            f"boxes must overlap the {width}x{height} image; check the image size and the box format",
        )
        return None
    if x < -tol_px or y < -tol_px or x + w > width + tol_px or y + h > height + tol_px:
        log.add(
            "clipped_box",
            record,
            f"boxes should lie inside the {width}x{height} image",
        )
        return x0, y0, x1 - x0, y1 - y0
    return x, y, w, h


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as `cv2.imread` returns the image: EXIF rotations by 90 degrees swap the two sides."""
    from PIL import Image

    with Image.open(path) as im:  # reads the header only
        w, h = im.size
        orientation = im.getexif().get(0x0112, 1)  # EXIF Orientation tag
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)
