"""Architectures as data: `ArchConfig`, its YAML form, and the search space over it. Imports no torch."""

from nas.space.io import RELEASED, load_arch, released_archs
from nas.space.schema import (
    BLOCK_TYPES,
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
from nas.space.space import Dimension, SearchSpace, available_spaces, load_space

__all__ = [
    "BLOCK_TYPES",
    "RELEASED",
    "ArchConfig",
    "BackboneConfig",
    "ContextConfig",
    "Dimension",
    "HeadConfig",
    "HeadsConfig",
    "NeckConfig",
    "NeckStageConfig",
    "SearchSpace",
    "StageConfig",
    "StemConfig",
    "available_spaces",
    "load_arch",
    "load_space",
    "released_archs",
]
