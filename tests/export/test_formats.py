"""Every export format: export, check against torch in its runtime, reload with `NAS(path)`, predict and val."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from nas import NAS
from nas.cli import main
from nas.engine.exported import exported_format
from nas.errors import ConfigError
from nas.export.formats import EXPORTERS, default_file
from nas.export.options import EXPORT_FORMATS, ExportOptions
from nas.metrics.boxes import box_iou
from tests.zoo_helpers import make_checkpoint

IMGSZ = 64
HAS_TRT = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from nas.data.synthetic import CLASSES

    return make_checkpoint(tmp_path_factory.mktemp("formats") / "tiny.pt", 8, list(CLASSES))


@pytest.fixture(scope="module")
def model(ckpt):
    return NAS(ckpt)


def _images():
    from nas.data import load_dataset

    return [str(r.path) for r in load_dataset("synthetic", split="val").images[:3]]


def _same_detections(a: NAS, b: NAS, atol: float) -> None:
    for ra, rb in zip(a.predict(_images(), imgsz=IMGSZ, conf=0.05), b.predict(_images(), imgsz=IMGSZ, conf=0.05)):
        assert len(ra.boxes) == len(rb.boxes) > 0
        assert torch.allclose(ra.boxes.data, rb.boxes.data, atol=atol)


def test_formats_are_one_list():
    assert tuple(EXPORTERS) == EXPORT_FORMATS
    assert default_file("runs/x", "openvino").as_posix() == "runs/x_openvino_model"
    assert default_file("x", "openvino", int8=True).name == "x_int8_openvino_model"
    assert default_file("x", "torchscript").name == "x.torchscript" and default_file("x", "engine").name == "x.engine"
    for path, fmt in [("a.onnx", "onnx"), ("a_openvino_model", "openvino"), ("d/a.xml", "openvino")]:
        assert exported_format(path) == fmt
    assert exported_format("a.torchscript") == "torchscript" and exported_format("a.pt") is None
    with pytest.raises(ConfigError, match="supported export formats"):
        NAS("yolo_nas_s.yaml").export("coreml")
    with pytest.raises(ConfigError, match="ov_int8"):
        ExportOptions(ov_int8="pot")


@pytest.mark.parametrize("fmt, kwargs", [("openvino", {}), ("openvino", {"half": True}), ("torchscript", {})])
def test_export_reload_predict_val(model, tmp_path, fmt, kwargs):
    path = model.export(fmt, file=tmp_path / ("m" + default_file("m", fmt).name[1:]), imgsz=IMGSZ, **kwargs)
    result = model.last_export
    assert result.ok, result.mismatches
    assert set(result.tolerance) == {"boxes", "scores"}
    exported = NAS(path)
    assert exported.is_exported and not exported.is_onnx
    assert exported.arch == model.arch and exported.names == model.names
    assert exported.model.precision == ("fp16" if kwargs.get("half") else "fp32")
    _same_detections(model, exported, atol=0.05 if kwargs.get("half") else 1e-3)
    m32 = model.val("synthetic", imgsz=IMGSZ, verbose=False)
    mx = exported.val("synthetic", imgsz=IMGSZ, batch=2, verbose=False)
    assert mx["num_images"] == m32["num_images"] and abs(mx["mAP50_95"] - m32["mAP50_95"]) < 1e-3
    with pytest.raises(ConfigError, match="needs the torch model"):
        exported.export("onnx")


@pytest.mark.parametrize("route", ["nncf", "qdq"])
def test_openvino_int8_routes(model, tmp_path, route):
    path = model.export("openvino", file=tmp_path / f"{route}_openvino_model", imgsz=IMGSZ, int8=True, calib=4,
                        ov_int8=route)  # fmt: skip
    result = model.last_export
    assert result.int8["route"] == route and 0 <= result.int8["output_error"]["error"] < 0.5
    q = NAS(path)
    assert q.model.precision == "int8" and q.model.runtime == "OpenVINO"
    for a, b in zip(model.predict(_images(), imgsz=IMGSZ, conf=0.05), q.predict(_images(), imgsz=IMGSZ, conf=0.05)):
        assert len(b.boxes) > 0 and box_iou(a.boxes.data[:1, :4], b.boxes.data[:, :4]).max() > 0.9
    assert q.val("synthetic", imgsz=IMGSZ, verbose=False)["num_images"] > 0


def test_openvino_and_torchscript_refuse_what_they_cannot_hold(model, tmp_path):
    with pytest.raises(ConfigError, match="nms"):
        model.export("openvino", file=tmp_path / "n_openvino_model", imgsz=IMGSZ, nms=True)
    with pytest.raises(ConfigError, match="int8"):
        model.export("torchscript", file=tmp_path / "q.torchscript", imgsz=IMGSZ, int8=True)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            model.export("torchscript", file=tmp_path / "h.torchscript", imgsz=IMGSZ, half=True)


@pytest.mark.skipif(HAS_TRT, reason="tensorrt and CUDA are present")
def test_engine_without_tensorrt_or_cuda_says_what_is_missing(model, tmp_path):
    with pytest.raises(ConfigError) as e:
        model.export("engine", file=tmp_path / "m.engine", imgsz=IMGSZ)
    message = str(e.value)
    assert "\n" not in message and "TensorRT engines need" in message
    assert ("tensorrt" in message) == (importlib.util.find_spec("tensorrt") is None)
    assert ("CUDA" in message) == (not torch.cuda.is_available())
    assert not (tmp_path / "m.engine").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRT, reason="needs tensorrt and a CUDA GPU")
@pytest.mark.parametrize("half", [False, True])
def test_engine_export_reload_predict_val(ckpt, tmp_path, half):
    model = NAS(ckpt).to("cuda")
    path = model.export("engine", file=tmp_path / f"m{int(half)}.engine", imgsz=IMGSZ, half=half)
    assert model.last_export.ok, model.last_export.mismatches
    engine = NAS(path)
    assert engine.model.runtime == "TensorRT" and engine.device.type == "cuda"
    _same_detections(model, engine, atol=0.5 if half else 1e-2)
    m = engine.val("synthetic", imgsz=IMGSZ, verbose=False)
    assert abs(m["mAP50_95"] - model.val("synthetic", imgsz=IMGSZ, verbose=False)["mAP50_95"]) < 0.02


def test_cli_export_each_format_then_val(ckpt, tmp_path, capsys):
    out = tmp_path / "c.torchscript"
    assert main(["export", f"model={ckpt}", "format=torchscript", f"imgsz={IMGSZ}", f"file={out}"]) == 0
    assert "TorchScript matches torch" in capsys.readouterr().out
    assert main(["val", f"model={out}", f"imgsz={IMGSZ}", f"project={tmp_path / 'runs'}"]) == 0
    assert main(["export", f"model={ckpt}", "format=coreml"]) == 2
