"""File utilities at the bottom of the house: atomic writes and YAML text in and out (no torch, no nas imports but errors)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from nas.errors import SpaceError

__all__ = ["atomic_path", "dump_yaml", "parse_yaml", "write_bytes_atomic", "write_text_atomic"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to `path`; on success it replaces `path`, on error it is removed.

    A half-written file never replaces a good one, and readers never see a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` through a temp file and rename it into place."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` through a temp file and rename it into place."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


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
    """yaml.safe_load; malformed YAML is a SpaceError naming `source`."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpaceError(f"{source}: malformed YAML: {e}") from None
