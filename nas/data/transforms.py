"""Inference pre-processing: ultralytics' letterboxes (predict and val) and super-gradients' resize-and-pad.

Images are HWC uint8 numpy arrays in BGR order (as `cv2.imread` returns them). Each transform returns
the new image and a `Geometry` that maps boxes back to the original pixels (`scale_boxes`).
The arithmetic (Python's banker's `round`, the `d/2 -+ 0.1` padding split, `ceil` in the val resize)
is ultralytics' / super-gradients' own, so the same weights give the same boxes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "PAD_VALUE",
    "Geometry",
    "clip_boxes",
    "letterbox",
    "predict_transform",
    "rect_batch_shapes",
    "scale_boxes",
    "sg_transform",
    "to_tensor",
    "val_resize",
    "val_transform",
]

PAD_VALUE = 114


@dataclass(frozen=True)
class Geometry:
    """Where an original image lies inside the network input.

    gain_hw: per-axis scale from original to input pixels (None: ultralytics predict, which derives one
    uniform gain from the shapes); pad_tl: (top, left) padding in input pixels.
    """

    orig_hw: tuple[int, int]
    input_hw: tuple[int, int]
    pad_tl: tuple[int, int]
    gain_hw: tuple[float, float] | None = None


def letterbox(
    image: np.ndarray,
    new_hw: tuple[int, int],
    *,
    auto: bool = False,
    scaleup: bool = True,
    stride: int = 32,
    pad_value: int = PAD_VALUE,
) -> tuple[np.ndarray, tuple[int, int]]:
    """ultralytics `LetterBox` (centred): resize keeping the aspect ratio, pad to `new_hw`.

    auto=True pads only up to the next multiple of `stride` (minimal rectangle). Returns the image and
    its (top, left) padding.
    """
    h, w = image.shape[:2]
    r = min(new_hw[0] / h, new_hw[1] / w)
    if not scaleup:
        r = min(r, 1.0)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)  # thin images keep at least one pixel
    dw, dh = new_hw[1] - new_w, new_hw[0] - new_h
    if auto:
        dw, dh = dw % stride, dh % stride
    dw, dh = dw / 2, dh / 2
    if (w, h) != (new_w, new_h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    image = _pad(image, top, bottom, left, right, pad_value)
    return image, (top, left)


def _pad(image: np.ndarray, top: int, bottom: int, left: int, right: int, value: int) -> np.ndarray:
    if not (top or bottom or left or right):
        return image
    return cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(value,) * 3)


def predict_transform(
    image: np.ndarray, imgsz: int, auto: bool = True, stride: int = 32
) -> tuple[np.ndarray, Geometry]:
    """ultralytics predictor input: letterbox to `imgsz` with minimal stride padding (`auto`)."""
    out, pad_tl = letterbox(image, (imgsz, imgsz), auto=auto, stride=stride)
    return out, Geometry(image.shape[:2], out.shape[:2], pad_tl)


def val_resize(image: np.ndarray, imgsz: int) -> np.ndarray:
    """ultralytics val-dataset load: long side to `imgsz`, the other side rounded *up* (`ceil`)."""
    h0, w0 = image.shape[:2]
    r = imgsz / max(h0, w0)
    if r == 1:
        return image
    w, h = min(math.ceil(w0 * r), imgsz), min(math.ceil(h0 * r), imgsz)
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)


def rect_batch_shapes(
    hw: list[tuple[int, int]] | np.ndarray, imgsz: int, batch: int, stride: int = 32, pad: float = 0.5
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """ultralytics rectangular val batching: images sorted by aspect ratio h/w, one input shape per batch.

    Returns (order, shapes): `order` lists image indices in processing order; `shapes[k]` is the (h, w)
    input of the k-th batch (`ceil(shape * imgsz / stride + pad) * stride`).
    """
    s = np.asarray(hw, dtype=np.float64).reshape(-1, 2)
    ar = s[:, 0] / s[:, 1]
    order = ar.argsort()
    ar = ar[order]
    shapes = []
    for start in range(0, len(ar), batch):
        ari = ar[start : start + batch]
        mini, maxi = ari.min(), ari.max()
        shape = [maxi, 1.0] if maxi < 1 else ([1.0, 1.0 / mini] if mini > 1 else [1.0, 1.0])
        bh, bw = (np.ceil(np.array(shape) * imgsz / stride + pad).astype(int) * stride).tolist()
        shapes.append((int(bh), int(bw)))
    return order, shapes


def val_transform(image: np.ndarray, imgsz: int, batch_hw: tuple[int, int]) -> tuple[np.ndarray, Geometry]:
    """ultralytics validator input: `val_resize`, then `LetterBox(batch_hw, scaleup=False)`, centred.

    The geometry carries per-axis gains (resized / original), as ultralytics' `ratio_pad` does.
    """
    h0, w0 = image.shape[:2]
    resized = val_resize(image, imgsz)
    h, w = resized.shape[:2]
    out, (top, left) = letterbox(resized, batch_hw, auto=False, scaleup=False)
    if out.shape[:2] != tuple(batch_hw):  # scaleup=False leaves r = 1 for every image of a rect batch
        raise AssertionError(f"val letterbox produced {out.shape[:2]}, expected {batch_hw}")
    return out, Geometry((h0, w0), out.shape[:2], (top, left), (h / h0, w / w0))


def sg_transform(
    image: np.ndarray, input_hw: tuple[int, int] = (640, 640), resize_to: int = 636
) -> tuple[np.ndarray, Geometry]:
    """super-gradients' COCO protocol: longest side to `resize_to` (round), centre pad to `input_hw` (//2 split)."""
    h0, w0 = image.shape[:2]
    scale = min(resize_to / h0, resize_to / w0)
    h, w = round(h0 * scale), round(w0 * scale)
    if scale != 1:
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    top, left = (input_hw[0] - h) // 2, (input_hw[1] - w) // 2
    out = _pad(image, top, input_hw[0] - h - top, left, input_hw[1] - w - left, PAD_VALUE)
    # super-gradients maps boxes back with the one float scale it resized with
    return out, Geometry((h0, w0), out.shape[:2], (top, left), (scale, scale))


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """Stack same-sized BGR uint8 HWC images into a float RGB [B, 3, H, W] tensor in [0, 1]."""
    import torch

    batch = np.stack(images)[..., ::-1].transpose(0, 3, 1, 2)  # BGR->RGB, BHWC->BCHW
    return torch.from_numpy(np.ascontiguousarray(batch)).float() / 255


