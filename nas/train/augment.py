"""Train-time augmentation of YOLO-NAS's recipes in numpy/cv2, boxes moved with the image.

Images are HWC uint8 BGR (as `cv2.imread` gives them), boxes xyxy float32 pixels [n, 4], labels int64 [n].
Order (yolo_nas_training.md §2.4 and the fine-tune recipes §3.1): mosaic of four images (fine-tune recipes; off for
the last `close_mosaic` epochs) or a centred square letterbox, random affine (scale, translate, optional
rotation; border 114), box-candidate filter (w, h > 2 px, kept area > 10 %, aspect < 20), HSV, horizontal flip.
Every random draw comes from the `numpy.random.Generator` passed in, so a sample is a function of its seed.
"""

from __future__ import annotations

import cv2
import numpy as np

from nas.data.transforms import PAD_VALUE

__all__ = [
    "affine_matrix",
    "box_candidates",
    "hflip",
    "hsv",
    "letterbox_square",
    "mosaic4",
    "random_affine",
    "warp_boxes",
]


def letterbox_square(img: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre `img` (long side <= size) on a size x size canvas of 114; boxes shifted alike."""
    h, w = img.shape[:2]
    top, left = (size - h) // 2, (size - w) // 2
    canvas = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    canvas[top : top + h, left : left + w] = img
    return canvas, boxes + np.array([left, top, left, top], dtype=np.float32)


def mosaic4(
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], size: int, centre: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four (image, boxes, labels) around `centre` of a 2·size canvas, as ultralytics' `Mosaic` (n=4).

    Image k goes top-left, top-right, bottom-left, bottom-right of the centre, cut where it leaves the canvas;
    its boxes move with it (not yet clipped: the affine that follows clips them)."""
    s2 = 2 * size
    xc, yc = int(centre[0]), int(centre[1])
    canvas = np.full((s2, s2, 3), PAD_VALUE, dtype=np.uint8)
    all_boxes, all_labels = [], []
    for k, (img, boxes, labels) in enumerate(parts):
        h, w = img.shape[:2]
        if k == 0:  # top left
            x1a, y1a, x2a, y2a = max(xc - w, 0), max(yc - h, 0), xc, yc
            x1b, y1b, x2b, y2b = w - (x2a - x1a), h - (y2a - y1a), w, h
        elif k == 1:  # top right
            x1a, y1a, x2a, y2a = xc, max(yc - h, 0), min(xc + w, s2), yc
            x1b, y1b, x2b, y2b = 0, h - (y2a - y1a), min(w, x2a - x1a), h
        elif k == 2:  # bottom left
            x1a, y1a, x2a, y2a = max(xc - w, 0), yc, xc, min(s2, yc + h)
            x1b, y1b, x2b, y2b = w - (x2a - x1a), 0, w, min(y2a - y1a, h)
        else:  # bottom right
            x1a, y1a, x2a, y2a = xc, yc, min(xc + w, s2), min(s2, yc + h)
            x1b, y1b, x2b, y2b = 0, 0, min(w, x2a - x1a), min(y2a - y1a, h)
        canvas[y1a:y2a, x1a:x2a] = img[y1b:y2b, x1b:x2b]
        dx, dy = x1a - x1b, y1a - y1b
        all_boxes.append(boxes + np.array([dx, dy, dx, dy], dtype=np.float32))
        all_labels.append(labels)
    return canvas, np.concatenate(all_boxes).reshape(-1, 4), np.concatenate(all_labels)


def affine_matrix(
    in_hw: tuple[int, int], out_hw: tuple[int, int], scale: float, centre_xy: tuple[float, float], degrees: float = 0.0
) -> np.ndarray:
    """3x3 matrix T·R·C: C moves the input centre to the origin, R rotates by `degrees` and scales, T moves the
    origin to `centre_xy` (output pixels). super-gradients' `DetectionRandomAffine` with the axes the right way."""
    c = np.eye(3)
    c[0, 2], c[1, 2] = -in_hw[1] / 2, -in_hw[0] / 2
    r = np.eye(3)
    r[:2] = cv2.getRotationMatrix2D(angle=degrees, center=(0, 0), scale=scale)
    t = np.eye(3)
    t[0, 2], t[1, 2] = centre_xy
    return t @ r @ c


def warp_boxes(boxes: np.ndarray, m: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Boxes through the affine `m`: the four corners warped, their min/max taken, clipped to the output."""
    n = len(boxes)
    if n == 0:
        return boxes.reshape(0, 4).astype(np.float32)
    corners = np.ones((n * 4, 3))
    corners[:, :2] = boxes[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(n * 4, 2)  # x1y1, x2y2, x1y2, x2y1
    xy = (corners @ m.T)[:, :2].reshape(n, 8)
    x, y = xy[:, [0, 2, 4, 6]], xy[:, [1, 3, 5, 7]]
    out = np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], 1)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, out_hw[1])
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, out_hw[0])
    return out.astype(np.float32)


def box_candidates(
    old: np.ndarray, new: np.ndarray, scale: float, wh_thr: float = 2.0, ar_thr: float = 20.0, area_thr: float = 0.1
) -> np.ndarray:
    """Which warped boxes to keep: w and h > wh_thr px, aspect < ar_thr, area > area_thr of the old area·scale²."""
    w1, h1 = (old[:, 2] - old[:, 0]) * scale, (old[:, 3] - old[:, 1]) * scale
    w2, h2 = new[:, 2] - new[:, 0], new[:, 3] - new[:, 1]
    ar = np.maximum(w2 / (h2 + 1e-16), h2 / (w2 + 1e-16))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + 1e-16) > area_thr) & (ar < ar_thr)


def random_affine(
    img: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    out_size: int,
    scale: float,
    translate: float,
    degrees: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scale by U(1−scale, 1+scale), rotate by U(−degrees, degrees), put the centre at U(0.5±translate)·out_size;
    boxes warped, clipped and filtered by `box_candidates`."""
    s = float(rng.uniform(1 - scale, 1 + scale))
    a = float(rng.uniform(-degrees, degrees)) if degrees else 0.0
    cx, cy = (float(rng.uniform(0.5 - translate, 0.5 + translate)) * out_size for _ in range(2))
    m = affine_matrix(img.shape[:2], (out_size, out_size), s, (cx, cy), a)
    out = cv2.warpAffine(img, m[:2], (out_size, out_size), borderValue=(PAD_VALUE,) * 3)
    new = warp_boxes(boxes, m, (out_size, out_size))
    keep = box_candidates(boxes, new, s) if len(boxes) else np.zeros(0, dtype=bool)
    return out, new[keep], labels[keep]


def hsv(img: np.ndarray, rng: np.random.Generator, gains: tuple[float, float, float], p: float = 0.5) -> np.ndarray:
    """super-gradients' `DetectionHSV`: with probability p, add U(−1, 1)·gain to H (fraction of the hue circle),
    S and V (fractions of 255), each channel left alone with probability 1/2; OpenCV 8-bit HSV (H in [0, 180))."""
    if rng.random() >= p:
        return img
    deltas = rng.uniform(-1, 1, 3) * np.array(gains) * np.array([180, 255, 255])
    deltas = np.where(rng.random(3) < 0.5, 0, deltas).astype(np.int64)
    if not deltas.any():
        return img
    h, s, v = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.int64)
    lut_h = ((x + deltas[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x + deltas[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x + deltas[2], 0, 255).astype(np.uint8)
    merged = cv2.merge((cv2.LUT(h, lut_h), cv2.LUT(s, lut_s), cv2.LUT(v, lut_v)))
    return cv2.cvtColor(merged, cv2.COLOR_HSV2BGR)


def hflip(img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right: x' = W − x, so x1' = W − x2 and x2' = W − x1."""
    w = img.shape[1]
    out = boxes.copy()
    out[:, 0], out[:, 2] = w - boxes[:, 2], w - boxes[:, 0]
    return np.ascontiguousarray(img[:, ::-1]), out
