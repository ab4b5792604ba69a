"""Where each tensor of a sub-network lives in the supernet's weights: a slot and the slice of it.

Every tensor that `nas.models.build(arch)` registers (super-gradients state_dict names) maps to a *slot* (one
module of the supernet's weights, named by the module path with `/`) and a *view* of that slot's tensor: leading
channels on every axis, except where a conv's input is a concatenation (the view takes each segment's leading
channels) and for grouped head convs (a block-diagonal gather of the dense kernel). What is shared and what is
kept per choice (docs/supernet.md):

- widths: leading channels (outputs and inputs alike); depths: the first k bottlenecks;
- block type: `qarepvgg` and `repvgg` share the 3x3 and the 1x1 kernels and keep their own BatchNorms (and the
  1x1 bias of QARepVGG): the kernels play the same role, the statistics after them do not. `conv` (a plain
  Conv-BN-ReLU) has weights of its own: without the 1x1 and identity branches its 3x3 kernel is the whole map,
  not a correction to them;
- `concat_intermediates`: one conv3 per choice. With intermediates its input segments are [conv1, block 1..n,
  conv2] and segment i belongs to block i at every depth; without, its input is [last block, conv2] and the
  "last block" is a different block at each depth: sharing would make one weight serve two meanings;
- head `first_conv_group_size`: dense (-1) and grouped (k > 0) share one dense kernel, grouped as its
  block-diagonal; 0 (no extra conv) skips it; the final conv of each branch is shared by all three;
- SPP pools: the output conv's input segment of each pool size is kept once per size ([x, pool 3, pool 5, ...]);
  a pool-size choice takes the segments of its sizes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from nas.errors import SpaceError
from nas.space.schema import ArchConfig, HeadConfig
from nas.space.space import SearchSpace

__all__ = ["ELASTIC_FIELDS", "Bounds", "View", "check_space", "extreme_archs", "plan", "with_classes"]

# The leaf fields of an ArchConfig the supernet makes elastic, by config node (the neck's up and down stages alike).
_NECK_STAGE = (
    "out_channels",
    "num_blocks",
    "hidden_channels",
    "block",
    "concat_intermediates",
    "width_mult",
    "depth_mult",
)
ELASTIC_FIELDS = {
    "stem": ("out_channels", "block"),
    "stages": ("out_channels", "num_blocks", "hidden_channels", "concat_intermediates", "block"),
    "context": ("out_channels", "pool_sizes"),
    "up": _NECK_STAGE,
    "down": _NECK_STAGE,
    "heads": ("inter_channels", "width_mult", "first_conv_group_size"),
}
_SHARED_KERNELS = {  # (block type, tensor inside the block) -> (shared slot inside the block, attribute)
    ("qarepvgg", "branch_3x3.conv.weight"): ("branch_3x3/conv", "weight"),
    ("repvgg", "branch_3x3.conv.weight"): ("branch_3x3/conv", "weight"),
    ("qarepvgg", "branch_1x1.weight"): ("branch_1x1", "weight"),
    ("repvgg", "branch_1x1.conv.weight"): ("branch_1x1", "weight"),
}


def _node_of(path: str) -> str:
    parts = path.split(".")
    if len(parts) < 2:
        return ""
    return parts[-3] if parts[-2].isdigit() else parts[-2]


def check_space(space: SearchSpace) -> None:
    """SpaceError naming the first dimension the supernet cannot express (e.g. `heads.reg_max`)."""
    for d in space.dimensions:
        node, leaf = _node_of(d.path), d.path.rsplit(".", 1)[-1]
        if leaf not in ELASTIC_FIELDS.get(node, ()):
            allowed = "; ".join(f"{n}: {', '.join(f)}" for n, f in ELASTIC_FIELDS.items())
            raise SpaceError(
                f"the supernet cannot express the dimension {d.path} of space {space.name!r}: its weights would "
                f"not be slices of one network (elastic fields: {allowed}); remove it from the space or fix it in "
                "the base architecture"
            )


def with_classes(arch: ArchConfig, num_classes: int) -> ArchConfig:
    if arch.num_classes == num_classes:
        return arch
    return arch.replace(heads=type(arch.heads)(**{**_fields(arch.heads), "num_classes": num_classes}))


def _fields(node: Any) -> dict[str, Any]:
    return {f: getattr(node, f) for f in node.__dataclass_fields__}


def _pick(d, largest: bool) -> Any:
    numeric = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in d.choices)
    if numeric:
        if d.path.endswith("first_conv_group_size"):  # largest: -1 (dense), else the widest groups; smallest: 0
            order = sorted(d.choices, key=lambda g: (g == -1, g > 0, g))  # 0 < 8 < 16 < -1 in weights
            return order[-1] if largest else order[0]
        return max(d.choices) if largest else min(d.choices)
    if all(isinstance(c, bool) for c in d.choices):
        return largest if largest in d.choices else d.choices[0]
    return d.choices[0]


def extreme_archs(space: SearchSpace, num_classes: int) -> tuple[ArchConfig, ArchConfig, list[ArchConfig]]:
    """(largest, smallest, covering): every numeric dimension at its largest / smallest choice (with
    intermediates, the dense head conv), and the largest with each categorical choice in turn, which together
    touch every slot at its full size."""
    big = {d.path: _pick(d, True) for d in space.dimensions}
    small = {d.path: _pick(d, False) for d in space.dimensions}
    largest = with_classes(space.decode(big, name=f"{space.name}_largest"), num_classes)
    smallest = with_classes(space.decode(small, name=f"{space.name}_smallest"), num_classes)
    # Slots are local to a module, so the k-th choice of every categorical dimension at once covers them all.
    categorical = [
        d for d in space.dimensions if d.path.endswith(("block", "concat_intermediates", "pool_sizes", "group_size"))
    ]
    covering = [largest]
    for k in range(max((len(d.choices) for d in categorical), default=0)):
        values = {**big, **{d.path: d.choices[min(k, len(d.choices) - 1)] for d in categorical}}
        covering.append(with_classes(space.decode(values, name=f"{space.name}_cover{k}"), num_classes))
    return largest, smallest, covering


@dataclass(frozen=True)
class View:
    """A sub-network tensor as a view of a slot tensor: `segments[axis]` lists (start, length) ranges of that
    axis (concatenated), None for the leading `shape[axis]` channels; `group` > 0: axis 1 is the block-diagonal
    of a dense kernel with `group` input channels per group."""

    slot: str
    attr: str
    shape: tuple[int, ...]
    segments: tuple[tuple[tuple[int, int], ...] | None, ...]
    group: int = 0

    def extent(self) -> tuple[int, ...]:
        """The slot size this view needs."""
        out = []
        for axis, n in enumerate(self.shape):
            seg = self.segments[axis]
            out.append(max(s + k for s, k in seg) if seg else n)
        if self.group:
            out[1] = out[0]
        return tuple(out)


@dataclass(frozen=True)
class Bounds:
    """The largest architecture's sizes that fix the segment offsets inside concatenating convs."""

    largest: ArchConfig
    pool_sizes: tuple[int, ...]  # the SPP output conv's input segments after x, one per distinct pool size

    @classmethod
    def of(cls, space: SearchSpace, largest: ArchConfig) -> Bounds:
        pools = {k for k in largest.backbone.context.pool_sizes}
        for d in space.dimensions:
            if d.path.endswith("pool_sizes"):
                pools |= {k for c in d.choices for k in c}
        return cls(largest, tuple(sorted(pools)))

    def csp(self, path: str) -> tuple[int, int]:
        """(hidden, depth) of the largest CSP layer at `path` (e.g. backbone.stage2.blocks)."""
        cfg = _csp_config(self.largest, path)
        depth = cfg.effective_num_blocks if hasattr(cfg, "effective_num_blocks") else cfg.num_blocks
        return cfg.hidden_channels, depth


