"""The package version: one place, below everything that records it (checkpoints, search reports)."""

__version__ = "0.1.0"
