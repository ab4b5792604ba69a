"""`ArchConfig`: the one typed, immutable description of a YOLO-NAS-family detector.

A frozen dataclass tree (tuples, no lists) so that an architecture is a hashable value: its hash is
the cache key for latency and proxy results. The `name` is a label and takes no part in equality or
hashing, so an emitted architecture that equals a released one compares equal to it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from nas.errors import SpaceError
from nas.io import dump_yaml, parse_yaml
from nas.options import field_error, from_dict

__all__ = [
    "BLOCK_TYPES",
    "HEAD_STRIDES",
    "ArchConfig",
    "BackboneConfig",
    "ContextConfig",
    "HeadConfig",
    "HeadsConfig",
    "NeckConfig",
    "NeckStageConfig",
    "StageConfig",
    "StemConfig",
    "depth_multiplier",
    "width_multiplier",
]

# qarepvgg: quantization-friendly RepVGG (YOLO-NAS); repvgg: classic RepVGG (BN on every branch, the
# non-quantization-friendly baseline); conv: plain 3x3 Conv-BN-ReLU (YOLO-NAS down-stage bottlenecks).
BLOCK_TYPES = ("qarepvgg", "repvgg", "conv")
# The backbone halves the resolution five times, so the three neck outputs are always at 8/16/32.
HEAD_STRIDES = (8, 16, 32)


def width_multiplier(channels: int, mult: float, divisor: int = 8) -> int:
    """Channel rounding of super-gradients: truncate, then round up to a multiple of `divisor`."""
    return math.ceil(int(channels * mult) / divisor) * divisor


def depth_multiplier(num_blocks: int, mult: float) -> int:
    """Block-count scaling of super-gradients (a single block is never scaled)."""
    return max(round(num_blocks * mult), 1) if num_blocks > 1 else num_blocks


def _FieldError(field_name: str, message: str) -> SpaceError:
    return field_error(SpaceError, field_name, message)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_int(name: str, value: Any, low: int = 1, high: int | None = None) -> None:
    if not _is_int(value) or value < low or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise _FieldError(name, f"got {value!r}; expected an integer {rng}")


def _check_float(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, float) or not (low < value <= high):
        raise _FieldError(name, f"got {value!r}; expected a float in ({low}, {high}]")


def _check_block(name: str, value: Any) -> None:
    if value not in BLOCK_TYPES:
        raise _FieldError(name, f"got {value!r}; allowed block types: {', '.join(BLOCK_TYPES)}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _FieldError(name, f"got {value!r}; expected true or false")


class _Node:
    """Shared (de)serialisation for the config dataclasses."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict/list tree in field order (what the YAML holds)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            out[f.name] = _to_plain(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls, data: Any, path: str = ""):
        """Build from a plain dict; errors name the full key path, the bad value and what is allowed."""
        return from_dict(cls, data, error=SpaceError, _path=path)


def _to_plain(v: Any) -> Any:
    if isinstance(v, _Node):
        return v.to_dict()
    if isinstance(v, tuple):
        return [_to_plain(x) for x in v]
    return v


@dataclass(frozen=True, slots=True)
class StemConfig(_Node):
    """A single stride-2 block from the input image."""

    out_channels: int = 48
    block: str = "qarepvgg"

    def __post_init__(self):
        _check_int("out_channels", self.out_channels)
        _check_block("block", self.block)


@dataclass(frozen=True, slots=True)
class StageConfig(_Node):
    """Backbone stage: stride-2 downsample block, then a CSP layer of `num_blocks` bottlenecks."""

    out_channels: int
    num_blocks: int
    hidden_channels: int
    concat_intermediates: bool = False
    block: str = "qarepvgg"

    def __post_init__(self):
        _check_int("out_channels", self.out_channels)
        _check_int("num_blocks", self.num_blocks)
        _check_int("hidden_channels", self.hidden_channels)
        _check_bool("concat_intermediates", self.concat_intermediates)
        _check_block("block", self.block)


@dataclass(frozen=True, slots=True)
class ContextConfig(_Node):
    """SPP context module: 1x1 halving conv, parallel max-pools, 1x1 output conv."""

    out_channels: int = 768
    pool_sizes: tuple[int, ...] = (5, 9, 13)

    def __post_init__(self):
        _check_int("out_channels", self.out_channels)
        if not self.pool_sizes or any(not _is_int(k) or k < 1 or k % 2 == 0 for k in self.pool_sizes):
            raise _FieldError("pool_sizes", f"got {list(self.pool_sizes)!r}; expected a non-empty list of odd integers")


@dataclass(frozen=True, slots=True)
class BackboneConfig(_Node):
    stem: StemConfig
    stages: tuple[StageConfig, ...]
    context: ContextConfig = ContextConfig()

    def __post_init__(self):
        if len(self.stages) != 4:
            raise _FieldError("stages", f"got {len(self.stages)} stages; a YOLO-NAS backbone has exactly 4")


