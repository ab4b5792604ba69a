"""The released architectures by name, and ArchConfig YAML files by path."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from nas.errors import SpaceError
from nas.io import read_text
from nas.space.schema import ArchConfig

__all__ = ["RELEASED", "load_arch", "released_archs"]

RELEASED = ("yolo_nas_s", "yolo_nas_m", "yolo_nas_l")


def _released_text(name: str) -> str:
    return resources.files("nas.space").joinpath("archs", f"{name}.yaml").read_text()


def load_arch(name_or_path: str | os.PathLike | ArchConfig) -> ArchConfig:
    """`"yolo_nas_s"` resolves to the released S; anything else is read as an ArchConfig YAML file."""
    if isinstance(name_or_path, ArchConfig):
        return name_or_path
    key = str(name_or_path)
    if key in RELEASED:
        return ArchConfig.from_yaml(_released_text(key), source=f"nas/space/archs/{key}.yaml")
    path = Path(key).expanduser()
    if path.suffix not in (".yaml", ".yml") and not path.exists():
        raise SpaceError(
            f"unknown architecture {key!r}: expected one of {', '.join(RELEASED)} or the path of an ArchConfig YAML file"
        )
    if not path.is_file():
        raise SpaceError(f"architecture file {str(path)!r} does not exist")
    return ArchConfig.from_yaml(read_text(path, SpaceError), source=str(path))


def released_archs() -> dict[str, ArchConfig]:
    """The three released architectures, by name."""
    return {name: load_arch(name) for name in RELEASED}
