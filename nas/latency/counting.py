"""An architecture's cost from its `ArchConfig` alone (no torch, no module): the one place it is counted.

The convention, used by `nas info`, `python -m nas.models`, the search's `flops_g`, its reports and the docs:

- counts are of the **deployed** network (every (QA)RepVGG block and Conv-BN pair fused into one conv with
  bias): the network that runs, whose pieces the latency tables time (`nas.latency.units`);
- **MACs** are the multiply-accumulates of its convolutions (and the learned upsample's transposed conv),
  exactly what fvcore counts on the fused module; activations, pooling and the DFL softmax are not counted;
- **FLOPs = 2 x MACs** (one multiply plus one add), as ultralytics and most papers print "GFLOPs";
  YOLO-NAS S at 640x640: 15.90 GMACs = 31.8 GFLOPs (M 87.8, L 119.8);
- **parameters** default to those of `build(arch)` as released (S 19,053,888, the number papers cite);
  `fused=True` gives the deployed network's;
- **activations** are the elements each deployed unit reads and writes (a memory-traffic measure).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas.latency.spacemap import SlotSum, SpaceMap
from nas.latency.units import check_input_hw, decompose
from nas.space.schema import ArchConfig
from nas.space.space import SearchSpace, load_space

__all__ = [
    "Cost",
    "CountPredictor",
    "arch_cost",
    "count_activations",
    "count_flops",
    "count_macs",
    "count_params",
    "gflops",
]


def count_macs(arch: ArchConfig, input_hw: Any = 640) -> int:
    """Multiply-accumulates of the deployed network for one image (fvcore's count on the fused module)."""
    return sum(u.macs for u in decompose(arch, input_hw))


def count_flops(arch: ArchConfig, input_hw: Any = 640) -> int:
    """FLOPs of the deployed network for one image: 2 x `count_macs` (the convention of "GFLOPs")."""
    return 2 * count_macs(arch, input_hw)


def gflops(arch: ArchConfig, input_hw: Any = 640) -> float:
    """`count_flops` in units of 1e9: what `nas info` and the search's `flops_g` print."""
    return count_flops(arch, input_hw) / 1e9


def count_activations(arch: ArchConfig, input_hw: Any = 640) -> int:
    """Activation elements read and written by the deployed network's units for one image."""
    return sum(u.act_elems for u in decompose(arch, input_hw))


def count_params(arch: ArchConfig, fused: bool = False) -> int:
    """Parameters of `build(arch)` (fused=False, incl. the unused `rbr_reparam` placeholders) or of the fused net."""
    if fused:
        return sum(u.params for u in decompose(arch, 32))
    return _unfused_params(arch)


@dataclass(frozen=True)
class Cost:
    """Every count of one architecture at one input size (see the module docstring for the convention)."""

    input_hw: tuple[int, int]
    macs: int
    params: int
    params_fused: int
    activations: int

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    @property
    def params_m(self) -> float:
        return self.params / 1e6


def arch_cost(arch: ArchConfig, input_hw: Any = 640) -> Cost:
    """MACs, FLOPs, parameters (as built and fused) and activations of `arch` at `input_hw`, in one pass."""
    hw = check_input_hw(input_hw)
    units = decompose(arch, hw)
    return Cost(
        input_hw=hw,
        macs=sum(u.macs for u in units),
        params=_unfused_params(arch),
        params_fused=sum(u.params for u in units),
        activations=sum(u.act_elems for u in units),
    )


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
    """GFLOPs or fused parameters (M) with the predictor interface: the baselines the latency table must beat.

    `predict_many` takes a choice-index matrix [N, D] of `space` (vectorized, like `LatencyPredictor`)
    or a list of architectures.
    """

    def __init__(self, what: str = "flops", input_hw: Any = 640, space: str | SearchSpace = "yolo_nas"):
        if what not in ("flops", "params"):
            raise ValueError(f"what must be 'flops' or 'params', got {what!r}")
        if isinstance(space, str):
            space = load_space(space)
        self.what, self.input_hw, self.space = what, check_input_hw(input_hw), space

    def __repr__(self) -> str:
        return f"CountPredictor({self.what!r}, input_hw={self.input_hw}, space={self.space.name!r})"

    def predict(self, arch: ArchConfig) -> float:
        if self.what == "flops":
            return gflops(arch, self.input_hw)
        return count_params(arch, fused=True) / 1e6

    @functools.cached_property
    def _slot_sum(self) -> Any:
        if self.what == "flops":
            return SlotSum(SpaceMap(self.space, self.input_hw), lambda units: 2 * sum(u.macs for u in units) / 1e9)
        return SlotSum(SpaceMap(self.space, self.input_hw), lambda units: sum(u.params for u in units) / 1e6)

    def predict_many(self, archs: np.ndarray | Sequence[ArchConfig]) -> np.ndarray:
        if isinstance(archs, np.ndarray):
            return self._slot_sum(archs)
        return np.array([self.predict(a) for a in archs])
