from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from nas.data.coco import image_dir_candidates, load_coco_json
from nas.data.dataset import DataWarning
from nas.errors import DataError, DatasetNotFoundError


def _ann(i, image_id=1, cat=1, bbox=(10, 10, 20, 10), **kw):
    return {"id": i, "image_id": image_id, "category_id": cat, "bbox": list(bbox), "area": 150.0, "iscrowd": 0, **kw}


def test_loads_images_classes_and_boxes(coco_layout):
    path = coco_layout([_ann(1, 1, 3, (10, 5, 20, 10)), _ann(2, 2, 7, (0, 0, 80, 80)), _ann(3, 2, 1, (1, 2, 3, 4))])
    ds = load_coco_json(path)
    assert len(ds) == 3 and ds.name == "instances_val2017" and ds.split == "val"
    # Contiguous classes follow the order of the category ids (COCO's 80-class order), not the file order.
    assert ds.names == {0: "person", 1: "car", 2: "train"} and ds.category_ids == [1, 3, 7]
    rec, boxes, classes = ds[0]
    assert (rec.id, rec.width, rec.height, rec.path.name) == (1, 64, 48, "000000000001.jpg")
    assert boxes.dtype == np.float32 and classes.dtype == np.int64
    np.testing.assert_array_equal(boxes, [[10, 5, 30, 15]])
    np.testing.assert_array_equal(classes, [1])
    _, boxes, classes = ds[1]
    np.testing.assert_array_equal(classes, [2, 0])
    assert ds.stats == {"images_without_objects": 1}
    assert ds.class_counts() == {"person": 1, "car": 1, "train": 1}


def test_ground_truth_keeps_area_crowd_and_exact_boxes(coco_layout):
    crowd = _ann(2, 1, 3, (0, 0, 30, 30), iscrowd=1)
    del crowd["area"]  # a missing area is the box area
    path = coco_layout([_ann(1, 1, 1, (10.25, 5.5, 20.125, 10), area=99.5), crowd])
    ds = load_coco_json(path)
    _, boxes, _ = ds[0]
    assert len(boxes) == 1  # crowd regions are for evaluation only
    gt = ds.coco_gt()
    assert gt is ds.coco_gt()  # cached
    anns = gt.loadAnns(gt.getAnnIds(imgIds=[1]))
    assert [a["bbox"] for a in anns] == [[10.25, 5.5, 20.125, 10.0], [0.0, 0.0, 30.0, 30.0]]
    assert [a["area"] for a in anns] == [99.5, 900.0] and [a["iscrowd"] for a in anns] == [0, 1]
    assert [a["id"] for a in anns] == [1, 2]  # pycocotools reads id 0 as "unmatched"
    assert sorted(gt.getCatIds()) == [1, 3, 7] and sorted(gt.getImgIds()) == [1, 2, 3]


@pytest.mark.parametrize("layout", ["images/val2017", "val2017", "annotations"])
def test_image_folder_is_found_in_the_usual_layouts(coco_layout, layout):
    path = coco_layout([_ann(1)])
    root = path.parent.parent
    target = root / layout
    if layout != "images/val2017":
        shutil.copytree(root / "images" / "val2017", target, dirs_exist_ok=True)
        shutil.rmtree(root / "images")
    ds = load_coco_json(path)
    assert ds.images[0].path.parent == target


def test_explicit_images_dir_and_candidates(coco_layout, tmp_path):
    path = coco_layout([_ann(1)])
    moved = tmp_path / "elsewhere"
    shutil.move(path.parent.parent / "images" / "val2017", moved)
    with pytest.raises(DatasetNotFoundError) as e:
        load_coco_json(path)
    for c in image_dir_candidates(path):
        assert str(c) in str(e.value)
    assert "images_dir=" in str(e.value) and "000000000001.jpg" in str(e.value)
    assert load_coco_json(path, images_dir=moved).images[0].path.parent == moved
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_coco_json(path, images_dir=tmp_path / "nope")


def _warnings_by_reason(record) -> dict[str, str]:
    out = {}
    for w in record:
        assert issubclass(w.category, DataWarning)
        msg = str(w.message)
        reason = msg.split("[", 1)[1].split("]", 1)[0]
        assert reason not in out, "one summary warning per reason"
        out[reason] = msg
    return out


