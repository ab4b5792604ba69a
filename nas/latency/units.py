"""Latency units: an `ArchConfig` cut into pieces whose keys depend only on their own hyper-parameters.

A unit is one piece of the *deployed* (fully fused) network: every (QA)RepVGG block and Conv-BN pair is
a single conv with bias, so block types vanish from the keys (a fused qarepvgg, repvgg or conv block is
the same 3x3 conv + ReLU). Granularity: single convs, the learned upsample, the SPP module, the DFL
decoding, and the CSP layer in three parts (1x1 entry convs, the chain of `n` bottlenecks, the concat +
1x1 exit conv) so that the expensive bottleneck chains are timed once per (width, depth, resolution)
instead of once per surrounding stage configuration.

The decomposition reads the architecture through an accessor `v(path)` (ArchConfig YAML paths), so the
vectorized predictor can record exactly which fields each slot depends on. Imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from nas.errors import ConfigError
from nas.space.schema import HEAD_STRIDES, ArchConfig, depth_multiplier, width_multiplier

__all__ = [
    "KINDS",
    "SLOTS",
    "Unit",
    "check_input_hw",
    "decompose",
    "flat_values",
    "slot_units",
]

Reader = Callable[[str], Any]
HW = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Unit:
    """One timed piece of the deployed network: a kind, its hyper-parameters and its input resolution."""

    kind: str
    spec: tuple[tuple[str, Any], ...]
    hw: HW

    def __getitem__(self, name: str) -> Any:
        return dict(self.spec)[name]

    @property
    def key(self) -> str:
        """Stable, readable table key, e.g. `conv(cin=3,cout=48,k=3,s=2,g=1,act=1)@320x320`."""
        args = ",".join(f"{k}={_fmt(v)}" for k, v in self.spec)
        return f"{self.kind}({args})@{self.hw[0]}x{self.hw[1]}"

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the fused unit (fvcore's FLOP convention: one per MAC)."""
        return KINDS[self.kind].macs(dict(self.spec), self.hw)

    @property
    def params(self) -> int:
        """Parameters of the fused unit."""
        return KINDS[self.kind].params(dict(self.spec))

    @property
    def act_elems(self) -> int:
        """Elements of the activations the unit reads and writes (a memory-traffic feature)."""
        return KINDS[self.kind].act_elems(dict(self.spec), self.hw)

    def __str__(self) -> str:
        return self.key


def _fmt(v: Any) -> str:
    if isinstance(v, tuple):
        return "-".join(str(x) for x in v)
    if isinstance(v, bool):
        return str(int(v))
    return str(v)


