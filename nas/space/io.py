"""YAML in and out, and lookup of the released architectures by name."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from nas.errors import SpaceError
from nas.space.schema import ArchConfig

__all__ = ["RELEASED", "dump_yaml", "load_arch", "parse_yaml", "released_archs", "write_text_atomic"]

RELEASED = ("yolo_nas_s", "yolo_nas_m", "yolo_nas_l")


class _Dumper(yaml.SafeDumper):
    pass


def _repr_float(dumper: yaml.SafeDumper, value: float) -> yaml.ScalarNode:
    # repr() is the shortest string that reads back to the same float; keep a dot so YAML 1.1
    # parsers (PyYAML) read it back as a float rather than a string.
    text = repr(value)
    if "e" in text and "." not in text:
        mantissa, exp = text.split("e")
        text = f"{mantissa}.0e{exp}"
    return dumper.represent_scalar("tag:yaml.org,2002:float", text)


_Dumper.add_representer(float, _repr_float)


def dump_yaml(data: Any) -> str:
    """Readable YAML: nested mappings in block style, leaf mappings and lists inline, key order kept."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=4096)


def parse_yaml(text: str, source: str = "<string>") -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpaceError(f"{source}: malformed YAML: {e}") from None


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write through a temp file and rename, so a half-written file never replaces a good one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


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
    return ArchConfig.from_yaml(path.read_text(), source=str(path))


def released_archs() -> dict[str, ArchConfig]:
    """The three released architectures, by name."""
    return {name: load_arch(name) for name in RELEASED}
