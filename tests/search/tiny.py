"""A tiny search space (widths 8-48, one or two blocks per stage) so that searches run in seconds in tests."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from nas.search.config import ProxyConfig, SearchConfig, SpaceConfig, StorageConfig, StrategyConfig
from nas.space import ArchConfig

_NECK = {"concat_intermediates": False, "width_mult": 1.0, "depth_mult": 1.0}
TINY_S = {
    "name": "tiny_s",
    "backbone": {
        "stem": {"out_channels": 8, "block": "qarepvgg"},
        "stages": [
            {"out_channels": 16, "num_blocks": 1, "hidden_channels": 8, "block": "qarepvgg"},
            {"out_channels": 16, "num_blocks": 1, "hidden_channels": 8, "block": "qarepvgg"},
            {"out_channels": 32, "num_blocks": 1, "hidden_channels": 8, "block": "qarepvgg"},
            {"out_channels": 32, "num_blocks": 1, "hidden_channels": 16, "block": "qarepvgg"},
        ],
        "context": {"out_channels": 32, "pool_sizes": [5, 9, 13]},
    },
    "neck": {
        "up": [
            {"out_channels": 16, "num_blocks": 1, "hidden_channels": 8, "block": "qarepvgg", **_NECK},
            {"out_channels": 16, "num_blocks": 1, "hidden_channels": 8, "block": "qarepvgg", **_NECK},
        ],
        "down": [
            {"out_channels": 16, "num_blocks": 1, "hidden_channels": 8, "block": "conv", **_NECK},
            {"out_channels": 32, "num_blocks": 1, "hidden_channels": 8, "block": "conv", **_NECK},
        ],
    },
    "heads": {
        "heads": [
            {"inter_channels": 16, "stride": 8},
            {"inter_channels": 16, "stride": 16},
            {"inter_channels": 32, "stride": 32},
        ],
        "num_classes": 4,
    },
}
# path -> choices; the first choice is tiny_s, tiny_m takes the second where it has one, tiny_l the last
DIMENSIONS = {
    "backbone.stem.out_channels": [8, 16],
    "backbone.stages.0.out_channels": [16, 24],
    "backbone.stages.1.num_blocks": [1, 2],
    "backbone.stages.2.out_channels": [32, 48],
    "backbone.stages.2.hidden_channels": [8, 16],
    "backbone.stages.3.block": ["qarepvgg", "repvgg"],
    "backbone.context.pool_sizes": [[5, 9, 13], [5, 9]],
    "neck.up.0.hidden_channels": [8, 16],
    "neck.down.1.out_channels": [32, 48],
    "heads.heads.2.inter_channels": [32, 48],
    "heads.heads.0.first_conv_group_size": [0, -1, 8],
}
_M_DIMS = ("backbone.stem.out_channels", "backbone.stages.0.out_channels", "backbone.stages.1.num_blocks")


def _set(tree: dict, path: str, value) -> None:
    parts = [int(p) if p.isdigit() else p for p in path.split(".")]
    for p in parts[:-1]:
        tree = tree[p]
    tree[parts[-1]] = value


def tiny_arch(name: str, choice: dict[str, int] | None = None) -> ArchConfig:
    """tiny_s with dimension `path` set to its choice index `choice[path]`."""
    tree = copy.deepcopy(TINY_S)
    tree["name"] = name
    for path, i in (choice or {}).items():
        _set(tree, path, DIMENSIONS[path][i])
    return ArchConfig.from_dict(tree)


def write_tiny_space(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    archs = {
        "tiny_s": tiny_arch("tiny_s"),
        "tiny_m": tiny_arch("tiny_m", dict.fromkeys(_M_DIMS, 1)),
        "tiny_l": tiny_arch("tiny_l", {p: len(c) - 1 for p, c in DIMENSIONS.items() if p != "backbone.stages.3.block"}),
    }
    for name, a in archs.items():
        (folder / f"{name}.yaml").write_text(a.to_yaml())
    space = {
        "name": "tiny",
        "description": "test space",
        "base": str(folder / "tiny_s.yaml"),
        "references": [str(folder / f"{n}.yaml") for n in archs],
        "dimensions": DIMENSIONS,
    }
    path = folder / "tiny_space.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def tiny_config(space_path: Path, cache: Path, **changes) -> SearchConfig:
    cfg = SearchConfig(
        space=SpaceConfig(name=str(space_path)),
        proxy=ProxyConfig(imgsz=64, batch_size=2, batch_source="random", n_reference=3, cache_dir=str(cache)),
        strategy=StrategyConfig(name="nsga2", population_size=4, n_startup_trials=3),
        storage=StorageConfig(kind="sqlite"),
        n_trials=6,
        progress=False,
        threads=1,
    )
    for k, v in changes.items():
        setattr(cfg, k, v)
    return cfg
