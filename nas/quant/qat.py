"""Quantization-aware fine-tuning (QAT): the deployed network with the INT8 rounding of our onnxruntime PTQ simulated.

`prepare_qat` makes a fully fused copy of a trained detector (the graph that is exported: QARepVGG branches and
BatchNorms folded) in which every convolution (Conv2d, ConvTranspose2d) not in `exclude` rounds, in its forward,
- its input as onnxruntime's static QDQ does: per-tensor asymmetric u8 with the min-max range calibrated on the
  same calibration images as PTQ (the range always holds 0), fixed during training (super-gradients' default,
  `learn_amax` off);
- its weight to symmetric s8 [-127, 127] with per-output-channel (or per-tensor) max scales recomputed from the
  current weights, exactly what `quantize_onnx` computes from the final weights at export;
with straight-through gradients (`torch.fake_quantize_*`). The post-processing tail (DFL, decode, sigmoid) has no
convolution and stays float, as in PTQ. The fake-quantized modules keep the state_dict names of the fused network.

`export_qat_onnx` writes the result as a QDQ ONNX file: the fine-tuned weights exported in FP32 and quantized by
`quantize_onnx` with the same method and calibration images, so onnxruntime (and OpenVINO, reading it) run it in
INT8 exactly like a PTQ export - only the weights differ. The activation ranges are re-calibrated on the
fine-tuned weights (min-max on the same images), which moves them little at QAT's learning rate.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.errors import ConfigError
from nas.models.reparam import fuse
from nas.quant.ptq import QuantResult, quantize_onnx

__all__ = [
    "FakeQuantConv2d",
    "FakeQuantConvTranspose2d",
    "export_qat_onnx",
    "onnx_conv_nodes",
    "prepare_qat",
    "qat_layers",
    "strip_qat",
]

QMAX_WEIGHT = 127  # symmetric s8 weights, onnxruntime's [-127, 127] for WeightSymmetric


class _FakeQuant:
    """What both fake-quantized convolutions share: the input and weight rounding."""

    act_range: Tensor  # [min, max] of the input over the calibration images
    per_channel: bool
    weight_axis: int

    def _fq_input(self, x: Tensor) -> Tensor:
        lo, hi = (float(v) for v in self.act_range)
        lo, hi = min(lo, 0.0), max(hi, 0.0)  # onnxruntime's range always holds 0 (exact zero point)
        scale = max(hi - lo, 1e-8) / 255.0
        zero_point = int(min(255, max(0, round(-lo / scale))))
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, 0, 255)

    def _fq_weight(self, w: Tensor) -> Tensor:
        if not self.per_channel:
            scale = float(w.detach().abs().max().clamp_min(1e-8)) / QMAX_WEIGHT
            return torch.fake_quantize_per_tensor_affine(w, scale, 0, -QMAX_WEIGHT, QMAX_WEIGHT)
        dims = [d for d in range(w.dim()) if d != self.weight_axis]
        scale = (w.detach().abs().amax(dim=dims).clamp_min(1e-8) / QMAX_WEIGHT).float()
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, self.weight_axis, -QMAX_WEIGHT, QMAX_WEIGHT)


class FakeQuantConv2d(_FakeQuant, nn.Conv2d):
    """A Conv2d whose input and weight are fake-quantized (made by `prepare_qat`, never built directly)."""

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(self._fq_input(x), self._fq_weight(self.weight), self.bias)


class FakeQuantConvTranspose2d(_FakeQuant, nn.ConvTranspose2d):
    """A ConvTranspose2d whose input and weight are fake-quantized (weight [in, out, k, k]: scales per output)."""

    def forward(self, x: Tensor) -> Tensor:
        w = self._fq_weight(self.weight)
        return F.conv_transpose2d(
            self._fq_input(x), w, self.bias, self.stride, self.padding, self.output_padding, self.groups, self.dilation
        )


_FQ = {nn.Conv2d: FakeQuantConv2d, nn.ConvTranspose2d: FakeQuantConvTranspose2d}


def onnx_conv_nodes(onnx_path: str | os.PathLike, model: nn.Module, names: Iterable[str]) -> list[str]:
    """The ONNX nodes computing the named convolutions of `model`, found by their weights (the exporter's scope
    names do not follow module names one to one)."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(onnx_path))
    init = {t.name: t for t in proto.graph.initializer}
    convs = [n for n in proto.graph.node if n.op_type in ("Conv", "ConvTranspose") and n.input[1] in init]
    modules = dict(model.named_modules())
    out = []
    for name in names:
        w = modules[name].weight.detach().cpu().numpy()
        hits = [
            n.name
            for n in convs
            if tuple(init[n.input[1]].dims) == w.shape and np.array_equal(numpy_helper.to_array(init[n.input[1]]), w)
        ]
        if len(hits) != 1:
            raise ConfigError(f"cannot tell which ONNX node computes {name!r} ({len(hits)} with its weights)")
        out.append(hits[0])
    return out


