from __future__ import annotations

import torch

from nas.metrics import batch_box_iou, box_iou, paired_giou, paired_iou, xywh2xyxy, xyxy2xywh


def _boxes(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    return torch.cat([xy, xy + 1 + torch.rand(n, 2, generator=g) * 50], 1)


def test_batch_iou_is_the_matrix_iou_per_image_up_to_its_epsilon():
    a, b = _boxes(12, 0).reshape(2, 6, 4), _boxes(14, 1).reshape(2, 7, 4)
    batched = batch_box_iou(a, b)
    assert batched.shape == (2, 6, 7)
    for i in range(2):
        assert torch.allclose(batched[i], box_iou(a[i], b[i]), atol=1e-6)
    assert batch_box_iou(torch.zeros(1, 1, 4), torch.zeros(1, 1, 4)).item() == 0.0  # empty boxes: eps, no NaN


def test_giou_is_iou_minus_hull_penalty():
    a, b = _boxes(9, 2), _boxes(9, 3)
    iou = box_iou(a, b).diagonal()
    hull = (torch.max(a[:, 2:], b[:, 2:]) - torch.min(a[:, :2], b[:, :2])).prod(1)
    areas = (a[:, 2:] - a[:, :2]).prod(1) + (b[:, 2:] - b[:, :2]).prod(1)
    union = areas / (1 + iou)  # iou = inter / (areas - inter)  =>  union = areas - inter = areas / (1 + iou)
    assert torch.allclose(paired_giou(a, b), iou - (hull - union) / hull, atol=1e-5)
    assert torch.allclose(paired_giou(a, a), torch.ones(9), atol=1e-6)
    far = torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([[9.0, 9, 10, 10]])
    assert -1 < paired_giou(*far).item() < -0.9


def test_paired_iou_is_the_matrix_diagonal_and_broadcasts():
    a, b = _boxes(9, 4), _boxes(9, 5)
    assert torch.allclose(paired_iou(a, b), box_iou(a, b).diagonal(), atol=1e-6)
    assert torch.allclose(paired_iou(a[:1], b), box_iou(a[:1], b)[0], atol=1e-6)  # one box against many
    assert paired_iou(torch.zeros(1, 4), torch.zeros(1, 4)).item() == 0.0  # empty boxes: eps, no NaN


def test_xywh_round_trip():
    a = _boxes(7, 6)
    xywh = xyxy2xywh(a)
    assert torch.equal(xywh[:, 2:], a[:, 2:] - a[:, :2]) and torch.allclose(xywh2xyxy(xywh), a)
