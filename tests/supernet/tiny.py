"""A tiny space that exercises every elastic dimension of the supernet (widths 8-48), for CPU tests in seconds."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.search.tiny import TINY_S

DIMENSIONS = {
    "backbone.stem.out_channels": [8, 16],
    "backbone.stem.block": ["qarepvgg", "repvgg"],
    "backbone.stages.0.block": ["qarepvgg", "repvgg"],
    "backbone.stages.0.out_channels": [16, 24],
    "backbone.stages.0.num_blocks": [1, 2],
    "backbone.stages.0.hidden_channels": [8, 16],
    "backbone.stages.0.concat_intermediates": [False, True],
    "backbone.stages.1.num_blocks": [1, 3],
    "backbone.stages.1.concat_intermediates": [False, True],
    "backbone.stages.2.out_channels": [32, 48],
    "backbone.stages.3.out_channels": [32, 48],
    "backbone.stages.3.block": ["qarepvgg", "repvgg"],
    "backbone.context.out_channels": [32, 40],
    "backbone.context.pool_sizes": [[5, 9, 13], [3, 5, 7], [5, 9]],
    "neck.up.0.out_channels": [16, 24],
    "neck.up.0.num_blocks": [1, 2],
    "neck.up.0.depth_mult": [0.5, 1.0, 1.5],
    "neck.up.0.concat_intermediates": [False, True],
    "neck.up.1.width_mult": [0.75, 1.0, 1.25],
    "neck.up.1.block": ["qarepvgg", "repvgg"],
    "neck.down.0.block": ["conv", "qarepvgg"],
    "neck.down.0.hidden_channels": [8, 16],
    "neck.down.0.width_mult": [1.0, 1.5],
    "neck.down.1.out_channels": [32, 48],
    "neck.down.1.num_blocks": [1, 2],
    "neck.down.1.concat_intermediates": [False, True],
    "heads.heads.0.inter_channels": [16, 24],
    "heads.heads.0.first_conv_group_size": [0, -1, 8],
    "heads.heads.1.width_mult": [0.5, 1.0],
    "heads.heads.1.first_conv_group_size": [0, 8],
    "heads.heads.2.inter_channels": [32, 48],
}


def write_space(folder: Path, extra: dict | None = None) -> Path:
    """The tiny base architecture and the space YAML in `folder`; `extra` adds dimensions."""
    folder.mkdir(parents=True, exist_ok=True)
    base = folder / "tiny_base.yaml"
    base.write_text(yaml.safe_dump({**TINY_S, "name": "tiny_base"}, sort_keys=False))
    space = {"name": "tiny_super", "base": str(base), "dimensions": {**DIMENSIONS, **(extra or {})}}
    path = folder / "tiny_super.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path