def qat_layers(model: nn.Module) -> list[str]:
    """Names of the fake-quantized convolutions of a QAT model."""
    return [n for n, m in model.named_modules() if isinstance(m, _FakeQuant)]


@torch.no_grad()
def _calibrate(model: nn.Module, names: list[str], images: np.ndarray, batch: int) -> dict[str, list[float]]:
    """Min and max of each named convolution's input over the calibration images (eval mode)."""
    modules = dict(model.named_modules())
    ranges: dict[str, list[float]] = {n: [float("inf"), float("-inf")] for n in names}

    def hook(name):
        def record(_module, args):
            x = args[0]
            r = ranges[name]
            r[0], r[1] = min(r[0], float(x.min())), max(r[1], float(x.max()))

        return record

    handles = [modules[n].register_forward_pre_hook(hook(n)) for n in names]
    try:
        model.eval()
        device = next(model.parameters()).device
        for s in range(0, len(images), batch):
            model(torch.from_numpy(images[s : s + batch]).to(device))
    finally:
        for h in handles:
            h.remove()
    return ranges


def prepare_qat(
    model: nn.Module,
    images: np.ndarray,
    *,
    per_channel: bool = True,
    exclude: Iterable[str] = (),
    batch: int = 8,
) -> nn.Module:
    """A fully fused copy of `model` with fake-quantized convolutions, input ranges calibrated on `images`.

    images: calibration inputs [N, 3, H, W] float32 in [0, 1] (`nas.quant.calibration_images`); exclude: module
    names of convolutions kept float (selective quantization, e.g. "heads.head1.cls_pred").
    """
    m = copy.deepcopy(model)
    fuse(m, "full")
    exclude = set(exclude)
    convs = {n: c for n, c in m.named_modules() if type(c) in _FQ}
    unknown = exclude - set(convs)
    if unknown:
        raise ConfigError(f"exclude: no convolution named {sorted(unknown)[0]!r} (e.g. {next(iter(convs))!r})")
    names = [n for n in convs if n not in exclude]
    ranges = _calibrate(m, names, images, batch)
    for name in names:
        conv = convs[name]
        conv.__class__ = _FQ[type(conv)]
        conv.register_buffer("act_range", torch.tensor(ranges[name]), persistent=False)
        conv.per_channel = per_channel
        conv.weight_axis = 1 if isinstance(conv, nn.ConvTranspose2d) else 0
    m.qat = {"per_channel": per_channel, "exclude": sorted(exclude), "calib_images": len(images), "layers": len(names)}
    return m


def strip_qat(model: nn.Module) -> nn.Module:
    """A copy of a QAT model with plain convolutions (the fine-tuned float weights of the fused network)."""
    m = copy.deepcopy(model)
    for module in m.modules():
        if isinstance(module, _FakeQuant):
            module.__class__ = nn.ConvTranspose2d if isinstance(module, nn.ConvTranspose2d) else nn.Conv2d
            del module._buffers["act_range"]
    if hasattr(m, "qat"):
        del m.qat
    return m


def export_qat_onnx(
    model: nn.Module,
    file: str | os.PathLike,
    images: np.ndarray,
    export_fp32: Any,
    *,
    method: str = "minmax",
) -> tuple[QuantResult, Any]:
    """Write a QAT model as QDQ INT8 ONNX: `export_fp32(float_model, path)` exports the stripped, fine-tuned
    network (checked against torch), which `quantize_onnx` quantizes with the model's settings. Returns the
    quantization result and `export_fp32`'s."""
    settings = getattr(model, "qat", None)
    if settings is None:
        raise ConfigError("export_qat_onnx needs a model made by prepare_qat")
    with tempfile.TemporaryDirectory(prefix="nas-qat-") as tmp:
        fp32 = Path(tmp) / "qat_fp32.onnx"
        float_model = strip_qat(model)
        exported = export_fp32(float_model, fp32)
        exclude = onnx_conv_nodes(fp32, float_model, settings["exclude"])
        q = quantize_onnx(fp32, file, images, method=method, per_channel=settings["per_channel"], exclude=exclude)
    return q, exported
