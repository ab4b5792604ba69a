"""An exported ONNX detector (FP32 or INT8) run by onnxruntime behind the torch module interface.

`OrtDetector(path)(x)` takes the same pre-processed [B, 3, H, W] float tensor as the torch network and returns
its `(boxes, scores)`, so `predict_iter` and `validate` apply the same pre- and post-processing to both.
A graph exported with a fixed shape gets inputs that fit it: a batch runs one graph-batch at a time (the
last one padded), and an input smaller than the graph's H x W is padded at the bottom/right with the
letterbox grey, which moves no box (coordinates are measured from the top-left corner).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from nas.data.transforms import PAD_VALUE
from nas.errors import CheckpointError, ConfigError
from nas.ort_session import cpu_session
from nas.space.schema import ArchConfig

__all__ = ["OrtDetector", "is_onnx"]


def is_onnx(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() == ".onnx"


class OrtDetector(nn.Module):
    """A YOLO-NAS ONNX export (boxes/scores outputs, no in-graph NMS) in an onnxruntime CPU session."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"ONNX model {str(path)!r} does not exist; export one with `nas export`")
        try:
            self.session = cpu_session(self.path, threads)
        except ImportError:  # onnxruntime not installed: its own message says so
            raise
        except Exception as e:  # onnxruntime raises its own exception types for unreadable files
            raise CheckpointError(f"{self.path}: onnxruntime cannot load it ({e})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        outputs = [o.name for o in self.session.get_outputs()]
        if outputs != ["boxes", "scores"]:
            raise CheckpointError(
                f"{self.path}: outputs {outputs}; NAS() runs exports without in-graph NMS (outputs boxes, scores): "
                "re-export with nms=false"
            )
        if "arch" not in meta:
            raise CheckpointError(f"{self.path}: no `arch` metadata; export it with NAS.export / `nas export`")
        self.arch = ArchConfig.from_yaml(meta["arch"])
        self.metadata = {k: _json(v) for k, v in meta.items() if k != "arch"}
        names = self.metadata.get("names")
        self.checkpoint_meta = {"path": str(self.path), "class_names": names}
        self.precision = "int8" if "int8" in meta else ("fp16" if self.metadata.get("half") else "fp32")
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = [d if isinstance(d, int) else None for d in inp.shape]  # None: dynamic
        self.fp16_input = inp.type == "tensor(float16)"
        self.fixed_input = self.input_shape[2] is not None or self.input_shape[3] is not None  # val: square inputs

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.device.type != "cpu":
            raise ConfigError("an ONNX model runs in onnxruntime on the CPU; use device=cpu")
        gb, _, gh, gw = self.input_shape
        b, _, h, w = x.shape
        if (gh is not None and h > gh) or (gw is not None and w > gw):
            raise ConfigError(
                f"{self.path}: input {h}x{w} is larger than the graph's fixed {gh}x{gw}; use imgsz={gh} or "
                "export with dynamic=true"
            )
        arr = x.float().numpy()
        if (gh is not None and h < gh) or (gw is not None and w < gw):
            full = np.full((b, 3, gh or h, gw or w), PAD_VALUE / 255, dtype=np.float32)
            full[:, :, :h, :w] = arr
            arr = full
        step = gb or b
        boxes, scores = [], []
        for s in range(0, b, step):
            chunk = arr[s : s + step]
            n = len(chunk)
            if n < step:  # a fixed-batch graph: pad the last chunk with copies
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, axis=0)])
            if self.fp16_input:
                chunk = chunk.astype(np.float16)
            bx, sc = self.session.run(["boxes", "scores"], {self.input_name: np.ascontiguousarray(chunk)})
            boxes.append(bx[:n].astype(np.float32))
            scores.append(sc[:n].astype(np.float32))
        return torch.from_numpy(np.concatenate(boxes)), torch.from_numpy(np.concatenate(scores))

    def extra_repr(self) -> str:
        return f"{self.path}, {self.precision}, input {self.input_shape}"


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