def _csp_config(arch: ArchConfig, path: str):
    m = re.match(r"backbone\.stage(\d)\.blocks$", path)
    if m:
        return arch.backbone.stages[int(m.group(1)) - 1]
    m = re.match(r"neck\.neck(\d)\.blocks$", path)
    if m:
        i = int(m.group(1))
        return arch.neck.up[i - 1] if i <= 2 else arch.neck.down[i - 3]
    raise KeyError(path)


def _neck_out(arch: ArchConfig, i: int) -> int:
    cfg = arch.neck.up[i - 1] if i <= 2 else arch.neck.down[i - 3]
    return cfg.effective_out_channels


def _down_skip(arch: ArchConfig, i: int) -> int:
    """Skip channels of down stage neck{i}: neck3 takes neck2's, neck4 neck1's output width."""
    return arch.neck.up[1 if i == 3 else 0].effective_out_channels


_BLOCK_SLOT = re.compile(r"^(.*?(?:stem\.conv|stage\d\.downsample|bottlenecks\.\d+\.cv[12]))\.(.+)$")
_HEAD_CONV = re.compile(r"^(heads\.head(\d)\.(?:cls|reg)_convs)\.(\d)\.(.+)$")


def _block_type(arch: ArchConfig, block_path: str) -> str:
    if block_path.endswith("stem.conv"):
        return arch.backbone.stem.block
    m = re.match(r"backbone\.stage(\d)\.", block_path)
    if m:
        return arch.backbone.stages[int(m.group(1)) - 1].block
    m = re.match(r"neck\.neck(\d)\.", block_path)
    return _csp_config(arch, f"neck.neck{m.group(1)}.blocks").block


