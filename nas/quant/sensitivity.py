"""How far INT8 detection outputs are from FP32, per-layer sensitivity, and selective quantization.

The detection-output error compares the two models' raw outputs (boxes [B, N, 4], scores [B, N, C]) on the
anchors that matter: per image, the `top_k` anchors with the highest FP32 class score. On those,
`box_error` is the FP32-score-weighted mean of 1 - IoU(FP32 box, INT8 box) and `score_error` the weighted mean
of |s_int8 - s_fp32| / s_fp32 for the FP32 top class; `error` is their sum. It needs no labels and no NMS, so it
works on any calibration image and on untrained networks.

Sensitivity (leave-one-out, as in YOLO-NAS's selective quantization): quantize everything, then for each
convolution quantize everything *but* it; the layer's sensitivity is how much the error falls when it stays
float. The model is quantized once; "everything but one layer" is made from it by graph surgery
(`keep_float`: the convolution reads the float tensor before its input QuantizeLinear and the original float
weight and bias), so each layer costs one onnxruntime session and one pass over the calibration images, not
a re-calibration. `selective_exclude` names the k most sensitive layers, which `quantize_onnx(exclude=...)`
then keeps in float.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas.errors import ConfigError
from nas.metrics.boxes import paired_iou
from nas.ort_session import cpu_session
from nas.quant.ptq import conv_nodes, preprocess, quantize_onnx

__all__ = ["LayerSensitivity", "keep_float", "output_error", "run_outputs", "selective_exclude", "sensitivity"]

TOP_K = 100


def run_outputs(path: str | os.PathLike, images: np.ndarray, threads: int | None = None) -> tuple[np.ndarray, ...]:
    """(boxes, scores) of an exported model on images [N, 3, H, W], run one graph-batch at a time."""
    sess = cpu_session(path, threads)
    inp = sess.get_inputs()[0]
    step = inp.shape[0] if isinstance(inp.shape[0], int) else len(images)
    if len(images) % step:
        raise ConfigError(f"{path}: {len(images)} images do not fill batches of the graph's fixed batch {step}")
    boxes, scores = [], []
    for s in range(0, len(images), step):
        b, c = sess.run(["boxes", "scores"], {inp.name: np.ascontiguousarray(images[s : s + step])})
        boxes.append(b)
        scores.append(c)
    return np.concatenate(boxes), np.concatenate(scores)


def output_error(
    reference: Any, quantized: Any, images: np.ndarray | None = None, top_k: int = TOP_K
) -> dict[str, float]:
    """Detection-output error of `quantized` against `reference`: each an ONNX path (run on `images`) or
    precomputed (boxes, scores) arrays. Returns box_error, score_error and error (their sum)."""
    ref = run_outputs(reference, images) if isinstance(reference, (str, os.PathLike)) else reference
    got = run_outputs(quantized, images) if isinstance(quantized, (str, os.PathLike)) else quantized
    (b32, s32), (b8, s8) = ref, got
    if b32.shape != b8.shape or s32.shape != s8.shape:
        raise ConfigError(f"output shapes differ: {b32.shape}/{s32.shape} vs {b8.shape}/{s8.shape}")
    k = min(top_k, s32.shape[1])
    conf, cls = s32.max(-1), s32.argmax(-1)  # [B, N]
    idx = np.argsort(-conf, axis=1)[:, :k]
    rows = np.arange(len(idx))[:, None]
    w = conf[rows, idx]
    c = cls[rows, idx]
    box = 1.0 - paired_iou(torch.from_numpy(b32[rows, idx]), torch.from_numpy(b8[rows, idx])).numpy()
    score = np.abs(s8[rows, idx, c] - w) / np.maximum(w, 1e-6)
    wsum = float(w.sum()) or 1.0
    box_error, score_error = float((w * box).sum() / wsum), float((w * score).sum() / wsum)
    return {"box_error": box_error, "score_error": score_error, "error": box_error + score_error}


def keep_float(qdq: Any, fp32: Any, layers: list[str]) -> Any:
    """A copy of the QDQ model in which the named convolutions compute in float: each reads its input from
    before the input's QuantizeLinear and the FP32 model's weight and bias. Their outputs keep their
    QuantizeLinear, so the next layers are unchanged."""
    import copy

    import onnx

    q = copy.deepcopy(qdq if isinstance(qdq, onnx.ModelProto) else onnx.load(str(qdq)))
    f = fp32 if isinstance(fp32, onnx.ModelProto) else onnx.load(str(fp32))
    produced = {o: n for n in q.graph.node for o in n.output}
    f_nodes = {n.name: n for n in f.graph.node}
    f_produced = {o: n for n in f.graph.node for o in n.output}
    f_init = {t.name: t for t in f.graph.initializer}
    q_init = {t.name for t in q.graph.initializer}
    for layer in layers:
        node = next((n for n in q.graph.node if n.name == layer), None)
        if node is None or layer not in f_nodes:
            raise ConfigError(f"keep_float: no convolution named {layer!r} in both models")
        x = node.input[0]
        dq = produced.get(x)
        if dq is not None and dq.op_type == "DequantizeLinear":
            qn = produced.get(dq.input[0])
            if qn is not None and qn.op_type == "QuantizeLinear":
                node.input[0] = _float_input(q, node, qn.input[0], f_nodes[layer].input[0], f_produced)
        for k in range(1, len(node.input)):  # under a new name: the QDQ graph may reuse the float one
            name = f_nodes[layer].input[k]
            float_name = f"{name}_float"
            if float_name not in q_init:
                t = copy.deepcopy(f_init[name])
                t.name = float_name
                q.graph.initializer.append(t)
                q_init.add(float_name)
            node.input[k] = float_name
    return q


def _float_input(q: Any, node: Any, before_q: str, want: str, f_produced: dict[str, Any]) -> str:
    """The float tensor a kept-float conv reads. With asymmetric u8 activations onnxruntime's quantizer drops a
    Relu/Clip in front of a QuantizeLinear (the zero point clamps instead), so the tensor before the Quantize
    is then the pre-activation; the activation is put back, in float, in front of this conv."""
    import copy

    act = f_produced.get(want)
    if act is None or act.op_type not in ("Relu", "Clip"):
        return before_q
    producer = next((n for n in q.graph.node if before_q in n.output), None)
    if producer is not None and producer.op_type == act.op_type:
        return before_q  # the activation is still there
    # dropped: `before_q` is the pre-activation (the quantizer may have given it the activation's output name)
    restored = copy.deepcopy(act)
    restored.input[0] = before_q
    restored.name = f"{act.name}_float_for_{node.name}"
    restored.output[0] = f"{want}_float_for_{node.name}"
    nodes = list(q.graph.node)
    i = next(k for k, n in enumerate(nodes) if n is node or n.name == node.name)
    q.graph.node.insert(i, restored)
    return restored.output[0]


@dataclass(frozen=True)
class LayerSensitivity:
    """Leave-one-out result of one convolution: the error with everything quantized but this layer."""

    layer: str
    error_without: float  # error when this layer alone stays float
    gain: float  # full-INT8 error minus error_without: how much keeping it float helps


def sensitivity(
    fp32: str | os.PathLike,
    images: np.ndarray,
    *,
    method: str = "minmax",
    layers: list[str] | None = None,
    reduce_range: bool = False,
    work_dir: str | os.PathLike | None = None,
    log: Any = None,
) -> tuple[float, list[LayerSensitivity]]:
    """(full-INT8 error, per-layer leave-one-out results sorted most sensitive first) of an FP32 export."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="nas-sens-", dir=work_dir) as tmp:
        tmp = Path(tmp)
        pre = preprocess(fp32, tmp / "pre.onnx")
        ref = run_outputs(pre, images)
        kw = dict(method=method, reduce_range=reduce_range, pre_processed=True)
        quantize_onnx(pre, tmp / "q.onnx", images, **kw)
        base = output_error(ref, run_outputs(tmp / "q.onnx", images))["error"]
        qdq, float_model = onnx.load(str(tmp / "q.onnx")), onnx.load(str(pre))
        results = []
        todo = layers if layers is not None else conv_nodes(pre)
        for i, layer in enumerate(todo):
            onnx.save(keep_float(qdq, float_model, [layer]), str(tmp / "loo.onnx"))
            err = output_error(ref, run_outputs(tmp / "loo.onnx", images))["error"]
            results.append(LayerSensitivity(layer, err, base - err))
            if log is not None:
                log(f"[{i + 1}/{len(todo)}] {layer}: error {err:.4f} (full INT8 {base:.4f})")
    return base, sorted(results, key=lambda r: -r.gain)


def selective_exclude(ranked: list[LayerSensitivity], k: int) -> list[str]:
    """The k most sensitive layers (from `sensitivity`): the ones selective quantization keeps in float."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ConfigError(f"k={k!r}: expected a number of layers >= 0")
    return [r.layer for r in ranked[:k]]
