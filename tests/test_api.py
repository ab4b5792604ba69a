"""`nas.NAS`: loading every way, names, info, predict on every source kind, Results, export, the README snippet."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from nas import NAS, ArchConfig
from nas.api import select_device
from nas.data.names import COCO80_NAMES as COCO_NAMES
from nas.data.synthetic_render import CLASSES
from nas.engine.options import PredictOptions, ValOptions
from nas.errors import ConfigError, DataError, SpaceError, WeightsNotFoundError
from nas.models import save_checkpoint
from tests.zoo_helpers import FixedBoxModel, make_checkpoint, tiny_arch, tiny_model, write_image

SYNTHETIC_NAMES = list(CLASSES)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", 3, ["cat", "dog", "bird"])


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    write_image(root / "a.jpg", 480, 640, seed=1)
    write_image(root / "b.png", 540, 960, seed=2)
    write_image(root / "sub" / "c.jpg", 300, 200, seed=3)
    return root


def test_nas_is_exported_lazily():
    import nas

    assert nas.__all__ == ["NAS", "ArchConfig", "__version__"]
    assert nas.NAS is NAS and nas.ArchConfig is ArchConfig


def test_load_from_arch_yaml_and_module(tmp_path):
    arch = tiny_arch(4)
    m1 = NAS(arch)
    assert m1.arch == arch and m1.ckpt_path is None and not m1.model.training
    assert m1.names == {0: "class0", 1: "class1", 2: "class2", 3: "class3"}
    path = tmp_path / "arch.yaml"
    path.write_text(arch.to_yaml())
    assert NAS(path).arch == arch and NAS(str(path)).arch == arch
    assert NAS(tiny_model(80)).names == dict(enumerate(COCO_NAMES))
    with pytest.raises(SpaceError, match="does not exist"):
        NAS(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="checkpoint path"):
        NAS(42)


def test_released_architecture_yaml_is_random_init():
    model = NAS("yolo_nas_s.yaml")
    assert model.arch.name == "yolo_nas_s" and model.ckpt_path is None
    assert sum(p.numel() for p in model.model.parameters()) == 19_053_888


def test_load_checkpoint_with_recorded_names(ckpt):
    model = NAS(ckpt)
    assert model.names == {0: "cat", 1: "dog", 2: "bird"} and model.ckpt_path == ckpt
    reference = tiny_model(3)
    for k, v in reference.state_dict().items():
        assert torch.equal(model.model.state_dict()[k], v)
    assert "tiny.pt" in repr(model)


def test_load_super_gradients_pth_gets_coco_names(tmp_path):
    sd = tiny_model(80).state_dict()
    torch.save({"net": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, tmp_path / "sg.pth")
    model = NAS(tmp_path / "sg.pth")
    assert model.names[0] == "person" and model.names[79] == "toothbrush"


def test_released_name_without_weights_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match=r"(?s)yolo_nas_s.*Place"):
        NAS("yolo_nas_s")


def test_info_counts_and_fused_state(capsys):
    model = NAS(tiny_model(5))
    info = model.info(imgsz=64)
    assert info.parameters == sum(p.numel() for p in model.model.parameters()) == info.gradients
    assert info.layers == sum(1 for m in model.model.modules() if not list(m.children()))
    assert info.fused == "none" and info.gflops > 0
    assert "unfused" in capsys.readouterr().out
    fused = model.fuse().info(imgsz=64, detailed=True)
    out = capsys.readouterr().out
    # GFLOPs are the architecture's (deployed network): the same whether this module is fused or not
    assert fused.fused == "full" and fused.parameters < info.parameters and fused.gflops == info.gflops
    assert "backbone.stem.conv.rbr_reparam" in out and "fused: full" in out


@pytest.mark.slow
def test_info_of_yolo_nas_s_at_640():
    model = NAS("yolo_nas_s.yaml")
    info = model.info(verbose=False)
    # 2 x the deployed network's multiply-adds; ultralytics/thop report 34.3 on the unfused training graph
    assert info.parameters == 19_053_888 and round(info.gflops, 1) == 31.8
    assert round(model.fuse().info(verbose=False).gflops, 1) == 31.8


def test_predict_defaults_are_ultralytics():
    p = PredictOptions()
    assert (p.conf, p.iou, p.imgsz, p.max_det) == (0.25, 0.7, 640, 300)
    v = ValOptions()
    assert (v.iou, v.max_det, v.protocol, v.resolved_conf) == (0.7, 300, "ultralytics", 0.001)


def test_keyword_options_are_checked_once_and_named():
    model = NAS(tiny_model(80))
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['cnf'\] for NAS.predict; valid options: conf, iou"):
        model.predict(None, cnf=0.3)
    with pytest.raises(ConfigError, match=r"iou=1.5: expected a number in \[0, 1\]"):
        model.val("synthetic", iou=1.5)
    with pytest.raises(ConfigError, match="imgsz=100: expected a positive multiple of 32"):
        model.export(imgsz=100)


def test_predict_on_every_source_kind(images):
    model = NAS(tiny_model(80))
    kw = {"imgsz": 128, "conf": 0.2}
    a, b = images / "a.jpg", images / "b.png"
    assert [r.path for r in model(a, **kw)] == [str(a)]
    assert [r.path for r in model(str(images), **kw)] == [str(a), str(b)]
    assert [r.path for r in model(str(images / "**" / "*.jpg"), **kw)] == [str(a), str(images / "sub" / "c.jpg")]
    bgr = cv2.imread(str(a))
    pil = Image.fromarray(bgr[..., ::-1])
    results = model([a, bgr, pil], **kw)
    assert [r.orig_shape for r in results] == [(480, 640)] * 3
    assert results[1].path == "image1.jpg" and len(results[0]) > 0
    for r in results[1:]:  # a numpy BGR array and a PIL RGB image of the same pixels give the same boxes
        assert torch.equal(r.boxes.data, results[0].boxes.data)
    gray = model(bgr[..., 0], **kw)[0]
    assert gray.orig_shape == (480, 640)
    with pytest.raises(DataError, match="does not exist"):
        model(images / "nope.jpg")
    with pytest.raises(DataError, match="no images"):
        model(str(images / "*.txt"))
    with pytest.raises(DataError, match="uint8"):
        model(bgr.astype(np.float32))
    with pytest.raises(ConfigError, match="multiple of 32"):
        model(a, imgsz=100)


def test_predict_input_is_ultralytics_letterbox(images):
    fixed = FixedBoxModel(tiny_arch(80), [[0.0, 0.0, 1.0, 1.0]], [0])
    model = NAS(fixed)
    model(images / "b.png")  # 960 x 540: 640 x 360, then 12 + 12 rows of padding to a multiple of 32
    (x,) = fixed.inputs
    assert x.shape == (1, 3, 384, 640)
    bgr = cv2.imread(str(images / "b.png"))
    resized = cv2.resize(bgr, (640, 360), interpolation=cv2.INTER_LINEAR)[..., ::-1].transpose(2, 0, 1)
    assert torch.equal(x[0, :, 12:372], torch.from_numpy(resized.copy()).float() / 255)  # RGB, /255
    assert (x[0, :, :12] * 255).round().eq(114).all() and (x[0, :, 372:] * 255).round().eq(114).all()
    model(images / "b.png", preprocess="sg")  # super-gradients: 636 x 358 centred in 640 x 640
    assert fixed.inputs[-1].shape == (1, 3, 640, 640)
    model([images / "a.jpg", images / "b.png"], batch=2)  # mixed shapes: padded to imgsz x imgsz
    assert fixed.inputs[-1].shape == (2, 3, 640, 640)


def test_predict_maps_boxes_to_original_pixels(images):
    # input-pixel boxes on the 384 x 640 letterboxed 960 x 540 image (gain 2/3, 12 rows of top padding)
    fixed = FixedBoxModel(tiny_arch(80), [[100.0, 112.0, 200.0, 212.0], [-30.0, 0.0, 50.0, 400.0]], [5, 7], score=0.8)
    (r,) = NAS(fixed)(images / "b.png")
    assert r.orig_shape == (540, 960) and r.names[5] == "bus"
    assert r.boxes.cls.tolist() == [5.0, 7.0] and r.boxes.conf.tolist() == pytest.approx([0.8, 0.8])
    assert r.boxes.xyxy[0].tolist() == pytest.approx([150.0, 150.0, 300.0, 300.0], abs=1e-4)
    assert r.boxes.xyxy[1].tolist() == pytest.approx([0.0, 0.0, 75.0, 540.0], abs=1e-4)  # clipped
    assert r.boxes.xywh[0].tolist() == pytest.approx([225.0, 225.0, 150.0, 150.0], abs=1e-4)


def test_results_plot_save_and_json(images, tmp_path):
    fixed = FixedBoxModel(tiny_arch(80), [[100.0, 112.0, 200.0, 212.0]], [0], score=0.9)
    (r,) = NAS(fixed)(images / "b.png")
    plotted = r.plot()
    assert plotted.shape == r.orig_img.shape and plotted.dtype == np.uint8
    assert not np.array_equal(plotted, r.orig_img) and np.array_equal(plotted[400:, 400:], r.orig_img[400:, 400:])
    saved = r.save(tmp_path / "out" / "b_pred.png")
    assert np.array_equal(cv2.imread(saved), plotted)
    rows = json.loads(r.to_json())
    assert rows == [
        {"name": "person", "class": 0, "confidence": 0.9, "box": {"x1": 150.0, "y1": 150.0, "x2": 300.0, "y2": 300.0}}
    ]
    assert r.verbose() == "1 person" and "1 person" in repr(r)


def test_fuse_keeps_predictions(images):
    model = NAS(tiny_model(80))
    before = model(images / "a.jpg", imgsz=128, conf=0.2)[0].boxes.data
    after = model.fuse()(images / "a.jpg", imgsz=128, conf=0.2)[0].boxes.data
    assert model.fused == "full" and len(before) > 0
    assert torch.allclose(before, after, atol=1e-3)


def test_select_device():
    assert select_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            select_device("0")
    with pytest.raises(ConfigError, match="expected 'cpu'"):
        select_device("tpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_predict_on_cuda_matches_cpu(images):
    model = NAS(tiny_model(80))
    cpu = model(images / "a.jpg", imgsz=128, conf=0.2)[0].boxes.data
    gpu = model(images / "a.jpg", imgsz=128, conf=0.2, device="cuda")[0].boxes.data
    assert len(cpu) > 0, "no box on the CPU: the comparison would hold for any GPU output"
    assert model.device.type == "cuda" and cpu.shape == gpu.shape and torch.allclose(cpu, gpu.cpu(), atol=1e-2)


def test_export_next_to_the_checkpoint(ckpt):
    model = NAS(ckpt)
    path = model.export(imgsz=64)
    assert path == str(ckpt.with_suffix(".onnx")) and model.last_export.ok
    import onnx

    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(meta["names"]) == {"0": "cat", "1": "dog", "2": "bird"}
    assert ArchConfig.from_yaml(meta["arch"]) == model.arch
    with pytest.raises(ConfigError, match="supported export formats"):
        model.export(format="tflite")


def test_readme_snippet_runs_on_a_checkpoint_made_here(tmp_path, images):
    """The issue's snippet, on a checkpoint created by this test (synthetic classes, small imgsz)."""
    weights = make_checkpoint(tmp_path / "yolo_nas_tiny.pt", 8, SYNTHETIC_NAMES)

    model = NAS(weights)
    model.info(imgsz=160)
    metrics = model.val(data="synthetic", imgsz=160, verbose=False)
    results = model(images / "a.jpg", imgsz=160)
    onnx_path = model.export(format="onnx", imgsz=160)

    assert 0.0 <= metrics["mAP50_95"] <= 1.0 and set(metrics["per_class"]) <= set(SYNTHETIC_NAMES)
    assert results[0].orig_shape == (480, 640)
    assert onnx_path.endswith("yolo_nas_tiny.onnx") and model.last_export.ok


