"""FLOPs and parameter counts from an `ArchConfig` alone (no torch): baselines for the predictor and the search."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from nas.latency.units import check_input_hw, decompose
from nas.space.schema import ArchConfig

__all__ = ["CountPredictor", "count_flops", "count_params"]


def count_flops(arch: ArchConfig, input_hw: Any = 640) -> int:
    """FLOPs of the deployed (fused) network, counted like fvcore: one per multiply-add."""
    return sum(u.macs for u in decompose(arch, input_hw))


def count_params(arch: ArchConfig, fused: bool = False) -> int:
    """Parameters of `build(arch)` (fused=False, incl. the unused `rbr_reparam` placeholders) or of the fused net."""
    if fused:
        return sum(u.params for u in decompose(arch, 32))
    return _unfused_params(arch)


def _unfused_params(arch: ArchConfig) -> int:
    def conv(cin: int, cout: int, k: int, g: int = 1) -> int:  # Conv2d (no bias) + BatchNorm2d
        return cout * (cin // g) * k * k + 2 * cout

    def block(kind: str, cin: int, cout: int, residual: bool) -> int:
        if kind == "qarepvgg":  # 3x3+BN, 1x1 with bias, post-BN, rbr_reparam placeholder with bias
            return 19 * cin * cout + 6 * cout
        if kind == "repvgg":  # 3x3+BN, 1x1+BN, identity BN
            return 10 * cin * cout + 4 * cout + (2 * cin if residual and cin == cout else 0)
        return conv(cin, cout, 3)

    def csp(cin: int, cout: int, n: int, h: int, kind: str, concat: bool) -> int:
        bottleneck = 2 * block(kind, h, h, True) + 1
        return 2 * conv(cin, h, 1) + conv(h * (2 + concat * n), cout, 1) + n * bottleneck

    b = arch.backbone
    total = block(b.stem.block, arch.in_channels, b.stem.out_channels, False)
    c = b.stem.out_channels
    for s in b.stages:
        total += block(s.block, c, s.out_channels, False)
        total += csp(s.out_channels, s.out_channels, s.num_blocks, s.hidden_channels, s.block, s.concat_intermediates)
        c = s.out_channels
    half = c // 2
    total += conv(c, half, 1) + conv(half * (len(b.context.pool_sizes) + 1), b.context.out_channels, 1)
    outs = [s.out_channels for s in b.stages]
    up_in = b.context.out_channels
    for j, st in enumerate(arch.neck.up):
        o, n = st.effective_out_channels, st.effective_num_blocks
        total += conv(outs[2 - j], o, 1) + conv(outs[1 - j], o, 1) + conv(up_in, o, 1)
        total += 4 * o * o + o + conv(o, o, 3) + conv(3 * o, o, 1)
        total += csp(o, o, n, st.hidden_channels, st.block, st.concat_intermediates)
        up_in = o
    ups = [st.effective_out_channels for st in arch.neck.up]
    cin = ups[1]
    for j, st in enumerate(arch.neck.down):
        o, n = st.effective_out_channels, st.effective_num_blocks
        total += conv(cin, o // 2, 3) + csp(
            o // 2 + ups[1 - j], o, n, st.hidden_channels, st.block, st.concat_intermediates
        )
        cin = o
    nc, reg = arch.heads.num_classes, 4 * (arch.heads.reg_max + 1)
    for cin, h in zip(arch.neck_out_channels, arch.heads.heads):
        c, g = h.effective_inter_channels, h.first_conv_group_size
        first = conv(c, c, 3, 1 if g == -1 else c // g) if g else 0
        total += conv(cin, c, 1) + 2 * (first + conv(c, c, 3)) + c * nc + nc + c * reg + reg
    return total


class CountPredictor:
    """FLOPs (G) or fused parameters (M) with the predictor interface: the baselines the latency table must beat.

    `predict_many` takes a choice-index matrix [N, D] of `space` (vectorized, like `LatencyPredictor`)
    or a list of architectures.
    """

    def __init__(self, what: str = "flops", input_hw: Any = 640, space: Any = "yolo_nas"):
        if what not in ("flops", "params"):
            raise ValueError(f"what must be 'flops' or 'params', got {what!r}")
        if isinstance(space, str):
            from nas.space.space import load_space

            space = load_space(space)
        self.what, self.input_hw, self.space = what, check_input_hw(input_hw), space

    def __repr__(self) -> str:
        return f"CountPredictor({self.what!r}, input_hw={self.input_hw}, space={self.space.name!r})"

    def predict(self, arch: ArchConfig) -> float:
        if self.what == "flops":
            return count_flops(arch, self.input_hw) / 1e9
        return count_params(arch, fused=True) / 1e6

    @functools.cached_property
    def _slot_sum(self) -> Any:
        from nas.latency.spacemap import SlotSum, SpaceMap

        if self.what == "flops":
            return SlotSum(SpaceMap(self.space, self.input_hw), lambda units: sum(u.macs for u in units) / 1e9)
        return SlotSum(SpaceMap(self.space, self.input_hw), lambda units: sum(u.params for u in units) / 1e6)

    def predict_many(self, archs: np.ndarray | Sequence[ArchConfig]) -> np.ndarray:
        if isinstance(archs, np.ndarray):
            return self._slot_sum(archs)
        return np.array([self.predict(a) for a in archs])
