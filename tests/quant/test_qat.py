"""Quantization-aware fine-tuning: the fake quantization is onnxruntime's PTQ, and `train(qat=True)` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nas import NAS
from nas.cli import main
from nas.errors import ConfigError
from nas.quant import quantize_onnx
from nas.quant.qat import prepare_qat, qat_layers, strip_qat
from nas.quant.sensitivity import output_error, run_outputs
from nas.train.options import TrainOptions
from nas.train.qat import QAT_FILE, qat_exclude, qat_recipe
from tests.zoo_helpers import make_checkpoint

IMGSZ = 64


def _outputs(model, images):
    with torch.no_grad():
        (boxes, scores), _ = model.eval()(torch.from_numpy(images))
    return boxes.numpy(), scores.numpy()


def test_fake_quantization_simulates_onnxruntime_int8(tiny, fp32_onnx, calib, tmp_path):
    q = prepare_qat(tiny, calib)
    assert len(qat_layers(q)) == q.qat["layers"] > 50 and q.fusion == "full"
    assert set(q.state_dict()) == set(strip_qat(q).state_dict())  # same names as the fused network
    ref = run_outputs(fp32_onnx, calib)
    ort8 = run_outputs(quantize_onnx(fp32_onnx, tmp_path / "q.onnx", calib).path, calib)
    fq = _outputs(q, calib)
    sim = output_error(ort8, fq)["error"]
    # the simulated INT8 sits next to onnxruntime's INT8, not next to FP32
    assert sim < 0.5 * output_error(ref, ort8)["error"] + 1e-3
    assert np.abs(_outputs(strip_qat(q), calib)[0] - ref[0]).max() < 1e-2  # stripped: the float network again
    assert prepare_qat(tiny, calib, per_channel=False).qat["per_channel"] is False


def test_exclude_keeps_layers_float_and_names_the_heads(tiny, calib):
    heads = qat_exclude(tiny, "heads")
    assert heads and all(".cls_" in n or ".reg_" in n for n in heads) and not any(".stem" in n for n in heads)
    q = prepare_qat(tiny, calib, exclude=heads)
    assert q.qat["layers"] == len(qat_layers(prepare_qat(tiny, calib))) - len(heads)
    with pytest.raises(ConfigError, match="no convolution"):
        qat_exclude(tiny, "heads.head9.cls_pred")


def test_recipe_is_super_gradients():
    o = qat_recipe(TrainOptions(epochs=100, lr0=1e-3, weight_decay=1e-5))
    assert (o.epochs, o.mosaic, o.ema_decay, o.lrf, o.amp) == (10, 0.0, 0.0, 0.01, "off")
    assert o.lr0 == pytest.approx(1e-5) and o.weight_decay == pytest.approx(1e-7)
    assert qat_recipe(TrainOptions(epochs=5)).epochs == 1


def test_train_qat_end_to_end_writes_qdq_onnx(tmp_path):
    from nas.data.synthetic import CLASSES

    ckpt = make_checkpoint(tmp_path / "tiny.pt", 8, list(CLASSES))
    model = NAS(ckpt)
    result = model.train(data="synthetic", epochs=10, imgsz=IMGSZ, batch=8, limit=16, workers=0, qat=True,
                         qat_calib=8, project=str(tmp_path / "runs"), plots=False, verbose=False)  # fmt: skip
    assert result.best.name == QAT_FILE and result.best.is_file() and len(result.history) == 1
    assert not (result.run_dir / "last.pt").exists()
    info = json.loads((result.run_dir / "qat.json").read_text())
    assert info["per_channel"] and info["calib_images"] == 8 and info["method"] == "minmax"
    int8 = NAS(result.best)
    assert int8.model.precision == "int8" and int8.names == model.names
    m = int8.val("synthetic", imgsz=IMGSZ, verbose=False)
    assert 0.0 <= m["mAP50_95"] <= 1.0 and m["num_images"] > 0
    assert model.fused == "full" and qat_layers(model.model)  # the API object holds the QAT network


def test_qat_needs_trained_weights(tmp_path):
    with pytest.raises(ConfigError, match="trained weights"):
        NAS("yolo_nas_s.yaml").train(data="synthetic", epochs=1, imgsz=IMGSZ, qat=True, project=str(tmp_path))
    assert main(["train", "model=x.pt", "qat=maybe"]) == 2
