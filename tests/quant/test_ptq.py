"""Static QDQ INT8 quantization in the real onnxruntime: what is quantized, what stays float, calibration."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from nas.errors import ConfigError
from nas.quant import calibration_images, conv_nodes, quantize_onnx, tail_nodes
from nas.quant.sensitivity import output_error, run_outputs
from tests.quant.conftest import IMGSZ


def _ops(path):
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_calibration_images_are_seeded_letterboxed_train_images():
    a = calibration_images("synthetic", 4, 96, seed=1)
    b = calibration_images("synthetic", 4, 96, seed=1)
    c = calibration_images("synthetic", 4, 96, seed=2)
    assert a.shape == (4, 3, 96, 96) and a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ConfigError, match="calib=0"):
        calibration_images("synthetic", 0, 96)


def test_tail_is_the_post_processing_after_the_last_convolutions(fp32_onnx):
    tail = set(tail_nodes(fp32_onnx))
    nodes = {n.name: n.op_type for n in onnx.load(str(fp32_onnx)).graph.node}
    assert {nodes[n] for n in tail} >= {"Softmax", "Sigmoid"}  # DFL and class scores
    assert not any(nodes[n] in ("Conv", "ConvTranspose") for n in tail)
    assert not any("/backbone/" in n or "/neck/" in n for n in tail)


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
def test_quantize_static_qdq(fp32_onnx, calib, tmp_path, method):
    result = quantize_onnx(fp32_onnx, tmp_path / "q.onnx", calib, method=method)
    ops = _ops(result.path)
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > ops.count("QuantizeLinear")
    assert result.quantized_convs == len(conv_nodes(fp32_onnx)) and result.calib_images == len(calib)
    proto = onnx.load(str(result.path))
    weights = {t.name: t for t in proto.graph.initializer}
    # weights are stored as int8 with one scale per output channel
    conv = next(n for n in proto.graph.node if n.op_type == "Conv")
    dq_w = next(n for n in proto.graph.node if n.output[0] == conv.input[1])
    assert weights[dq_w.input[0]].data_type == onnx.TensorProto.INT8
    assert (
        len(onnx.numpy_helper.to_array(weights[dq_w.input[1]]))
        == onnx.numpy_helper.to_array(weights[dq_w.input[0]]).shape[0]
    )
    # the softmax/sigmoid tail takes float inputs: no DequantizeLinear feeds it
    producers = {o: n.op_type for n in proto.graph.node for o in n.output}
    for node in proto.graph.node:
        if node.op_type in ("Softmax", "Sigmoid"):
            assert producers.get(node.input[0]) != "DequantizeLinear"
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["int8"])["method"] == method and "arch" in meta
    err = output_error(fp32_onnx, result.path, calib)
    assert 0 < err["error"] < 0.5, err  # close to FP32, but not identical


def _activation_scales(path):
    proto = onnx.load(str(path))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    weights = {n.input[0] for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    return {
        n.input[0]: float(inits[n.input[1]])
        for n in proto.graph.node
        if n.op_type == "QuantizeLinear" and n.input[0] not in weights and inits[n.input[1]].size == 1
    }


def test_each_calibration_method_gives_its_own_ranges(fp32_onnx, calib, tmp_path):
    """onnxruntime's entropy calibration, as quantize_static runs it (128 histogram bins into 128), can only
    pick the whole range: identical to minmax. Ours uses 2048 bins, so it clips: smaller scales, none larger."""
    scales = {m: _activation_scales(quantize_onnx(fp32_onnx, tmp_path / f"{m}.onnx", calib, method=m).path)
              for m in ("minmax", "percentile", "entropy")}  # fmt: skip
    mm, ent = scales["minmax"], scales["entropy"]
    assert mm.keys() == ent.keys() and len(mm) > 10
    assert sum(ent[k] < mm[k] * 0.999 for k in mm) >= 10, "entropy ranges equal minmax's"  # old code: 0
    assert all(ent[k] <= mm[k] * 1.01 for k in mm)
    assert scales["percentile"] != mm


def test_excluded_layers_stay_float_and_reduce_the_error(fp32_onnx, calib, tmp_path):
    full = quantize_onnx(fp32_onnx, tmp_path / "full.onnx", calib)
    convs = conv_nodes(full.path)  # names in the pre-processed graph
    every = quantize_onnx(fp32_onnx, tmp_path / "none.onnx", calib, exclude=conv_nodes(tmp_path / "full.onnx"))
    assert every.quantized_convs == 0 and len(convs) == full.quantized_convs
    ref = run_outputs(fp32_onnx, calib)
    assert (
        output_error(ref, run_outputs(every.path, calib))["error"]
        < output_error(ref, run_outputs(full.path, calib))["error"]
    )


def test_bad_inputs_are_named(fp32_onnx, calib, tmp_path):
    with pytest.raises(ConfigError, match="method='kl'"):
        quantize_onnx(fp32_onnx, tmp_path / "q.onnx", calib, method="kl")
    with pytest.raises(ConfigError, match="no node named 'nope'"):
        quantize_onnx(fp32_onnx, tmp_path / "q.onnx", calib, exclude=["nope"])
    with pytest.raises(ConfigError, match="no such ONNX file"):
        quantize_onnx(tmp_path / "missing.onnx", tmp_path / "q.onnx", calib)
    with pytest.raises(ConfigError, match="calibration images"):
        quantize_onnx(fp32_onnx, tmp_path / "q.onnx", None)
    assert calib.shape[-1] == IMGSZ


def test_export_options_offer_exactly_the_quantizer_methods():
    from nas.export.options import CALIB_METHODS as OPTION_METHODS
    from nas.quant import CALIB_METHODS

    assert OPTION_METHODS == CALIB_METHODS
