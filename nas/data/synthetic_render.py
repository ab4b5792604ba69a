"""Rendering of one synthetic detection image: textured background, clutter, occluding coloured shapes.

Difficulty comes from what makes COCO hard, scaled down: a log-uniform object size (about 40% of the
objects are COCO-"small"), occlusion and truncation, classes that look alike at small sizes (circle /
ring / hexagon, square / hexagon, star / cross, circle / ellipse), colours that carry no class information,
unlabelled look-alike clutter, textured backgrounds, blur, noise and JPEG artefacts.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from functools import cache
from statistics import NormalDist

import numpy as np

__all__ = ["CLASSES", "RenderParams", "render_image"]

CLASSES = ("circle", "ellipse", "triangle", "square", "hexagon", "star", "ring", "cross")

_SHIFT = 4  # cv2 fixed-point bits: polygons are rasterized with 1/16 px vertex precision


@dataclass(frozen=True, slots=True)
class RenderParams:
    """Knobs of one image's content (the generator's spec fixes them for a whole set)."""

    side_px: tuple[int, int] = (256, 416)  # image width and height are drawn independently in this range
    objects_mean: float = 7.0  # Poisson mean of the objects attempted per image (COCO: 7.3 per image)
    objects_max: int = 16
    size_min_px: float = 8.0  # sqrt(box area) is log-uniform in [size_min_px, size_max_frac * short side]
    size_max_frac: float = 0.7
    min_visible: float = 0.45  # no object ends up less visible than this (occlusion and truncation)
    min_side_px: int = 4  # a visible box narrower than this is not annotated (the object is not drawn)
    place_tries: int = 12  # bounded rejection sampling of a placement


@cache
def _normal_quantiles_256() -> np.ndarray:
    """256 equiprobable N(0, 1) quantiles: drawing bytes and looking them up is 4x faster than rng.normal."""
    return np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)], dtype=np.float32)


def _hsv_bgr(h: float, s: float, v: float) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return np.array([b, g, r], dtype=np.float32) * 255.0


def _random_colour(rng: np.random.Generator, s_range=(0.25, 1.0), v_range=(0.3, 1.0)) -> np.ndarray:
    return _hsv_bgr(rng.random(), rng.uniform(*s_range), rng.uniform(*v_range))


def _unit_polygon(cls: str, rng: np.random.Generator) -> tuple[list[np.ndarray], float]:
    """Outline(s) of a shape within the unit disc, and its box aspect ratio (w/h) before rotation.

    The first outline is filled; a second one (ring) is cut out of it.
    """
    t = np.linspace(0.0, 2 * math.pi, 48, endpoint=False)
    disc = np.stack([np.cos(t), np.sin(t)], 1)
    if cls == "circle":
        return [disc], 1.0
    if cls == "ellipse":
        return [disc], rng.uniform(1.6, 2.6)
    if cls == "ring":
        return [disc, disc * rng.uniform(0.45, 0.7)], rng.uniform(1.0, 1.2)
    if cls == "triangle":
        a = np.deg2rad(np.array([90.0, 210.0, 330.0]) + rng.uniform(-20, 20, 3))
        r = rng.uniform(0.8, 1.0, 3)
        return [np.stack([r * np.cos(a), r * np.sin(a)], 1)], rng.uniform(0.6, 1.6)
    if cls == "square":
        return [np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float) * 0.75], rng.uniform(0.85, 1.18)
    if cls == "hexagon":
        a = np.arange(6) * math.pi / 3
        return [np.stack([np.cos(a), np.sin(a)], 1)], rng.uniform(0.85, 1.18)
    if cls == "star":
        a = np.arange(10) * math.pi / 5 - math.pi / 2
        r = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.55))
        return [np.stack([r * np.cos(a), r * np.sin(a)], 1)], rng.uniform(0.8, 1.25)
    if cls == "cross":
        k = rng.uniform(0.28, 0.45)  # arm half-thickness
        p = [(-k, -1), (k, -1), (k, -k), (1, -k), (1, k), (k, k), (k, 1), (-k, 1), (-k, k), (-1, k), (-1, -k), (-k, -k)]
        return [np.array(p, dtype=float)], rng.uniform(0.8, 1.25)
    raise ValueError(f"unknown synthetic class {cls!r}; expected one of {CLASSES}")


def _place(outlines: list[np.ndarray], aspect: float, size_px: float, angle: float, cx: float, cy: float):
    """Outlines in image pixels: stretch to the aspect ratio, scale to `size_px`, rotate, move."""
    sx, sy = size_px / 2 * math.sqrt(aspect), size_px / 2 / math.sqrt(aspect)
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return [(o * [sx, sy]) @ rot.T + [cx, cy] for o in outlines]


def _rasterize(outlines: list[np.ndarray]) -> tuple[np.ndarray, int, int]:
    """A bool mask of the shape on its own bounding canvas, and the canvas's top-left corner in the image."""
    import cv2

    allp = np.concatenate(outlines)
    x0, y0 = np.floor(allp.min(0)).astype(int) - 1
    x1, y1 = np.ceil(allp.max(0)).astype(int) + 2
    mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    for i, o in enumerate(outlines):
        pts = np.round((o - [x0, y0]) * (1 << _SHIFT)).astype(np.int32)
        cv2.fillPoly(mask, [pts], 1 if i == 0 else 0, lineType=cv2.LINE_8, shift=_SHIFT)
    return mask.astype(bool), int(x0), int(y0)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Two colours blended by a smooth random field, plus stripes, a checkerboard or colour noise (BGR uint8)."""
    import cv2

    # Per-channel 2-D arithmetic: broadcasting (h, w, 1) against (3,) is several times slower here.
    g = rng.integers(2, 7, 2)
    t = cv2.resize(rng.random((g[0], g[1])).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    c1 = _random_colour(rng, (0.0, 0.7), (0.2, 0.95))
    c2 = _random_colour(rng, (0.0, 0.7), (0.2, 0.95))
    chans = [t * float(c2[i] - c1[i]) + float(c1[i] + 0.5) for i in range(3)]
    kind = rng.choice(4, p=[0.25, 0.25, 0.15, 0.35])
    if kind in (1, 2):
        yy, xx = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
        if kind == 1:  # stripes
            a, period = rng.uniform(0, math.pi), rng.uniform(6, 40)
            amp = rng.uniform(8, 25)
            tex = amp * np.sin((2 * math.pi / period) * (xx * math.cos(a) + yy * math.sin(a)))
        else:  # checkerboard
            cell = int(rng.integers(8, 33))
            tex = rng.uniform(10, 20) * (((xx // cell + yy // cell) % 2) * 2 - 1)
        chans = [c + tex for c in chans]
    elif kind == 3:  # mid-frequency colour noise
        gh, gw = max(2, h // int(rng.integers(8, 33))), max(2, w // int(rng.integers(8, 33)))
        amp = rng.uniform(12, 30)
        noise = cv2.resize(rng.standard_normal((gh, gw, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        chans = [c + amp * n for c, n in zip(chans, cv2.split(noise))]
    return np.clip(cv2.merge(chans), 0, 255).astype(np.uint8)


def _clutter(rng: np.random.Generator, img: np.ndarray, n: int, lines_only: bool = False) -> None:
    """Unlabelled distractors: lines, arcs, irregular blobs and letters."""
    import cv2

    h, w = img.shape[:2]
    for _ in range(n):
        colour = tuple(float(v) for v in _random_colour(rng, (0.0, 1.0), (0.1, 1.0)))
        kind = 0 if lines_only else int(rng.integers(4))
        th = int(rng.integers(1, 4))
        if kind == 0:
            p = rng.integers(0, [w, h, w, h])
            cv2.line(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), colour, th, cv2.LINE_AA)
        elif kind == 1:
            c, ax = rng.integers(0, [w, h]), rng.integers(4, max(5, min(w, h) // 3), 2)
            a0 = float(rng.uniform(0, 360))
            arc = (int(c[0]), int(c[1])), (int(ax[0]), int(ax[1])), float(rng.uniform(0, 180)), a0
            cv2.ellipse(img, *arc, a0 + float(rng.uniform(40, 250)), colour, th, cv2.LINE_AA)
        elif kind == 2:  # irregular blob: at small sizes it can pass for a circle or hexagon
            k = int(rng.integers(8, 15))
            a = np.sort(rng.uniform(0, 2 * math.pi, k))
            r = rng.uniform(0.35, 1.0, k) * rng.uniform(3, 30)
            c = rng.uniform(0, [w, h])
            pts = np.stack([c[0] + r * np.cos(a), c[1] + r * np.sin(a)], 1)
            cv2.fillPoly(img, [np.round(pts * 16).astype(np.int32)], colour, cv2.LINE_AA, shift=4)
        else:
            text = "".join(rng.choice(list("ABEFGHKLMNPRSTUVWYZ"), int(rng.integers(1, 4))))
            org = (int(rng.integers(0, w)), int(rng.integers(10, h)))
            cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, float(rng.uniform(0.3, 1.2)), colour, th)


def _paint(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray, x0: int, y0: int) -> None:
    """Fill the mask (clipped to the image) with a solid, gradient or striped colour, lit from one side."""
    import cv2

    h, w = img.shape[:2]
    ys, xs = slice(max(y0, 0), min(y0 + mask.shape[0], h)), slice(max(x0, 0), min(x0 + mask.shape[1], w))
    m = mask[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
    py, px = np.nonzero(m)  # work on the object's pixels only
    py, px = py.astype(np.float32), px.astype(np.float32)
    c1 = _random_colour(rng)
    style = rng.choice(3, p=[0.55, 0.25, 0.20])
    if style == 0:
        fill = np.broadcast_to(c1, (len(px), 3))
    else:
        c2 = np.clip(c1 + rng.normal(0, 60, 3), 0, 255).astype(np.float32)
        a = rng.uniform(0, math.pi)
        u = px * math.cos(a) + py * math.sin(a)
        t = (u - u.min()) / max(float(np.ptp(u)), 1.0) if style == 1 else (np.sin(u / rng.uniform(1.5, 6)) > 0)
        fill = c1 + np.outer(np.asarray(t, dtype=np.float32), c2 - c1)
    a = rng.uniform(0, 2 * math.pi)
    extent = max(m.shape[0], m.shape[1], 1)
    light = 1 + rng.uniform(0, 0.3) * ((px * math.cos(a) + py * math.sin(a)) / extent - 0.5)
    fill = fill * light[:, None].astype(np.float32)
    if rng.random() < 0.25 and min(m.shape) > 6:  # dark or bright outline
        inner = cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=int(rng.integers(1, 3))) > 0
        fill[~inner[m]] = _random_colour(rng, (0.0, 0.5), (0.05, 1.0))
    img[ys, xs][m] = cv2.convertScaleAbs(fill)  # rounds and saturates; fill >= 0 so abs is a no-op


def render_image(
    rng: np.random.Generator, params: RenderParams = RenderParams()
) -> tuple[np.ndarray, list[tuple[int, int, int, int]], list[int], list[float]]:
    """One BGR uint8 image, its visible (modal) boxes xywh in pixels, classes, and each object's visible fraction."""
    import cv2
    from scipy import ndimage

    w, h = (int(v) for v in rng.integers(params.side_px[0], params.side_px[1] + 1, 2))
    img = _background(rng, h, w)
    _clutter(rng, img, int(rng.integers(2, 13)))
    inst = np.zeros((h, w), dtype=np.int16)  # which object owns each pixel (0: none)
    full_px: list[int] = []  # each object's whole mask, truncated part included
    visible = np.zeros(0, dtype=np.int64)  # each object's pixels in the image not covered by later ones
    classes: list[int] = []
    n = int(min(max(rng.poisson(params.objects_mean), 1), params.objects_max))
    size_max = params.size_max_frac * min(w, h)
    sizes = np.exp(rng.uniform(math.log(params.size_min_px), math.log(size_max), n))
    # Larger objects tend to lie behind smaller ones, with noise so that small ones are occluded too.
    for size in sizes[np.argsort(-(np.log(sizes) + rng.normal(0, 0.6, n)))]:
        cls = int(rng.integers(len(CLASSES)))
        outlines, aspect = _unit_polygon(CLASSES[cls], rng)
        angle = 0.0 if CLASSES[cls] == "circle" else rng.uniform(0, 2 * math.pi)
        for _ in range(params.place_tries):
            cx, cy = rng.uniform(-0.1 * size, w + 0.1 * size), rng.uniform(-0.1 * size, h + 0.1 * size)
            mask, x0, y0 = _rasterize(_place(outlines, aspect, size, angle, cx, cy))
            ys, xs = slice(max(y0, 0), min(y0 + mask.shape[0], h)), slice(max(x0, 0), min(x0 + mask.shape[1], w))
            if ys.stop - ys.start < params.min_side_px or xs.stop - xs.start < params.min_side_px:
                continue
            m = mask[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
            total = int(mask.sum())
            if m.sum() < params.min_visible * total:  # truncated too much by the image border
                continue
            covered = np.bincount(inst[ys, xs][m], minlength=len(full_px) + 1)[1:]
            if np.any(visible - covered < params.min_visible * np.array(full_px)):
                continue  # would hide an earlier object too much
            inst[ys, xs][m] = len(full_px) + 1
            visible = np.append(visible - covered, int(m.sum()))
            full_px.append(total)
            classes.append(cls)
            _paint(rng, img, mask, x0, y0)
            break
    _clutter(rng, img, int(rng.integers(0, 4)), lines_only=True)  # thin lines across objects, not annotated
    if rng.random() < 0.7:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.0))
    gain, offset, sigma = rng.uniform(0.75, 1.2), rng.uniform(-20, 20), rng.uniform(2, 12)
    noise = cv2.LUT(rng.integers(0, 256, img.shape, dtype=np.uint8), _normal_quantiles_256().reshape(1, 256))
    out = cv2.scaleAdd(noise, sigma, img.astype(np.float32) * gain + (offset + 0.5))
    img = np.clip(out, 0, 255, out=out).astype(np.uint8)

    # Modal boxes (of the visible pixels), like COCO's; every drawn object stays >= min_visible visible.
    boxes = [(sl[1].start, sl[0].start, sl[1].stop - sl[1].start, sl[0].stop - sl[0].start)
             for sl in ndimage.find_objects(inst, max_label=len(full_px))]  # fmt: skip
    return img, boxes, classes, [float(v / f) for v, f in zip(visible, full_px)]
