from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from nas.data import COCO80_NAMES, COCO80_TO_91, DataWarning, datasets_dir, load_dataset
from nas.data.load import SHIPPED_CONFIGS, shipped_config
from nas.errors import DataError, DatasetNotFoundError

from .conftest import write_image, write_json


def test_datasets_dir_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("NAS_DATASETS_DIR", str(tmp_path))
    assert datasets_dir() == tmp_path
    monkeypatch.delenv("NAS_DATASETS_DIR")
    assert datasets_dir() == Path.home() / ".cache" / "yolo-nas-search" / "datasets"


def test_shipped_configs_name_the_standard_layout():
    for name in SHIPPED_CONFIGS:
        cfg = yaml.safe_load(shipped_config(name).read_text())
        assert cfg["path"] == Path(name).stem
    coco8 = yaml.safe_load(shipped_config("coco8.yaml").read_text())
    assert (coco8["train"], coco8["val"]) == ("images/train", "images/val")
    for name in ("coco8.yaml", "coco.yaml"):
        names = yaml.safe_load(shipped_config(name).read_text())["names"]
        assert list(names.values()) == list(COCO80_NAMES) and list(names) == list(range(80))
    assert COCO80_TO_91[:12] == (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13) and COCO80_TO_91[-1] == 90
    assert len(set(COCO80_TO_91)) == len(COCO80_NAMES) == 80


@pytest.mark.parametrize("data", ["coco8.yaml", "coco8"])
def test_missing_coco8_says_what_to_place_where(tmp_path, data):
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset(data, datasets_root=tmp_path)
    msg = str(e.value)
    assert f"{tmp_path}/coco8/images/val/*.jpg" in msg and f"{tmp_path}/coco8/labels/val/*.txt" in msg
    assert "https://github.com/ultralytics/assets/releases/download/v0.0.0/coco8.zip" in msg
    assert f"unzip coco8.zip -d {tmp_path}" in msg and "NAS_DATASETS_DIR" in msg and "data=synthetic" in msg


def test_missing_coco_says_what_to_place_where(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_DATASETS_DIR", str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("coco.yaml")
    msg = str(e.value)
    assert f"{tmp_path}/coco/images/val2017/*.jpg" in msg
    assert "http://images.cocodataset.org/zips/val2017.zip" in msg
    assert "coco2017labels.zip" in msg and "instances_val2017.json" in msg and "data=synthetic" in msg
    with pytest.raises(DatasetNotFoundError, match=r"train2017\.zip"):
        load_dataset("coco.yaml", "train")


def _fake_coco8(root: Path) -> None:
    for split, stems in (("train", ["000000000009"]), ("val", ["000000000036", "000000000042"])):
        for s in stems:
            write_image(root / "coco8" / "images" / split / f"{s}.jpg", 64, 48)
            (root / "coco8" / "labels" / split).mkdir(parents=True, exist_ok=True)
            (root / "coco8" / "labels" / split / f"{s}.txt").write_text("0 0.5 0.5 0.5 0.5\n16 0.2 0.2 0.1 0.1\n")


def test_coco8_in_place_loads_with_coco_ids(tmp_path):
    _fake_coco8(tmp_path)
    ds = load_dataset("coco8.yaml", datasets_root=tmp_path)
    assert ds.name == "coco8" and [r.id for r in ds.images] == [36, 42]
    assert ds.names[16] == "dog" and ds.category_ids[16] == 18
    assert sorted(ds.coco_gt().getCatIds()) == list(COCO80_TO_91)
    assert len(load_dataset("coco8", "train", datasets_root=tmp_path)) == 1


def test_coco_yaml_prefers_the_official_json(tmp_path):
    coco = tmp_path / "coco"
    write_image(coco / "images" / "val2017" / "000000000139.jpg", 64, 48)
    (coco / "labels" / "val2017").mkdir(parents=True)
    (coco / "labels" / "val2017" / "000000000139.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (coco / "val2017.txt").write_text("./images/val2017/000000000139.jpg\n")
    with pytest.warns(DataWarning, match="instances_val2017.json is absent"):
        from_txt = load_dataset("coco.yaml", datasets_root=tmp_path)
    assert from_txt.num_objects == 1
    cats = [{"id": i, "name": n} for i, n in zip(COCO80_TO_91, COCO80_NAMES)]
    anns = [
        {"id": 5, "image_id": 139, "category_id": 1, "bbox": [16, 12, 32, 24], "area": 500.0, "iscrowd": 0},
        {"id": 6, "image_id": 139, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 80.0, "iscrowd": 1},
    ]
    images = [{"id": 139, "file_name": "000000000139.jpg", "width": 64, "height": 48}]
    write_json(
        coco / "annotations" / "instances_val2017.json", {"images": images, "annotations": anns, "categories": cats}
    )
    ds = load_dataset("coco.yaml", datasets_root=tmp_path)
    assert ds.num_objects == 2 and ds.annotations(0)["iscrowd"].tolist() == [False, True]
    assert ds.annotations(0)["area"].tolist() == [500.0, 80.0]  # mask areas, as the official protocol uses


def test_paths_to_files(tmp_path):
    write_image(tmp_path / "imgs" / "x.jpg", 32, 32)
    images = [{"id": 1, "file_name": "x.jpg", "width": 32, "height": 32}]
    cats = [{"id": 1, "name": "a"}]
    j = write_json(tmp_path / "ann.json", {"images": images, "annotations": [], "categories": cats})
    assert len(load_dataset(j, images_dir=tmp_path / "imgs")) == 1
    assert len(load_dataset(str(j), images_dir=str(tmp_path / "imgs"))) == 1
    (tmp_path / "imgs" / "labels").mkdir()
    y = tmp_path / "d.yaml"
    y.write_text(f"path: {tmp_path}\nval: imgs\nnames: [a]\n")
    assert len(load_dataset(y)) == 1
    with pytest.raises(DataError, match="images_dir applies to a COCO JSON"):
        load_dataset(y, images_dir=tmp_path)
    (tmp_path / "d.txt").write_text("")
    with pytest.raises(DataError, match="expected an ultralytics data YAML"):
        load_dataset(tmp_path / "d.txt")


def test_unknown_names_list_the_choices(tmp_path):
    with pytest.raises(DataError, match=r"unknown dataset 'cocoa'.*synthetic.yaml, coco8.yaml, coco.yaml"):
        load_dataset("cocoa", datasets_root=tmp_path)
    with pytest.raises(DataError, match=r"data YAML 'mine\.yaml' does not exist"):
        load_dataset("mine.yaml", datasets_root=tmp_path)
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset(str(tmp_path / "nope" / "d.yaml"))
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset(str(tmp_path / "nope.json"))
    with pytest.raises(DataError, match="'train' and 'val', not 'test'"):
        load_dataset("synthetic", "test", datasets_root=tmp_path)


def test_a_dataset_passes_through(tmp_path):
    write_image(tmp_path / "images" / "x.jpg", 8, 8)
    images = [{"id": 1, "file_name": "x.jpg", "width": 8, "height": 8}]
    j = write_json(tmp_path / "a.json", {"images": images, "annotations": [], "categories": [{"id": 1, "name": "a"}]})
    ds = load_dataset(j)
    assert load_dataset(ds) is ds
    assert json.loads(json.dumps(ds.coco_dict()))["categories"] == [{"id": 1, "name": "a"}]
