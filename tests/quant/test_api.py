"""`model.export(int8=True)`, `NAS("x.onnx")` predict/val through onnxruntime, and the CLI, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nas import NAS
from nas.cli import main
from nas.errors import ConfigError
from nas.metrics.boxes import paired_iou
from tests.zoo_helpers import make_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from nas.data.synthetic import CLASSES

    return make_checkpoint(tmp_path_factory.mktemp("qapi") / "tiny.pt", 8, list(CLASSES))


@pytest.fixture(scope="module")
def exports(ckpt):
    model = NAS(ckpt)
    fp32 = model.export(format="onnx", imgsz=64, dynamic=True, verbose=False)
    int8 = model.export(format="onnx", imgsz=64, int8=True, calib=8, verbose=False)
    return model, fp32, int8, model.last_export


def _images():
    from nas.data import load_dataset

    return [str(r.path) for r in load_dataset("synthetic", split="val").images[:3]]


def test_int8_export_names_and_reports(exports, ckpt):
    _model, fp32, int8, result = exports
    assert fp32.endswith("tiny.onnx") and int8 == str(ckpt.with_name("tiny_int8.onnx"))
    assert result.int8["method"] == "minmax" and result.int8["calib_images"] == 8
    assert result.int8["per_channel"] and 0 < result.int8["output_error"]["error"] < 0.5
    assert "INT8" in str(result)
    assert "cost 0.18 mAP50-95 points" in str(result) and "nas val model=<the FP32 .onnx>" in str(result)  # a guide


def test_fp32_onnx_predicts_the_torch_boxes(exports):
    model, fp32, _, _ = exports
    onnx_model = NAS(fp32)
    assert onnx_model.is_onnx and onnx_model.names == model.names and onnx_model.arch == model.arch
    for a, b in zip(model.predict(_images(), imgsz=64, conf=0.05), onnx_model.predict(_images(), imgsz=64, conf=0.05)):
        assert len(a.boxes) == len(b.boxes) > 0
        assert torch.allclose(a.boxes.data, b.boxes.data, atol=1e-3)


def test_int8_onnx_predicts_close_boxes_and_validates(exports):
    model, _, int8, _ = exports
    q = NAS(int8)
    assert q.model.precision == "int8" and q.model.input_shape == [1, 3, 64, 64]
    for a, b in zip(model.predict(_images(), imgsz=64, conf=0.05), q.predict(_images(), imgsz=64, conf=0.05)):
        top = a.boxes.data[:1, :4]
        assert len(b.boxes) > 0 and paired_iou(top, b.boxes.data[:, :4]).max() > 0.9
    m32, m8 = model.val("synthetic", imgsz=64, verbose=False), q.val("synthetic", imgsz=64, batch=4, verbose=False)
    assert m8["num_images"] == m32["num_images"] and abs(m8["mAP50_95"] - m32["mAP50_95"]) < 0.05


def test_onnx_model_refuses_torch_only_operations(exports):
    q = NAS(exports[2])
    for call in (q.fuse, q.info, q.export, lambda: q.to("cuda:0") if torch.cuda.is_available() else q.fuse()):
        with pytest.raises(ConfigError):
            call()
    with pytest.raises(ConfigError, match="larger than the graph's fixed 64x64"):
        q.predict(_images()[:1], imgsz=96)


def test_cli_export_int8_then_val(ckpt, tmp_path, capsys):
    out = tmp_path / "m_int8.onnx"
    assert (
        main(["export", f"model={ckpt}", "imgsz=64", "int8=true", "calib=4", "calib_method=percentile", f"file={out}"])
        == 0
    )
    assert "exported INT8" in capsys.readouterr().out
    assert main(["val", f"model={out}", "imgsz=64", f"project={tmp_path / 'runs'}"]) == 0
    metrics = json.loads((tmp_path / "runs" / "val" / "exp" / "metrics.json").read_text())
    assert 0.0 <= metrics["mAP50_95"] <= 1.0
    assert main(["export", f"model={ckpt}", "int8=true", "calib_method=kl"]) == 2
    assert np.isfinite(metrics["mAP50"])