def test_bad_annotations_are_skipped_counted_and_warned_once_per_kind(coco_layout):
    anns = [
        _ann(1, 1, 1, (10, 10, 20, 10)),  # good
        _ann(2, 1, 1, (10, 10, 0, 10)),  # zero width
        _ann(3, 1, 1, (10, 10, 5, -3)),  # negative height
        _ann(4, 1, 1, (100, 100, 10, 10)),  # fully outside the 64x48 image
        _ann(5, 1, 1, (-10, 40, 30, 20)),  # partly outside: clipped
        _ann(6, 1, 1, (0, 0, 64.5, 48.5)),  # within the 1 px tolerance: kept exactly
        _ann(7, 1, 5, (1, 1, 5, 5)),  # unknown category id
        _ann(8, 9, 1, (1, 1, 5, 5)),  # unknown image id
        _ann(9, 1, 1, (1, 1, 5)),  # malformed bbox
        _ann(10, 1, 1, ("1", 1, 5, 5)),  # malformed bbox
        {"id": 11, "image_id": 1},  # malformed record
        _ann(12, 1, 1, (1, 1, math.nan, 5)),  # non-finite
        _ann(13, 2, 1, (1, 1, 5, 5)),  # on a second image
        _ann(14, 1, 1, (100, 100, 10, 10)),  # a second one fully outside: counted, not warned again
    ]
    path = coco_layout(anns)
    with pytest.warns(DataWarning) as record:
        ds = load_coco_json(path)
    assert ds.stats == {
        "degenerate_box": 2,
        "outside_image": 2,
        "clipped_box": 1,
        "unknown_category": 1,
        "unknown_image": 1,
        "malformed_annotation": 3,
        "nonfinite_box": 1,
        "images_without_objects": 1,
    }
    warned = _warnings_by_reason(record)
    assert set(warned) == set(ds.stats) - {"images_without_objects"}
    assert str(path) in warned["outside_image"] and "'id': 4" in warned["outside_image"]
    assert "'id': 7" in warned["unknown_category"] and "(1..7)" in warned["unknown_category"]
    a = ds.annotations(0)
    np.testing.assert_array_equal(a["bbox_xywh"], [[10, 10, 20, 10], [0, 40, 20, 8], [0, 0, 64.5, 48.5]])
    # The clipped box's area shrinks with it (150 * 160 / 600); COCO's area decides the size range.
    np.testing.assert_allclose(a["area"], [150, 40, 150])
    _, boxes, _ = ds[0]
    assert boxes[:, 2].max() <= 64 and boxes[:, 3].max() <= 48  # training boxes are always clipped


def test_missing_image_files_are_skipped_with_their_objects(coco_layout):
    path = coco_layout([_ann(1, 1), _ann(2, 2), _ann(3, 2)])
    (path.parent.parent / "images" / "val2017" / "000000000002.jpg").unlink()
    with pytest.warns(DataWarning, match=r"\[missing_image\].*000000000002.jpg"):
        ds = load_coco_json(path)
    assert [r.id for r in ds.images] == [1, 3]
    assert ds.stats["missing_image"] == 1 and ds.stats["objects_of_skipped_images"] == 2
    assert sorted(ds.coco_gt().getImgIds()) == [1, 3]


def test_image_records_without_size_or_malformed(coco_layout):
    images = [
        {"id": 1, "file_name": "000000000001.jpg"},  # no size: read from the file
        {"id": 2, "file_name": "000000000002.jpg", "width": 80, "height": 80},
        {"id": "3", "file_name": "000000000003.jpg", "width": 40, "height": 60},  # malformed id
    ]
    with pytest.warns(DataWarning) as record:
        ds = load_coco_json(coco_layout([_ann(1)], images=images))
    assert set(_warnings_by_reason(record)) == {"size_from_file", "malformed_image_record"}
    assert (ds.images[0].width, ds.images[0].height) == (64, 48)
    assert len(ds) == 2


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "malformed JSON"),
        ("[1, 2]", "top level"),
        (json.dumps({"images": [], "categories": []}), "'annotations'"),
    ],
)
def test_malformed_files_raise_naming_the_file(coco_layout, text, match):
    path = coco_layout([])
    path.write_text(text)
    with pytest.raises(DataError, match=match) as e:
        load_coco_json(path)
    assert str(path) in str(e.value)


def test_structural_errors_raise(coco_layout, tmp_path):
    with pytest.raises(DataError, match="duplicate category id 1"):
        load_coco_json(coco_layout([], categories=[{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]))
    with pytest.raises(DataError, match=r"categories\[0\]"):
        load_coco_json(coco_layout([], categories=[{"id": "1", "name": "a"}]))
    dup = [{"id": 1, "file_name": "000000000001.jpg", "width": 64, "height": 48}] * 2
    with pytest.raises(DataError, match="duplicate image id 1"):
        load_coco_json(coco_layout([], images=dup))
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_coco_json(tmp_path / "missing.json")


def test_a_jpeg_truncated_after_its_header_is_skipped_with_its_objects(coco_layout):
    from tests.data.test_images import photo, truncate_after_header

    path = coco_layout([_ann(1, 1), _ann(2, 2)])
    truncate_after_header(photo(path.parent.parent / "images" / "val2017" / "000000000002.jpg", 80, 80))
    with pytest.warns(DataWarning, match=r"\[unreadable_image\].*000000000002.jpg"):
        ds = load_coco_json(path)
    assert [r.id for r in ds.images] == [1, 3] and ds.stats["objects_of_skipped_images"] == 1
