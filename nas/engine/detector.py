"""The base of every exported detector: metadata -> architecture and class names, and the forward that fits a batch
to a fixed-shape graph (one graph-batch at a time, the last one padded; a smaller input padded at the bottom/right
with the letterbox grey, which moves no box). Subclasses (`nas.engine.ort`, `nas.engine.exported`) run one chunk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from nas.data.transforms import PAD_VALUE
from nas.errors import CheckpointError, ConfigError
from nas.space.schema import ArchConfig

__all__ = ["ExportedDetector", "parse_metadata"]


def parse_metadata(meta: dict[str, str], path: Path) -> tuple[ArchConfig, dict[str, Any]]:
    """(architecture, other metadata JSON-decoded) of an export's string metadata; refuses files without `arch`."""
    if "arch" not in meta:
        raise CheckpointError(f"{path}: no `arch` metadata; export it with NAS.export / `nas export`")
    return ArchConfig.from_yaml(meta["arch"]), {k: _json(v) for k, v in meta.items() if k != "arch"}


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


class ExportedDetector(nn.Module):
    """A YOLO-NAS export run by another runtime; subclasses set the fields below and implement `_run`."""

    runtime = "?"

    def _setup(self, path: Path, meta: dict[str, str], input_shape: list[int | None], fp16_input: bool) -> None:
        self.path = path
        self.arch, self.metadata = parse_metadata(meta, path)
        self.checkpoint_meta = {"path": str(path), "class_names": self.metadata.get("names")}
        self.precision = "int8" if "int8" in meta else ("fp16" if self.metadata.get("half") else "fp32")
        self.input_shape = input_shape  # [B, 3, H, W], None where dynamic
        self.fp16_input = fp16_input
        self.fixed_input = input_shape[2] is not None or input_shape[3] is not None  # val: square inputs

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def _run(self, x: np.ndarray | Tensor) -> tuple[Any, Any]:
        raise NotImplementedError

    def _fit(self, x: Tensor) -> Tensor:
        """x padded to the graph's fixed height and width (bottom/right, letterbox grey)."""
        _, _, gh, gw = self.input_shape
        b, _, h, w = x.shape
        if (gh is not None and h > gh) or (gw is not None and w > gw):
            raise ConfigError(
                f"{self.path}: input {h}x{w} is larger than the graph's fixed {gh}x{gw}; use imgsz={gh} or "
                "export with dynamic=true"
            )
        if (gh is None or h == gh) and (gw is None or w == gw):
            return x
        full = torch.full((b, 3, gh or h, gw or w), PAD_VALUE / 255, dtype=x.dtype, device=x.device)
        full[:, :, :h, :w] = x
        return full

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self._fit(x.float())
        b, step = len(x), self.input_shape[0] or len(x)
        boxes, scores = [], []
        for s in range(0, b, step):
            chunk = x[s : s + step]
            n = len(chunk)
            if n < step:  # a fixed-batch graph: pad the last chunk with copies
                chunk = torch.cat([chunk, chunk[-1:].expand(step - n, -1, -1, -1)])
            bx, sc = self._run(chunk.half() if self.fp16_input else chunk)
            boxes.append(torch.as_tensor(bx)[:n].float())
            scores.append(torch.as_tensor(sc)[:n].float())
        return torch.cat(boxes), torch.cat(scores)

    def extra_repr(self) -> str:
        return f"{self.path}, {self.runtime}, {self.precision}, input {self.input_shape}"