def scale_boxes(boxes, geometry: Geometry):
    """Map xyxy boxes from network-input pixels back to original-image pixels, then clip (in place).

    Without recorded gains (predict) this is ultralytics 8.4's `scale_boxes(ratio_pad=None)`: gain
    min(in/orig), resized sides `max(round(orig * gain), 1)` as LetterBox rounds them, per-axis gains
    resized/orig, padding `round((in - resized) / 2 - 0.1)`. With gains (val, sg) it uses them and the
    recorded padding, as ultralytics does with `ratio_pad`.
    """
    (h0, w0), (h1, w1) = geometry.orig_hw, geometry.input_hw
    if geometry.gain_hw is None:
        gain = min(h1 / h0, w1 / w0)
        new_h, new_w = max(round(h0 * gain), 1), max(round(w0 * gain), 1)
        gain_y, gain_x = new_h / h0, new_w / w0
        pad_x, pad_y = round((w1 - new_w) / 2 - 0.1), round((h1 - new_h) / 2 - 0.1)
    else:
        gain_y, gain_x = geometry.gain_hw
        pad_y, pad_x = geometry.pad_tl
    boxes[..., 0] -= pad_x
    boxes[..., 1] -= pad_y
    boxes[..., 2] -= pad_x
    boxes[..., 3] -= pad_y
    boxes[..., 0] /= gain_x
    boxes[..., 1] /= gain_y
    boxes[..., 2] /= gain_x
    boxes[..., 3] /= gain_y
    return clip_boxes(boxes, geometry.orig_hw)


def clip_boxes(boxes, hw: tuple[int, int]):
    """Clip xyxy boxes (torch or numpy, in place) to an image of size (h, w)."""
    h, w = hw
    if isinstance(boxes, np.ndarray):
        boxes[..., [0, 2]] = boxes[..., [0, 2]].clip(0, w)
        boxes[..., [1, 3]] = boxes[..., [1, 3]].clip(0, h)
        return boxes
    boxes[..., 0] = boxes[..., 0].clamp(0, w)
    boxes[..., 1] = boxes[..., 1].clamp(0, h)
    boxes[..., 2] = boxes[..., 2].clamp(0, w)
    boxes[..., 3] = boxes[..., 3].clamp(0, h)
    return boxes
