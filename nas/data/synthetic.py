"""The embedded synthetic detection set: generated on first use, in COCO and ultralytics layouts, cached.

Deterministic: image `i` of a split is drawn from `np.random.default_rng([seed, split_code, i])`, so the same
spec gives byte-identical annotations. The set is written to a temp folder and renamed into place, so a
killed generation never leaves a half set; a stamp (format version + spec) triggers regeneration on change.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
import uuid
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from nas.data.dataset import datasets_dir
from nas.data.synthetic_render import CLASSES, RenderParams, render_image
from nas.errors import ConfigError
from nas.options import from_args

__all__ = ["CLASSES", "SYNTHETIC_VERSION", "SyntheticSpec", "ensure_synthetic", "format_statistics", "statistics"]

# Bump when the rendering or the files change: every cached set is then regenerated.
SYNTHETIC_VERSION = 1
_SPLIT_CODES = {"train": 0, "val": 1}
_CHUNK = 25  # images per worker task


@dataclass(frozen=True, slots=True)
class SyntheticSpec:
    """What to generate. 400 train images train a small detector in minutes on a CPU; 100 val images hold
    ~700 objects (~90 per class), enough for a stable mAP while a val pass stays a few seconds."""

    seed: int = 0
    n_train: int = 400
    n_val: int = 100
    jpeg_quality: int = 90
    render: RenderParams = field(default_factory=RenderParams)

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready form (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def dirname(self) -> str:
        """`synthetic` for the default spec, `synthetic-<hash>` for any other, so sets never overwrite each other."""
        if self == SyntheticSpec():
            return "synthetic"
        digest = hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()
        return f"synthetic-{digest[:10]}"


def _stamp(spec: SyntheticSpec) -> dict[str, Any]:
    return {"version": SYNTHETIC_VERSION, "spec": spec.as_dict()}


def _is_current(path: Path, spec: SyntheticSpec) -> bool:
    try:
        return json.loads((path / "stamp.json").read_text()) == _stamp(spec)
    except (OSError, ValueError):
        return False


def _data_yaml(path_value: str) -> str:
    names = "\n".join(f"  {k}: {n}" for k, n in enumerate(CLASSES))
    return (
        "# Embedded synthetic detection set of yolo-nas-search (generated on first use; see docs/data.md)\n"
        f"path: {path_value}\ntrain: images/train\nval: images/val\n\nnames:\n{names}\n"
    )


def _write_images(out: Path, split: str, indices: range, spec: SyntheticSpec) -> list[tuple[dict, list[dict]]]:
    """Render, encode and write images `indices` of a split with their label files (run in worker processes)."""
    import cv2

    img_dir, lab_dir = out / "images" / split, out / "labels" / split
    records = []
    for i in indices:
        rng = np.random.default_rng([spec.seed, _SPLIT_CODES[split], i])
        img, boxes, classes, visible = render_image(rng, spec.render)
        h, w = img.shape[:2]
        image_id = i + 1
        name = f"{image_id:06d}"
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality])
        if not ok:
            raise RuntimeError(f"cv2 could not encode synthetic image {split}/{name}.jpg")
        (img_dir / f"{name}.jpg").write_bytes(buf.tobytes())
        anns, rows = [], []
        for (x, y, bw, bh), c, v in zip(boxes, classes, visible):
            anns.append(
                {
                    "image_id": image_id,
                    "category_id": c + 1,
                    "bbox": [x, y, bw, bh],
                    "area": bw * bh,  # box area, so that both layouts put an object in the same size range
                    "iscrowd": 0,
                    "visibility": round(v, 3),  # fraction of the shape not hidden by others or the border
                }
            )
            rows.append(f"{c} {(x + bw / 2) / w:.8f} {(y + bh / 2) / h:.8f} {bw / w:.8f} {bh / h:.8f}\n")
        (lab_dir / f"{name}.txt").write_text("".join(rows))
        records.append(({"id": image_id, "file_name": f"{name}.jpg", "width": w, "height": h}, anns))
    return records


def _write_split(out: Path, split: str, n: int, spec: SyntheticSpec, pool: Executor | None) -> None:
    (out / "images" / split).mkdir(parents=True)
    (out / "labels" / split).mkdir(parents=True)
    # Every image has its own generator, so chunks give the same files whatever the number of workers.
    chunks = [range(a, min(a + _CHUNK, n)) for a in range(0, n, _CHUNK)]
    if pool is None:
        parts = [_write_images(out, split, c, spec) for c in chunks]
    else:
        parts = list(pool.map(_write_images, *zip(*[(out, split, c, spec) for c in chunks])))
    images, anns = [], []
    for image, objs in (r for part in parts for r in part):
        images.append(image)
        anns += [{"id": len(anns) + k + 1, **a} for k, a in enumerate(objs)]
    coco = {
        "info": {"description": "yolo-nas-search synthetic shapes", "version": SYNTHETIC_VERSION, "seed": spec.seed},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": [{"id": k + 1, "name": n, "supercategory": "shape"} for k, n in enumerate(CLASSES)],
    }
    (out / "annotations").mkdir(exist_ok=True)
    (out / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))


def generate(out: Path, spec: SyntheticSpec = SyntheticSpec(), workers: int | None = None) -> Path:
    """Write the set into the new folder `out` (both layouts; `stamp.json` last).

    `workers` processes render in parallel (default: up to 8, one per core); the files do not depend on it.
    """
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    out.mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        pool = None
        if workers > 1 and spec.n_train + spec.n_val > _CHUNK:
            # spawn, not fork: the parent may hold torch / OpenCV thread pools that a forked child would inherit.
            try:
                ctx = multiprocessing.get_context("spawn")
                pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=ctx))
            except (OSError, NotImplementedError) as e:  # e.g. no POSIX semaphores: same files, one process
                logging.getLogger(__name__).info("synthetic set: rendering in one process (%s)", e)
        for split, n in (("train", spec.n_train), ("val", spec.n_val)):
            _write_split(out, split, n, spec, pool)
    (out / "synthetic.yaml").write_text(_data_yaml("."))
    (out / "stamp.json").write_text(json.dumps(_stamp(spec), indent=1))
    return out


def ensure_synthetic(
    root: str | os.PathLike | None = None, spec: SyntheticSpec = SyntheticSpec(), workers: int | None = None
) -> Path:
    """The folder of the synthetic set under the datasets root, generating it if absent or stale."""
    root = Path(root).expanduser() if root is not None else datasets_dir()
    final = root / spec.dirname()
    if _is_current(final, spec):
        return final
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(root / ".synthetic.lock"):  # one generator across processes (xdist workers, search jobs)
        if _is_current(final, spec):  # another process generated it while we waited
            return final
        for stale in root.glob(f".{spec.dirname()}.*"):  # left behind by a killed generation
            shutil.rmtree(stale, ignore_errors=True)
        tmp = root / f".{spec.dirname()}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            generate(tmp, spec, workers)
            if final.exists():
                old = root / f".{spec.dirname()}.old-{uuid.uuid4().hex[:8]}"
                os.replace(final, old)
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def statistics(path: Path) -> dict[str, Any]:
    """Per split: images, image sizes, objects per image and per class, COCO size ranges, occlusion."""
    out: dict[str, Any] = {}
    for split in _SPLIT_CODES:
        coco = json.loads((path / "annotations" / f"instances_{split}.json").read_text())
        anns = coco["annotations"]
        area = np.array([a["area"] for a in anns], dtype=float)
        vis = np.array([a["visibility"] for a in anns], dtype=float)
        per_img = np.bincount([a["image_id"] for a in anns], minlength=len(coco["images"]) + 1)[1:]
        ws = np.array([im["width"] for im in coco["images"]])
        hs = np.array([im["height"] for im in coco["images"]])
        out[split] = {
            "images": len(coco["images"]),
            "objects": len(anns),
            "objects_per_image": {"mean": float(per_img.mean()), "min": int(per_img.min()), "max": int(per_img.max())},
            "width_px": [int(ws.min()), int(ws.max())],
            "height_px": [int(hs.min()), int(hs.max())],
            "square_images": int((ws == hs).sum()),
            "per_class": {n: sum(a["category_id"] == k + 1 for a in anns) for k, n in enumerate(CLASSES)},
            "size_fraction": {
                "small (<32^2)": float((area < 32**2).mean()),
                "medium": float(((area >= 32**2) & (area < 96**2)).mean()),
                "large (>=96^2)": float((area >= 96**2).mean()),
            },
            "box_side_px_percentiles_5_50_95": [float(v) for v in np.percentile(np.sqrt(area), [5, 50, 95])],
            "occluded_or_truncated (visibility<0.9)": float((vis < 0.9).mean()),
        }
    return out


def format_statistics(stats: dict[str, Any]) -> str:
    """A Markdown table of `statistics()` for the docs."""
    splits = list(stats)
    rows = [("images", lambda s: s["images"]), ("objects", lambda s: s["objects"])]
    rows.append(
        ("objects / image (mean, min-max)", lambda s: "{mean:.2f}, {min}-{max}".format(**s["objects_per_image"]))
    )
    rows.append(("image width, height (px)", lambda s: f"{s['width_px'][0]}-{s['width_px'][1]}, {s['height_px'][0]}-{s['height_px'][1]}"))  # fmt: skip
    rows.append(("square images", lambda s: s["square_images"]))
    rows += [(f"class `{n}`", lambda s, n=n: s["per_class"][n]) for n in CLASSES]
    rows += [(f"{k} objects", lambda s, k=k: f"{100 * s['size_fraction'][k]:.1f}%") for k in next(iter(stats.values()))["size_fraction"]]  # fmt: skip
    rows.append(("sqrt(box area) px, 5/50/95th pct", lambda s: ", ".join(f"{v:.0f}" for v in s["box_side_px_percentiles_5_50_95"])))  # fmt: skip
    rows.append(("occluded or truncated (visible < 90%)", lambda s: f"{100 * s['occluded_or_truncated (visibility<0.9)']:.1f}%"))  # fmt: skip
    lines = ["| | " + " | ".join(splits) + " |", "|---" * (len(splits) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(str(f(stats[s])) for s in splits) + " |" for label, f in rows]
    return "\n".join(lines)


@dataclass(frozen=True)
class _Args:
    root: str | None = None


def main(argv: list[str] | None = None) -> int:
    """`python -m nas.data.synthetic [ROOT | root=ROOT]`: generate the default set if needed and print its statistics."""
    args = sys.argv[1:] if argv is None else argv
    roots = [a for a in args if "=" not in a]  # a bare ROOT, or root=ROOT
    try:
        root = from_args(_Args, [a for a in args if "=" in a], "python -m nas.data.synthetic").root
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if len(roots) + (root is not None) > 1:
        print(f"error: expected one ROOT directory, got {[*roots, root]}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    path = ensure_synthetic(roots[0] if roots else root)
    print(f"synthetic set at {path} ({time.perf_counter() - t0:.1f} s)\n")
    print(format_statistics(statistics(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
