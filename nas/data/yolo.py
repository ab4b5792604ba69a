"""ultralytics data YAML + YOLO txt labels -> `DetectionDataset` (converted to COCO ground truth)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from nas.data.coco import load_coco_json
from nas.data.dataset import (
    DataWarning,
    DetectionDataset,
    ImageRecord,
    SkipLog,
    image_size,
    sanitize_box,
)
from nas.data.images import IMAGE_SUFFIXES, check_image
from nas.data.names import COCO80_NAMES, COCO80_TO_91
from nas.errors import DataError, DatasetNotFoundError

__all__ = ["SPLITS", "image_files", "label_path", "load_yolo_yaml", "read_data_yaml", "resolve_root"]

SPLITS = ("train", "val", "test")


def read_data_yaml(path: Path) -> dict[str, Any]:
    """Parse and check a data YAML: a mapping with `names` (list, or dict 0..n-1) and at least one split."""
    if not path.is_file():
        raise DatasetNotFoundError(f"data YAML {str(path)!r} does not exist")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise DataError(f"{path}: malformed YAML: {e}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a text file (byte {e.start} is not UTF-8); expected a data YAML") from None
    if not isinstance(cfg, dict):
        raise DataError(f"{path}: expected a mapping with 'path', 'train', 'val' and 'names', got {type(cfg).__name__}")
    names = cfg.get("names")
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names:
        raise DataError(f"{path}: 'names' must be a non-empty list of class names or a mapping 0: name, 1: name, ...")
    if sorted(names) != list(range(len(names))):
        raise DataError(f"{path}: 'names' keys must be the class indices 0..{len(names) - 1}, got {sorted(names)}")
    if any(isinstance(v, (dict, list)) or v is None for v in names.values()):
        raise DataError(f"{path}: every entry of 'names' must be a class name, got {names}")
    if "nc" in cfg and cfg["nc"] != len(names):
        raise DataError(f"{path}: 'nc' is {cfg['nc']!r} but 'names' lists {len(names)} classes; make them agree")
    if not any(cfg.get(s) for s in SPLITS):
        raise DataError(f"{path}: no split given; set 'train' and/or 'val' (an image folder, a .txt list or a list)")
    for key in ("path", *SPLITS):
        v = cfg.get(key)
        if v is not None and not isinstance(v, (str, list)):
            raise DataError(f"{path}: {key!r} must be a path string or a list of paths, got {v!r}")
    ann = cfg.get("annotations")
    if ann is not None and not (isinstance(ann, dict) and all(isinstance(v, str) for v in ann.values())):
        raise DataError(f"{path}: 'annotations' must map a split to a COCO JSON path, e.g. {{val: annotations/x.json}}")
    cfg["names"] = {int(k): str(v) for k, v in names.items()}
    return cfg


def resolve_root(cfg: dict[str, Any], yaml_path: Path, datasets_root: Path, *, shipped: bool = False) -> Path:
    """The dataset root: `path` is relative to the YAML's folder (shipped configs: to the datasets root).

    A user YAML whose relative `path` is not next to it falls back to the datasets root, as ultralytics'
    DATASETS_DIR does.
    """
    p = cfg.get("path")
    if not p:
        return datasets_root if shipped else yaml_path.parent
    p = Path(p).expanduser()
    if p.is_absolute():
        return p
    if shipped:
        return datasets_root / p
    local = yaml_path.parent / p
    return local if local.exists() or not (datasets_root / p).exists() else datasets_root / p


def label_path(image: Path) -> Path:
    """ultralytics' rule: the last `/images/` becomes `/labels/` and the suffix `.txt`."""
    s = str(image)
    a, b = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if a in s:
        s = b.join(s.rsplit(a, 1))
    return Path(s).with_suffix(".txt")


def image_files(source: Path) -> list[Path]:
    """Images of one split source: a folder (searched recursively), a .txt list of files, or one image."""
    if source.is_dir():
        return sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if source.is_file() and source.suffix.lower() == ".txt":
        out = []
        for line in source.read_text().splitlines():
            line = line.strip()
            if line:
                # ultralytics: './x' is relative to the list's folder; we treat every relative entry so.
                p = Path(line).expanduser()
                out.append(p if p.is_absolute() else (source.parent / line).resolve())
        return out
    if source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
        return [source]
    raise FileNotFoundError(source)


def _missing_text(yaml_path: Path, root: Path, split: str, source: Path) -> str:
    return (
        f"{yaml_path}: the {split!r} images were not found at {source}\n"
        f"the usual ultralytics layout under the dataset root {root} is\n"
        f"  {root}/images/{split}/*.jpg    images\n"
        f"  {root}/labels/{split}/*.txt    one 'cls cx cy w h' row per object, normalized to 0..1\n"
        "fix the 'path' / split entries of the YAML or place the files there; "
        "or run on the embedded synthetic set with data=synthetic"
    )


