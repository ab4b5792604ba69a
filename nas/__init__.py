"""yolo-nas-search: open hardware-aware NAS for YOLO-NAS-family detectors, with a model-zoo API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nas.space import ArchConfig
from nas.version import __version__

if TYPE_CHECKING:
    from nas.api import NAS

__all__ = ["NAS", "ArchConfig", "__version__"]


def __getattr__(name: str) -> Any:
    # NAS pulls in torch; importing it lazily keeps `import nas.space` torch-free.
    if name == "NAS":
        from nas.api import NAS

        return NAS
    raise AttributeError(f"module 'nas' has no attribute {name!r}")
