"""Pascal VOC XML -> `DetectionDataset`: a VOC folder (Annotations/, JPEGImages/, ImageSets/Main/<split>.txt).

Boxes follow ultralytics' VOC conversion: VOC's 1-based pixel corners move by -1 (x = xmin - 1,
w = xmax - xmin, alike in y). Objects marked `difficult` are kept as crowd regions, so pycocotools ignores
them as VOC's own evaluation does. Classes are the 20 VOC classes in their usual order when every name in
the annotations is one of them, else the names found in all of Annotations/, sorted.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from nas.data.dataset import DetectionDataset, ImageRecord, SkipLog, image_size, sanitize_box
from nas.data.images import check_image
from nas.errors import DataError, DatasetNotFoundError

__all__ = ["VOC_NAMES", "is_voc_folder", "load_voc"]

VOC_NAMES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def is_voc_folder(path: Path) -> bool:
    """A folder with VOC's Annotations/ and JPEGImages/."""
    return (path / "Annotations").is_dir() and (path / "JPEGImages").is_dir()


def _parse(xml: Path) -> ET.Element:
    try:
        return ET.parse(xml).getroot()
    except (ET.ParseError, OSError) as e:
        raise ValueError(f"malformed XML ({e})") from None


def _class_names(folder: Path) -> list[str]:
    found: set[str] = set()
    for xml in (folder / "Annotations").glob("*.xml"):
        try:
            found.update((o.findtext("name") or "").strip() for o in _parse(xml).iter("object"))
        except ValueError:
            continue  # reported when its split is loaded
    found.discard("")
    return list(VOC_NAMES) if found <= set(VOC_NAMES) else sorted(found)


def _image_ids(stems: list[str]) -> list[int]:
    """int(stem) when every stem is a distinct number, else 1..N (VOC's 2007_000027 is not a number)."""
    if all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems):
        return [int(s) for s in stems]
    return list(range(1, len(stems) + 1))


def _number(obj: ET.Element, tag: str) -> float:
    text = obj.findtext(tag)
    if text is None:
        raise ValueError(f"no <{tag}>")
    return float(text)


def load_voc(folder: str | os.PathLike, split: str = "val", *, name: str | None = None) -> DetectionDataset:
    """One split (ImageSets/Main/<split>.txt) of a Pascal VOC folder; skips are counted and warned (docs/data.md)."""
    root = Path(folder).expanduser()
    if not is_voc_folder(root):
        raise DatasetNotFoundError(f"{root}: not a Pascal VOC folder (expected Annotations/ and JPEGImages/ in it)")
    listing = root / "ImageSets" / "Main" / f"{split}.txt"
    if not listing.is_file():
        have = sorted(p.stem for p in (root / "ImageSets" / "Main").glob("*.txt") if "_" not in p.stem)
        raise DataError(f"{root}: no split {split!r} ({listing} is missing); this folder lists {have}")
    stems = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
    if not stems:
        raise DataError(f"{listing} lists no images")
    names = _class_names(root)
    index = {n: k for k, n in enumerate(names)}
    log = SkipLog(str(listing))
    images, boxes, classes, crowd = [], [], [], []
    for image_id, stem in zip(_image_ids(stems), stems):
        xml = root / "Annotations" / f"{stem}.xml"
        try:
            ann = _parse(xml)
        except ValueError as e:
            log.add("malformed_annotation", f"{xml}: {e}"[:200], "fix or re-export the XML (or remove its id)")
            continue
        file = root / "JPEGImages" / (ann.findtext("filename") or f"{stem}.jpg").strip()
        if not file.is_file():
            log.add("missing_image", str(file), "restore the file or remove its id from the split list")
            continue
        try:
            check_image(file)
            w, h = int(_number(ann, "size/width")), int(_number(ann, "size/height"))
            if w <= 0 or h <= 0:
                raise ValueError("size 0")
        except ValueError:
            try:
                w, h = image_size(file)
            except OSError as e:
                log.add("unreadable_image", f"{file}: {e}"[:200], "replace or remove the file")
                continue
            log.add("size_from_file", f"{xml}", "give <size><width>/<height> in the XML")
        except (OSError, DataError) as e:
            log.add("unreadable_image", f"{file}: {e}"[:200], "replace or remove the file")
            continue
        rec = ImageRecord(id=image_id, path=file, width=w, height=h)
        b, c, z = [], [], []
        for k, obj in enumerate(ann.iter("object"), 1):
            where = f"{xml}: object {k}"
            label = (obj.findtext("name") or "").strip()
            if label not in index:
                log.add("unknown_category", f"{where} {label!r}", f"class names are {', '.join(names)}")
                continue
            try:
                x0, y0, x1, y1 = (_number(obj, f"bndbox/{t}") for t in ("xmin", "ymin", "xmax", "ymax"))
            except ValueError as e:
                log.add("malformed_annotation", f"{where}: {e}", "<bndbox> needs numeric xmin, ymin, xmax, ymax")
                continue
            box = sanitize_box((x0 - 1, y0 - 1, x1 - x0, y1 - y0), w, h, log, where)
            if box is not None:
                b.append(box)
                c.append(index[label])
                z.append((obj.findtext("difficult") or "0").strip() == "1")
        images.append(rec)
        boxes.append(np.array(b, dtype=np.float64).reshape(-1, 4))
        classes.append(np.array(c, dtype=np.int64))
        crowd.append(np.array(z, dtype=bool))
    if not images:
        raise DataError(f"{listing}: none of the {len(stems)} listed images could be read (first: {stems[0]})")
    log.note("images_without_objects", sum(1 for c in classes if len(c) == 0))
    log.emit()
    return DetectionDataset(
        name=name or root.name,
        split=split,
        source=root,
        names=dict(enumerate(names)),
        category_ids=[k + 1 for k in range(len(names))],
        images=images,
        boxes_xywh=boxes,
        classes=classes,
        crowd=crowd,
        stats=log.counts,
    )
