from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nas.data.dataset import REASONS, DetectionDataset, ImageRecord, SkipLog


def _ds(**kw) -> DetectionDataset:
    args = dict(
        name="t",
        split="val",
        source=Path("t.json"),
        names={0: "a", 1: "b"},
        category_ids=[5, 9],
        images=[ImageRecord(1, Path("x.jpg"), 100, 50), ImageRecord(7, Path("y.jpg"), 20, 20)],
        boxes_xywh=[np.array([[10, 10, 20, 5], [90, 40, 20, 20]]), np.zeros((0, 4))],
        classes=[np.array([1, 0]), np.zeros(0)],
    )
    return DetectionDataset(**{**args, **kw})


def test_items_are_xyxy_float32_clipped_and_int64():
    ds = _ds()
    assert len(ds) == 2 and ds.num_objects == 2
    rec, boxes, classes = ds[0]
    assert rec == ImageRecord(1, Path("x.jpg"), 100, 50)
    assert boxes.dtype == np.float32 and boxes.shape == (2, 4) and classes.dtype == np.int64
    np.testing.assert_array_equal(boxes, [[10, 10, 30, 15], [90, 40, 100, 50]])
    _, boxes, classes = ds[1]
    assert boxes.shape == (0, 4) and classes.shape == (0,)
    assert [r.id for r, _, _ in ds] == [1, 7]
    assert "images=2" in repr(ds)


def test_coco_dict_uses_category_ids_and_ids_from_one():
    d = _ds().coco_dict()
    assert [a["id"] for a in d["annotations"]] == [1, 2]
    assert [a["category_id"] for a in d["annotations"]] == [9, 5]
    assert d["annotations"][0]["area"] == 100.0
    assert d["categories"] == [{"id": 5, "name": "a"}, {"id": 9, "name": "b"}]


def test_inconsistent_construction_is_refused():
    with pytest.raises(ValueError, match="names must map"):
        _ds(names={0: "a", 2: "b"})
    with pytest.raises(ValueError, match="unique"):
        _ds(category_ids=[5, 5])
    with pytest.raises(ValueError, match="one entry per image"):
        _ds(classes=[np.array([1, 0])])


def test_skip_log_counts_and_refuses_unknown_reasons():
    log = SkipLog("f.json")
    log.add("degenerate_box", "first", "fix it")
    log.add("degenerate_box", "second", "fix it")
    log.note("images_without_objects", 0)
    assert log.counts == {"degenerate_box": 2}
    with pytest.warns(UserWarning, match=r"f.json: 2 boxes with zero .* \[degenerate_box\]; first: first; fix: fix it"):
        log.emit()
    with pytest.raises(KeyError):
        log.add("typo", "", "")
    assert all(isinstance(v, str) for v in REASONS.values())
