"""ONNX export checked in the real onnxruntime: raw outputs, in-graph NMS, dynamic shapes, metadata."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from nas.export.onnx import export_onnx, onnx_predict
from nas.models.postprocess import non_max_suppression
from tests.zoo_helpers import tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model(num_classes=5)


def _torch_raw(model, x: torch.Tensor):
    with torch.no_grad():
        (boxes, scores), _ = model(x)
    return boxes, scores


def test_export_raw_outputs_match_torch(model, tmp_path):
    result = export_onnx(model, tmp_path / "m.onnx", imgsz=(96, 128), metadata={"names": {"0": "a"}})
    assert result.ok, result.mismatches
    assert result.max_abs_diff["boxes"] < 1e-3 and result.max_abs_diff["scores"] < 1e-5
    proto = onnx.load(str(result.path))
    assert [o.name for o in proto.graph.output] == ["boxes", "scores"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["imgsz"]) == [96, 128] and json.loads(meta["names"]) == {"0": "a"}
    assert json.loads(meta["nms"]) is False
    x = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    got = onnx_predict(result.path, x.numpy())
    boxes, scores = _torch_raw(model, x)  # the unfused model: fusion must not change outputs either
    assert got["boxes"].shape == (1, 12 * 16 + 6 * 8 + 3 * 4, 4) and got["scores"].shape[-1] == 5
    assert np.abs(got["boxes"] - boxes.numpy()).max() < 1e-3
    assert np.abs(got["scores"] - scores.numpy()).max() < 1e-5


def test_export_unfused_and_the_model_is_left_untouched(model, tmp_path):
    keys = list(model.state_dict())
    result = export_onnx(model, tmp_path / "m.onnx", imgsz=64, fuse=False)
    assert result.ok and list(model.state_dict()) == keys and model.fusion == "none"


def test_export_with_nms_matches_torch_postprocessing(model, tmp_path):
    conf, iou, max_det = 0.3, 0.6, 20
    result = export_onnx(
        model, tmp_path / "nms.onnx", imgsz=128, batch=2, nms=True, conf=conf, iou=iou, max_det=max_det
    )
    assert result.ok, result.mismatches
    assert result.max_abs_diff["nms_boxes"] == 0.0 and result.max_abs_diff["nms_scores"] == 0.0
    proto = onnx.load(str(result.path))
    assert [o.name for o in proto.graph.output] == ["num_dets", "boxes", "scores", "classes"]
    assert any(n.op_type == "NonMaxSuppression" for n in proto.graph.node)

    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    got = onnx_predict(result.path, x.numpy())
    assert got["num_dets"].shape == (2, 1) and got["boxes"].shape == (2, max_det, 4)
    assert got["scores"].shape == (2, max_det) and got["classes"].shape == (2, max_det)
    dets = non_max_suppression(*_torch_raw(model, x), conf=conf, iou=iou, max_det=max_det)
    for b, det in enumerate(dets):
        n = int(got["num_dets"][b, 0])
        assert n == len(det) > 0
        assert got["classes"][b, :n].tolist() == det[:, 5].long().tolist()
        assert np.abs(got["boxes"][b, :n] - det[:, :4].numpy()).max() < 1e-3
        assert np.abs(got["scores"][b, :n] - det[:, 4].numpy()).max() < 1e-5
        assert (got["classes"][b, n:] == -1).all() and (got["scores"][b, n:] == 0).all()
        assert (got["boxes"][b, n:] == 0).all()


def test_dynamic_export_with_nms_runs_any_batch_and_size(model, tmp_path):
    result = export_onnx(model, tmp_path / "dn.onnx", imgsz=64, dynamic=True, nms=True, conf=0.05, max_det=50)
    assert result.ok
    # 3 x 96 x 160 differs from the traced shape; 32 x 32 has 21 anchors, fewer than max_det (padded top-k)
    for shape, seed in (((3, 3, 96, 160), 3), ((2, 3, 32, 32), 4)):
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(seed))
        got = onnx_predict(result.path, x.numpy())
        dets = non_max_suppression(*_torch_raw(model, x), conf=0.05, iou=0.7, max_det=50)
        assert got["num_dets"].ravel().tolist() == [len(d) for d in dets]
        assert got["boxes"].shape == (shape[0], 50, 4)
        for b, det in enumerate(dets):
            n = len(det)
            assert got["classes"][b, :n].tolist() == det[:, 5].long().tolist()
            assert np.abs(got["boxes"][b, :n] - det[:, :4].numpy()).max() < 1e-3


def test_export_rejects_bad_requests(model, tmp_path):
    with pytest.raises(ValueError, match="multiple of 32"):
        export_onnx(model, tmp_path / "x.onnx", imgsz=100)
    with pytest.raises(ValueError, match="CUDA"):
        export_onnx(model, tmp_path / "x.onnx", imgsz=64, half=True)
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_export_half_on_cuda(model, tmp_path):
    result = export_onnx(model.cuda(), tmp_path / "h.onnx", imgsz=64, half=True)
    assert result.ok, result.mismatches
