"""Validation end to end on the embedded synthetic set, with detectors whose outputs are known exactly."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from nas import NAS
from nas.data import load_dataset
from nas.engine.val import val_batches, validate
from nas.errors import ConfigError, DataError
from nas.metrics import coco_evaluate
from tests.zoo_helpers import GroundTruthModel, tiny_model


@pytest.fixture(scope="module")
def dataset():
    return load_dataset("synthetic", split="val")


def _shifted_ground_truth(dataset, shift_frac: float) -> list[dict]:
    """The detections a perfect-but-shifted detector yields in original pixels (clipped like val clips)."""
    rows = []
    for rec, boxes, classes in dataset:
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
        b[:, [0, 2]] += shift_frac * (b[:, 2] - b[:, 0])[:, None]
        b[:, [0, 2]] = b[:, [0, 2]].clip(0, rec.width)
        b[:, [1, 3]] = b[:, [1, 3]].clip(0, rec.height)
        for (x1, y1, x2, y2), c in zip(b.tolist(), np.asarray(classes).tolist()):
            rows.append(
                {
                    "image_id": rec.id,
                    "category_id": dataset.category_ids[c],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": 1.0,
                }
            )
    return rows


def test_perfect_detector_scores_map_1(dataset, capsys):
    gt_model = GroundTruthModel(dataset, len(dataset.category_ids))
    # iou=1.0: occluding objects of one class may overlap by IoU > 0.7, and NMS must not drop true objects here
    metrics = NAS(gt_model).val(dataset, imgsz=640, batch=8, iou=1.0)
    assert sorted(gt_model.seen) == list(range(len(dataset.images)))  # every image seen once, recognised
    assert metrics["mAP50_95"] == pytest.approx(1.0, abs=1e-9)
    assert metrics["mAP50"] == pytest.approx(1.0) and metrics["mAP75"] == pytest.approx(1.0)
    assert all(v == pytest.approx(1.0) for v in metrics["per_class"].values())
    assert metrics["protocol"] == "ultralytics" and metrics["num_images"] == len(dataset.images)
    assert metrics["precision"] == pytest.approx(1.0) and metrics["recall"] == pytest.approx(1.0)
    assert metrics["letterbox"] == "rect" and metrics["scale"] == "fraction"
    out = capsys.readouterr().out
    assert "mAP50-95" in out and dataset.names[0] in out
    assert "ultralytics, rect letterbox at imgsz 640" in out and "as fractions (0-1)" in out
    header = next(line for line in out.splitlines() if line.lstrip().startswith("class"))
    assert header.split() == ["class", "images", "instances", "P", "R", "mAP50-95", "mAP50", "mAP75"]


def test_perfect_detector_scores_map_1_with_sg_protocol(dataset):
    # super-gradients maps boxes with one float scale although its resize rounds each side: a detector that
    # is perfect under that convention scores 1.0 (a pixel-perfect one loses a little on tiny objects)
    metrics = NAS(GroundTruthModel(dataset, len(dataset.category_ids), uniform_scale=True)).val(
        dataset, imgsz=320, batch=4, iou=1.0, protocol="sg", verbose=False
    )
    assert metrics["mAP50_95"] == pytest.approx(1.0, abs=1e-9) and metrics["protocol"] == "sg"


def test_shifted_boxes_lose_exactly_what_pycocotools_says(dataset, tmp_path):
    shift = 0.15  # IoU of a shifted box with its object: 0.85 / 1.15 = 0.74 (before clipping)
    model = GroundTruthModel(dataset, len(dataset.category_ids), shift_frac=shift)
    metrics = validate(model.eval(), dataset, imgsz=320, batch=3, iou=1.0, verbose=False, save_dir=tmp_path)
    expected = coco_evaluate(dataset, _shifted_ground_truth(dataset, shift))
    assert 0.2 < expected["mAP50_95"] < 0.9
    for key in ("mAP50_95", "mAP50", "mAP75"):
        assert metrics[key] == pytest.approx(expected[key], abs=2e-3), key
    assert json.loads((tmp_path / "metrics.json").read_text())["mAP50_95"] == metrics["mAP50_95"]
    detections = json.loads((tmp_path / "predictions.json").read_text())
    assert len(detections) == metrics["num_detections"] and set(detections[0]) == {
        "image_id",
        "category_id",
        "bbox",
        "score",
    }


def test_rect_batching_does_not_change_the_metric(dataset):
    model = GroundTruthModel(dataset, len(dataset.category_ids), shift_frac=0.1)
    one = validate(model.eval(), dataset, imgsz=320, batch=1, iou=1.0, verbose=False)
    many = validate(model.eval(), dataset, imgsz=320, batch=16, iou=1.0, verbose=False)
    assert one["mAP50_95"] == pytest.approx(many["mAP50_95"], abs=1e-3)


def test_val_batches_cover_the_images_once_and_stop_at_the_limit(dataset):
    seen = [i for indices, x, geoms in val_batches(dataset, 64, 3, rect=False) for i in indices]
    assert sorted(seen) == list(range(len(dataset.images)))
    limited = list(val_batches(dataset, 64, 3, rect=False, limit=7))
    assert [len(ix) for ix, _, _ in limited] == [3, 3, 1]
    assert all(x.shape == (len(ix), 3, 64, 64) and len(g) == len(ix) for ix, x, g in limited)


def test_real_network_runs_through_val(dataset):
    metrics = NAS(tiny_model(len(dataset.category_ids))).val(dataset, imgsz=64, batch=32, max_det=30, verbose=False)
    assert 0.0 <= metrics["mAP50_95"] < 0.05 and metrics["num_detections"] > 0  # random weights: near zero
    assert metrics["speed_ms"]["inference"] > 0


def test_val_rejects_mismatched_classes_and_bad_records(dataset, tmp_path):
    with pytest.raises(ConfigError, match="80 classes but the dataset has"):
        NAS(tiny_model(80)).val(dataset, imgsz=128, verbose=False)
    with pytest.raises(ConfigError, match="CUDA"):
        NAS(tiny_model(len(dataset.category_ids))).val(dataset, half=True, verbose=False)
    with pytest.raises(ConfigError, match="protocol"):
        NAS(tiny_model(len(dataset.category_ids))).val(dataset, protocol="coco", verbose=False)
    rec = dataset.images[0]
    wrong = SimpleNamespace(
        images=[SimpleNamespace(id=rec.id, path=rec.path, width=rec.width + 1, height=rec.height)],
        category_ids=dataset.category_ids,
        names=dataset.names,
    )
    with pytest.raises(DataError, match="width/height"):
        validate(tiny_model(len(dataset.category_ids)), wrong, imgsz=128, verbose=False)


def test_an_image_damaged_after_loading_is_left_out_of_val_with_a_warning(dataset, tmp_path):
    import dataclasses
    import shutil

    from nas.data import DataWarning
    from tests.data.test_images import truncate_after_header

    small = dataset.subset(list(range(6)))
    small.images = [dataclasses.replace(r, path=Path(shutil.copy(r.path, tmp_path))) for r in small.images]
    gt_model = GroundTruthModel(small, len(small.category_ids))
    truncate_after_header(small.images[2].path)  # checked at load, damaged afterwards (mid-training, say)
    with pytest.warns(DataWarning, match=r"1 of 6 images no longer decode.*left out"):
        metrics = validate(gt_model, small, imgsz=320, batch=4, iou=1.0, verbose=False)
    assert metrics["num_images"] == 5 and len(metrics["skipped_images"]) == 1
    assert metrics["mAP50_95"] == pytest.approx(1.0, abs=1e-9)  # its objects are not counted as missed