def _slot_name(module_path: str) -> str:
    return module_path.replace(".", "/")


def _locate(arch: ArchConfig, name: str) -> tuple[str, str] | None:
    """(slot, attr) of sub-network tensor `name`; None for the unused `rbr_reparam` placeholders."""
    module, attr = name.rsplit(".", 1)
    if ".rbr_reparam" in name:
        return None
    m = _BLOCK_SLOT.match(name)
    if m:
        block, rest = m.groups()
        kind = _block_type(arch, block)
        shared = _SHARED_KERNELS.get((kind, rest))
        if shared:
            return f"{_slot_name(block)}/{shared[0]}", shared[1]
        return f"{_slot_name(block)}/{_slot_name(rest.rsplit('.', 1)[0])}@{kind}", attr
    m = _HEAD_CONV.match(name)
    if m:
        branch, head, index, _rest = m.groups()
        has_first = arch.heads.heads[int(head) - 1].first_conv_group_size != 0
        role = "first" if has_first and index == "0" else "last"
        return f"{_slot_name(branch)}/{role}/{_slot_name(_rest.rsplit('.', 1)[0])}", attr
    if ".blocks.conv3." in name:
        csp = name.split(".blocks.conv3.")[0] + ".blocks"
        cat = _csp_config(arch, csp).concat_intermediates
        return _slot_name(module).replace("/conv3", f"/conv3@{'cat' if cat else 'last'}"), attr
    return _slot_name(module), attr


def _segments(arch: ArchConfig, bounds: Bounds, name: str, shape: tuple[int, ...]):
    """Input-axis segments of the convs whose input is a concatenation; None elsewhere."""
    if not name.endswith("conv.weight") or len(shape) != 4:
        return None
    if ".blocks.conv3." in name:
        csp = name.split(".blocks.conv3.")[0] + ".blocks"
        cfg = _csp_config(arch, csp)
        h = cfg.hidden_channels
        n = cfg.effective_num_blocks if hasattr(cfg, "effective_num_blocks") else cfg.num_blocks
        big_h, big_n = bounds.csp(csp)
        if cfg.concat_intermediates:
            return (*((k * big_h, h) for k in range(n + 1)), ((big_n + 1) * big_h, h))
        return ((0, h), (big_h, h))
    if name == "backbone.context_module.cv2.conv.weight":
        hid = arch.backbone.stages[3].out_channels // 2
        big = bounds.largest.backbone.stages[3].out_channels // 2
        pos = [1 + bounds.pool_sizes.index(k) for k in arch.backbone.context.pool_sizes]
        return ((0, hid), *((p * big, hid) for p in pos))
    m = re.match(r"neck\.neck([12])\.reduce_after_concat\.", name)
    if m:
        o, big = _neck_out(arch, int(m.group(1))), _neck_out(bounds.largest, int(m.group(1)))
        return ((0, o), (big, o), (2 * big, o))
    m = re.match(r"neck\.neck([34])\.blocks\.conv[12]\.", name)
    if m:
        i = int(m.group(1))
        half, big_half = _neck_out(arch, i) // 2, _neck_out(bounds.largest, i) // 2
        return ((0, half), (big_half, _down_skip(arch, i)))
    return None


def _head_group(arch: ArchConfig, name: str) -> int:
    m = _HEAD_CONV.match(name)
    if not m or m.group(3) != "0" or not name.endswith("seq.conv.weight"):
        return 0
    head: HeadConfig = arch.heads.heads[int(m.group(2)) - 1]
    return head.first_conv_group_size if head.first_conv_group_size > 0 else 0


def plan(arch: ArchConfig, bounds: Bounds, shapes: dict[str, tuple[int, ...]]) -> dict[str, View]:
    """The view of every tensor (`shapes`: name -> shape of `build(arch)`'s tensors) that lives in the supernet."""
    out = {}
    for name, shape in shapes.items():
        where = _locate(arch, name)
        if where is None:
            continue
        segs: list = [None] * len(shape)
        inner = _segments(arch, bounds, name, shape)
        if inner is not None:
            segs[1] = inner
        out[name] = View(where[0], where[1], tuple(shape), tuple(segs), _head_group(arch, name))
    return out


def describe_mismatch(space: SearchSpace, arch: ArchConfig, num_classes: int) -> None:
    """SpaceError naming the dimension when `arch` is not a sub-network of the supernet of `space`."""
    if arch.num_classes != num_classes:
        raise SpaceError(f"architecture {arch.name!r} predicts {arch.num_classes} classes; the supernet {num_classes}")
    space.values_of(with_classes(arch, space.base.num_classes), what=f"architecture {arch.name!r}")
