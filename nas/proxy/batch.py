"""The proxy batch (a few images with boxes, from the synthetic set or seeded noise) and the small
detection loss that gradient-based zero-cost proxies differentiate."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.data import load_dataset
from nas.data.images import read_rgb
from nas.errors import ConfigError
from nas.metrics import paired_giou

__all__ = [
    "BATCH_KINDS",
    "ProxyBatch",
    "check_hw",
    "detection_loss",
    "make_batch",
    "random_batch",
    "raw_outputs",
    "synthetic_batch",
]

BATCH_KINDS = ("random", "synthetic")


@dataclass(frozen=True)
class ProxyBatch:
    """Images [B, 3, H, W] in [0, 1] with per-image boxes (xyxy pixels) and contiguous class ids."""

    images: Tensor
    boxes: tuple[Tensor, ...]
    labels: tuple[Tensor, ...]
    source: str

    @property
    def input_hw(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def fingerprint(self) -> str:
        """Content hash of the batch (a cache key that changes whenever the images or boxes do)."""
        h = hashlib.sha256(self.images.numpy().tobytes())
        for t in (*self.boxes, *self.labels):
            h.update(t.numpy().tobytes())
        return h.hexdigest()[:16]


def check_hw(input_hw: int) -> None:
    if input_hw < 32 or input_hw % 32:
        raise ConfigError(f"proxy input_hw={input_hw}: must be a positive multiple of 32 (e.g. 128)")


def random_batch(input_hw: int, batch_size: int, seed: int, num_classes: int = 80, max_objects: int = 4) -> ProxyBatch:
    """Seeded uniform-noise images with random boxes (when no dataset is wanted or available)."""
    check_hw(input_hw)
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch_size, 3, input_hw, input_hw, generator=g)
    boxes, labels = [], []
    for _ in range(batch_size):
        n = int(torch.randint(1, max_objects + 1, (1,), generator=g))
        wh = (0.1 + 0.5 * torch.rand(n, 2, generator=g)) * input_hw
        xy = torch.rand(n, 2, generator=g) * (input_hw - wh)
        boxes.append(torch.cat([xy, xy + wh], 1))
        labels.append(torch.randint(0, num_classes, (n,), generator=g))
    return ProxyBatch(images, tuple(boxes), tuple(labels), f"random(seed={seed})")


def synthetic_batch(input_hw: int, batch_size: int, data: str = "synthetic", split: str = "val") -> ProxyBatch:
    """The first `batch_size` images of a dataset (default: the embedded synthetic set), resized square."""
    check_hw(input_hw)
    import cv2  # cv2's import costs ~0.1 s: only a synthetic batch pays it

    ds = load_dataset(data, split)
    if len(ds) < batch_size:
        raise ConfigError(f"dataset {data!r} ({split}) has {len(ds)} images; proxy batch_size={batch_size}")
    images, boxes, labels = [], [], []
    for i in range(batch_size):
        rec, xyxy, cls = ds[i]
        img = cv2.resize(read_rgb(rec.path), (input_hw, input_hw), interpolation=cv2.INTER_LINEAR)
        images.append(torch.from_numpy(img).permute(2, 0, 1).float() / 255.0)
        scale = torch.tensor([input_hw / rec.width, input_hw / rec.height] * 2)
        boxes.append(torch.from_numpy(np.asarray(xyxy, dtype=np.float32)).reshape(-1, 4) * scale)
        labels.append(torch.from_numpy(np.asarray(cls, dtype=np.int64)).reshape(-1))
    return ProxyBatch(torch.stack(images), tuple(boxes), tuple(labels), f"{data}:{split}[0:{batch_size}]")


def make_batch(kind: str, input_hw: int, batch_size: int, seed: int, data: str = "synthetic") -> ProxyBatch:
    """`random` (seeded noise + random boxes) or `synthetic` (images of `data` via nas.data)."""
    if kind == "random":
        return random_batch(input_hw, batch_size, seed)
    if kind == "synthetic":
        return synthetic_batch(input_hw, batch_size, data)
    raise ConfigError(f"unknown proxy batch {kind!r}; choose one of {', '.join(BATCH_KINDS)}")


def raw_outputs(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(decoded boxes xyxy, cls logits, reg distribution logits, anchor points px) of a forward pass."""
    (boxes, _scores), raw = model(x)
    cls_logits, reg_distri, _anchors, anchor_points, _n, _strides = raw
    return boxes, cls_logits, reg_distri, anchor_points


def detection_loss(model: nn.Module, batch: ProxyBatch) -> Tensor:
    """Sigmoid focal-free BCE on all anchors + (1 - GIoU) on positives; an anchor is positive for the
    smallest ground-truth box that contains its centre (centre sampling, no learned assignment)."""
    boxes, cls_logits, _reg, points = raw_outputs(model, batch.images)
    target = torch.zeros_like(cls_logits)
    box_losses, n_pos = [], 0
    for i, (gt, lab) in enumerate(zip(batch.boxes, batch.labels)):
        if len(gt) == 0:
            continue
        inside = (points[:, None, :] > gt[None, :, :2]).all(-1) & (points[:, None, :] < gt[None, :, 2:]).all(-1)
        area = (gt[:, 2:] - gt[:, :2]).prod(1)
        cost = torch.where(inside, area[None, :], torch.full_like(inside, float("inf"), dtype=area.dtype))
        best_cost, best = cost.min(1)
        pos = torch.isfinite(best_cost)
        if pos.any():
            # labels beyond the model's classes (a random batch vs. a few-class model) fold onto its classes
            target[i, pos, lab[best[pos]] % target.shape[-1]] = 1.0
            box_losses.append((1.0 - paired_giou(boxes[i, pos], gt[best[pos]])).sum())
            n_pos += int(pos.sum())
    norm = max(n_pos, 1)
    loss = F.binary_cross_entropy_with_logits(cls_logits, target, reduction="sum") / norm
    if box_losses:
        loss = loss + torch.stack(box_losses).sum() / norm
    return loss
