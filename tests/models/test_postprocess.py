"""NMS against straightforward pure-Python references; ultralytics' post-processing semantics."""

from __future__ import annotations

import pytest
import torch

from nas.metrics import box_iou
from nas.models.postprocess import MAX_WH, batched_nms, nms, non_max_suppression, xywh2xyxy, xyxy2xywh


def _random_boxes(n: int, seed: int, extent: float = 200.0, ties: bool = False):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * extent
    wh = torch.rand(n, 2, generator=g) * 60 + 1
    scores = torch.rand(n, generator=g)
    if ties:
        scores = (scores * 4).round() / 4  # many equal scores: order must be stable (lower index first)
    return torch.cat([xy, xy + wh], dim=1), scores


def _iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def reference_nms(boxes: list[list[float]], scores: list[float], threshold: float) -> list[int]:
    """Textbook greedy NMS: visit boxes by descending score (stable), keep one unless a kept box overlaps it."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    kept: list[int] = []
    for i in order:
        if all(_iou(boxes[k], boxes[i]) <= threshold for k in kept):
            kept.append(i)
    return kept


@pytest.mark.parametrize(
    ("n", "threshold"), [(0, 0.5), (1, 0.5), (7, 0.3), (300, 0.3), (300, 0.7), (1100, 0.5)]
)  # 1100 spans three 512-box blocks
def test_nms_equals_reference(n, threshold):
    boxes, scores = _random_boxes(n, seed=n)
    expected = reference_nms(boxes.tolist(), scores.tolist(), threshold)
    assert nms(boxes, scores, threshold).tolist() == expected


@pytest.mark.parametrize("seed", range(4))
def test_nms_equals_reference_with_tied_scores_and_dense_overlaps(seed):
    boxes, scores = _random_boxes(600, seed, extent=40.0, ties=True)  # crowded: long suppression chains
    expected = reference_nms(boxes.tolist(), scores.tolist(), 0.45)
    assert nms(boxes, scores, 0.45).tolist() == expected


def test_nms_max_keep_is_a_prefix():
    boxes, scores = _random_boxes(1200, seed=3)
    full = nms(boxes, scores, 0.6)
    assert len(full) > 520
    for k in (1, 10, 511, 520):
        assert nms(boxes, scores, 0.6, max_keep=k).tolist() == full[:k].tolist()


def test_box_iou_matches_reference():
    a, _ = _random_boxes(20, seed=1)
    b, _ = _random_boxes(30, seed=2)
    expected = torch.tensor([[_iou(x, y) for y in b.tolist()] for x in a.tolist()])
    assert torch.allclose(box_iou(a, b).double(), expected.double(), atol=1e-6)


def test_batched_nms_never_suppresses_across_classes():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 10, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    classes = torch.tensor([0, 1, 0])
    assert batched_nms(boxes, scores, classes, 0.5).tolist() == [0, 1]
    assert batched_nms(boxes, scores, classes, 0.5, agnostic=True).tolist() == [0]


def test_box_format_round_trip():
    boxes, _ = _random_boxes(50, seed=5)
    assert torch.allclose(xywh2xyxy(xyxy2xywh(boxes)), boxes, atol=1e-4)


def reference_postprocess(boxes, scores, conf, iou, max_det, multi_label):
    """ultralytics' non_max_suppression, written out plainly for one image (candidates, offset, greedy NMS)."""
    rows = []
    for i, (box, s) in enumerate(zip(boxes.tolist(), scores.tolist())):
        if max(s) <= conf:
            continue
        if multi_label:
            rows += [(box, v, j, i) for j, v in enumerate(s) if v > conf]
        else:
            j = max(range(len(s)), key=lambda k: (s[k], -k))  # first index of the maximum
            rows.append((box, s[j], j, i))
    shifted = [[v + c * MAX_WH for v in b] for b, _, c, _ in rows]
    keep = reference_nms(shifted, [r[1] for r in rows], iou)[:max_det]
    return [(rows[k][3], rows[k][2]) for k in keep]  # (anchor, class) pairs in output order


