"""The architecture of a state_dict, read from its key names and tensor shapes.

`infer_arch` first looks for an exact match with a released model (S/M/L, also with a different class
count), so a checkpoint of a released model gets the released `ArchConfig` back. Otherwise it reads an
arbitrary `ArchConfig` from the shapes. What the weights cannot tell is filled with the defaults of the
released models, and the result is checked by rebuilding its key/shape set:
* SPP pool *sizes* leave no trace in the weights, only their count (from the SPP `cv2` input width):
  3 pools are taken as the standard (5, 9, 13), k pools as (5, 9, ..., 5 + 4 (k - 1));
* width/depth multipliers are folded into the channel and block counts (multipliers 1.0), so a model
  built with multipliers comes back as an equal-shaped arch with different field values;
* `first_conv_group_size` equal to the head width is read back as -1 (the same dense conv);
* bn_eps, bn_momentum, grid_cell_scale and grid_cell_offset take the released values (1e-3, 0.03, 5, 0.5).
Use the project's own checkpoint format (`save_checkpoint`), which records the `ArchConfig`, to keep them.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping

import torch

from nas.errors import CheckpointError, SpaceError
from nas.models.yolo_nas import YoloNAS
from nas.space.io import released_archs
from nas.space.schema import (
    HEAD_STRIDES,
    ArchConfig,
    BackboneConfig,
    ContextConfig,
    HeadConfig,
    HeadsConfig,
    NeckConfig,
    NeckStageConfig,
    StageConfig,
    StemConfig,
)

__all__ = ["Shapes", "expected_shapes", "infer_arch", "shape_diff", "shapes_of"]

Shapes = dict[str, tuple[int, ...]]


@functools.lru_cache(maxsize=16)
def _expected(arch: ArchConfig) -> tuple[tuple[str, tuple[int, ...]], ...]:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = YoloNAS(arch)
    return tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())


def expected_shapes(arch: ArchConfig) -> Shapes:
    """Ordered key -> shape of `build(arch).state_dict()`, computed without allocating weights."""
    return dict(_expected(arch))


def shapes_of(state_dict: Mapping[str, torch.Tensor]) -> Shapes:
    return {k: tuple(v.shape) for k, v in state_dict.items()}


def shape_diff(expected: Shapes, given: Shapes, limit: int = 5) -> str:
    """Empty when equal, else the missing / unexpected / shape-mismatched keys (first `limit` + counts)."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    mismatched = [
        f"{k}: checkpoint {list(given[k])} vs model {list(s)}"
        for k, s in expected.items()
        if k in given and given[k] != s
    ]
    lines = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            lines.append(f"  {label} ({len(items)}): " + "; ".join(items[:limit]) + more)
    return "\n".join(lines)


@functools.cache
def _released() -> dict[str, ArchConfig]:
    return released_archs()


def _same_but_classes(expected: Shapes, shapes: Shapes) -> bool:
    """Equal key sets, and equal shapes except for the class-prediction convs."""
    if expected.keys() != shapes.keys():
        return False
    return all(s == shapes[k] or ".cls_pred." in k for k, s in expected.items())


class _Reader:
    """Key/shape lookups that fail with the missing key named."""

    def __init__(self, shapes: Shapes):
        self.shapes = shapes

    def get(self, key: str) -> tuple[int, ...]:
        if key not in self.shapes:
            raise CheckpointError(f"cannot infer the architecture: key {key!r} is missing (not a YOLO-NAS state_dict?)")
        return self.shapes[key]

    def has(self, key: str) -> bool:
        return key in self.shapes

    def count(self, prefix: str) -> int:
        """Number of consecutive integer children `prefix{i}.` (0, 1, 2, ...)."""
        pat = re.compile(re.escape(prefix) + r"(\d+)\.")
        found = {int(m.group(1)) for k in self.shapes if (m := pat.match(k))}
        n = 0
        while n in found:
            n += 1
        return n

    def block(self, prefix: str) -> tuple[str, int, int]:
        """(block type, in channels, out channels) of the 3x3 block at `prefix`."""
        if self.has(prefix + "branch_3x3.conv.weight"):
            out_c, in_c = self.get(prefix + "branch_3x3.conv.weight")[:2]
            if self.has(prefix + "branch_1x1.conv.weight"):
                return "repvgg", in_c, out_c
            if self.has(prefix + "branch_1x1.weight") and self.has(prefix + "post_bn.weight"):
                return "qarepvgg", in_c, out_c
        elif self.has(prefix + "rbr_reparam.weight") or (
            self.has(prefix + "conv.weight") and not self.has(prefix + "bn.weight")
        ):
            raise CheckpointError(
                f"{prefix.rstrip('.')} is re-parameterized (fused); load the unfused weights and fuse after loading"
            )
        elif self.has(prefix + "conv.weight"):
            out_c, in_c = self.get(prefix + "conv.weight")[:2]
            return "conv", in_c, out_c
        raise CheckpointError(f"cannot infer the architecture: no (QA)RepVGG or Conv block under {prefix!r}")

    def csp(self, prefix: str) -> tuple[int, int, int, bool, str]:
        """(out channels, num_blocks, hidden channels, concat_intermediates, block type) of a CSP layer."""
        hidden = self.get(prefix + "conv1.conv.weight")[0]
        out_c, conv3_in = self.get(prefix + "conv3.conv.weight")[:2]
        n = self.count(prefix + "bottlenecks.")
        if n == 0:
            raise CheckpointError(f"cannot infer the architecture: no bottlenecks under {prefix!r}")
        if conv3_in == hidden * 2:
            concat = False
        elif conv3_in == hidden * (2 + n):
            concat = True
        else:
            raise CheckpointError(
                f"cannot infer the architecture: {prefix}conv3 takes {conv3_in} channels, expected "
                f"{2 * hidden} or {(2 + n) * hidden} for {n} bottlenecks of width {hidden}"
            )
        block, _, _ = self.block(prefix + "bottlenecks.0.cv1.")
        return out_c, n, hidden, concat, block


