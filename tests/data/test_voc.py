"""Pascal VOC XML folders: boxes, classes, difficult objects, skips, and load_dataset / pycocotools on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nas.data import load_dataset
from nas.data.dataset import DataWarning
from nas.data.voc import VOC_NAMES, load_voc
from nas.errors import DataError
from nas.metrics import coco_evaluate, ground_truth_detections

from .conftest import write_image


def _xml(filename: str, size: tuple[int, int] | None, objects: list[tuple[str, int, int, int, int, int]]) -> str:
    """A VOC annotation as the VOC devkit writes it; objects are (name, xmin, ymin, xmax, ymax, difficult)."""
    parts = [f"<annotation><folder>VOC2012</folder><filename>{filename}</filename>"]
    if size is not None:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>")
    for name, x0, y0, x1, y1, difficult in objects:
        parts.append(
            f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        )
    return "".join(parts) + "</annotation>\n"


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    root = tmp_path / "VOC2012"
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    images = {"2008_000001": (120, 80), "2008_000002": (64, 64), "2008_000003": (50, 40), "2008_000004": (40, 40)}
    for stem, (w, h) in images.items():
        write_image(root / "JPEGImages" / f"{stem}.jpg", w, h)
    ann = root / "Annotations"
    ann.joinpath("2008_000001.xml").write_text(
        _xml("2008_000001.jpg", (120, 80), [("dog", 11, 21, 60, 70, 0), ("person", 1, 1, 120, 80, 1)])
    )
    ann.joinpath("2008_000002.xml").write_text(_xml("2008_000002.jpg", None, [("cat", 5, 5, 20, 30, 0)]))
    ann.joinpath("2008_000003.xml").write_text("<annotation><filename>2008_000003.jpg</filename><size>")  # cut
    ann.joinpath("2008_000004.xml").write_text(_xml("2008_000004.jpg", (40, 40), [("unicorn", 1, 1, 10, 10, 0)]))
    (root / "ImageSets" / "Main" / "val.txt").write_text("2008_000001\n2008_000002\n2008_000003\n2008_000004\n")
    (root / "ImageSets" / "Main" / "train.txt").write_text("2008_000002\n")
    return root


def test_voc_boxes_classes_and_difficult_objects(voc):
    with pytest.warns(DataWarning) as caught:
        ds = load_dataset(voc, "val")  # a VOC folder is recognised by load_dataset
    reasons = {m[m.index("[") + 1 : m.index("]")] for m in (str(w.message) for w in caught)}
    assert reasons == {"malformed_annotation", "size_from_file"}
    assert any("2008_000003.xml" in str(w.message) for w in caught)  # the file is named
    assert ds.stats["malformed_annotation"] == 1
    # 'unicorn' is not a VOC class: the classes are the names found, sorted
    assert list(ds.names.values()) == ["cat", "dog", "person", "unicorn"] and ds.category_ids == [1, 2, 3, 4]
    assert [r.path.name for r in ds.images] == ["2008_000001.jpg", "2008_000002.jpg", "2008_000004.jpg"]
    assert [r.id for r in ds.images] == [1, 2, 4]
    rec, boxes, classes = ds[0]  # the difficult person is a crowd region: not a training target
    assert (rec.width, rec.height) == (120, 80)
    np.testing.assert_allclose(boxes, [[10, 20, 59, 69]])  # VOC corners minus 1 (ultralytics' VOC conversion)
    assert classes.tolist() == [1]
    assert ds.annotations(0)["iscrowd"].tolist() == [False, True]
    assert ds[2][2].tolist() == [3]  # unicorn
    assert (ds.images[1].width, ds.images[1].height) == (64, 64)  # no <size>: read from the file
    r = coco_evaluate(ds, ground_truth_detections(ds))
    assert r["mAP50_95"] == pytest.approx(1.0)


def test_voc_names_are_the_twenty_in_order_when_all_are_voc_classes(voc):
    (voc / "Annotations" / "2008_000004.xml").write_text(_xml("2008_000004.jpg", (40, 40), [("sofa", 1, 1, 9, 9, 0)]))
    ds = load_voc(voc, "train")
    assert tuple(ds.names.values()) == VOC_NAMES and ds.category_ids == list(range(1, 21))
    assert ds[0][2].tolist() == [VOC_NAMES.index("cat")]


def test_voc_unknown_split_names_the_listing(voc):
    with pytest.raises(DataError, match=r"no split 'test'.*ImageSets/Main/test.txt is missing.*\['train', 'val'\]"):
        load_voc(voc, "test")
