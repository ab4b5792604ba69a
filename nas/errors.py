"""The few error classes users see; every message names the bad value, what is allowed and the fix."""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DatasetNotFoundError",
    "LatencyTableMissError",
    "NasError",
    "SpaceError",
    "TrainingError",
    "WeightsNotFoundError",
]


class NasError(Exception):
    """Base class of every error raised on purpose by this package."""


class SpaceError(NasError, ValueError):
    """An architecture or search-space description is malformed or out of range."""


class ConfigError(NasError, ValueError):
    """A configuration value (CLI key, Hydra group, hardware name, ...) is unknown or invalid."""


class DataError(NasError, ValueError):
    """A dataset file is missing, malformed or inconsistent."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """A dataset's images are not on disk; the message says what to place where (nothing is downloaded)."""


class CheckpointError(NasError, RuntimeError):
    """A weights file cannot be read safely or does not match the architecture."""


class WeightsNotFoundError(CheckpointError, FileNotFoundError):
    """A released weights file is not in the weights directory."""


class TrainingError(NasError, RuntimeError):
    """A training run cannot go on (repeated non-finite losses, out of memory); the message says where and why."""


class LatencyTableMissError(NasError, KeyError):
    """A latency lookup table has no entry for a block; the message says how to build it."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""
