"""A tiny trained-looking detector exported to FP32 ONNX, and calibration images of the synthetic set."""

from __future__ import annotations

import pytest

from nas.export.onnx import export_onnx
from nas.quant import calibration_images
from tests.zoo_helpers import tiny_model

IMGSZ = 64


@pytest.fixture(scope="session")
def tiny():
    return tiny_model(num_classes=8)


@pytest.fixture(scope="session")
def fp32_onnx(tiny, tmp_path_factory):
    path = tmp_path_factory.mktemp("quant") / "tiny.onnx"
    meta = {"arch": tiny.arch.to_yaml(), "names": {str(i): f"c{i}" for i in range(8)}}
    assert export_onnx(tiny, path, imgsz=IMGSZ, metadata=meta).ok
    return path


@pytest.fixture(scope="session")
def calib():
    return calibration_images("synthetic", 8, IMGSZ)
