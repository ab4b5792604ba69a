from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

import nas.data.synthetic as synthetic
from nas.data import load_dataset
from nas.data.coco import load_coco_json
from nas.data.load import shipped_config
from nas.data.synthetic import CLASSES, SyntheticSpec, ensure_synthetic, format_statistics, statistics
from nas.data.synthetic_render import RenderParams, render_image
from nas.data.yolo import load_yolo_yaml

SMALL = SyntheticSpec(seed=3, n_train=4, n_val=3)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def default_set(tmp_path_factory) -> Path:
    """The default synthetic set, generated once per test session (shared by xdist workers, under a file lock)."""
    shared = os.environ.get("PYTEST_XDIST_WORKER") is not None
    root = tmp_path_factory.getbasetemp().parent / "datasets" if shared else tmp_path_factory.mktemp("datasets")
    return ensure_synthetic(root)


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = _files(ensure_synthetic(tmp_path / "a", SMALL))
    b = _files(ensure_synthetic(tmp_path / "b", SMALL))
    assert a.keys() == b.keys()
    assert {k for k in a if k.startswith("annotations")} == {
        "annotations/instances_train.json",
        "annotations/instances_val.json",
    }
    assert sum(k.startswith("labels/train/") for k in a) == 4 and sum(k.startswith("images/val/") for k in a) == 3
    for k in a:  # annotations, labels, YAML, stamp and (in one environment) the JPEG bytes too
        assert a[k] == b[k], k
    c = _files(ensure_synthetic(tmp_path / "c", SyntheticSpec(seed=4, n_train=4, n_val=3)))
    assert c["annotations/instances_val.json"] != a["annotations/instances_val.json"]


def test_files_do_not_depend_on_the_number_of_workers(tmp_path):
    spec = SyntheticSpec(seed=5, n_train=27, n_val=2)  # more than one chunk of 25 images
    a = _files(ensure_synthetic(tmp_path / "a", spec, workers=1))
    b = _files(ensure_synthetic(tmp_path / "b", spec, workers=2))
    assert len(a) == 2 * 29 + 4 and a == b


def test_both_layouts_agree(tmp_path):
    folder = ensure_synthetic(tmp_path, SMALL)
    for split in ("train", "val"):
        a = load_coco_json(folder / "annotations" / f"instances_{split}.json", split=split)
        b = load_yolo_yaml(folder / "synthetic.yaml", split, datasets_root=tmp_path)
        assert a.names == b.names == dict(enumerate(CLASSES)) and a.category_ids == b.category_ids
        assert a.stats == b.stats
        assert len(a) == len(b) and a.num_objects == b.num_objects > 0
        for (ra, ba, ca), (rb, bb, cb) in zip(a, b):
            assert ra == rb
            np.testing.assert_allclose(ba, bb, atol=1e-4)
            np.testing.assert_array_equal(ca, cb)
        areas_a = np.concatenate([a.annotations(i)["area"] for i in range(len(a))])
        areas_b = np.concatenate([b.annotations(i)["area"] for i in range(len(b))])
        np.testing.assert_allclose(areas_a, areas_b, rtol=1e-6)  # same COCO size range in both layouts


def test_cached_until_the_stamp_changes(tmp_path, monkeypatch):
    folder = ensure_synthetic(tmp_path, SMALL)
    before = (folder / "stamp.json").stat().st_mtime_ns
    assert ensure_synthetic(tmp_path, SMALL) == folder
    assert (folder / "stamp.json").stat().st_mtime_ns == before
    (folder / "marker").write_text("from the old set")
    monkeypatch.setattr(synthetic, "SYNTHETIC_VERSION", synthetic.SYNTHETIC_VERSION + 1)
    assert ensure_synthetic(tmp_path, SMALL) == folder
    assert not (folder / "marker").exists()
    assert json.loads((folder / "stamp.json").read_text())["version"] == synthetic.SYNTHETIC_VERSION
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".synthetic") and p.is_dir()] == []


