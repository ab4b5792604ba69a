"""An INT8 accuracy-drop estimate per architecture that a search can afford: a prior from measured drops.

Both block types fuse to the same FP32 convolution, so nothing computed from an untrained candidate tells
them apart; what differs is how the *trained* fused weights and activations quantize. The estimate is
therefore anchored on measurement: `block_drop.json` (written by experiments/int8/run.py) holds the measured
mAP50-95 drop of the S layout trained with all-QARepVGG and with all-RepVGG blocks, quantized the same way.
A candidate's estimate interpolates between the two by the share of its re-parameterizable blocks that are
RepVGG (counted from the ArchConfig); conv-only architectures get the QARepVGG value. Cost: microseconds,
no model, no data, no training.
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

__all__ = ["BLOCK_DROP", "block_counts", "built_block_counts", "int8_drop_estimate", "load_block_drop"]

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
    """QARepVGG and RepVGG blocks of `arch`, counted from the ArchConfig: the stem's block, each backbone
    stage's stride-2 block, and two per bottleneck of every CSP layer (backbone and neck)."""
    n = {"qarepvgg": 0, "repvgg": 0, "conv": 0}
    n[arch.backbone.stem.block] += 1
    for st in arch.backbone.stages:
        n[st.block] += 1 + 2 * st.num_blocks
    for st in (*arch.neck.up, *arch.neck.down):
        n[st.block] += 2 * st.effective_num_blocks
    return {"qarepvgg": n["qarepvgg"], "repvgg": n["repvgg"]}


def built_block_counts(arch: ArchConfig) -> dict[str, int]:
    """The same count on the built network (a check of `block_counts`)."""
    with torch.random.fork_rng(devices=[]):
        mods = list(build(arch).modules())
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
