"""Detections of one image: `Results` (boxes in original pixels) with plot / save / to_json."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nas.io import write_bytes_atomic
from nas.metrics.boxes import xyxy2xywh

__all__ = ["Boxes", "Results"]

# A fixed, high-contrast palette (BGR) so the same class always gets the same colour.
_PALETTE = (
    (56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
    (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0),
    (147, 69, 52), (255, 115, 100), (236, 24, 0), (255, 56, 132), (133, 0, 82), (255, 56, 203),
    (200, 149, 255), (199, 55, 255),
)  # fmt: skip


class Boxes:
    """ultralytics-style view of an [n, 6] tensor (x1, y1, x2, y2, conf, cls) in original-image pixels."""

    def __init__(self, data: torch.Tensor, orig_shape: tuple[int, int]):
        self.data = data
        self.orig_shape = orig_shape

    @property
    def xyxy(self) -> torch.Tensor:
        return self.data[:, :4]

    @property
    def conf(self) -> torch.Tensor:
        return self.data[:, 4]

    @property
    def cls(self) -> torch.Tensor:
        return self.data[:, 5]

    @property
    def xywh(self) -> torch.Tensor:
        """Centre x, centre y, width, height."""
        return xyxy2xywh(self.xyxy)

    def __len__(self) -> int:
        return self.data.shape[0]

    def __repr__(self) -> str:
        return f"Boxes(n={len(self)}, orig_shape={self.orig_shape})"


@dataclass
class Results:
    """Detections for one image. `orig_img` is BGR uint8 HWC; `orig_shape` is (h, w); `speed_ms` per stage."""

    orig_img: np.ndarray
    path: str
    names: dict[int, str]
    boxes: Boxes
    speed_ms: dict[str, float] = field(default_factory=dict)

    @property
    def orig_shape(self) -> tuple[int, int]:
        return self.boxes.orig_shape

    def __len__(self) -> int:
        return len(self.boxes)

    def summary(self) -> list[dict]:
        """One dict per detection: name, class, confidence, box {x1, y1, x2, y2} in original pixels."""
        rows = []
        for (x1, y1, x2, y2), conf, cls in zip(
            self.boxes.xyxy.tolist(), self.boxes.conf.tolist(), self.boxes.cls.tolist()
        ):
            c = int(cls)
            rows.append(
                {
                    "name": self.names.get(c, str(c)),
                    "class": c,
                    "confidence": round(conf, 5),
                    "box": {"x1": round(x1, 5), "y1": round(y1, 5), "x2": round(x2, 5), "y2": round(y2, 5)},
                }
            )
        return rows

    def to_json(self, indent: int | None = 2) -> str:
        """The detections as a JSON array (see `summary`)."""
        return json.dumps(self.summary(), indent=indent)

    def verbose(self) -> str:
        """Counts per class, e.g. "2 person, 1 bus" (or "(no detections)")."""
        if not len(self):
            return "(no detections)"
        counts = torch.bincount(self.boxes.cls.long().cpu())
        return ", ".join(f"{int(n)} {self.names.get(c, str(c))}" for c, n in enumerate(counts.tolist()) if n)

    def plot(self, line_width: int | None = None, labels: bool = True, conf: bool = True) -> np.ndarray:
        """A copy of the original image (BGR uint8) with boxes and "name conf" labels drawn."""
        import cv2

        img = np.ascontiguousarray(self.orig_img.copy())
        lw = line_width or max(round(sum(img.shape[:2]) / 2 * 0.003), 2)
        font_scale, thickness = lw / 3, max(lw - 1, 1)
        for (x1, y1, x2, y2), score, cls in zip(
            self.boxes.xyxy.tolist(), self.boxes.conf.tolist(), self.boxes.cls.tolist()
        ):
            c = int(cls)
            color = _PALETTE[c % len(_PALETTE)]
            p1, p2 = (int(x1), int(y1)), (int(x2), int(y2))
            cv2.rectangle(img, p1, p2, color, thickness=lw, lineType=cv2.LINE_AA)
            if not labels:
                continue
            text = self.names.get(c, str(c)) + (f" {score:.2f}" if conf else "")
            (tw, th), _ = cv2.getTextSize(text, 0, font_scale, thickness)
            outside = p1[1] >= th + 3
            q2 = (p1[0] + tw, p1[1] - th - 3 if outside else p1[1] + th + 3)
            cv2.rectangle(img, p1, q2, color, -1, cv2.LINE_AA)
            org = (p1[0], p1[1] - 2 if outside else p1[1] + th + 2)
            cv2.putText(img, text, org, 0, font_scale, (255, 255, 255), thickness, lineType=cv2.LINE_AA)
        return img

    def save(self, path: str | os.PathLike | None = None) -> str:
        """Write the plotted image (format from the suffix; default: "<stem>_pred.jpg" in the cwd)."""
        import cv2

        path = Path(path) if path is not None else Path(f"{Path(self.path).stem}_pred.jpg")
        ok, buf = cv2.imencode(path.suffix or ".jpg", self.plot())
        if not ok:
            raise ValueError(f"cannot encode an image as {path.suffix!r} for {str(path)!r}")
        write_bytes_atomic(path, buf.tobytes())  # never leave a half-written image behind
        return str(path)

    def __repr__(self) -> str:
        return f"Results(path={self.path!r}, orig_shape={self.orig_shape}, detections={len(self)}: {self.verbose()})"