def test_a_killed_generation_leaves_no_half_set(tmp_path, monkeypatch):
    def die(out, *args):
        (out / "images").mkdir(exist_ok=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "_write_split", die)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic(tmp_path, SMALL)
    assert not (tmp_path / SMALL.dirname()).exists()
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == []
    # A temp folder left by a process killed harder (SIGKILL) is removed by the next generation.
    (tmp_path / f".{SMALL.dirname()}.tmp-999-deadbeef").mkdir()
    monkeypatch.undo()
    folder = ensure_synthetic(tmp_path, SMALL)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [folder.name]


def test_spec_folders():
    assert SyntheticSpec().dirname() == "synthetic"
    assert SMALL.dirname().startswith("synthetic-") and SMALL.dirname() != SyntheticSpec(seed=4).dirname()


def test_render_contract():
    params = RenderParams()
    for i in range(20):
        img, boxes, classes, visible = render_image(np.random.default_rng([7, i]), params)
        h, w = img.shape[:2]
        assert img.dtype == np.uint8 and img.shape[2] == 3
        assert params.side_px[0] <= min(h, w) and max(h, w) <= params.side_px[1]
        assert 1 <= len(boxes) == len(classes) == len(visible) <= params.objects_max
        for x, y, bw, bh in boxes:
            assert x >= 0 and y >= 0 and bw >= 1 and bh >= 1 and x + bw <= w and y + bh <= h
        assert all(0 <= c < len(CLASSES) for c in classes)
        assert all(params.min_visible <= v <= 1 for v in visible)


def test_default_set_statistics(default_set):
    """The design targets of docs/data.md: sizes, class balance, COCO-like size ranges, occlusion."""
    stats = statistics(default_set)
    val, train = stats["val"], stats["train"]
    assert (train["images"], val["images"]) == (400, 100)
    assert 6 <= val["objects_per_image"]["mean"] <= 8 and 6 <= train["objects_per_image"]["mean"] <= 8
    assert min(val["per_class"].values()) >= 60 and min(train["per_class"].values()) >= 250
    for s in (train, val):
        assert s["width_px"][0] >= 256 and s["height_px"][1] <= 416 and s["square_images"] < 0.05 * s["images"]
        small, medium, large = s["size_fraction"].values()
        assert 0.3 <= small <= 0.5 and 0.3 <= medium <= 0.5 and 0.1 <= large <= 0.3
        assert 0.15 <= s["occluded_or_truncated (visibility<0.9)"] <= 0.45
    table = format_statistics(stats)
    assert "| class `circle` |" in table and "| images | 400 | 100 |" in table


def test_load_dataset_synthetic_in_both_layouts(default_set):
    root = default_set.parent
    a = load_dataset("synthetic", datasets_root=root)
    b = load_dataset("synthetic.yaml", datasets_root=root)
    assert a.name == b.name == "synthetic" and len(a) == len(b) == 100
    assert a.names == b.names and a.num_objects == b.num_objects
    assert len(load_dataset("synthetic", "train", datasets_root=root)) == 400
    sizes = {(r.width, r.height) for r in a.images}
    assert len(sizes) > 50 and any(w != h for w, h in sizes)  # varied, mostly rectangular


def test_shipped_synthetic_yaml_matches_the_generated_one(default_set):
    shipped = yaml.safe_load(shipped_config("synthetic.yaml").read_text())
    written = yaml.safe_load((default_set / "synthetic.yaml").read_text())
    assert shipped.pop("path") == "synthetic" and written.pop("path") == "."
    assert shipped == written and list(written["names"].values()) == list(CLASSES)


def test_main_prints_statistics(default_set, capsys):
    assert synthetic.main([os.fspath(default_set.parent)]) == 0
    out = capsys.readouterr().out
    assert str(default_set) in out and "| objects |" in out
