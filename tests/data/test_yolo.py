from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nas.data.dataset import DataWarning, image_size
from nas.data.names import COCO80_NAMES, COCO80_TO_91
from nas.data.yolo import image_files, label_path, load_yolo_yaml, resolve_root
from nas.errors import DataError, DatasetNotFoundError

from .conftest import write_image


def _load(path: Path, split: str = "val", root: Path | None = None):
    return load_yolo_yaml(path, split, datasets_root=root or path.parent / "no-datasets-root")


def test_normalized_rows_become_pixel_boxes(yolo_layout):
    y = yolo_layout({"a": "1 0.5 0.5 0.2 0.4\n0 0.1 0.1 0.2 0.2\n", "b": "2 0.5 0.5 1 1\n"})
    ds = _load(y)
    assert ds.name == "data" and ds.names == {0: "cat", 1: "dog", 2: "bird"} and ds.category_ids == [1, 2, 3]
    assert [r.path.name for r in ds.images] == ["a.jpg", "b.jpg", "c.jpg"]
    assert [r.id for r in ds.images] == [1, 2, 3]  # stems are not numbers
    rec, boxes, classes = ds[0]
    assert (rec.width, rec.height) == (200, 100)
    np.testing.assert_allclose(boxes, [[80, 30, 120, 70], [0, 0, 40, 20]], atol=1e-4)
    np.testing.assert_array_equal(classes, [1, 0])
    np.testing.assert_allclose(ds[1][1], [[0, 0, 64, 64]], atol=1e-4)
    assert ds.stats == {"images_without_objects": 1}  # c.jpg has no label file: a background image
    gt = ds.coco_gt()
    assert len(gt.getAnnIds()) == 3 and gt.loadAnns(1)[0]["area"] == pytest.approx(40 * 40)


def test_names_as_dict_and_coco_names_map_to_coco_category_ids(yolo_layout, tmp_path):
    names = "\n".join(f"  {k}: {n}" for k, n in enumerate(COCO80_NAMES))
    y = yolo_layout({"a": "79 0.5 0.5 0.1 0.1\n"}, f"path: ds\nval: images/val\nnames:\n{names}\n")
    ds = _load(y)
    assert ds.category_ids == list(COCO80_TO_91) and ds.category_ids[79] == 90
    assert ds.coco_gt().loadAnns(1)[0]["category_id"] == 90


def test_numeric_stems_are_image_ids(tmp_path):
    for stem in ("000000000139", "000000000285"):
        write_image(tmp_path / "images" / "val" / f"{stem}.jpg", 32, 32)
    y = tmp_path / "d.yaml"
    y.write_text("val: images/val\nnames: [a]\n")
    assert [r.id for r in _load(y).images] == [139, 285]


def test_label_path_replaces_the_last_images_folder():
    p = Path(os.sep, "data", "images", "x", "images", "val", "im.1.jpg")
    assert label_path(p) == Path(os.sep, "data", "images", "x", "labels", "val", "im.1.txt")


def test_path_resolution(tmp_path):
    yaml_dir = tmp_path / "cfg"
    yaml_dir.mkdir()
    y = yaml_dir / "d.yaml"
    root = tmp_path / "datasets"
    cfg = {"path": "ds"}
    assert resolve_root(cfg, y, root) == yaml_dir / "ds"  # neither exists: the primary rule, for the error
    (root / "ds").mkdir(parents=True)
    assert resolve_root(cfg, y, root) == root / "ds"  # nothing next to the YAML: the datasets root
    (yaml_dir / "ds").mkdir()
    assert resolve_root(cfg, y, root) == yaml_dir / "ds"  # relative to the YAML's folder first
    assert resolve_root(cfg, y, root, shipped=True) == root / "ds"  # shipped configs: the datasets root
    assert resolve_root({}, y, root) == yaml_dir
    assert resolve_root({"path": str(tmp_path / "abs")}, y, root) == tmp_path / "abs"


def test_txt_lists_lists_of_sources_and_recursive_folders(tmp_path):
    root = tmp_path / "ds"
    write_image(root / "images" / "v1" / "a.jpg", 16, 16)
    write_image(root / "images" / "v2" / "sub" / "b.png", 16, 16)
    (root / "images" / "v2" / "notes.md").write_text("not an image")
    (root / "val.txt").write_text("./images/v1/a.jpg\n\nimages/v2/sub/b.png\n")
    assert [p.name for p in image_files(root / "images" / "v2")] == ["b.png"]
    y = tmp_path / "d.yaml"
    y.write_text("path: ds\nval: val.txt\ntrain: [images/v1, images/v2]\nnames: {0: a}\n")
    assert [r.path.name for r in _load(y).images] == ["a.jpg", "b.png"]
    assert [r.path.name for r in _load(y, "train").images] == ["a.jpg", "b.png"]