@pytest.mark.parametrize("multi_label", [False, True])
def test_non_max_suppression_matches_reference(multi_label):
    g = torch.Generator().manual_seed(7)
    n, c = 400, 6
    xy = torch.rand(2, n, 2, generator=g) * 150
    boxes = torch.cat([xy, xy + torch.rand(2, n, 2, generator=g) * 50 + 2], dim=-1)
    scores = torch.rand(2, n, c, generator=g) ** 3
    out = non_max_suppression(boxes, scores, conf=0.3, iou=0.5, max_det=50, multi_label=multi_label)
    for b in range(2):
        expected = reference_postprocess(boxes[b], scores[b], 0.3, 0.5, 50, multi_label)
        got = out[b]
        assert len(got) == len(expected)
        anchors = [a for a, _ in expected]
        assert got[:, 5].long().tolist() == [j for _, j in expected]
        assert torch.allclose(got[:, :4], boxes[b, anchors], atol=1e-4)
        assert torch.equal(got[:, 4], scores[b, anchors, got[:, 5].long()])
        assert got[:, 4].tolist() == sorted(got[:, 4].tolist(), reverse=True)


def test_non_max_suppression_thresholds_filters_and_caps():
    boxes = torch.tensor([[[0.0, 0, 10, 10], [100, 100, 120, 120], [200, 0, 220, 20], [0, 0, 10, 10]]])
    scores = torch.tensor([[[0.25, 0.1], [0.9, 0.6], [0.3, 0.0], [0.2, 0.5]]])
    # conf is strict: 0.25 is not > 0.25; box 3's best class (1) survives
    (det,) = non_max_suppression(boxes, scores, conf=0.25, iou=0.7)
    assert det[:, 5].tolist() == [0.0, 1.0, 0.0] and det[:, 4].tolist() == pytest.approx([0.9, 0.5, 0.3])
    (det,) = non_max_suppression(boxes, scores, conf=0.25, iou=0.7, multi_label=True)
    pairs = sorted((round(s, 4), int(c)) for s, c in zip(det[:, 4].tolist(), det[:, 5].tolist()))
    assert pairs == [(0.3, 0), (0.5, 1), (0.6, 1), (0.9, 0)]
    (det,) = non_max_suppression(boxes, scores, conf=0.25, iou=0.7, classes=[0])
    assert det[:, 5].tolist() == [0.0, 0.0] and det[:, 4].tolist() == pytest.approx([0.9, 0.3])
    (det,) = non_max_suppression(boxes, scores, conf=0.25, iou=0.7, max_det=1)
    assert len(det) == 1
    (det,) = non_max_suppression(boxes, scores, conf=0.01, iou=0.7, max_nms=2)  # only the 2 best enter NMS
    assert det[:, 4].tolist() == pytest.approx([0.9, 0.5])
    with pytest.raises(ValueError, match="conf and iou"):
        non_max_suppression(boxes, scores, conf=1.5, iou=0.7)


def test_non_max_suppression_boxes_are_not_clipped():
    boxes = torch.tensor([[[-20.0, -10, 30, 40]]])
    (det,) = non_max_suppression(boxes, torch.tensor([[[0.9]]]), conf=0.25, iou=0.7)
    assert det[0, :4].tolist() == [-20.0, -10.0, 30.0, 40.0]


def test_torchvision_backend_is_explicit():
    boxes, scores = _random_boxes(100, seed=0)
    try:
        got = nms(boxes, scores, 0.5, backend="torchvision")
    except RuntimeError as e:
        assert "not usable" in str(e)  # torchvision does not import beside this torch build
    else:
        assert got.tolist() == nms(boxes, scores, 0.5).tolist()
    with pytest.raises(ValueError, match="backend"):
        nms(boxes, scores, 0.5, backend="numpy")
