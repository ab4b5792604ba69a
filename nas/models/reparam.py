"""Re-parameterization: fuse QARepVGG/RepVGG branches and fold BatchNorms for inference."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from nas.models.blocks import Conv, HeadConv, QARepVGGBlock, RepVGGBlock

__all__ = ["FuseReport", "fuse", "fuse_report"]


@dataclass(frozen=True)
class FuseReport:
    mode: str
    params_before: int
    params_after: int
    keys_before: int
    keys_after: int
    blocks_fused: int

    def __str__(self) -> str:
        return (
            f"fused ({self.mode}): {self.blocks_fused} modules, "
            f"params {self.params_before:,} -> {self.params_after:,}, "
            f"state_dict keys {self.keys_before} -> {self.keys_after}"
        )


def _counts(model: nn.Module) -> tuple[int, int]:
    return sum(p.numel() for p in model.parameters()), len(model.state_dict())


def fuse_report(model: nn.Module, mode: str = "full") -> FuseReport:
    """Fuse in place (see `fuse`) and report parameter and key counts before and after."""
    params_before, keys_before = _counts(model)
    n = _fuse(model, mode)
    params_after, keys_after = _counts(model)
    return FuseReport(mode, params_before, params_after, keys_before, keys_after, n)


def fuse(model: nn.Module, mode: str = "full") -> nn.Module:
    """Fuse every re-parameterizable block of `model` in place and return it, in eval mode.

    mode="full": every (QA)RepVGG block becomes one 3x3 conv + ReLU and every Conv-BN pair one conv
    with bias (fastest; outputs equal the unfused eval model to float rounding).
    mode="partial": super-gradients' conversion form: QARepVGG branches fused, post-BN and the other
    BatchNorms kept (for quantization-aware training and TensorRT, which folds BN itself).
    Idempotent; "full" after "partial" completes the fusion.
    """
    _fuse(model, mode)
    return model


def _fuse(model: nn.Module, mode: str) -> int:
    if mode not in ("partial", "full"):
        raise ValueError(f"fusion mode must be 'partial' or 'full', got {mode!r}")
    model.eval()  # folding uses BatchNorm running statistics: only valid for inference
    targets = [m for m in model.modules() if isinstance(m, (QARepVGGBlock, RepVGGBlock))]
    if mode == "full":
        targets += [m for m in model.modules() if isinstance(m, (Conv, HeadConv))]
    fused = 0
    for m in targets:
        before = getattr(m, "fusion", None), _has_bn(m)
        if isinstance(m, (QARepVGGBlock, RepVGGBlock)):
            m.reparameterize(mode)
        else:
            m.reparameterize()
        fused += before != (getattr(m, "fusion", None), _has_bn(m))
    if hasattr(model, "fusion") and model.fusion != "full":
        model.fusion = mode
    return fused


def _has_bn(m: nn.Module) -> bool:
    return any(isinstance(c, nn.BatchNorm2d) for c in m.modules())