@dataclass(frozen=True, slots=True)
class NeckStageConfig(_Node):
    """PAN neck stage. Up stages use QARepVGG bottlenecks in YOLO-NAS, down stages plain 3x3 convs."""

    out_channels: int
    num_blocks: int
    hidden_channels: int
    block: str
    concat_intermediates: bool = False
    width_mult: float = 1.0
    depth_mult: float = 1.0

    def __post_init__(self):
        _check_int("out_channels", self.out_channels)
        _check_int("num_blocks", self.num_blocks)
        _check_int("hidden_channels", self.hidden_channels)
        _check_block("block", self.block)
        _check_bool("concat_intermediates", self.concat_intermediates)
        _check_float("width_mult", self.width_mult, 0.0, 4.0)
        _check_float("depth_mult", self.depth_mult, 0.0, 4.0)
        if self.effective_out_channels < 8:
            raise _FieldError("width_mult", f"out_channels {self.out_channels} x {self.width_mult} rounds to 0")

    @property
    def effective_out_channels(self) -> int:
        return width_multiplier(self.out_channels, self.width_mult, 8)

    @property
    def effective_num_blocks(self) -> int:
        return depth_multiplier(self.num_blocks, self.depth_mult)


@dataclass(frozen=True, slots=True)
class NeckConfig(_Node):
    """Two up stages (1/32 -> 1/16 -> 1/8) then two down stages (1/8 -> 1/16 -> 1/32)."""

    up: tuple[NeckStageConfig, ...]
    down: tuple[NeckStageConfig, ...]

    def __post_init__(self):
        if len(self.up) != 2:
            raise _FieldError("up", f"got {len(self.up)} stages; the YOLO-NAS neck has exactly 2 up stages")
        if len(self.down) != 2:
            raise _FieldError("down", f"got {len(self.down)} stages; the YOLO-NAS neck has exactly 2 down stages")


@dataclass(frozen=True, slots=True)
class HeadConfig(_Node):
    """One DFL head.

    first_conv_group_size: 0 = no extra conv (released models), -1 = one extra dense 3x3 conv per
    branch, k > 0 = one extra grouped 3x3 conv with k channels per group.
    """

    inter_channels: int
    stride: int
    width_mult: float = 1.0
    first_conv_group_size: int = 0

    def __post_init__(self):
        _check_int("inter_channels", self.inter_channels)
        _check_int("stride", self.stride)
        _check_float("width_mult", self.width_mult, 0.0, 4.0)
        _check_int("first_conv_group_size", self.first_conv_group_size, low=-1)
        c = self.effective_inter_channels
        if c < 8:
            raise _FieldError("width_mult", f"inter_channels {self.inter_channels} x {self.width_mult} rounds to 0")
        g = self.first_conv_group_size
        if g > 0 and c % g:
            raise _FieldError(
                "first_conv_group_size",
                f"got {g}; it must divide the effective inter channels {c} (or be 0 / -1)",
            )

    @property
    def effective_inter_channels(self) -> int:
        return width_multiplier(self.inter_channels, self.width_mult, 8)


@dataclass(frozen=True, slots=True)
class HeadsConfig(_Node):
    heads: tuple[HeadConfig, ...]
    num_classes: int = 80
    reg_max: int = 16
    grid_cell_scale: float = 5.0
    grid_cell_offset: float = 0.5

    def __post_init__(self):
        strides = tuple(h.stride for h in self.heads)
        if strides != HEAD_STRIDES:
            raise _FieldError("heads", f"got strides {list(strides)}; expected exactly {list(HEAD_STRIDES)}")
        _check_int("num_classes", self.num_classes)
        _check_int("reg_max", self.reg_max)
        _check_float("grid_cell_scale", self.grid_cell_scale, 0.0, 100.0)
        _check_float("grid_cell_offset", self.grid_cell_offset, -1.0, 1.0)


@dataclass(frozen=True, slots=True)
class ArchConfig(_Node):
    """A complete YOLO-NAS-family detector."""

    name: str = field(compare=False)
    backbone: BackboneConfig
    neck: NeckConfig
    heads: HeadsConfig
    in_channels: int = 3
    bn_eps: float = 1e-3
    bn_momentum: float = 0.03

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise _FieldError("name", f"got {self.name!r}; expected a non-empty string")
        _check_int("in_channels", self.in_channels)
        _check_float("bn_eps", self.bn_eps, 0.0, 1.0)
        _check_float("bn_momentum", self.bn_momentum, 0.0, 1.0)

    @property
    def num_classes(self) -> int:
        return self.heads.num_classes

    @property
    def neck_out_channels(self) -> tuple[int, int, int]:
        """Channels of p3, p4, p5 (the head inputs)."""
        up2, (d1, d2) = self.neck.up[1], self.neck.down
        return up2.effective_out_channels, d1.effective_out_channels, d2.effective_out_channels

    def replace(self, **changes: Any) -> ArchConfig:
        return dataclasses.replace(self, **changes)

    def digest(self) -> str:
        """Stable content hash (name excluded): a cache key that survives processes and machines."""
        d = self.to_dict()
        d.pop("name")
        blob = json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_yaml(self) -> str:
        return dump_yaml(self.to_dict())

    @classmethod
    def from_yaml(cls, text: str, source: str = "<string>") -> ArchConfig:
        data = parse_yaml(text, source)
        try:
            return cls.from_dict(data)
        except SpaceError as e:
            raise SpaceError(f"{source}: {e}") from None