def test_bad_rows_are_skipped_counted_and_warned(yolo_layout):
    rows = [
        "0 0.5 0.5 0.2 0.2",  # good
        "0 0.5 0.5 0.2 0.2",  # duplicate
        "1 0.5 0.5",  # too few columns
        "1 0.5 0.5 0.2 x",  # not a number
        "3 0.5 0.5 0.2 0.2",  # class out of range
        "-1 0.5 0.5 0.2 0.2",  # negative class
        "1.5 0.5 0.5 0.2 0.2",  # non-integer class
        "1 0.5 0.5 0 0.2",  # zero width
        "1 1.5 1.5 0.2 0.2",  # fully outside
        "2 0.95 0.5 0.3 0.2",  # partly outside: clipped
        "2 0.1 0.1 0.3 0.1 0.3 0.3 0.1 0.3",  # 9 numbers among box rows: two rows glued (no newline)
        "1 nan 0.5 0.2 0.2",  # non-finite
    ]
    polygon = "2 0.1 0.1 0.3 0.1 0.3 0.3 0.1 0.3\n"  # in a file of polygons: its bounding box
    y = yolo_layout({"a": "\n".join(rows) + "\n", "b": polygon})
    with pytest.warns(DataWarning) as record:
        ds = _load(y)
    assert ds.stats == {
        "duplicate_row": 1,
        "malformed_row": 3,
        "unknown_category": 3,
        "degenerate_box": 1,
        "outside_image": 1,
        "clipped_box": 1,
        "nonfinite_box": 1,
        "images_without_objects": 1,
    }
    messages = [str(w.message) for w in record]
    assert len(messages) == 7 and all(str(y) in m for m in messages)
    assert any("a.txt:3: '1 0.5 0.5'" in m for m in messages)  # file, line and row of the first one
    _, boxes, classes = ds[0]
    np.testing.assert_array_equal(classes, [0, 2])
    np.testing.assert_allclose(boxes, [[80, 40, 120, 60], [160, 40, 200, 60]], atol=1e-4)
    np.testing.assert_allclose(ds[1][1], [[6.4, 6.4, 19.2, 19.2]], atol=1e-4)


def test_two_rows_glued_by_a_lost_newline_are_skipped_not_read_as_a_polygon(yolo_layout):
    glued = "0 0.5 0.5 0.2 0.21 0.3 0.3 0.1 0.1"  # '0 .. 0.2' + '1 0.3 0.3 0.1 0.1' without the newline
    y = yolo_layout({"a": f"1 0.2 0.2 0.1 0.1\n{glued}\n"})
    with pytest.warns(DataWarning, match=r"a\.txt:2: .*newline is missing"):
        ds = _load(y)
    assert ds.stats["malformed_row"] == 1 and ds[0][2].tolist() == [1]


def test_unreadable_and_missing_images(yolo_layout, tmp_path):
    y = yolo_layout({})
    (tmp_path / "ds" / "images" / "val" / "b.jpg").write_bytes(b"not a jpeg")
    with pytest.warns(DataWarning, match=r"\[unreadable_image\].*b.jpg"):
        ds = _load(y)
    assert len(ds) == 2 and ds.stats["unreadable_image"] == 1
    (tmp_path / "ds" / "val.txt").write_text("./images/val/a.jpg\n./images/val/gone.jpg\n")
    y.write_text("path: ds\nval: val.txt\nnames: [cat]\n")
    with pytest.warns(DataWarning, match=r"\[missing_image\].*gone.jpg"):
        assert len(_load(y)) == 1


def test_missing_images_folder_says_what_to_place_where(yolo_layout, tmp_path):
    y = yolo_layout({})
    y.write_text("path: ds\nval: images/test\nnames: [cat]\n")
    with pytest.raises(DatasetNotFoundError) as e:
        _load(y)
    msg = str(e.value)
    assert str(y) in msg and str(tmp_path / "ds" / "images" / "test") in msg
    assert "labels/val/*.txt" in msg and "data=synthetic" in msg


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("val: [unclosed\n", "malformed YAML"),
        ("- a\n- b\n", "expected a mapping"),
        ("val: images/val\n", "'names'"),
        ("val: images/val\nnames: {0: a, 2: b}\n", r"0\.\.1"),
        ("val: images/val\nnc: 3\nnames: [a, b]\n", "'nc' is 3"),
        ("names: [a]\n", "no split"),
        ("val: 3\nnames: [a]\n", "'val' must be a path"),
        ("val: images/val\nnames: [a]\nannotations: [x.json]\n", "'annotations' must map a split"),
    ],
)
def test_malformed_yaml_raises_naming_the_file(tmp_path, text, match):
    y = tmp_path / "d.yaml"
    y.write_text(text)
    with pytest.raises(DataError, match=match) as e:
        _load(y)
    assert str(y) in str(e.value)


def test_unknown_split_lists_the_defined_ones(yolo_layout):
    with pytest.raises(DataError, match=r"no split 'test'; this data YAML defines \['train', 'val'\]"):
        _load(yolo_layout({}), "test")


def test_image_size_follows_exif_rotation(tmp_path):
    im = Image.new("RGB", (60, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: cv2.imread returns a 20 x 60 (w x h) image
    im.save(tmp_path / "r.jpg", exif=exif)
    im.save(tmp_path / "n.jpg")
    assert image_size(tmp_path / "r.jpg") == (20, 60)
    assert image_size(tmp_path / "n.jpg") == (60, 20)


def test_a_jpeg_truncated_after_its_header_is_skipped_at_load(yolo_layout, tmp_path):
    from tests.data.test_images import photo, truncate_after_header

    y = yolo_layout({"a": "0 0.5 0.5 0.2 0.2\n", "b": "1 0.5 0.5 0.2 0.2\n"})
    b = truncate_after_header(photo(tmp_path / "ds" / "images" / "val" / "b.jpg", 64, 64))
    assert image_size(b) == (64, 64)  # a valid header
    with pytest.warns(DataWarning, match=r"\[unreadable_image\].*b\.jpg.*not a readable image"):
        ds = _load(y)
    assert [r.path.name for r in ds.images] == ["a.jpg", "c.jpg"] and ds.stats["unreadable_image"] == 1
