"""The `nas` sweeper's config, registered in Hydra's ConfigStore when Hydra discovers its plugins."""

# No `from __future__ import annotations` here: Hydra executes plugin modules without registering them in
# sys.modules, and dataclasses then cannot resolve string annotations.
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class NasSweeperConf:
    """Search settings (space, objectives, strategy, n_trials, seed, storage) come from the job config;
    these only say how candidates are launched."""

    _target_: str = "hydra_plugins.nas_sweeper.nas_sweeper.NasSweeper"
    n_jobs: int = 2  # candidates launched together (one Hydra job each)
    max_failures: int = 0  # failed candidate jobs tolerated before the sweep stops


ConfigStore.instance().store(group="hydra/sweeper", name="nas", node=NasSweeperConf, provider="nas_sweeper")
