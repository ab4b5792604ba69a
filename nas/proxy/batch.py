"""The proxy batch (a few images with boxes, from the synthetic set or seeded noise) and the detection loss that
gradient-based zero-cost proxies differentiate: YOLO-NAS's training loss (`nas.train.loss.ppyoloe_loss`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from nas.data import load_dataset
from nas.data.images import read_rgb
from nas.errors import ConfigError
from nas.train.loss import ppyoloe_loss

__all__ = [
    "BATCH_KINDS",
    "ProxyBatch",
    "check_imgsz",
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


def check_imgsz(imgsz: int) -> None:
    if imgsz < 32 or imgsz % 32:
        raise ConfigError(f"proxy imgsz={imgsz}: must be a positive multiple of 32 (e.g. 128)")


def random_batch(imgsz: int, batch_size: int, seed: int, num_classes: int = 80, max_objects: int = 4) -> ProxyBatch:
    """Seeded uniform-noise images with random boxes (when no dataset is wanted or available)."""
    check_imgsz(imgsz)
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch_size, 3, imgsz, imgsz, generator=g)
    boxes, labels = [], []
    for _ in range(batch_size):
        n = int(torch.randint(1, max_objects + 1, (1,), generator=g))
        wh = (0.1 + 0.5 * torch.rand(n, 2, generator=g)) * imgsz
        xy = torch.rand(n, 2, generator=g) * (imgsz - wh)
        boxes.append(torch.cat([xy, xy + wh], 1))
        labels.append(torch.randint(0, num_classes, (n,), generator=g))
    return ProxyBatch(images, tuple(boxes), tuple(labels), f"random(seed={seed})")


def synthetic_batch(imgsz: int, batch_size: int, data: str = "synthetic", split: str = "val") -> ProxyBatch:
    """The first `batch_size` images of a dataset (default: the embedded synthetic set), resized square."""
    check_imgsz(imgsz)
    import cv2  # cv2's import costs ~0.1 s: only a synthetic batch pays it

    ds = load_dataset(data, split)
    if len(ds) < batch_size:
        raise ConfigError(f"dataset {data!r} ({split}) has {len(ds)} images; proxy batch_size={batch_size}")
    images, boxes, labels = [], [], []
    for i in range(batch_size):
        rec, xyxy, cls = ds[i]
        img = cv2.resize(read_rgb(rec.path), (imgsz, imgsz), interpolation=cv2.INTER_LINEAR)
        images.append(torch.from_numpy(img).permute(2, 0, 1).float() / 255.0)
        scale = torch.tensor([imgsz / rec.width, imgsz / rec.height] * 2)
        boxes.append(torch.from_numpy(np.asarray(xyxy, dtype=np.float32)).reshape(-1, 4) * scale)
        labels.append(torch.from_numpy(np.asarray(cls, dtype=np.int64)).reshape(-1))
    return ProxyBatch(torch.stack(images), tuple(boxes), tuple(labels), f"{data}:{split}[0:{batch_size}]")


def make_batch(kind: str, imgsz: int, batch_size: int, seed: int, data: str = "synthetic") -> ProxyBatch:
    """`random` (seeded noise + random boxes) or `synthetic` (images of `data` via nas.data)."""
    if kind == "random":
        return random_batch(imgsz, batch_size, seed)
    if kind == "synthetic":
        return synthetic_batch(imgsz, batch_size, data)
    raise ConfigError(f"unknown proxy batch {kind!r}; choose one of {', '.join(BATCH_KINDS)}")


def raw_outputs(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(decoded boxes xyxy, cls logits, reg distribution logits, anchor points px) of a forward pass."""
    (boxes, _scores), raw = model(x)
    cls_logits, reg_distri, _anchors, anchor_points, _n, _strides = raw
    return boxes, cls_logits, reg_distri, anchor_points


def detection_loss(model: nn.Module, batch: ProxyBatch) -> Tensor:
    """YOLO-NAS's training loss (TAL + varifocal + GIoU + DFL, `nas.train.loss`) of the model on the batch.

    Labels beyond the model's classes (a random batch with 80 ids vs a few-class model) fold onto its classes."""
    outputs = model(batch.images)
    c = outputs[1][0].shape[-1]
    loss, _parts = ppyoloe_loss(outputs, list(batch.boxes), [lab % c for lab in batch.labels])
    return loss
