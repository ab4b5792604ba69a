"""Box geometry: xyxy <-> xywh, and every overlap the package computes, each variant once, named by where its
numbers must match.

- `box_iou`: the [N, M] IoU matrix with torchvision's operation order (float-identical), used by NMS;
- `batch_box_iou`: batched [B, M, N] IoU with super-gradients' `batch_iou_similarity` (+1e-9 on the union),
  used by the Task-Aligned Assigner;
- `paired_iou`: IoU of paired boxes [..., 4] (+`eps` on the union), used by the INT8 sensitivity's box error;
- `paired_giou`: generalized IoU of paired boxes [P], used by the detection losses.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["batch_box_iou", "box_iou", "paired_giou", "paired_iou", "xywh2xyxy", "xyxy2xywh"]

TAL_EPS = 1e-9  # super-gradients' batch_iou_similarity adds this to the union


def xyxy2xywh(x: Tensor) -> Tensor:
    """Corners [..., 4] -> centre x, centre y, width, height (ultralytics' operation order)."""
    y = torch.empty_like(x)
    y[..., 0] = (x[..., 0] + x[..., 2]) / 2
    y[..., 1] = (x[..., 1] + x[..., 3]) / 2
    y[..., 2] = x[..., 2] - x[..., 0]
    y[..., 3] = x[..., 3] - x[..., 1]
    return y


def xywh2xyxy(x: Tensor) -> Tensor:
    """Centre x, centre y, width, height [..., 4] -> corners."""
    y = torch.empty_like(x)
    xy, half = x[..., :2], x[..., 2:] / 2
    y[..., :2] = xy - half
    y[..., 2:] = xy + half
    return y


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU matrix [len(a), len(b)] of xyxy boxes, with torchvision's operation order (float-identical)."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def batch_box_iou(a: Tensor, b: Tensor, eps: float = TAL_EPS) -> Tensor:
    """IoU of [B, M, 4] against [B, N, 4] -> [B, M, N] (union + `eps`, as super-gradients' `batch_iou_similarity`)."""
    a, b = a[:, :, None], b[:, None]
    lt, rb = torch.maximum(a[..., :2], b[..., :2]), torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter + eps)


def _paired_inter_union(a: Tensor, b: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    lt, rb = torch.max(a[..., :2], b[..., :2]), torch.min(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a, area_b = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1), (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter, area_a + area_b - inter + eps


def paired_iou(a: Tensor, b: Tensor, eps: float = 1e-9) -> Tensor:
    """IoU of paired xyxy boxes [..., 4] -> [...]; `eps` keeps empty unions finite."""
    inter, union = _paired_inter_union(a, b, eps)
    return inter / union


def paired_giou(a: Tensor, b: Tensor, eps: float = 1e-9) -> Tensor:
    """Generalized IoU of paired boxes [P, 4] (xyxy) -> [P]; `eps` keeps empty unions and hulls finite."""
    inter, union = _paired_inter_union(a, b, eps)
    hull = (torch.max(a[:, 2:], b[:, 2:]) - torch.min(a[:, :2], b[:, :2])).clamp(min=0).prod(1) + eps
    return inter / union - (hull - union) / hull
