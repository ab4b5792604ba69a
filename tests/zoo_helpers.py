"""Test helpers for the model zoo: a tiny architecture, fake detectors with known outputs, test images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from nas.space import ArchConfig, load_arch


def synthetic_root(tmp_path_factory) -> Path:
    """Where the tests keep the synthetic set: one folder per session, shared by xdist workers (as tests/data do)."""
    import os

    if os.environ.get("PYTEST_XDIST_WORKER") is not None:
        return tmp_path_factory.getbasetemp().parent / "datasets"
    return tmp_path_factory.getbasetemp() / "datasets"


def tiny_arch(num_classes: int = 80, name: str = "tiny") -> ArchConfig:
    """A YOLO-NAS-shaped network with ~250k parameters (one block per stage, narrow channels)."""
    a = load_arch("yolo_nas_s").to_dict()
    a["name"] = name
    a["backbone"]["stem"]["out_channels"] = 8
    for st in a["backbone"]["stages"]:
        st.update(
            out_channels=st["out_channels"] // 8, hidden_channels=max(8, st["hidden_channels"] // 8), num_blocks=1
        )
    a["backbone"]["context"]["out_channels"] = 96
    for st in a["neck"]["up"] + a["neck"]["down"]:
        st.update(out_channels=st["out_channels"] // 8, hidden_channels=8, num_blocks=1)
    for h in a["heads"]["heads"]:
        h.update(inter_channels=16, width_mult=1.0)
    a["heads"]["num_classes"] = num_classes
    return ArchConfig.from_dict(a)


def tiny_model(num_classes: int = 80, seed: int = 0) -> nn.Module:
    """The tiny network with seeded, spread-out weights (scores vary, so NMS has real work), eval mode."""
    from nas.models import build
    from tests.helpers import seeded_fill

    torch.manual_seed(seed)
    return seeded_fill(build(tiny_arch(num_classes))).eval()


def write_image(path: Path, h: int, w: int, seed: int = 0) -> Path:
    """A smooth random colour image (BGR) written with cv2."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(h // 16, 2), max(w // 16, 2), 3), dtype=np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


class FixedBoxModel(nn.Module):
    """Emits the same boxes (xyxy in *input* pixels) and one-hot scores for every image; records inputs."""

    def __init__(self, arch: ArchConfig, boxes: list[list[float]], classes: list[int], score: float = 0.9):
        super().__init__()
        self.arch = arch
        self.weight = nn.Parameter(torch.zeros(1))  # gives the module a device and dtype
        self.register_buffer("boxes", torch.tensor(boxes, dtype=torch.float32))
        scores = torch.zeros(len(boxes), arch.num_classes)
        scores[torch.arange(len(boxes)), torch.tensor(classes)] = score
        self.register_buffer("scores", scores)
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor):
        self.inputs.append(x.detach().cpu().clone())
        b = x.shape[0]
        out = (self.boxes.expand(b, -1, -1).clone(), self.scores.expand(b, -1, -1).clone())
        return out if torch.jit.is_tracing() else (out, ())


def content_region(x: torch.Tensor) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the non-padding part of one [3, H, W] letterboxed input (pad = 114)."""
    pad = ((x * 255).round() == 114).all(dim=0)
    rows = (~pad.all(dim=1)).nonzero().squeeze(1)
    cols = (~pad.all(dim=0)).nonzero().squeeze(1)
    top, left = int(rows[0]), int(cols[0])
    return top, left, int(rows[-1]) - top + 1, int(cols[-1]) - left + 1


class GroundTruthModel(nn.Module):
    """A "perfect detector" for a `nas.data` dataset, independent of the code under test.

    It recognises which image it is given (nearest 16x16 thumbnail of the content region), finds where
    that image lies in the input (the rows/columns that are not all padding value 114), maps the image's
    ground-truth boxes there with its own arithmetic, shifted by `shift_frac` of each box's width, and
    emits them with score 1 for the true class, in YOLO-NAS's output format.

    uniform_scale=True maps boxes with the long side's scale on both axes, as super-gradients maps its
    ground truth (its resize rounds each side, so the short side's pixels are scaled slightly differently).
    """

    def __init__(self, dataset, num_classes: int, shift_frac: float = 0.0, uniform_scale: bool = False):
        super().__init__()
        self.arch = tiny_arch(num_classes)
        self.weight = nn.Parameter(torch.zeros(1))
        self.dataset, self.shift_frac, self.uniform_scale = dataset, shift_frac, uniform_scale
        thumbs = []
        for rec in dataset.images:
            rgb = cv2.imread(str(rec.path))[..., ::-1]
            thumbs.append(cv2.resize(rgb, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32))
        self.thumbs = np.stack(thumbs)
        self.seen: list[int] = []

    def _detections(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        top, left, h, w = content_region(image)
        content = (image[:, top : top + h, left : left + w] * 255).permute(1, 2, 0).numpy()
        thumb = cv2.resize(content, (16, 16), interpolation=cv2.INTER_AREA)
        i = int(((self.thumbs - thumb) ** 2).sum(axis=(1, 2, 3)).argmin())
        self.seen.append(i)
        rec, boxes, classes = self.dataset[i]
        boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float64)).reshape(-1, 4).clone()
        boxes[:, [0, 2]] += self.shift_frac * (boxes[:, 2] - boxes[:, 0])[:, None]
        sx, sy = w / rec.width, h / rec.height
        if self.uniform_scale:
            sx = sy = max(w, h) / max(rec.width, rec.height)
        mapped = boxes * torch.tensor([sx, sy, sx, sy], dtype=torch.float64) + torch.tensor([left, top, left, top])
        scores = torch.zeros(len(boxes), self.arch.num_classes)
        scores[torch.arange(len(boxes)), torch.as_tensor(np.asarray(classes), dtype=torch.long)] = 1.0
        return mapped.float(), scores

    def forward(self, x: torch.Tensor):
        dets = [self._detections(img.float().cpu()) for img in x]
        n = max(1, max(len(b) for b, _ in dets))
        boxes = torch.zeros(len(dets), n, 4)
        scores = torch.zeros(len(dets), n, self.arch.num_classes)
        for k, (b, s) in enumerate(dets):
            boxes[k, : len(b)], scores[k, : len(s)] = b, s
        return (boxes.to(x.device), scores.to(x.device)), ()


def make_checkpoint(path: Path, num_classes: int, names: list[str] | None = None, seed: int = 0) -> Path:
    """A checkpoint in this project's format (core's `save_checkpoint`) of the tiny architecture."""
    from nas.models import save_checkpoint

    model = tiny_model(num_classes, seed)
    meta = {"class_names": list(names)} if names else None
    return save_checkpoint(path, model, model.arch, meta=meta)