def _down(hw: HW, s: int) -> HW:
    # 3x3/pad 1 and 1x1/pad 0 convs: out = ceil(in / stride)
    return (-(-hw[0] // s), -(-hw[1] // s))


def _area(hw: HW) -> int:
    return hw[0] * hw[1]


class _Conv:
    """Fused Conv2d with bias, optional ReLU."""

    @staticmethod
    def macs(p: dict, hw: HW) -> int:
        return p["cout"] * (p["cin"] // p["g"]) * p["k"] ** 2 * _area(_down(hw, p["s"]))

    @staticmethod
    def params(p: dict) -> int:
        return p["cout"] * (p["cin"] // p["g"]) * p["k"] ** 2 + p["cout"]

    @staticmethod
    def act_elems(p: dict, hw: HW) -> int:
        return p["cin"] * _area(hw) + p["cout"] * _area(_down(hw, p["s"]))


class _Upsample:
    """ConvTranspose2d(c, c, 2, stride 2) with bias (the neck's learned upsample)."""

    @staticmethod
    def macs(p: dict, hw: HW) -> int:
        return p["c"] * p["c"] * 4 * _area(hw)

    @staticmethod
    def params(p: dict) -> int:
        return 4 * p["c"] ** 2 + p["c"]

    @staticmethod
    def act_elems(p: dict, hw: HW) -> int:
        return p["c"] * _area(hw) * 5


class _CSPIn:
    """CSP entry: [concat of the inputs] then the two 1x1 conv-ReLUs to the hidden width."""

    @staticmethod
    def macs(p: dict, hw: HW) -> int:
        return 2 * sum(p["ins"]) * p["h"] * _area(hw)

    @staticmethod
    def params(p: dict) -> int:
        return 2 * (sum(p["ins"]) * p["h"] + p["h"])

    @staticmethod
    def act_elems(p: dict, hw: HW) -> int:
        return (sum(p["ins"]) * (1 + (len(p["ins"]) > 1)) + 2 * p["h"]) * _area(hw)


class _Bottlenecks:
    """`n` fused bottlenecks: alpha * x + relu(conv3x3(relu(conv3x3(x))))."""

    @staticmethod
    def macs(p: dict, hw: HW) -> int:
        return p["n"] * 2 * 9 * p["h"] ** 2 * _area(hw)

    @staticmethod
    def params(p: dict) -> int:
        return p["n"] * (2 * (9 * p["h"] ** 2 + p["h"]) + 1)

    @staticmethod
    def act_elems(p: dict, hw: HW) -> int:
        return p["n"] * 5 * p["h"] * _area(hw)


class _ConcatConv:
    """Concat of `parts` tensors of `c` channels, then a 1x1 conv-ReLU to `cout` (CSP exit, up-stage fuse)."""

    @staticmethod
    def macs(p: dict, hw: HW) -> int:
        return p["parts"] * p["c"] * p["cout"] * _area(hw)

    @staticmethod
    def params(p: dict) -> int:
        return p["parts"] * p["c"] * p["cout"] + p["cout"]

    @staticmethod
    def act_elems(p: dict, hw: HW) -> int:
        return (2 * p["parts"] * p["c"] + p["cout"]) * _area(hw)


class _SPP:
    """SPP context module: 1x1 halving conv, parallel max-pools, concat, 1x1 output conv."""

    @staticmethod
    def macs(p: dict, hw: HW) -> int:
        half = p["cin"] // 2
        return (p["cin"] * half + half * (len(p["pools"]) + 1) * p["cout"]) * _area(hw)

    @staticmethod
    def params(p: dict) -> int:
        half = p["cin"] // 2
        return p["cin"] * half + half + half * (len(p["pools"]) + 1) * p["cout"] + p["cout"]

    @staticmethod
    def act_elems(p: dict, hw: HW) -> int:
        half = p["cin"] // 2
        return (p["cin"] + half * (2 * len(p["pools"]) + 3) + p["cout"]) * _area(hw)


class _Decode:
    """DFL decoding of the three levels' raw outputs into boxes and scores (no parameters)."""

    @staticmethod
    def macs(p: dict, hw: HW) -> int:
        return 0

    @staticmethod
    def params(p: dict) -> int:
        return 0

    @staticmethod
    def act_elems(p: dict, hw: HW) -> int:
        anchors = sum(_area(_down(hw, s)) for s in HEAD_STRIDES)
        return anchors * (3 * (4 * (p["reg_max"] + 1) + p["nc"]) + 4)


KINDS: dict[str, Any] = {
    "conv": _Conv,
    "upsample": _Upsample,
    "csp_in": _CSPIn,
    "bottlenecks": _Bottlenecks,
    "concat_conv": _ConcatConv,
    "spp": _SPP,
    "decode": _Decode,
}


def _conv(cin: int, cout: int, k: int, s: int, hw: HW, g: int = 1, act: bool = True) -> Unit:
    return Unit("conv", (("cin", cin), ("cout", cout), ("k", k), ("s", s), ("g", g), ("act", act)), hw)


# ---- the slots of the YOLO-NAS topology ----------------------------------------------------------
# A slot is one place in the network; it reads the fields it needs through `v` and returns its units
# (usually one). Slots are small so that each depends on few searched fields: the vectorized predictor
# tabulates every slot over the product of the choices of exactly the fields it reads.

Slot = Callable[[Reader, HW], list[Unit]]


def _res(hw: HW, k: int) -> HW:
    """The input resolution divided by 2**k."""
    return (hw[0] >> k, hw[1] >> k)


def _stage_out(v: Reader, i: int) -> int:
    return v(f"backbone.stages.{i}.out_channels")


def _neck_out(v: Reader, p: str) -> int:
    return width_multiplier(v(f"{p}.out_channels"), v(f"{p}.width_mult"), 8)


def _csp_slots(
    p: str, ins: Callable[[Reader], tuple[int, ...]], cout: Callable[[Reader], int], k: int
) -> dict[str, Slot]:
    """CSP layer at resolution 1/2**k in three slots; `p` is the config node with its depth/width fields."""
    neck = p.startswith("neck.")

    def n(v: Reader) -> int:
        return depth_multiplier(v(f"{p}.num_blocks"), v(f"{p}.depth_mult")) if neck else v(f"{p}.num_blocks")

    def entry(v: Reader, hw: HW) -> list[Unit]:
        return [Unit("csp_in", (("ins", ins(v)), ("h", v(f"{p}.hidden_channels"))), _res(hw, k))]

    def body(v: Reader, hw: HW) -> list[Unit]:
        return [Unit("bottlenecks", (("h", v(f"{p}.hidden_channels")), ("n", n(v))), _res(hw, k))]

    def exit_(v: Reader, hw: HW) -> list[Unit]:
        parts = 2 + n(v) * v(f"{p}.concat_intermediates")
        spec = (("parts", parts), ("c", v(f"{p}.hidden_channels")), ("cout", cout(v)))
        return [Unit("concat_conv", spec, _res(hw, k))]

    return {f"{p}.csp.in": entry, f"{p}.csp.bottlenecks": body, f"{p}.csp.out": exit_}


def _conv_slot(cin: Callable[[Reader], int], cout: Callable[[Reader], int], k: int, s: int, res: int) -> Slot:
    def slot(v: Reader, hw: HW) -> list[Unit]:
        return [_conv(cin(v), cout(v), k, s, _res(hw, res))]

    return slot


def _backbone_slots() -> dict[str, Slot]:
    slots: dict[str, Slot] = {
        "backbone.stem": _conv_slot(lambda v: v("in_channels"), lambda v: v("backbone.stem.out_channels"), 3, 2, 0)
    }
    for i in range(4):
        p = f"backbone.stages.{i}"
        prev = (lambda v: v("backbone.stem.out_channels")) if i == 0 else (lambda v, i=i: _stage_out(v, i - 1))
        out = lambda v, i=i: _stage_out(v, i)  # noqa: E731
        slots[f"{p}.downsample"] = _conv_slot(prev, out, 3, 2, i + 1)
        slots.update(_csp_slots(p, lambda v, out=out: (out(v),), out, i + 2))

    def context(v: Reader, hw: HW) -> list[Unit]:
        spec = (("cin", _stage_out(v, 3)), ("pools", tuple(v("backbone.context.pool_sizes"))))
        return [Unit("spp", (*spec, ("cout", v("backbone.context.out_channels"))), _res(hw, 5))]

    slots["backbone.context"] = context
    return slots


def _neck_slots() -> dict[str, Slot]:
    slots: dict[str, Slot] = {}
    # neck.up.0 takes the context output at 1/32 to 1/16, with skips stage 3 (1/16) and stage 2 (1/8);
    # neck.up.1 is one level finer.
    for j in range(2):
        p, k = f"neck.up.{j}", 5 - j
        cin = (lambda v: v("backbone.context.out_channels")) if j == 0 else (lambda v: _neck_out(v, "neck.up.0"))
        o = lambda v, p=p: _neck_out(v, p)  # noqa: E731
        slots[f"{p}.conv"] = _conv_slot(cin, o, 1, 1, k)
        slots[f"{p}.upsample"] = lambda v, hw, o=o, k=k: [Unit("upsample", (("c", o(v)),), _res(hw, k))]
        slots[f"{p}.reduce_skip1"] = _conv_slot(lambda v, j=j: _stage_out(v, 2 - j), o, 1, 1, k - 1)
        slots[f"{p}.reduce_skip2"] = _conv_slot(lambda v, j=j: _stage_out(v, 1 - j), o, 1, 1, k - 2)
        slots[f"{p}.downsample"] = _conv_slot(o, o, 3, 2, k - 2)
        slots[f"{p}.reduce_after_concat"] = lambda v, hw, o=o, k=k: [
            Unit("concat_conv", (("parts", 3), ("c", o(v)), ("cout", o(v))), _res(hw, k - 1))
        ]
        slots.update(_csp_slots(p, lambda v, o=o: (o(v),), o, k - 1))
    # neck.down.0: p3 (1/8) -> 1/16, concatenated with neck.up.1's reduced input; neck.down.1: 1/16 -> 1/32
    # with neck.up.0's reduced input.
    for j in range(2):
        p, k = f"neck.down.{j}", 3 + j
        cin = (lambda v: _neck_out(v, "neck.up.1")) if j == 0 else (lambda v: _neck_out(v, "neck.down.0"))
        o = lambda v, p=p: _neck_out(v, p)  # noqa: E731
        half = lambda v, o=o: o(v) // 2  # noqa: E731
        slots[f"{p}.conv"] = _conv_slot(cin, half, 3, 2, k)
        ins = lambda v, half=half, j=j: (half(v), _neck_out(v, f"neck.up.{1 - j}"))  # noqa: E731
        slots.update(_csp_slots(p, ins, o, k + 1))
    return slots


def _head_slots() -> dict[str, Slot]:
    slots: dict[str, Slot] = {}
    for j in range(3):
        p, k = f"heads.heads.{j}", 3 + j
        cin = (
            lambda v: _neck_out(v, "neck.up.1"),
            lambda v: _neck_out(v, "neck.down.0"),
            lambda v: _neck_out(v, "neck.down.1"),
        )[j]
        c = lambda v, p=p: width_multiplier(v(f"{p}.inter_channels"), v(f"{p}.width_mult"), 8)  # noqa: E731

        def first(v: Reader, hw: HW, p: str = p, c: Callable = c, k: int = k) -> list[Unit]:
            # optional grouped 3x3 (first_conv_group_size: 0 none, -1 dense, g channels per group), in both branches
            g, ch = v(f"{p}.first_conv_group_size"), c(v)
            return [_conv(ch, ch, 3, 1, _res(hw, k), g=1 if g == -1 else ch // g)] * 2 if g else []

        slots[f"{p}.stem"] = _conv_slot(cin, c, 1, 1, k)
        slots[f"{p}.first_convs"] = first
        slots[f"{p}.convs"] = lambda v, hw, c=c, k=k: [_conv(c(v), c(v), 3, 1, _res(hw, k))] * 2
        slots[f"{p}.cls_pred"] = lambda v, hw, c=c, k=k: [
            _conv(c(v), v("heads.num_classes"), 1, 1, _res(hw, k), act=False)
        ]
        slots[f"{p}.reg_pred"] = lambda v, hw, c=c, k=k: [
            _conv(c(v), 4 * (v("heads.reg_max") + 1), 1, 1, _res(hw, k), act=False)
        ]

    def decode(v: Reader, hw: HW) -> list[Unit]:
        return [Unit("decode", (("nc", v("heads.num_classes")), ("reg_max", v("heads.reg_max"))), hw)]

    slots["heads.decode"] = decode
    return slots


SLOTS: dict[str, Slot] = {**_backbone_slots(), **_neck_slots(), **_head_slots()}


def flat_values(arch: ArchConfig) -> dict[str, Any]:
    """{YAML path: leaf value} of an architecture (lists as tuples), e.g. `neck.up.0.width_mult`."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, x in node.items():
                walk(x, f"{prefix}{k}.")
        elif isinstance(node, list) and node and isinstance(node[0], dict):
            for i, x in enumerate(node):
                walk(x, f"{prefix}{i}.")
        else:
            out[prefix[:-1]] = tuple(node) if isinstance(node, list) else node

    walk(arch.to_dict(), "")
    return out


def check_input_hw(input_hw: Any) -> HW:
    """(H, W) from an int or a pair; both multiples of 32 (the network's total stride)."""
    hw = (input_hw, input_hw) if isinstance(input_hw, int) else tuple(input_hw)
    if len(hw) != 2 or not all(isinstance(x, int) and x > 0 and x % 32 == 0 for x in hw):
        raise ConfigError(f"input_hw: got {input_hw!r}; expected an int or [H, W], multiples of 32 (e.g. 320, 640)")
    return hw  # type: ignore[return-value]


def slot_units(values: dict[str, Any], input_hw: Any) -> Iterator[tuple[str, list[Unit]]]:
    """(slot name, its units) for an architecture given as `flat_values`."""
    hw = check_input_hw(input_hw)
    for name, slot in SLOTS.items():
        yield name, slot(values.__getitem__, hw)


def decompose(arch: ArchConfig, input_hw: Any) -> list[Unit]:
    """All units of the deployed network, in execution order (repeated units appear repeatedly)."""
    return [u for _, units in slot_units(flat_values(arch), input_hw) for u in units]
