"""Detection-output error, leave-one-out sensitivity by graph surgery, selective quantization."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from nas.errors import ConfigError
from nas.quant import conv_nodes, quantize_onnx
from nas.quant.ptq import preprocess
from nas.quant.sensitivity import keep_float, output_error, run_outputs, selective_exclude, sensitivity


def test_output_error_is_zero_for_identical_outputs_and_grows_with_perturbation():
    rng = np.random.default_rng(0)
    boxes = np.sort(rng.uniform(0, 64, (2, 50, 4)), axis=-1)[..., [0, 1, 2, 3]]
    boxes[..., 2:] += 10
    scores = rng.uniform(0, 1, (2, 50, 3))
    same = output_error((boxes, scores), (boxes, scores))
    assert same["error"] == pytest.approx(0.0, abs=1e-9) and same["score_error"] == 0.0
    small = output_error((boxes, scores), (boxes + 0.5, scores * 0.99))
    large = output_error((boxes, scores), (boxes + 3.0, scores * 0.8))
    assert 0 < small["box_error"] < large["box_error"] and small["score_error"] == pytest.approx(0.01)
    assert large["score_error"] == pytest.approx(0.2) and large["error"] > small["error"]
    with pytest.raises(ConfigError, match="shapes differ"):
        output_error((boxes, scores), (boxes[:, :10], scores[:, :10]))


def test_keep_float_by_surgery_equals_excluding_at_quantization(fp32_onnx, calib, tmp_path):
    pre = preprocess(fp32_onnx, tmp_path / "pre.onnx")
    full = quantize_onnx(pre, tmp_path / "q.onnx", calib, pre_processed=True)
    layer = conv_nodes(pre)[0]  # the stem: its input is the image
    cut = keep_float(onnx.load(str(full.path)), onnx.load(str(pre)), [layer])
    onnx.save(cut, str(tmp_path / "cut.onnx"))
    excl = quantize_onnx(pre, tmp_path / "ex.onnx", calib, pre_processed=True, exclude=[layer])
    ref = run_outputs(pre, calib)
    e_cut = output_error(ref, run_outputs(tmp_path / "cut.onnx", calib))["error"]
    e_ex = output_error(ref, run_outputs(excl.path, calib))["error"]
    e_full = output_error(ref, run_outputs(full.path, calib))["error"]
    assert e_cut == pytest.approx(e_ex, rel=0.05) and e_cut != e_full  # a float stem changes the outputs
    stem = next(n for n in cut.graph.node if n.name == layer)
    assert stem.input[0] == "images"  # reads the float image, not a dequantized copy
    with pytest.raises(ConfigError, match="no convolution named 'x'"):
        keep_float(full.path, pre, ["x"])


def test_keep_float_restores_the_activation_the_quantizer_dropped(fp32_onnx, calib, tmp_path):
    pre = preprocess(fp32_onnx, tmp_path / "pre.onnx")
    full = quantize_onnx(pre, tmp_path / "q.onnx", calib, pre_processed=True)
    ref = run_outputs(pre, calib)
    for layer in conv_nodes(pre)[1:4]:  # inputs that come out of a Conv + Relu
        onnx.save(keep_float(onnx.load(str(full.path)), onnx.load(str(pre)), [layer]), str(tmp_path / "cut.onnx"))
        excl = quantize_onnx(pre, tmp_path / "ex.onnx", calib, pre_processed=True, exclude=[layer])
        e_cut = output_error(ref, run_outputs(tmp_path / "cut.onnx", calib))["error"]
        e_ex = output_error(ref, run_outputs(excl.path, calib))["error"]
        assert e_cut == pytest.approx(e_ex, rel=0.25, abs=2e-4), layer


def test_sensitivity_ranks_layers_and_selective_keeps_the_top_k(fp32_onnx, calib):
    layers = conv_nodes(preprocess_names := fp32_onnx)[:4]
    base, ranked = sensitivity(preprocess_names, calib, layers=layers)
    assert base > 0 and len(ranked) == 4 and {r.layer for r in ranked} == set(layers)
    gains = [r.gain for r in ranked]
    assert gains == sorted(gains, reverse=True)
    assert all(r.error_without == pytest.approx(base - r.gain) for r in ranked)
    assert selective_exclude(ranked, 2) == [ranked[0].layer, ranked[1].layer] and selective_exclude(ranked, 0) == []
    with pytest.raises(ConfigError, match="k=-1"):
        selective_exclude(ranked, -1)
