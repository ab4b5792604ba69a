"""yolo-nas-search: open hardware-aware NAS for YOLO-NAS-family detectors, with a model-zoo API."""

from nas.space import ArchConfig

__version__ = "0.1.0"

__all__ = ["ArchConfig", "__version__"]
