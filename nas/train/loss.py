"""YOLO-NAS's training loss: super-gradients' `PPYoloELoss` as the YOLO-NAS recipes use it.

As super-gradients' `src/super_gradients/training/losses/ppyolo_loss.py` (tag 3.1.1): Task-Aligned Assigner from step 0 (top-13, metric p·IoU⁶, anchor
centre inside the box, soft targets t·maxIoU/maxT), varifocal classification loss, GIoU and distribution focal loss,
`1.0·VFL/S + 2.5·(1−GIoU)/S + 0.5·DFL/S` with S the sum of soft targets (averaged over processes under DDP).
The trainer (`nas.train`) and the gradient-based zero-cost proxies (`nas.proxy.zero_cost`) use this one loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from nas.errors import ConfigError
from nas.metrics import batch_box_iou, paired_giou

__all__ = ["assign", "dfl_loss", "pad_targets", "ppyoloe_loss"]

TOPK, ALPHA, BETA, EPS = 13, 1.0, 6.0, 1e-9  # TaskAlignedAssigner as super-gradients hard-codes it
VFL_ALPHA, VFL_GAMMA = 0.75, 2.0
W_CLS, W_IOU, W_DFL = 1.0, 2.5, 0.5


def pad_targets(boxes: list[Tensor], labels: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Per-image boxes [n_i, 4] and labels [n_i] → padded [B, M, 4], [B, M] and a validity mask [B, M]."""
    b, m = len(boxes), max([len(x) for x in boxes] + [1])
    gt_boxes, gt_labels = torch.zeros(b, m, 4), torch.zeros(b, m, dtype=torch.long)
    mask = torch.zeros(b, m, dtype=torch.bool)
    for i, (bx, lb) in enumerate(zip(boxes, labels)):
        n = len(bx)
        gt_boxes[i, :n], gt_labels[i, :n], mask[i, :n] = bx.reshape(-1, 4), lb.reshape(-1), True
    return gt_boxes, gt_labels, mask


