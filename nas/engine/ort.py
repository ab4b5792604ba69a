"""An exported ONNX detector (FP32 or INT8) run by onnxruntime behind the torch module interface.

`OrtDetector(path)(x)` takes the same pre-processed [B, 3, H, W] float tensor as the torch network and returns
its `(boxes, scores)`, so `predict_iter` and `validate` apply the same pre- and post-processing to both.
A graph exported with a fixed shape gets inputs that fit it (`nas.engine.detector.ExportedDetector`, the base of
every format's detector).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from nas.engine.detector import ExportedDetector
from nas.errors import CheckpointError, ConfigError
from nas.ort_session import cpu_session

__all__ = ["OrtDetector", "is_onnx"]


def is_onnx(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() == ".onnx"


class OrtDetector(ExportedDetector):
    """A YOLO-NAS ONNX export (boxes/scores outputs, no in-graph NMS) in an onnxruntime CPU session."""

    runtime = "onnxruntime"

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
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = [d if isinstance(d, int) else None for d in inp.shape]  # None: dynamic
        self._setup(self.path, meta, shape, inp.type == "tensor(float16)")

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.device.type != "cpu":
            raise ConfigError("an ONNX model runs in onnxruntime on the CPU; use device=cpu")
        return super().forward(x)

    def _run(self, x: Tensor) -> tuple[np.ndarray, np.ndarray]:
        return self.session.run(["boxes", "scores"], {self.input_name: np.ascontiguousarray(x.numpy())})