def _infer_from_shapes(shapes: Shapes) -> ArchConfig:
    r = _Reader(shapes)
    stem_block, in_channels, stem_out = r.block("backbone.stem.conv.")
    stages = []
    for i in range(1, 5):
        p = f"backbone.stage{i}."
        ds_block, _, _ = r.block(p + "downsample.")
        out_c, n, hidden, concat, block = r.csp(p + "blocks.")
        if block != ds_block:
            raise CheckpointError(
                f"cannot infer the architecture: stage{i} mixes {ds_block} (downsample) and {block} (bottlenecks); "
                "an ArchConfig stage has one block type"
            )
        stages.append(StageConfig(out_c, n, hidden, concat, block))
    hidden = r.get("backbone.context_module.cv1.conv.weight")[0]
    ctx_out, ctx_in = r.get("backbone.context_module.cv2.conv.weight")[:2]
    pools = ctx_in // hidden - 1
    if pools < 1 or ctx_in % hidden:
        raise CheckpointError(f"cannot infer the architecture: SPP cv2 input {ctx_in} is not a multiple of {hidden}")
    context = ContextConfig(ctx_out, tuple(5 + 4 * j for j in range(pools)))
    necks = []
    for i in range(1, 5):
        out_c, n, hidden, concat, block = r.csp(f"neck.neck{i}.blocks.")
        necks.append(NeckStageConfig(out_c, n, hidden, block, concat))
    heads = []
    for i, stride in enumerate(HEAD_STRIDES, start=1):
        p = f"heads.head{i}."
        inter = r.get(p + "stem.seq.conv.weight")[0]
        group = 0
        if r.count(p + "cls_convs.") == 2:
            per_group = r.get(p + "cls_convs.0.seq.conv.weight")[1]
            group = -1 if per_group == inter else per_group
        heads.append(HeadConfig(inter, stride, 1.0, group))
    num_classes = r.get("heads.head1.cls_pred.weight")[0]
    reg_max = r.get("heads.head1.reg_pred.weight")[0] // 4 - 1
    return ArchConfig(
        name="inferred",
        backbone=BackboneConfig(StemConfig(stem_out, stem_block), tuple(stages), context),
        neck=NeckConfig(tuple(necks[:2]), tuple(necks[2:])),
        heads=HeadsConfig(tuple(heads), num_classes, reg_max),
        in_channels=in_channels,
    )


def infer_arch(state_dict: Mapping[str, torch.Tensor]) -> ArchConfig:
    """The architecture whose `build(arch).state_dict()` has exactly these keys and shapes.

    A released model (S/M/L, possibly re-headed to another class count) comes back as its released
    `ArchConfig`; see the module docstring for what is assumed otherwise. Raises CheckpointError naming
    the key that is missing or the keys that no architecture explains.
    """
    shapes = shapes_of(state_dict)
    if not any(k.startswith(("backbone.", "neck.", "heads.")) for k in shapes):
        first = list(shapes)[:3]
        raise CheckpointError(
            f"not a YOLO-NAS state_dict: none of its {len(shapes)} keys starts with backbone./neck./heads. "
            f"(first keys: {first})"
        )
    released = _released()
    for arch in released.values():
        if expected_shapes(arch) == shapes:
            return arch
    try:
        arch = _infer_from_shapes(shapes)
    except SpaceError as e:
        raise CheckpointError(f"cannot infer the architecture: the shapes give an invalid ArchConfig: {e}") from None
    for name, rel in released.items():  # a released model fine-tuned on another class count
        if not _same_but_classes(expected_shapes(rel), shapes):
            continue
        relabelled = rel.replace(heads=dataclasses.replace(rel.heads, num_classes=arch.num_classes))
        if expected_shapes(relabelled) == shapes:
            return relabelled.replace(name=f"{name}_{arch.num_classes}cls")
    diff = shape_diff(expected_shapes(arch), shapes)
    if diff:
        raise CheckpointError(f"the state_dict is not a YOLO-NAS-family model; closest architecture differs:\n{diff}")
    return arch.replace(name=f"inferred_{arch.digest()[:8]}")
