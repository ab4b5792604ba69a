"""Model summary: layers, parameters, gradients and GFLOPs (of the deployed network, `nas.latency.counting`)."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import torch
from torch import nn

from nas.engine.options import InfoOptions
from nas.errors import ConfigError, LatencyTableMissError
from nas.latency import gflops, load_hardware, load_predictor
from nas.options import merge

__all__ = ["ModelInfo", "layer_macs", "model_info"]


@dataclass(frozen=True)
class ModelInfo:
    """layers, parameters, gradients: of the module as it is; gflops: 2 x the multiply-adds of the deployed
    (fused) network at imgsz x imgsz, from its ArchConfig - the number a search reports as `flops_g`."""

    name: str
    layers: int
    parameters: int
    gradients: int
    gflops: float
    imgsz: int
    fused: str
    hardware: str | None = None  # latency target (nas.latency) of `latency_ms`
    latency_ms: float | None = None  # predicted by the target's lookup table + calibration
    latency_note: str | None = None  # why no prediction (e.g. no table for this target yet)

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        state = "unfused" if self.fused == "none" else f"fused: {self.fused}"
        gflops = f"{self.gflops:.1f}" if self.gflops >= 1 else f"{self.gflops:.3f}"
        text = (
            f"{self.name} summary ({state}): {self.layers:,} layers, {self.parameters:,} parameters, "
            f"{self.gradients:,} gradients, {gflops} GFLOPs (deployed) at {self.imgsz}x{self.imgsz}"
        )
        if self.latency_ms is not None:
            text += f", {self.latency_ms:.1f} ms predicted on {self.hardware}"
        elif self.latency_note:
            text += f", latency on {self.hardware}: {self.latency_note}"
        return text


def _check_imgsz(imgsz: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    if h % 32 or w % 32 or h < 32 or w < 32:
        raise ConfigError(f"imgsz={imgsz!r}: expected a positive multiple of 32 (e.g. 320, 640)")
    return h, w


def layer_macs(model: nn.Module, imgsz: int | tuple[int, int] = 640) -> dict[str, int]:
    """fvcore multiply-adds per module name of one [1, 3, H, W] forward of `model` as it is (eval mode).

    The per-layer breakdown of `info(detailed=True)`: a trace of this graph, so an unfused model shows its
    training-time branches (and BatchNorms); the summary's total is the deployed network's.
    """
    h, w = _check_imgsz(imgsz)
    param = next(model.parameters())
    x = torch.zeros(1, 3, h, w, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fvcore's import uses the deprecated torch.jit.script
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            from fvcore.nn import FlopCountAnalysis  # an optional, slow-to-import tracer: only detailed=True needs it

            analysis = FlopCountAnalysis(model, x)
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            return dict(analysis.by_module())
    finally:
        model.train(was_training)


def model_info(model: nn.Module, options: InfoOptions | None = None, *, verbose: bool = True, **kwargs) -> ModelInfo:
    """Summarise `model` as it is (options.fuse is applied by `NAS.info`); print the one-line summary (and a
    per-layer table when `detailed`). Keywords are `InfoOptions` fields.

    hardware: a latency target of `nas.latency` (e.g. "cpu_ort"); its predicted latency of the
    architecture (deployed form, the target's own input size) is added to the summary.
    """
    o = merge(InfoOptions, options, kwargs, "model_info")
    imgsz, detailed, hardware = o.imgsz, o.detailed, o.hardware
    leaves = [(n, m) for n, m in model.named_modules() if not any(True for _ in m.children())]
    params = sum(p.numel() for p in model.parameters())
    grads = sum(p.numel() for p in model.parameters() if p.requires_grad)
    arch = getattr(model, "arch", None)
    if arch is None:
        raise ConfigError(f"info() needs a nas model (built from an ArchConfig); {type(model).__name__} has no .arch")
    h, w = _check_imgsz(imgsz)
    info = ModelInfo(
        name=arch.name,
        layers=len(leaves),
        parameters=params,
        gradients=grads,
        gflops=gflops(arch, (h, w)),
        imgsz=imgsz,
        fused=getattr(model, "fusion", "none"),
        **(_latency(arch, hardware) if hardware is not None else {}),
    )
    if verbose:
        if detailed:
            print(_layer_table(leaves, layer_macs(model, imgsz)))
        print(info)
    return info


def _latency(arch, hardware: str) -> dict:
    """Predicted latency fields for ModelInfo; a missing table or table entry becomes a note, not an error."""
    hw = load_hardware(hardware)  # an unknown name is a ConfigError listing the available targets
    label = f"{hw.name} ({hw.backend} {hw.precision}, {hw.input_hw[0]}x{hw.input_hw[1]}, batch {hw.batch})"
    try:
        return {"hardware": label, "latency_ms": load_predictor(hw).predict(arch)}
    except LatencyTableMissError as e:
        return {"hardware": label, "latency_note": f"not predicted: {e}"}


def _layer_table(leaves: list[tuple[str, nn.Module]], per_module: dict[str, int]) -> str:
    # per-layer GFLOPs: 2 x fvcore's multiply-adds of this graph as it is (see `layer_macs`)
    rows = [f"{'layer':>5}  {'name':<60} {'type':<16} {'parameters':>11} {'GFLOPs':>8}"]
    for i, (name, m) in enumerate(leaves):
        n_params = sum(p.numel() for p in m.parameters(recurse=False))
        gflops = 2 * per_module.get(name, 0) / 1e9
        rows.append(f"{i:>5}  {name:<60} {type(m).__name__:<16} {n_params:>11,} {gflops:>8.3f}")
    return "\n".join(rows)
