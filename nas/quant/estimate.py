"""An INT8 accuracy-drop estimate per architecture that a search can afford: a prior from measured drops.

Both block types fuse to the same FP32 convolution, so nothing computed from an untrained candidate tells
them apart; what differs is how the *trained* fused weights and activations quantize. The estimate is
therefore anchored on measurement: `block_drop.json` (written by experiments/int8/run.py) holds the measured
mAP50-95 drop of the S layout trained with all-QARepVGG and with all-RepVGG blocks, quantized the same way.
A candidate's estimate interpolates between the two by the share of its re-parameterizable blocks that are
RepVGG (blocks counted in the built network); conv-only architectures get the QARepVGG value. Cost: one
network build (~0.1-0.3 s), no data, no training.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import torch

from nas.errors import ConfigError
from nas.models import build
from nas.models.blocks import QARepVGGBlock, RepVGGBlock
from nas.space.schema import ArchConfig

__all__ = ["BLOCK_DROP", "block_counts", "int8_drop_estimate", "load_block_drop"]

BLOCK_DROP = Path(__file__).with_name("block_drop.json")


@cache
def load_block_drop(path: str | None = None) -> dict[str, Any]:
    p = Path(path) if path else BLOCK_DROP
    try:
        data = json.loads(p.read_text())
        drops = {k: float(data["drop"][k]) for k in ("qarepvgg", "repvgg")}
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise ConfigError(
            f"{p}: cannot read the measured per-block INT8 drops ({e}); regenerate it with "
            "`python experiments/int8/run.py`"
        ) from None
    return {**data, "drop": drops}


def block_counts(arch: ArchConfig) -> dict[str, int]:
    """QARepVGG and RepVGG blocks in the network built from `arch`."""
    with torch.random.fork_rng(devices=[]):
        model = build(arch)
    mods = list(model.modules())
    return {
        "qarepvgg": sum(isinstance(m, QARepVGGBlock) for m in mods),
        "repvgg": sum(isinstance(m, RepVGGBlock) for m in mods),
    }


def int8_drop_estimate(arch: ArchConfig, path: str | None = None) -> float:
    """Estimated mAP50-95 points lost by post-training INT8 quantization of `arch` (see the module doc)."""
    drop = load_block_drop(path)["drop"]
    n = block_counts(arch)
    total = n["qarepvgg"] + n["repvgg"]
    share = n["repvgg"] / total if total else 0.0
    return drop["qarepvgg"] + share * (drop["repvgg"] - drop["qarepvgg"])
