"""Short training of a YOLO-NAS network with the loss it was trained with.

The loss is super-gradients' `PPYoloELoss` as the YOLO-NAS recipes use it (see
../shared/reference/yolo_nas_training.md §1): Task-Aligned Assigner from step 0 (top-13, metric p·IoU⁶, anchor
centre inside the box, soft targets t·maxIoU/maxT), varifocal classification loss, GIoU and distribution focal loss,
`1.0·VFL/S + 2.5·(1−GIoU)/S + 0.5·DFL/S` with S the sum of soft targets. The schedule follows the recipe scaled
down: AdamW without weight decay on norms and biases, linear warm-up then per-step cosine to 0.1×, EMA with the
"threshold" ramp, validation on the EMA weights.

    from nas.proxy.train import TrainConfig, train
    history = train(model, "synthetic", TrainConfig(epochs=10, imgsz=256), val_data="synthetic")
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.data import load_dataset
from nas.data.images import read_rgb
from nas.data.transforms import letterbox
from nas.engine.val import validate
from nas.errors import ConfigError
from nas.metrics import batch_box_iou, paired_giou

__all__ = [
    "EMA",
    "TrainConfig",
    "assign",
    "dfl_loss",
    "letterbox_with_boxes",
    "load_images",
    "pad_targets",
    "param_groups",
    "ppyoloe_loss",
    "train",
]

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


def ppyoloe_loss(outputs, boxes: list[Tensor], labels: list[Tensor]) -> tuple[Tensor, dict[str, float]]:
    """YOLO-NAS's training loss on a forward pass `((boxes, scores), raw)` and per-image targets (xyxy px, class ids).

    Returns the total and its weighted components (which sum to it)."""
    (pred_boxes, _scores), (cls_logits, reg_distri, _anchors, points, _n, strides) = outputs
    b, n, c = cls_logits.shape
    r1 = reg_distri.shape[-1] // 4
    gt_boxes, gt_labels, gt_mask = (t.to(cls_logits.device) for t in pad_targets(boxes, labels))
    if gt_mask.any() and int(gt_labels[gt_mask].max()) >= c:
        raise ConfigError(f"a target class id is {int(gt_labels[gt_mask].max())} but the model has {c} classes")
    probs = cls_logits.sigmoid()
    labels_a, t_boxes, t_scores, fg = assign(
        probs.detach().float(), pred_boxes.detach().float(), points, gt_boxes, gt_labels, gt_mask
    )
    s = t_scores.sum().clamp(min=1.0)
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


class EMA:
    """Exponential moving average of every floating-point state entry, decay min(d, (1+s)/(10+s)) ("threshold")."""

    def __init__(self, model: nn.Module, decay: float = 0.9997):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        source = model.state_dict()
        for k, v in self.module.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(source[k].detach(), alpha=1 - d)
            else:
                v.copy_(source[k])


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on normalization weights/biases and on any bias (the recipe's zero-wd rule)."""
    no_decay, decay, seen = [], [], set()
    norms = (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            (no_decay if isinstance(module, norms) or name == "bias" else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    imgsz: int = 320
    batch: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-5
    warmup_steps: int = 100
    final_lr_ratio: float = 0.1
    ema_decay: float = 0.9997
    flip: float = 0.5
    seed: int = 0
    limit: int | None = None

    def __post_init__(self):
        if self.imgsz < 32 or self.imgsz % 32:
            raise ConfigError(f"imgsz={self.imgsz}: must be a positive multiple of 32")
        if self.epochs < 1 or self.batch < 1:
            raise ConfigError(f"epochs={self.epochs}, batch={self.batch}: both must be >= 1")

    def lr_at(self, step: int, total: int) -> float:
        """Linear warm-up from 0 over `warmup_steps`, then per-step cosine down to `final_lr_ratio`·lr."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        t = (step - self.warmup_steps) / max(1, total - self.warmup_steps)
        r = self.final_lr_ratio
        return self.lr * (r + (1 - r) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def letterbox_with_boxes(img: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The val pipeline's letterbox (`nas.data.transforms.letterbox`) to a square, with the boxes moved alike."""
    r = min(size / img.shape[0], size / img.shape[1])
    out, (top, left) = letterbox(img, (size, size))
    return out, boxes * r + np.array([left, top, left, top], dtype=np.float32)


def load_images(dataset, size: int, limit: int | None = None) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Every image of a dataset letterboxed to `size` (uint8 [N, 3, size, size], RGB) with boxes and contiguous ids."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    images, boxes, labels = [], [], []
    for i in range(n):
        rec, xyxy, cls = dataset[i]
        img, bx = letterbox_with_boxes(read_rgb(rec.path), np.asarray(xyxy, dtype=np.float32).reshape(-1, 4), size)
        images.append(torch.from_numpy(img).permute(2, 0, 1))
        boxes.append(torch.from_numpy(bx))
        labels.append(torch.from_numpy(np.asarray(cls, dtype=np.int64).reshape(-1)))
    return torch.stack(images), boxes, labels


def _flip(images: Tensor, boxes: list[Tensor], mask: Tensor) -> tuple[Tensor, list[Tensor]]:
    w = images.shape[-1]
    images = torch.where(mask[:, None, None, None], images.flip(-1), images)
    out = [
        torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1) if m and len(b) else b
        for b, m in zip(boxes, mask.tolist())
    ]
    return images, out


def train(
    model: nn.Module,
    data,
    cfg: TrainConfig = TrainConfig(),
    *,
    val_data=None,
    on_epoch: Callable[[dict, nn.Module], None] | None = None,
    log: Callable[[str], None] | None = print,
) -> tuple[nn.Module, list[dict]]:
    """Train `model` in place on the train split of `data`; validate the EMA weights on `val_data` after each epoch.

    `data` / `val_data` are anything `nas.data.load_dataset` takes, including an already loaded dataset.

    `on_epoch(row, ema_model)` is called after every epoch (to log, write results or save a checkpoint).
    Returns (the EMA model, history rows {epoch, steps, loss, cls, iou, dfl, lr, elapsed_s and, with val_data, mAP50_95, mAP50,
    mAP75, mAP_small/medium/large, per_class} (mAP in percent))."""
    torch.manual_seed(cfg.seed)
    train_ds = load_dataset(data, "train")
    val_ds = load_dataset(val_data, "val") if val_data is not None else None
    images, boxes, labels = load_images(train_ds, cfg.imgsz, cfg.limit)
    n = len(images)
    if n < cfg.batch:
        raise ConfigError(f"{n} training images is fewer than batch={cfg.batch}")
    steps_per_epoch = n // cfg.batch
    total = steps_per_epoch * cfg.epochs
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    ema = EMA(model, cfg.ema_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    history, step, t0 = [], 0, time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        sums = {"loss": 0.0, "cls": 0.0, "iou": 0.0, "dfl": 0.0}
        perm = torch.randperm(n, generator=gen).tolist()
        for k in range(steps_per_epoch):
            idx = perm[k * cfg.batch : (k + 1) * cfg.batch]
            x = images[idx].float() / 255.0
            x, b = _flip(x, [boxes[i] for i in idx], torch.rand(len(idx), generator=gen) < cfg.flip)
            loss, parts = ppyoloe_loss(model(x), b, [labels[i] for i in idx])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss at epoch {epoch + 1} step {step}: {parts}")
            lr = cfg.lr_at(step, total)
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ema.update(model)
            step += 1
            sums["loss"] += float(loss.detach())
            for key, v in parts.items():
                sums[key] += v
        row = {"epoch": epoch + 1, "steps": step, **{k: round(v / steps_per_epoch, 4) for k, v in sums.items()}}
        row["lr"] = lr
        if val_ds is not None:
            m = validate(ema.module, val_ds, imgsz=cfg.imgsz, batch=16, verbose=False)
            row.update({k: round(100 * m[k], 2) for k in ("mAP50_95", "mAP50", "mAP75")})
            row.update(
                {k: round(100 * m[k], 2) if m[k] >= 0 else None for k in ("mAP_small", "mAP_medium", "mAP_large")}
            )
            row["per_class"] = {name: round(100 * v, 2) for name, v in m["per_class"].items()}
        row["elapsed_s"] = round(time.perf_counter() - t0, 1)
        history.append(row)
        if log is not None:
            log(" ".join(f"{k}={v}" for k, v in row.items() if k != "per_class"))
        if on_epoch is not None:
            on_epoch(row, ema.module)
    return ema.module, history
