"""COCO bbox mAP by pycocotools' COCOeval (exact protocol: 10 IoU thresholds, 101 recall points, maxDets 100),
and the one conversion of detections to COCO result dicts."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from nas.data.dataset import DetectionDataset

__all__ = ["STAT_NAMES", "coco_evaluate", "ground_truth_detections", "precision_recall", "to_coco_detections"]

# COCOeval.stats, in order (the last three maxDets follow `max_dets`).
STAT_NAMES = (
    "AP@[.50:.95]",
    "AP@.50",
    "AP@.75",
    "AP_small",
    "AP_medium",
    "AP_large",
    "AR@1",
    "AR@10",
    "AR@maxDets",
    "AR_small",
    "AR_medium",
    "AR_large",
)


def precision_recall(ev: Any, iou_index: int = 0) -> dict[str, Any]:
    """Precision and recall as ultralytics prints them (P, R), from a COCOeval that has run `evaluate()`.

    Per class with ground truth, at IoU `ev.params.iouThrs[iou_index]` (0.5), area "all", the detections kept
    by maxDets: precision and recall as functions of the confidence threshold, sampled on 1,000 thresholds in
    [0, 1]; the threshold is the one that maximises the class-mean F1 (smoothed by a 10% box filter, as
    ultralytics' `ap_per_class`), and P / R are the class means there. Crowd matches and ignored boxes are left
    out as COCOeval leaves them out.
    """
    p = ev.params
    n_area, n_img = len(p.areaRng), len(p.imgIds)
    grid = np.linspace(0, 1, 1000)
    curves_p, curves_r, cat_ids = [], [], []
    for k, cid in enumerate(p.catIds):
        evs = [e for e in ev.evalImgs[k * n_area * n_img : k * n_area * n_img + n_img] if e is not None]  # area "all"
        n_pos = sum(int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)) for e in evs)
        if n_pos == 0:
            continue
        scores = np.concatenate([np.asarray(e["dtScores"], dtype=float) for e in evs] or [np.zeros(0)])
        matched = np.concatenate([np.asarray(e["dtMatches"])[iou_index] > 0 for e in evs] or [np.zeros(0, bool)])
        ignored = np.concatenate(
            [np.asarray(e["dtIgnore"])[iou_index].astype(bool) for e in evs] or [np.zeros(0, bool)]
        )
        order = np.argsort(-scores, kind="mergesort")
        scores, matched, ignored = scores[order], matched[order], ignored[order]
        keep = ~ignored
        scores, matched = scores[keep], matched[keep]
        tp, fp = np.cumsum(matched), np.cumsum(~matched)
        recall = tp / n_pos
        precision = tp / np.maximum(tp + fp, 1)
        # at threshold c the detections with score > c count (ultralytics: np.interp over -conf)
        curves_r.append(np.interp(-grid, -scores, recall, left=0) if len(scores) else np.zeros_like(grid))
        curves_p.append(np.interp(-grid, -scores, precision, left=1) if len(scores) else np.zeros_like(grid))
        cat_ids.append(cid)
    if not cat_ids:
        return {"precision": 0.0, "recall": 0.0, "conf": 0.0, "per_class_precision": {}, "per_class_recall": {}}
    pc, rc = np.array(curves_p), np.array(curves_r)
    f1 = 2 * pc * rc / (pc + rc + 1e-16)
    nf = round(len(grid) * 0.1 * 2) // 2 + 1  # ultralytics' smooth(f1.mean(0), 0.1)
    y = np.concatenate((np.full(nf // 2, f1.mean(0)[0]), f1.mean(0), np.full(nf // 2, f1.mean(0)[-1])))
    i = int(np.convolve(y, np.ones(nf) / nf, mode="valid").argmax())
    return {
        "precision": float(pc[:, i].mean()),
        "recall": float(rc[:, i].mean()),
        "conf": float(grid[i]),
        "per_class_precision": {c: float(v) for c, v in zip(cat_ids, pc[:, i])},
        "per_class_recall": {c: float(v) for c, v in zip(cat_ids, rc[:, i])},
    }


def to_coco_detections(
    image_id: int,
    boxes_xyxy: Any,
    scores: Any,
    classes: Any,
    category_ids: Sequence[int],
    *,
    rounded: bool = False,
) -> list[dict[str, Any]]:
    """One image's detections (xyxy pixels, scores, contiguous classes) as COCO result dicts.

    The box arithmetic runs in the boxes' own float dtype with ultralytics' operation order (centre, then
    top-left corner), so float32 detections give ultralytics' numbers bit for bit; `rounded` rounds bbox
    to 3 and score to 5 decimals as its COCO JSON writer does.
    """
    b = np.asarray(boxes_xyxy)
    b = (b if np.issubdtype(b.dtype, np.floating) else b.astype(np.float64)).reshape(-1, 4)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    c = np.asarray(classes).reshape(-1).astype(np.int64)
    if not len(b) == len(s) == len(c):
        raise ValueError(f"boxes ({len(b)}), scores ({len(s)}) and classes ({len(c)}) must have the same length")
    if len(c) and (c.min() < 0 or c.max() >= len(category_ids)):
        raise ValueError(f"class index {int(c.max() if c.max() >= 0 else c.min())} outside 0..{len(category_ids) - 1}")
    wh = b[:, 2:] - b[:, :2]
    xywh = np.concatenate([(b[:, :2] + b[:, 2:]) / 2 - wh / 2, wh], axis=1)
    out = []
    for box, v, k in zip(xywh.tolist(), s.tolist(), c.tolist()):
        if rounded:
            box, v = [round(x, 3) for x in box], round(v, 5)
        out.append({"image_id": int(image_id), "category_id": int(category_ids[k]), "bbox": box, "score": v})
    return out


def ground_truth_detections(dataset: DetectionDataset) -> list[dict[str, Any]]:
    """The dataset's non-crowd objects as detections with score 1 (a perfect detector: mAP 1.0)."""
    out: list[dict[str, Any]] = []
    for rec, boxes, classes in dataset:
        out += to_coco_detections(rec.id, boxes, np.ones(len(boxes)), classes, dataset.category_ids)
    return out


def _as_result_anns(detections: Any, gt: Any) -> list[dict[str, Any]]:
    """Validated COCO result annotations with the fields `COCO.loadRes` would add (ids start at 1)."""
    if isinstance(detections, np.ndarray):
        a = np.asarray(detections, dtype=np.float64)
        if a.size == 0:
            return []
        if a.ndim != 2 or a.shape[1] != 7:
            raise ValueError(
                f"a detections array must be [N, 7] (image_id, x, y, w, h, score, category_id), got {a.shape}"
            )
        detections = [
            {"image_id": int(r[0]), "bbox": r[1:5].tolist(), "score": float(r[5]), "category_id": int(r[6])} for r in a
        ]
    img_ids, cat_ids = set(gt.getImgIds()), set(gt.getCatIds())
    anns = []
    for i, d in enumerate(detections):
        try:
            image_id, cat, score = int(d["image_id"]), int(d["category_id"]), float(d["score"])
            x, y, w, h = (float(v) for v in d["bbox"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                f"detection {i} = {d!r}: needs image_id, category_id, bbox [x, y, w, h], score ({e})"
            ) from None
        if image_id not in img_ids:
            raise ValueError(f"detection {i}: image_id {image_id} is not in the ground truth")
        if cat not in cat_ids:
            # pycocotools would silently ignore it: a wrong class mapping must not pass as a low mAP.
            raise ValueError(f"detection {i}: category_id {cat} is not a ground-truth category ({sorted(cat_ids)})")
        if not np.isfinite([x, y, w, h, score]).all():
            raise ValueError(f"detection {i}: non-finite bbox or score {d!r}")
        anns.append(
            {
                "id": len(anns) + 1,  # COCOeval marks unmatched with id 0
                "image_id": image_id,
                "category_id": cat,
                "bbox": [x, y, w, h],
                "score": score,
                "area": w * h,
                "iscrowd": 0,
            }
        )
    return anns


def _mean_valid(s: np.ndarray) -> float:
    v = s[s > -1]
    return float(v.mean()) if v.size else -1.0


def _stats(ev: Any, max_dets: int) -> np.ndarray:
    """COCOeval.summarize()'s 12 numbers, computed for any maxDets (summarize() hard-codes 100 for AP)."""
    p, prec, rec = ev.params, ev.eval["precision"], ev.eval["recall"]  # [T,R,K,A,M], [T,K,A,M]
    area = {name: i for i, name in enumerate(p.areaRngLbl)}
    t50, t75 = (int(np.argmin(np.abs(p.iouThrs - t))) for t in (0.5, 0.75))
    m = list(p.maxDets).index(max_dets)  # COCOeval.evaluate() sorts maxDets
    return np.array(
        [
            _mean_valid(prec[:, :, :, area["all"], m]),
            _mean_valid(prec[t50, :, :, area["all"], m]),
            _mean_valid(prec[t75, :, :, area["all"], m]),
            _mean_valid(prec[:, :, :, area["small"], m]),
            _mean_valid(prec[:, :, :, area["medium"], m]),
            _mean_valid(prec[:, :, :, area["large"], m]),
            _mean_valid(rec[:, :, area["all"], list(p.maxDets).index(1)]),
            _mean_valid(rec[:, :, area["all"], list(p.maxDets).index(10)]),
            _mean_valid(rec[:, :, area["all"], m]),
            _mean_valid(rec[:, :, area["small"], m]),
            _mean_valid(rec[:, :, area["medium"], m]),
            _mean_valid(rec[:, :, area["large"], m]),
        ]
    )


def coco_evaluate(
    dataset: DetectionDataset,
    detections: Iterable[dict[str, Any]] | np.ndarray,
    *,
    max_dets: int = 100,
    verbose: bool = False,
) -> dict[str, Any]:
    """Bbox mAP of `detections` against `dataset` by pycocotools' COCOeval.

    Args:
        detections: COCO result dicts `{image_id, category_id, bbox: [x, y, w, h] in original pixels, score}`,
            or an array [N, 7] of (image_id, x, y, w, h, score, category_id).
        max_dets: detections kept per image (COCO: 100); the AR@1 / AR@10 points stay as in COCO.
        verbose: print pycocotools' progress and the summary table.

    Returns `mAP50_95`, `mAP50`, `mAP75`, `mAP_small/medium/large` (-1 where the ground truth has no object
    of that size, pycocotools' convention), `per_class` and `per_class_AP50` (by class name, classes with
    ground-truth objects only), `stats` (the 12 COCOeval numbers, see STAT_NAMES) and `num_detections`.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if max_dets < 1:
        raise ValueError(f"max_dets must be >= 1, got {max_dets}")
    gt = dataset.coco_gt()
    anns = _as_result_anns(list(detections) if not isinstance(detections, np.ndarray) else detections, gt)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        # Built like COCO.loadRes, which cannot take an empty result list (it reads anns[0]).
        dt = COCO()
        dt.dataset = {"images": gt.dataset["images"], "categories": gt.dataset["categories"], "annotations": anns}
        dt.createIndex()
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.params.maxDets = sorted({1, 10, max_dets})
        ev.evaluate()
        ev.accumulate()
    stats = _stats(ev, max_dets)
    if verbose:
        print(out.getvalue(), end="")
        for name, v in zip(STAT_NAMES, stats):
            label = name.replace("maxDets", str(max_dets))
            print(f" {label:<14} = {v:0.3f}")
    prec = ev.eval["precision"][:, :, :, 0, list(ev.params.maxDets).index(max_dets)]  # [T, R, K], area "all"
    t50 = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))
    cat_ids = list(ev.params.catIds)
    per_class, per_class_50 = {}, {}
    for k, cid in enumerate(dataset.category_ids):
        if not gt.getAnnIds(catIds=[cid], iscrowd=False):
            continue
        name = dataset.names[k]
        per_class[name] = _mean_valid(prec[:, :, cat_ids.index(cid)])
        per_class_50[name] = _mean_valid(prec[t50, :, cat_ids.index(cid)])
    pr = precision_recall(ev, t50)
    names_by_cid = {cid: dataset.names[k] for k, cid in enumerate(dataset.category_ids)}
    return {
        "precision": pr["precision"],
        "recall": pr["recall"],
        "conf_best_f1": pr["conf"],
        "per_class_precision": {names_by_cid[c]: v for c, v in pr["per_class_precision"].items()},
        "per_class_recall": {names_by_cid[c]: v for c, v in pr["per_class_recall"].items()},
        "mAP50_95": float(stats[0]),
        "mAP50": float(stats[1]),
        "mAP75": float(stats[2]),
        "mAP_small": float(stats[3]),
        "mAP_medium": float(stats[4]),
        "mAP_large": float(stats[5]),
        "per_class": per_class,
        "per_class_AP50": per_class_50,
        "stats": [float(v) for v in stats],
        "max_dets": max_dets,
        "num_detections": len(anns),
    }
