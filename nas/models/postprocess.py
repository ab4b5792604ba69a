"""Box utilities and non-maximum suppression in plain, vectorized torch (no torchvision needed).

`nms` is exact greedy NMS (the kept set and order equal torchvision's `nms` on the same float32 input):
boxes are processed in score order in blocks; inside a block the greedy recursion is solved as the unique
fixed point of "kept iff no earlier kept box overlaps it", which takes a few matrix-vector steps.
It stops as soon as `max_keep` boxes are kept, so val's 30,000 candidates cost little.
`non_max_suppression` is ultralytics' detector post-processing (best-class or multi-label candidates,
pre-NMS cap, class offset 7,680) on YOLO-NAS outputs.
"""

from __future__ import annotations

from functools import cache

import torch
from torch import Tensor

from nas.metrics.boxes import box_iou, xywh2xyxy, xyxy2xywh

__all__ = [
    "MAX_WH",
    "batched_nms",
    "nms",
    "non_max_suppression",
    "xywh2xyxy",
    "xyxy2xywh",
]

MAX_WH = 7680  # ultralytics' class offset: boxes of different classes never overlap after it
_BLOCK = 128  # small enough that elementwise ops stay below torch's parallel grain (no thread stalls)


@cache
def _torchvision_nms():
    try:
        from torchvision.ops import nms as tv_nms

        tv_nms(torch.zeros(1, 4), torch.zeros(1), 0.5)  # the op may be missing beside a mismatched torch
    except Exception:  # any import/registration failure means "not usable here"
        return None
    return tv_nms


def nms(
    boxes: Tensor, scores: Tensor, iou_threshold: float, max_keep: int | None = None, backend: str = "torch"
) -> Tensor:
    """Greedy NMS: indices of kept boxes in descending score order (ties: lower index first).

    A box is suppressed by a kept, higher-ranked box with IoU > iou_threshold. backend="torchvision"
    uses `torchvision.ops.nms` (raises if torchvision is not usable).
    """
    if backend == "torchvision":
        tv_nms = _torchvision_nms()
        if tv_nms is None:
            raise RuntimeError("backend='torchvision' asked for, but torchvision.ops.nms is not usable here")
        keep = tv_nms(boxes, scores, iou_threshold)
        return keep if max_keep is None else keep[:max_keep]
    if backend != "torch":
        raise ValueError(f"nms backend must be 'torch' or 'torchvision', got {backend!r}")
    n = boxes.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    max_keep = n if max_keep is None else max_keep
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order]
    kept_pos: list[Tensor] = []
    kept_boxes = sorted_boxes[:0]
    n_kept = 0
    for start in range(0, n, _BLOCK):
        blk = sorted_boxes[start : start + _BLOCK]
        alive = torch.ones(len(blk), dtype=torch.bool, device=boxes.device)
        if n_kept:
            alive &= ~(box_iou(blk, kept_boxes) > iou_threshold).any(dim=1)
        keep = _greedy_block(blk, alive, iou_threshold)
        pos = keep.nonzero().squeeze(1)
        if n_kept + len(pos) >= max_keep:
            kept_pos.append(pos[: max_keep - n_kept] + start)
            break
        kept_pos.append(pos + start)
        kept_boxes = torch.cat([kept_boxes, blk[pos]])
        n_kept += len(pos)
    return order[torch.cat(kept_pos)]


@cache
def _upper_mask(n: int, device: torch.device) -> Tensor:
    """Strict upper triangle (i < j); cached, as triu on every block costs a parallel region."""
    return torch.ones(n, n, dtype=torch.bool, device=device).triu_(1)


def _greedy_block(boxes: Tensor, alive: Tensor, iou_threshold: float) -> Tensor:
    """Greedy keep-mask of score-sorted boxes: the fixed point of keep[j] = alive[j] and no kept i < j overlaps j.

    Iterating from keep = alive fixes at least one more leading position per step, so it converges in at
    most len(boxes) steps (a few in practice); the fixed point is unique, hence the greedy answer.
    """
    n = len(boxes)
    over = (box_iou(boxes, boxes) > iou_threshold) & _upper_mask(n, boxes.device)
    keep = alive
    for _ in range(n + 1):
        new = alive & ~(over & keep[:, None]).any(dim=0)
        if torch.equal(new, keep):
            return keep
        keep = new
    raise AssertionError("greedy NMS fixed point did not converge")  # unreachable: bounded by len(boxes)


def batched_nms(
    boxes: Tensor,
    scores: Tensor,
    classes: Tensor,
    iou_threshold: float,
    max_keep: int | None = None,
    agnostic: bool = False,
    backend: str = "torch",
) -> Tensor:
    """Class-aware NMS by ultralytics' offset trick: boxes are shifted by class * 7680 before `nms`."""
    offset = 0 if agnostic else classes.to(boxes.dtype)[:, None] * MAX_WH
    return nms(boxes + offset, scores, iou_threshold, max_keep, backend)


def non_max_suppression(
    boxes: Tensor,
    scores: Tensor,
    conf: float,
    iou: float,
    max_det: int = 300,
    *,
    multi_label: bool = False,
    agnostic: bool = False,
    classes: list[int] | None = None,
    max_nms: int = 30000,
    backend: str = "torch",
) -> list[Tensor]:
    """ultralytics `non_max_suppression` on YOLO-NAS outputs: per image a [n, 6] tensor (x1, y1, x2, y2, conf, cls).

    boxes [B, N, 4] xyxy, scores [B, N, C]. Candidates: the best class of each box with score > conf, or
    with multi_label every (box, class) with score > conf; at most `max_nms` by score; then class-aware NMS
    and the first `max_det`. Boxes are not clipped.
    """
    if not (0 <= conf <= 1 and 0 <= iou <= 1):
        raise ValueError(f"conf and iou must lie in [0, 1], got conf={conf}, iou={iou}")
    # ultralytics feeds NAS boxes through xyxy -> xywh -> xyxy; keep that float path for identical boxes
    boxes = xywh2xyxy(xyxy2xywh(boxes))
    multi_label &= scores.shape[-1] > 1
    candidates = scores.amax(dim=-1) > conf
    out = []
    for b in range(boxes.shape[0]):
        box, cls_scores = boxes[b][candidates[b]], scores[b][candidates[b]]
        if multi_label:
            i, j = torch.where(cls_scores > conf)
            x = torch.cat([box[i], cls_scores[i, j, None], j[:, None].to(box.dtype)], dim=1)
        else:
            best, j = cls_scores.max(dim=1, keepdim=True)
            x = torch.cat([box, best, j.to(box.dtype)], dim=1)[best.view(-1) > conf]
        if classes is not None:
            x = x[(x[:, 5:6] == torch.tensor(classes, device=x.device, dtype=x.dtype)).any(dim=1)]
        if x.shape[0] > max_nms:
            x = x[x[:, 4].argsort(descending=True)[:max_nms]]
        keep = batched_nms(x[:, :4], x[:, 4], x[:, 5], iou, max_det, agnostic, backend)
        out.append(x[keep[:max_det]])
    return out
