"""COCO instances JSON + image folder -> `DetectionDataset`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from nas.data.dataset import DetectionDataset, ImageRecord, SkipLog, image_size, sanitize_box
from nas.data.images import check_image
from nas.errors import DataError, DatasetNotFoundError

__all__ = ["image_dir_candidates", "load_coco_json"]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def image_dir_candidates(json_path: Path) -> list[Path]:
    """Where a COCO JSON's `file_name`s may live, in the order they are tried.

    `annotations/instances_val2017.json` finds `images/val2017/` (ultralytics' COCO layout) or `val2017/`
    (the official zips unpacked side by side); file names may also be relative to the JSON or its parent.
    """
    root = json_path.parent.parent if json_path.parent.name == "annotations" else json_path.parent
    stem = json_path.stem
    split = stem.split("_", 1)[1] if stem.startswith(("instances_", "image_info_")) else stem
    out = [root / "images" / split, root / split, json_path.parent, root, root / "images"]
    return list(dict.fromkeys(out))  # de-duplicated, order kept


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DatasetNotFoundError(f"COCO annotation file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: malformed JSON ({e}); re-export or re-download the annotation file") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a COCO instances object at the top level, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(
                f"{path}: missing or non-list {key!r}; a COCO instances file has 'images', 'annotations' and "
                "'categories' lists (test-dev image_info files carry no annotations and cannot be evaluated)"
            )
    return data


def _categories(path: Path, cats: list[Any]) -> tuple[dict[int, str], list[int]]:
    seen: dict[int, str] = {}
    for i, c in enumerate(cats):
        if not (isinstance(c, dict) and _is_int(c.get("id")) and isinstance(c.get("name"), str)):
            raise DataError(f"{path}: categories[{i}] = {c!r} needs an integer 'id' and a string 'name'")
        if c["id"] in seen:
            raise DataError(f"{path}: categories[{i}]: duplicate category id {c['id']}; category ids must be unique")
        seen[c["id"]] = c["name"]
    if not seen:
        raise DataError(f"{path}: 'categories' is empty; list at least one {{'id': ..., 'name': ...}}")
    # Contiguous class index = rank of the category id, which gives COCO's usual 80-class order.
    ids = sorted(seen)
    return {k: seen[cid] for k, cid in enumerate(ids)}, ids


def _resolve_images_dir(path: Path, images: list[dict[str, Any]], images_dir: Path | None) -> Path:
    if images_dir is not None:
        if not images_dir.is_dir():
            raise DatasetNotFoundError(f"image folder {str(images_dir)!r} given for {path} does not exist")
        return images_dir
    candidates = image_dir_candidates(path)
    probe = [im["file_name"] for im in images[:20]]
    for d in candidates:
        if any((d / f).is_file() for f in probe):
            return d
    tried = "\n  ".join(str(d) for d in candidates)
    raise DatasetNotFoundError(
        f"{path}: none of the first images (e.g. {probe[0]!r}) was found in any of:\n  {tried}\n"
        "place the images in one of these folders or pass the folder explicitly (images_dir=...)"
    )


def load_coco_json(
    json_path: str | os.PathLike,
    images_dir: str | os.PathLike | None = None,
    *,
    split: str = "val",
    name: str | None = None,
) -> DetectionDataset:
    """Read a COCO instances JSON; image files resolve against `images_dir` or the usual layouts next to it."""
    path = Path(json_path).expanduser()
    data = _read_json(path)
    log = SkipLog(str(path))
    names, cat_ids = _categories(path, data["categories"])
    cat_index = {cid: k for k, cid in enumerate(cat_ids)}

    raw_images: list[dict[str, Any]] = []
    ids_seen: set[int] = set()
    for i, im in enumerate(data["images"]):
        ok = isinstance(im, dict) and _is_int(im.get("id")) and isinstance(im.get("file_name"), str)
        if not ok:
            log.add("malformed_image_record", f"images[{i}] = {im!r}"[:200], "needs integer 'id', 'file_name'")
            continue
        if im["id"] in ids_seen:
            raise DataError(f"{path}: images[{i}]: duplicate image id {im['id']}; image ids must be unique")
        ids_seen.add(im["id"])
        raw_images.append(im)
    if not raw_images:
        raise DataError(f"{path}: no usable image records in 'images'")
    root = _resolve_images_dir(path, raw_images, Path(images_dir).expanduser() if images_dir is not None else None)

    records: dict[int, ImageRecord] = {}
    for im in raw_images:
        file = root / im["file_name"]
        if not file.is_file():
            log.add("missing_image", f"id {im['id']}: {file}", "restore the file or its record")
            continue
        try:
            check_image(file)
        except (OSError, DataError) as e:
            log.add(
                "unreadable_image", f"id {im['id']}: {file}: {str(e)[:120]}", "replace the file or remove its record"
            )
            continue
        w, h = im.get("width"), im.get("height")
        if not (_is_int(w) and _is_int(h) and w > 0 and h > 0):
            try:
                w, h = image_size(file)
            except OSError:
                log.add("unreadable_image", f"id {im['id']}: {file}", "replace the file")
                continue
            log.add(
                "size_from_file",
                f"id {im['id']}: {file.name}",
                "add integer 'width' and 'height' to the image records",
            )
        records[im["id"]] = ImageRecord(id=im["id"], path=file, width=int(w), height=int(h))
    missing_ids = ids_seen - set(records)

    per_image: dict[int, list[tuple[tuple[float, float, float, float], int, float, bool]]] = {i: [] for i in records}
    for i, a in enumerate(data["annotations"]):
        rec = f"annotations[{i}] = {a!r}"[:200]
        if not isinstance(a, dict) or not _is_int(a.get("image_id")) or not _is_int(a.get("category_id")):
            log.add("malformed_annotation", rec, "needs integer 'image_id' and 'category_id'")
            continue
        if a["image_id"] in missing_ids:
            log.note("objects_of_skipped_images")
            continue
        if a["image_id"] not in records:
            log.add("unknown_image", rec, "every annotation's image_id must be in 'images'")
            continue
        if a["category_id"] not in cat_index:
            log.add(
                "unknown_category",
                rec,
                f"category_id must be one of the ids in 'categories' ({cat_ids[0]}..{cat_ids[-1]})",
            )
            continue
        bbox, area = a.get("bbox"), a.get("area")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_num(v) for v in bbox)):
            log.add("malformed_annotation", rec, "bbox must be [x, y, width, height] in pixels")
            continue
        if area is not None and not _is_num(area):
            log.add("malformed_annotation", rec, "area must be a number (pixels)")
            continue
        r = records[a["image_id"]]
        box = sanitize_box(tuple(float(v) for v in bbox), r.width, r.height, log, rec)
        if box is None:
            continue
        wh = float(bbox[2]) * float(bbox[3])
        # COCO's area is the mask area; it decides small/medium/large, so keep it (scaled if the box was clipped).
        area_px = wh if area is None else float(area) * (box[2] * box[3] / wh)
        per_image[a["image_id"]].append((box, cat_index[a["category_id"]], area_px, bool(a.get("iscrowd", 0))))

    images = list(records.values())
    objs = [per_image[r.id] for r in images]
    log.note("images_without_objects", sum(1 for o in objs if not o))
    log.emit()
    return DetectionDataset(
        name=name or path.stem,
        split=split,
        source=path,
        names=names,
        category_ids=cat_ids,
        images=images,
        boxes_xywh=[np.array([o[0] for o in ob], dtype=np.float64).reshape(-1, 4) for ob in objs],
        classes=[np.array([o[1] for o in ob], dtype=np.int64) for ob in objs],
        areas=[np.array([o[2] for o in ob], dtype=np.float64) for ob in objs],
        crowd=[np.array([o[3] for o in ob], dtype=bool) for ob in objs],
        stats=log.counts,
    )
