"""pycocotools evaluation: expected values derived independently (IoU arithmetic, the 101-point AP definition)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest

from nas.data.dataset import DetectionDataset, ImageRecord
from nas.metrics import STAT_NAMES, coco_evaluate, ground_truth_detections, to_coco_detections

IOU_THRESHOLDS = [0.5 + 0.05 * i for i in range(10)]
EPS = 1e-12  # pycocotools' precision is tp / (tp + fp + np.spacing(1)): a perfect AP is 1 - 2e-16


def approx(v):
    return pytest.approx(v, abs=EPS)


def _dataset(boxes_per_image: list[list[tuple[float, float, float, float, int]]], size=(640, 480)) -> DetectionDataset:
    """Images of `size` with objects (x, y, w, h, class) of two classes, category ids 3 and 8."""
    return DetectionDataset(
        name="t",
        split="val",
        source=Path("t.json"),
        names={0: "cat", 1: "dog"},
        category_ids=[3, 8],
        images=[ImageRecord(i + 1, Path(f"{i}.jpg"), *size) for i in range(len(boxes_per_image))],
        boxes_xywh=[np.array([b[:4] for b in objs], dtype=float).reshape(-1, 4) for objs in boxes_per_image],
        classes=[np.array([b[4] for b in objs], dtype=np.int64) for objs in boxes_per_image],
    )


def _det(image_id, x, y, w, h, score=0.9, cat=3):
    return {"image_id": image_id, "category_id": cat, "bbox": [x, y, w, h], "score": score}


def test_ground_truth_as_detections_scores_one():
    ds = _dataset([[(10, 10, 100, 100, 0), (300, 200, 20, 10, 1)], [(5, 5, 50, 60, 1)], []])
    r = coco_evaluate(ds, ground_truth_detections(ds))
    assert (r["mAP50_95"], r["mAP50"], r["mAP75"]) == approx((1.0, 1.0, 1.0))
    assert r["per_class"] == approx({"cat": 1.0, "dog": 1.0}) and r["num_detections"] == 3
    assert (r["mAP_small"], r["mAP_medium"], r["mAP_large"]) == approx((1.0, 1.0, 1.0))


@pytest.mark.parametrize("dx", [0, 3, 9, 16, 23, 30, 45, 70])
def test_shifted_box_loses_exactly_the_thresholds_its_iou_misses(dx):
    # One 100x100 object, one detection shifted right by dx: IoU = (100 - dx) / (100 + dx). With one object and
    # one detection, AP at a threshold is 1 if IoU >= threshold, else 0; mAP50-95 is the mean over the ten.
    ds = _dataset([[(50, 50, 100, 100, 0)]])
    iou = (100 - dx) / (100 + dx)
    assert all(abs(iou - t) > 1e-6 for t in IOU_THRESHOLDS)  # no tie with a threshold
    expected = sum(iou >= t for t in IOU_THRESHOLDS) / 10
    r = coco_evaluate(ds, [_det(1, 50 + dx, 50, 100, 100)])
    assert r["mAP50_95"] == approx(expected)
    assert r["mAP50"] == approx(float(iou >= 0.5)) and r["mAP75"] == approx(float(iou >= 0.75))
    assert r["mAP_large"] == approx(expected) and r["mAP_small"] == r["mAP_medium"] == -1.0


def test_shift_by_16_px_is_half():
    # IoU = 84 / 116 = 0.724: matched at 0.50, 0.55, 0.60, 0.65, 0.70 and missed at 0.75 ... 0.95.
    r = coco_evaluate(_dataset([[(50, 50, 100, 100, 0)]]), [_det(1, 66, 50, 100, 100)])
    assert (r["mAP50_95"], r["mAP50"], r["mAP75"]) == approx((0.5, 1.0, 0.0))


def test_false_positive_ranked_first_halves_precision():
    # Ranked FP then TP: precision 0 at recall 0, then 0.5 at recall 1; the interpolated envelope is 0.5 at every
    # recall point, so AP = 0.5 at every threshold.
    ds = _dataset([[(50, 50, 100, 100, 0)]])
    r = coco_evaluate(ds, [_det(1, 400, 300, 50, 50, score=0.9), _det(1, 50, 50, 100, 100, score=0.8)])
    assert r["mAP50_95"] == approx(0.5)


def test_duplicate_after_the_match_costs_nothing():
    # The duplicate comes after recall reached 1 with precision 1: the envelope stays 1.
    ds = _dataset([[(50, 50, 100, 100, 0)]])
    r = coco_evaluate(ds, [_det(1, 50, 50, 100, 100, score=0.9), _det(1, 50, 50, 100, 100, score=0.8)])
    assert r["mAP50_95"] == approx(1.0)


def test_wrong_class_is_a_miss_and_per_class_ap():
    ds = _dataset([[(50, 50, 100, 100, 0), (300, 50, 100, 100, 1)]])
    r = coco_evaluate(ds, [_det(1, 50, 50, 100, 100, cat=3), _det(1, 300, 50, 100, 100, cat=3)])
    assert r["per_class"] == approx({"cat": 1.0, "dog": 0.0}) and r["mAP50_95"] == approx(0.5)


def test_max_dets_caps_recall():
    # Three objects, three perfect detections, only the two best kept: recall 2/3 at precision 1, so the
    # 101-point AP counts the recall points 0.00 ... 0.66 (67 of them).
    ds = _dataset([[(0, 0, 50, 50, 0), (100, 0, 50, 50, 0), (200, 0, 50, 50, 0)]])
    dets = [_det(1, 0, 0, 50, 50, 0.9), _det(1, 100, 0, 50, 50, 0.8), _det(1, 200, 0, 50, 50, 0.7)]
    assert coco_evaluate(ds, dets)["mAP50_95"] == approx(1.0)
    r = coco_evaluate(ds, dets, max_dets=2)
    assert r["mAP50_95"] == approx(67 / 101) and r["max_dets"] == 2
    assert r["stats"][8] == approx(2 / 3) and r["stats"][7] == approx(1.0)  # AR@max_dets, AR@10
    assert coco_evaluate(ds, dets, max_dets=300)["mAP50_95"] == approx(1.0)


def test_empty_detections_score_zero():
    ds = _dataset([[(50, 50, 100, 100, 0)], [(10, 10, 20, 20, 1)]])
    for empty in ([], np.zeros((0, 7)), iter(())):
        r = coco_evaluate(ds, empty)
        assert r["mAP50_95"] == r["mAP50"] == 0.0 and r["per_class"] == {"cat": 0.0, "dog": 0.0}
        assert r["mAP_medium"] == -1.0 and r["num_detections"] == 0


def test_array_input_equals_dicts():
    ds = _dataset([[(50, 50, 100, 100, 0), (300, 50, 100, 100, 1)]])
    dicts = [_det(1, 55, 50, 100, 100, 0.7, 3), _det(1, 300, 60, 100, 100, 0.6, 8), _det(1, 0, 0, 10, 10, 0.9, 8)]
    arr = np.array([[d["image_id"], *d["bbox"], d["score"], d["category_id"]] for d in dicts])
    assert coco_evaluate(ds, arr) == coco_evaluate(ds, dicts)


def test_stats_match_pycocotools_summarize_and_load_res():
    """On random detections, our results object and 12 stats equal COCO.loadRes + COCOeval.summarize()."""
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    objs = [
        [(*rng.uniform(0, 400, 2), *rng.uniform(5, 200, 2), int(rng.integers(2))) for _ in range(rng.integers(0, 6))]
        for _ in range(12)
    ]
    ds = _dataset(objs)
    dets = []
    for i, o in enumerate(objs):
        for x, y, w, h, c in o:
            if rng.random() < 0.8:
                dets.append(_det(i + 1, *(np.array([x, y, w, h]) + rng.normal(0, 6, 4)), rng.random(), [3, 8][c]))
        for _ in range(rng.integers(0, 4)):
            dets.append(_det(i + 1, *rng.uniform(0, 300, 2), *rng.uniform(5, 100, 2), rng.random(), [3, 8][rng.integers(2)]))  # fmt: skip
    ours = coco_evaluate(ds, dets)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = ds.coco_gt()
        ev = COCOeval(gt, gt.loadRes([dict(d) for d in dets]), iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    np.testing.assert_allclose(ours["stats"], ev.stats, rtol=0, atol=1e-12)
    assert 0.2 < ours["mAP50_95"] < 0.9 and len(STAT_NAMES) == 12


def test_bad_detections_raise():
    ds = _dataset([[(50, 50, 100, 100, 0)]])
    with pytest.raises(ValueError, match="category_id 4 is not a ground-truth category"):
        coco_evaluate(ds, [_det(1, 0, 0, 5, 5, cat=4)])
    with pytest.raises(ValueError, match="image_id 2 is not in the ground truth"):
        coco_evaluate(ds, [_det(2, 0, 0, 5, 5)])
    with pytest.raises(ValueError, match="needs image_id"):
        coco_evaluate(ds, [{"image_id": 1, "bbox": [0, 0, 1, 1]}])
    with pytest.raises(ValueError, match="non-finite"):
        coco_evaluate(ds, [_det(1, 0, 0, float("nan"), 5)])
    with pytest.raises(ValueError, match=r"\[N, 7\]"):
        coco_evaluate(ds, np.zeros((2, 6)))
    with pytest.raises(ValueError, match="max_dets"):
        coco_evaluate(ds, [], max_dets=0)


def test_quiet_unless_verbose(capsys):
    ds = _dataset([[(50, 50, 100, 100, 0)]])
    coco_evaluate(ds, [_det(1, 50, 50, 100, 100)])
    assert capsys.readouterr().out == ""
    coco_evaluate(ds, [_det(1, 50, 50, 100, 100)], verbose=True)
    out = capsys.readouterr().out
    assert "AP@[.50:.95]   = 1.000" in out and "Accumulating evaluation results" in out


def test_to_coco_detections_maps_classes_and_boxes():
    d = to_coco_detections(7, [[10, 20, 30, 60]], [0.5], [1], [3, 8])
    assert d == [{"image_id": 7, "category_id": 8, "bbox": [10.0, 20.0, 20.0, 40.0], "score": 0.5}]
    assert to_coco_detections(7, np.zeros((0, 4)), [], [], [3, 8]) == []
    with pytest.raises(ValueError, match="same length"):
        to_coco_detections(7, [[0, 0, 1, 1]], [0.5, 0.4], [0], [3])
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        to_coco_detections(7, [[0, 0, 1, 1]], [0.5], [2], [3, 8])


def test_precision_and_recall_at_the_best_f1_confidence_as_ultralytics_prints_them():
    # cat: 2 objects, one found (0.9). dog: 1 object, found (0.9) after a false positive (0.95).
    # Below 0.9 every curve is flat: cat P 1, R 0.5; dog P 0.5, R 1 (mean F1 0.67); above 0.9 cat has R 0 and dog
    # P <= 0.5 falling to 0: the best mean F1 is the plateau, P = R = 0.75 (ultralytics' P and R columns).
    ds = _dataset([[(10, 10, 100, 100, 0), (300, 200, 50, 50, 0), (400, 50, 60, 60, 1)]])
    dets = [
        _det(1, 10, 10, 100, 100, 0.9, cat=3),
        _det(1, 500, 400, 40, 40, 0.95, cat=8),  # no dog there
        _det(1, 400, 50, 60, 60, 0.9, cat=8),
    ]
    r = coco_evaluate(ds, dets)
    assert r["precision"] == approx(0.75) and r["recall"] == approx(0.75) and r["conf_best_f1"] < 0.9
    assert r["per_class_precision"] == {"cat": approx(1.0), "dog": approx(0.5)}
    assert r["per_class_recall"] == {"cat": approx(0.5), "dog": approx(1.0)}


def test_precision_recall_of_perfect_and_empty_detections():
    ds = _dataset([[(10, 10, 100, 100, 0), (300, 200, 20, 10, 1)], [(5, 5, 50, 60, 1)]])
    perfect = coco_evaluate(ds, ground_truth_detections(ds))
    assert perfect["precision"] == approx(1.0) and perfect["recall"] == approx(1.0)
    empty = coco_evaluate(ds, [])
    assert empty["precision"] == 0.0 and empty["recall"] == 0.0