def test_arch_yaml_with_weights_loads_strictly_or_inherits(tmp_path):
    from nas.models.inherit import InheritReport

    src = tiny_model(8, seed=3)
    ckpt = save_checkpoint(tmp_path / "src.pt", src, src.arch)
    same = NAS(src.arch, weights=ckpt)
    assert isinstance(same.inherited, InheritReport) and same.inherited.exact and same.inherited.fraction == 1.0
    assert f"weights=strict from {src.arch.name} ('{ckpt}')" in repr(same)
    for key, value in src.state_dict().items():
        assert torch.equal(same.model.state_dict()[key], value), key
    wider = src.arch.to_dict()
    wider["backbone"]["stem"]["out_channels"] = 16
    wider["name"] = "wider"
    wider_yaml = tmp_path / "wider.yaml"
    wider_yaml.write_text(ArchConfig.from_dict(wider).to_yaml())
    grown = NAS(wider_yaml, weights=ckpt)
    assert not grown.inherited.exact and 0.5 < grown.inherited.fraction < 1.0
    assert f"weights=inherited {grown.inherited.fraction:.1%} from {src.arch.name}" in repr(grown)
    assert "random init" in repr(NAS(wider_yaml))
    stage = "backbone.stage2.blocks.conv3.conv.weight"  # same shape in both: copied exactly
    assert torch.equal(grown.model.state_dict()[stage], src.state_dict()[stage])
    with pytest.raises(ConfigError, match="already holds weights"):
        NAS(ckpt, weights=ckpt)


def test_info_shows_predicted_latency_or_why_not(capsys):
    model = NAS(tiny_model(5))
    assert model.info(imgsz=64, hardware=None).latency_ms is None
    info = model.info(imgsz=64, hardware="cpu_ort")  # tiny blocks are not in the shipped table
    assert info.latency_ms is None and "not predicted" in info.latency_note and "cpu_ort" in info.hardware
    assert "latency on cpu_ort" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="cpu_ort"):
        model.info(imgsz=64, hardware="tpu9")