def _read_labels(
    file: Path, rec: ImageRecord, nc: int, log: SkipLog
) -> tuple[list[tuple[float, float, float, float]], list[int]]:
    boxes: list[tuple[float, float, float, float]] = []
    classes: list[int] = []
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as e:
        log.add("malformed_row", f"{file}: {e}", "label files are UTF-8 text, one object per row")
        return boxes, classes
    seen: set[tuple[str, ...]] = set()
    rows = [tuple(line.split()) for line in text.splitlines()]
    # A file of 5-number box rows with one longer row is two rows glued by a lost newline, not a polygon among boxes
    boxes_file = any(len(p) == 5 for p in rows)
    for lineno, (line, parts) in enumerate(zip(text.splitlines(), rows), 1):
        if not parts:
            continue
        where = f"{file}:{lineno}: {line.strip()!r}"[:200]
        try:
            vals = [float(v) for v in parts]
        except ValueError:
            log.add("malformed_row", where, "rows are 'cls cx cy w h' numbers (or 'cls x1 y1 x2 y2 ...' polygons)")
            continue
        if len(vals) == 5:
            cx, cy, w, h = vals[1:]
        elif boxes_file:
            log.add("malformed_row", where, "one 'cls cx cy w h' row per line: a newline is missing (rows glued)")
            continue
        elif len(vals) >= 7 and len(vals) % 2 == 1:  # a segment polygon: its bounding box, as ultralytics does
            xs, ys = np.array(vals[1::2]), np.array(vals[2::2])
            cx, cy, w, h = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2, np.ptp(xs), np.ptp(ys)
        else:
            log.add("malformed_row", where, "rows are 'cls cx cy w h' (5 numbers) or 'cls x1 y1 ... xn yn' polygons")
            continue
        c = vals[0]
        if not (np.isfinite(c) and c == int(c) and 0 <= c < nc):
            log.add("unknown_category", where, f"class must be an integer index 0..{nc - 1} into the YAML's 'names'")
            continue
        if parts in seen:
            log.add("duplicate_row", where, "remove repeated rows (a repeated object would count as a missed one)")
            continue
        seen.add(parts)
        box = sanitize_box(((cx - w / 2) * rec.width, (cy - h / 2) * rec.height, w * rec.width, h * rec.height),
                           rec.width, rec.height, log, where)  # fmt: skip
        if box is not None:
            boxes.append(box)
            classes.append(int(c))
    return boxes, classes


def _reason(e: BaseException) -> str:
    return str(e).splitlines()[0][:120] if str(e) else type(e).__name__


def _image_ids(files: list[Path]) -> list[int]:
    """int(stem) when every stem is a distinct number (COCO's 000000000139.jpg -> 139), else 1..N."""
    stems = [f.stem for f in files]
    if all(s.isdigit() for s in stems):
        ids = [int(s) for s in stems]
        if len(set(ids)) == len(ids):
            return ids
    return list(range(1, len(files) + 1))


def load_yolo_yaml(
    yaml_path: str | os.PathLike,
    split: str = "val",
    *,
    datasets_root: Path,
    shipped: bool = False,
    name: str | None = None,
) -> DetectionDataset:
    """One split of an ultralytics-format dataset, as a `DetectionDataset` with COCO ground truth."""
    path = Path(yaml_path).expanduser()
    cfg = read_data_yaml(path)
    if split not in SPLITS or not cfg.get(split):
        have = [s for s in SPLITS if cfg.get(s)]
        raise DataError(f"{path}: no split {split!r}; this data YAML defines {have}")
    names: dict[int, str] = cfg["names"]
    name = name or path.stem
    root = resolve_root(cfg, path, datasets_root, shipped=shipped)
    coco_names = [names[k] for k in sorted(names)] == list(COCO80_NAMES)
    cat_ids = list(COCO80_TO_91) if coco_names else [k + 1 for k in sorted(names)]

    # Our extension: an official instances JSON for the split gives the exact COCO protocol (crowd regions,
    # mask areas), as ultralytics' COCO val does with annotations/instances_val2017.json.
    json_rel = (cfg.get("annotations") or {}).get(split)
    if json_rel:
        json_path = root / json_rel
        if json_path.is_file():
            ds = load_coco_json(json_path, split=split, name=name)
            if ds.names != names:
                raise DataError(f"{path}: the categories of {json_path} differ from the YAML's 'names'")
            return ds

    sources = cfg[split] if isinstance(cfg[split], list) else [cfg[split]]
    files: list[Path] = []
    for s in sources:
        src = Path(str(s)).expanduser()
        src = src if src.is_absolute() else root / src
        try:
            files += image_files(src)
        except FileNotFoundError:
            raise DatasetNotFoundError(_missing_text(path, root, split, src)) from None
    if not files:
        raise DatasetNotFoundError(_missing_text(path, root, split, root / str(sources[0])) + "\n(it lists no images)")

    log = SkipLog(str(path))
    images, boxes, classes = [], [], []
    for image_id, f in zip(_image_ids(files), files):
        if not f.is_file():
            log.add("missing_image", str(f), "restore the file or remove it from the image list")
            continue
        try:
            w, h = image_size(f)
            check_image(f)
        except (OSError, DataError) as e:
            log.add("unreadable_image", f"{f}: {_reason(e)}", "replace or remove the file")
            continue
        rec = ImageRecord(id=image_id, path=f, width=w, height=h)
        lab = label_path(f)
        b, c = _read_labels(lab, rec, len(names), log) if lab.is_file() else ([], [])
        images.append(rec)
        boxes.append(np.array(b, dtype=np.float64).reshape(-1, 4))
        classes.append(np.array(c, dtype=np.int64))
    if not images:
        err = DatasetNotFoundError if log.counts.get("missing_image") == len(files) else DataError
        raise err(f"{path}: none of the {len(files)} listed {split!r} images could be read (first: {files[0]})")
    log.note("images_without_objects", sum(1 for c in classes if len(c) == 0))
    log.emit()
    if json_rel:
        warnings.warn(
            f"{path}: {root / json_rel} is absent, so the {split!r} ground truth comes from the YOLO txt labels "
            "(no crowd regions, box areas instead of mask areas): mAP differs slightly from the official protocol",
            DataWarning,
            stacklevel=2,
        )
    return DetectionDataset(
        name=name,
        split=split,
        source=path,
        names=names,
        category_ids=cat_ids,
        images=images,
        boxes_xywh=boxes,
        classes=classes,
        stats=log.counts,
    )
