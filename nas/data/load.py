"""`load_dataset`: one entry point for the synthetic set, shipped configs, data YAMLs and COCO JSON files."""

from __future__ import annotations

import os
from pathlib import Path

from nas.data.coco import load_coco_json
from nas.data.dataset import DetectionDataset, datasets_dir
from nas.data.synthetic import ensure_synthetic
from nas.data.voc import is_voc_folder, load_voc
from nas.data.yolo import load_yolo_yaml
from nas.errors import DataError, DatasetNotFoundError

__all__ = ["CONFIGS_DIR", "SHIPPED_CONFIGS", "datasets_dir", "load_dataset", "shipped_config"]

CONFIGS_DIR = Path(__file__).parent / "configs"
SHIPPED_CONFIGS = ("synthetic.yaml", "coco8.yaml", "coco.yaml")

_ULTRALYTICS_ASSETS = "https://github.com/ultralytics/assets/releases/download/v0.0.0"


def shipped_config(name: str) -> Path:
    """The packaged data YAML `name` (e.g. "coco8.yaml")."""
    if name not in SHIPPED_CONFIGS:
        raise DataError(f"no shipped data config {name!r}; shipped: {', '.join(SHIPPED_CONFIGS)}")
    return CONFIGS_DIR / name


def _howto(name: str, split: str, root: Path) -> str:
    """What to place where for a shipped config whose images are absent."""
    tail = (
        "\nNothing is downloaded at run time; set NAS_DATASETS_DIR to use another datasets root.\n"
        "Or run on the embedded synthetic set instead: data=synthetic (8 classes of its own: for a model trained on "
        "it, e.g. nas train model=yolo_nas_s.yaml data=synthetic, not for the 80-class released weights)"
    )
    if name == "coco8.yaml":
        return (
            f"coco8 {split!r} images are not under the datasets root {root}; expected\n"
            f"  {root}/coco8/images/{split}/*.jpg\n  {root}/coco8/labels/{split}/*.txt\n"
            f"Get the public zip (1 MB) {_ULTRALYTICS_ASSETS}/coco8.zip and unpack it there:\n"
            f"  unzip coco8.zip -d {root}" + tail
        )
    s = f"{split}2017"
    return (
        f"COCO 2017 {split!r} is not under the datasets root {root}; expected\n"
        f"  {root}/coco/images/{s}/*.jpg   from http://images.cocodataset.org/zips/{s}.zip, "
        f"unzipped into {root}/coco/images\n"
        f"  {root}/coco/labels/{s}/*.txt, {root}/coco/{s}.txt, {root}/coco/annotations/instances_{s}.json\n"
        f"      from {_ULTRALYTICS_ASSETS}/coco2017labels.zip, unzipped into {root}\n"
        f"An official annotation file also works directly: data=/path/to/annotations/instances_{s}.json "
        f"(images in ../images/{s}/ or ../{s}/, or images_dir=...)." + tail
    )


def load_dataset(
    data: str | os.PathLike | DetectionDataset = "synthetic",
    split: str = "val",
    *,
    images_dir: str | os.PathLike | None = None,
    datasets_root: str | os.PathLike | None = None,
) -> DetectionDataset:
    """One split of a dataset named by `data`.

    `data` is `"synthetic"` (the embedded set, generated on first use), a shipped config name
    (`"coco8.yaml"`, `"coco.yaml"`, `"synthetic.yaml"`; the `.yaml` may be left out), the path of an
    ultralytics data YAML, the path of a COCO instances JSON (images found next to it or in `images_dir`), or a
    Pascal VOC folder (Annotations/, JPEGImages/, ImageSets/Main/<split>.txt; `nas.data.voc`).
    """
    if isinstance(data, DetectionDataset):
        return data
    root = Path(datasets_root).expanduser() if datasets_root is not None else datasets_dir()
    key = os.fspath(data)
    path = Path(key).expanduser()
    suffix = path.suffix.lower()
    if images_dir is not None and suffix != ".json":
        raise DataError(f"images_dir applies to a COCO JSON, not to data={key!r}")

    if path.is_dir() and is_voc_folder(path):
        return load_voc(path, split)
    if path.is_file() or suffix == ".json" or os.sep in key or (os.altsep and os.altsep in key):
        if suffix == ".json":
            return load_coco_json(path, images_dir, split=split)
        if suffix in (".yaml", ".yml"):
            return load_yolo_yaml(path, split, datasets_root=root)
        raise DataError(
            f"data={key!r}: expected an ultralytics data YAML (.yaml), a COCO instances JSON (.json) or a Pascal VOC "
            "folder (with Annotations/ and JPEGImages/)"
        )

    name = key if suffix in (".yaml", ".yml") else f"{key}.yaml"
    if key == "synthetic" or name == "synthetic.yaml":
        if split not in ("train", "val"):
            raise DataError(f"the synthetic set has the splits 'train' and 'val', not {split!r}")
        folder = ensure_synthetic(root)
        if key == "synthetic":  # the COCO layout: exact integer boxes and areas, as generated
            return load_coco_json(folder / "annotations" / f"instances_{split}.json", split=split, name="synthetic")
        return load_yolo_yaml(shipped_config(name), split, datasets_root=root, shipped=True, name="synthetic")
    if name in SHIPPED_CONFIGS:
        try:
            return load_yolo_yaml(shipped_config(name), split, datasets_root=root, shipped=True, name=Path(name).stem)
        except DatasetNotFoundError:
            raise DatasetNotFoundError(_howto(name, split, root)) from None
    what = f"data YAML {key!r} does not exist" if suffix in (".yaml", ".yml") else f"unknown dataset {key!r}"
    raise DataError(
        f"{what}: expected 'synthetic', a shipped config ({', '.join(SHIPPED_CONFIGS)}), "
        "the path of an ultralytics data YAML or the path of a COCO instances JSON"
    )