@torch.no_grad()
def assign(
    scores: Tensor, pred_boxes: Tensor, points: Tensor, gt_boxes: Tensor, gt_labels: Tensor, gt_mask: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Task-Aligned Assigner (TOOD), vectorized over the batch.

    scores [B, N, C] (sigmoid), pred_boxes [B, N, 4] and points [N, 2] in pixels; padded ground truth from
    `pad_targets`. Returns (labels [B, N] with C for background, boxes [B, N, 4], soft scores [B, N, C],
    foreground mask [B, N]).
    """
    b, n, c = scores.shape
    m = gt_boxes.shape[1]
    if m == 0 or not gt_mask.any():
        dev = scores.device
        return (
            torch.full((b, n), c, dtype=torch.long, device=dev),
            torch.zeros(b, n, 4, device=dev),
            torch.zeros(b, n, c, device=dev),
            torch.zeros(b, n, dtype=torch.bool, device=dev),
        )
    iou = batch_box_iou(gt_boxes, pred_boxes, EPS)  # [B, M, N]
    cls_scores = scores.gather(2, gt_labels[:, None, :].expand(b, n, m)).permute(0, 2, 1)  # [B, M, N]: p[a, class(g)]
    metric = cls_scores.pow(ALPHA) * iou.pow(BETA)
    deltas = torch.cat(
        [points[None, None] - gt_boxes[:, :, None, :2], gt_boxes[:, :, None, 2:] - points[None, None]], -1
    )
    inside = deltas.amin(-1) > EPS  # [B, M, N]
    valid = gt_mask[:, :, None]
    top = (metric * inside).topk(min(TOPK, n), dim=-1).indices
    in_topk = torch.zeros_like(inside).scatter_(-1, top, True)
    pos = in_topk & inside & valid  # [B, M, N]
    # an anchor positive for several boxes keeps the one its predicted box overlaps most
    multi = pos.sum(1, keepdim=True) > 1
    best = F.one_hot(iou.argmax(1), m).permute(0, 2, 1).bool()
    pos = torch.where(multi, best & pos.any(1, keepdim=True), pos)
    fg = pos.any(1)  # [B, N]
    gt_idx = pos.float().argmax(1)  # [B, N]
    labels = gt_labels.gather(1, gt_idx)
    labels = torch.where(fg, labels, torch.full_like(labels, c))
    boxes = gt_boxes.gather(1, gt_idx[..., None].expand(b, n, 4))
    metric = metric * pos
    t_max = metric.amax(-1, keepdim=True)
    u_max = (iou * pos).amax(-1, keepdim=True)
    soft = (metric * u_max / (t_max + EPS)).amax(1)  # [B, N]
    out_scores = F.one_hot(labels, c + 1)[..., :c].float() * soft[..., None]
    return labels, boxes, out_scores, fg


def dfl_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Distribution focal loss: logits [P, 4, R+1], target distances [P, 4] in bins (< R) → [P] (mean of the sides)."""
    left = target.floor().long()
    w_left = left.float() + 1 - target
    flat = logits.reshape(-1, logits.shape[-1])
    ce_l = F.cross_entropy(flat, left.reshape(-1), reduction="none").view_as(target)
    ce_r = F.cross_entropy(flat, (left + 1).reshape(-1), reduction="none").view_as(target)
    return (ce_l * w_left + ce_r * (1 - w_left)).mean(-1)


def ppyoloe_loss(
    outputs,
    boxes: list[Tensor],
    labels: list[Tensor],
    normalizer: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """YOLO-NAS's training loss on a forward pass `((boxes, scores), raw)` and per-image targets (xyxy px, class ids).

    `normalizer` maps this process's S (sum of soft targets) to the one to divide by (default max(S, 1)); under DDP
    it is max(ΣS over processes, 1) / processes, so that the mean of the processes' losses and gradients equals one
    process's on the whole global batch (super-gradients averages S over GPUs before the clamp instead, which
    differs only when S < 1). Predictions are cast to float32 (autocast outputs). Returns the total and its weighted
    components (which sum to it)."""
    (pred_boxes, _scores), (cls_logits, reg_distri, _anchors, points, _n, strides) = outputs
    pred_boxes, cls_logits, reg_distri = pred_boxes.float(), cls_logits.float(), reg_distri.float()
    points, strides = points.float(), strides.float()
    b, n, c = cls_logits.shape
    r1 = reg_distri.shape[-1] // 4
    gt_boxes, gt_labels, gt_mask = (t.to(cls_logits.device) for t in pad_targets(boxes, labels))
    if gt_mask.any() and int(gt_labels[gt_mask].max()) >= c:
        raise ConfigError(
            f"a target class id is {int(gt_labels[gt_mask].max())} but the model has {c} classes (ids 0..{c - 1})"
        )
    probs = cls_logits.sigmoid()
    labels_a, t_boxes, t_scores, fg = assign(
        probs.detach().float(), pred_boxes.detach().float(), points, gt_boxes, gt_labels, gt_mask
    )
    s = t_scores.sum()
    s = normalizer(s) if normalizer is not None else s.clamp(min=1.0)
    one_hot = F.one_hot(labels_a, c + 1)[..., :c].float()
    weight = VFL_ALPHA * probs.pow(VFL_GAMMA) * (1 - one_hot) + t_scores * one_hot
    l_cls = (F.binary_cross_entropy_with_logits(cls_logits, t_scores, reduction="none") * weight).sum() / s
    if fg.any():
        w = t_scores.sum(-1)[fg]
        stride = strides.expand(b, n, 1)[fg]
        l_iou = ((1 - paired_giou(pred_boxes[fg] / stride, t_boxes[fg] / stride, eps=1e-10)) * w).sum() / s
        anchor = (points[None].expand(b, n, 2)[fg]) / stride
        gt = t_boxes[fg] / stride
        dist = torch.cat([anchor - gt[:, :2], gt[:, 2:] - anchor], -1).clamp(0, r1 - 1 - 0.01)
        l_dfl = (dfl_loss(reg_distri[fg].view(-1, 4, r1), dist) * w).sum() / s
    else:
        l_iou = pred_boxes.sum() * 0.0
        l_dfl = reg_distri.sum() * 0.0
    parts = {"cls": W_CLS * l_cls, "iou": W_IOU * l_iou, "dfl": W_DFL * l_dfl}
    total = parts["cls"] + parts["iou"] + parts["dfl"]
    return total, {k: float(v.detach()) for k, v in parts.items()}
