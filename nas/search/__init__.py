"""Hardware-aware architecture search (Optuna, multi-objective): `python -m nas.search +space=yolo_nas`
or, without Hydra, `nas.search.run("yolo_nas", n_trials=..., out_dir=...)`. The only package that imports optuna."""

from nas.search.config import (
    DataConfig,
    LoggerConfig,
    ProxyConfig,
    RerankConfig,
    SearchConfig,
    SpaceConfig,
    StorageConfig,
    StrategyConfig,
)
from nas.search.outputs import SearchResult
from nas.search.runner import run, run_search

__all__ = [
    "DataConfig",
    "LoggerConfig",
    "ProxyConfig",
    "RerankConfig",
    "SearchConfig",
    "SearchResult",
    "SpaceConfig",
    "StorageConfig",
    "StrategyConfig",
    "run",
    "run_search",
]
