"""The search space: explicit choice lists over `ArchConfig` fields, with the released S/M/L as points.

A space file names a base architecture (every field not searched comes from it), the reference points
(which must lie in the space) and one explicit choice list per searched field, keyed by its path in
the ArchConfig YAML (`backbone.stages.2.num_blocks`). Every combination of choices builds: choices are
validated per field, and fields of the same config node jointly, when the space is loaded.

Sampling is duck-typed on an Optuna-like trial (`suggest_int`, `suggest_categorical`), so this module
does not import optuna. Numeric choice lists are sampled as ordinal indices (samplers can exploit the
order); other lists (block types, booleans, pool-size tuples) as categorical labels.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import typing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from nas.errors import SpaceError
from nas.io import parse_yaml
from nas.options import from_dict
from nas.space.io import load_arch
from nas.space.schema import ArchConfig

__all__ = ["Dimension", "SearchSpace", "available_spaces", "load_space"]

_MAX_JOINT_CHECK = 200_000  # combinations of one node's choices checked exhaustively at load time


@dataclass(frozen=True)
class _SpaceFile:
    """The top level of a space YAML (the values are checked with their own messages in `from_dict`)."""

    name: str
    base: Any  # an architecture name or path
    dimensions: Any  # {field path: [choice, ...]}
    description: str = ""
    references: Any = None  # [architecture name or path, ...]


class TrialLike(Protocol):
    def suggest_int(self, name: str, low: int, high: int) -> int: ...
    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


def _label(value: Any) -> Any:
    """Optuna categorical choices must be None/bool/int/float/str: tuples become '5-9-13'."""
    if isinstance(value, (list, tuple)):
        return "-".join(str(v) for v in value)
    return value


@dataclass(frozen=True, slots=True)
class Dimension:
    """One searched field: its YAML path and its explicit choices (plain values, as in the YAML)."""

    path: str
    choices: tuple[Any, ...]

    @property
    def ordinal(self) -> bool:
        vals = self.choices
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)
        return numeric and list(vals) == sorted(vals)

    @property
    def labels(self) -> tuple[Any, ...]:
        return tuple(_label(v) for v in self.choices)

    def index(self, value: Any) -> int:
        key = tuple(value) if isinstance(value, list) else value
        for i, c in enumerate(self.choices):
            c_key = tuple(c) if isinstance(c, list) else c
            if c_key == key and type(c_key) is type(key):
                return i
            if isinstance(c_key, float) and _is_number(key) and float(key) == c_key:
                return i
        raise SpaceError(f"{self.path}: value {value!r} is not among the choices {list(self.choices)}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _split(path: str) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in path.split(".")]


def _get(tree: Any, parts: list[str | int]) -> Any:
    for p in parts:
        tree = tree[p]
    return tree


def _set(tree: Any, parts: list[str | int], value: Any) -> None:
    _get(tree, parts[:-1])[parts[-1]] = list(value) if isinstance(value, tuple) else value


def _node_type(parts: list[str | int]) -> type:
    """Dataclass type of the config node that holds the field at `parts`."""
    cls: Any = ArchConfig
    for p in parts[:-1]:
        if isinstance(p, int):
            continue
        hint = typing.get_type_hints(cls)[p]
        if typing.get_origin(hint) is tuple:
            hint = typing.get_args(hint)[0]
        cls = hint
    return cls


class SearchSpace:
    """A parsed, validated search space."""

    def __init__(
        self,
        name: str,
        base: ArchConfig,
        dimensions: tuple[Dimension, ...],
        references: dict[str, ArchConfig],
        description: str = "",
        source: str = "<space>",
    ):
        self.name, self.base, self.dimensions, self.description = name, base, dimensions, description
        self.references, self.source = references, source
        self._base_dict = base.to_dict()
        self._by_path = {d.path: d for d in dimensions}
        self._validate()

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, source: str = "<space>") -> SearchSpace:
        raw = from_dict(_SpaceFile, data, source=source, error=SpaceError)
        try:
            base = load_arch(raw.base)
        except SpaceError as e:
            raise SpaceError(f"{source}: base: {e}") from None
        refs = raw.references or []
        if not isinstance(refs, list):
            raise SpaceError(f"{source}: references: expected a list of architecture names or paths")
        references = {}
        for r in refs:
            try:
                a = load_arch(r)
            except SpaceError as e:
                raise SpaceError(f"{source}: references: {e}") from None
            references[a.name] = a
        dims_raw = raw.dimensions
        if not isinstance(dims_raw, dict) or not dims_raw:
            raise SpaceError(f"{source}: dimensions: expected a non-empty mapping `path: [choice, ...]`")
        dims = []
        for path, choices in dims_raw.items():
            if not isinstance(choices, list) or not choices:
                raise SpaceError(f"{source}: dimensions.{path}: expected a non-empty list of choices, got {choices!r}")
            dims.append(Dimension(str(path), tuple(tuple(c) if isinstance(c, list) else c for c in choices)))
        try:
            return cls(raw.name, base, tuple(dims), references, raw.description, source)
        except SpaceError as e:
            raise SpaceError(f"{source}: {e}") from None

    def _validate(self) -> None:
        base = self._base_dict
        groups: dict[tuple, list[Dimension]] = {}
        for d in self.dimensions:
            parts = _split(d.path)
            try:
                current = _get(base, parts)
            except (KeyError, IndexError, TypeError):
                raise SpaceError(
                    f"dimensions.{d.path}: no such field in the architecture; paths look like {_EXAMPLE_PATHS}"
                ) from None
            if isinstance(current, dict) or (isinstance(current, list) and current and isinstance(current[0], dict)):
                raise SpaceError(f"dimensions.{d.path}: is a section, not a field; search its fields instead")
            labels = [_label(c) for c in d.choices]
            if len(set(map(repr, labels))) != len(labels):
                raise SpaceError(f"dimensions.{d.path}: duplicate choices in {list(d.choices)}")
            groups.setdefault(tuple(parts[:-1]), []).append(d)
        for parent, dims in groups.items():
            self._check_node(list(parent), dims)
        for name, ref in self.references.items():
            self.params_of(ref, what=f"reference {name}")

    def _check_node(self, parent: list[str | int], dims: list[Dimension]) -> None:
        """Every combination of the choices of fields of one node must make a valid node."""
        node_cls = _node_type([*parent, "_"])
        node = _get(self._base_dict, parent)
        n = math.prod(len(d.choices) for d in dims)
        combos = itertools.product(*(d.choices for d in dims)) if n <= _MAX_JOINT_CHECK else None
        if combos is None:  # too many: every single choice, then a seeded sample of combinations
            rng = np.random.default_rng(0)
            singles = [
                tuple(c if j == i else d.choices[0] for j, d in enumerate(dims))
                for i, dd in enumerate(dims)
                for c in dd.choices
            ]
            sampled = [tuple(d.choices[rng.integers(len(d.choices))] for d in dims) for _ in range(_MAX_JOINT_CHECK)]
            combos = itertools.chain(singles, sampled)
        for values in combos:
            trial = dict(node)
            for d, v in zip(dims, values):
                trial[_split(d.path)[-1]] = list(v) if isinstance(v, tuple) else v
            try:
                node_cls.from_dict(trial, ".".join(map(str, parent)))
            except SpaceError as e:
                setting = ", ".join(f"{d.path}={v!r}" for d, v in zip(dims, values))
                raise SpaceError(f"dimensions: the combination [{setting}] is not a valid architecture: {e}") from None

    # ---- size --------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Number of points (product of the choice counts)."""
        return math.prod(len(d.choices) for d in self.dimensions)

    @property
    def log10_size(self) -> float:
        return sum(math.log10(len(d.choices)) for d in self.dimensions)

    def __len__(self) -> int:
        return len(self.dimensions)

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, {len(self.dimensions)} dimensions, 10^{self.log10_size:.1f} points)"

    # ---- points ------------------------------------------------------------------------------
    def decode(self, values: dict[str, Any], name: str | None = None) -> ArchConfig:
        """ArchConfig from {path: value} (values as in the YAML; missing paths keep the base value)."""
        unknown = sorted(set(values) - set(self._by_path))
        if unknown:
            raise SpaceError(f"{self.source}: unknown dimension(s) {unknown}")
        tree = copy.deepcopy(self._base_dict)
        for path, v in values.items():
            self._by_path[path].index(v)  # raises when not a choice
            _set(tree, _split(path), v)
        tree["name"] = name or self.name
        arch = ArchConfig.from_dict(tree)
        # the digest's first 8 hex digits: the same suffix the search's report gives the network (nas.search.emit)
        return arch if name else arch.replace(name=f"{self.name}_{arch.digest()[:8]}")

    def values_of(self, arch: ArchConfig, what: str = "architecture") -> dict[str, Any]:
        """{path: value} of an architecture that lies in the space (error naming the first field that does not)."""
        tree = arch.to_dict()
        for key in ("name",):
            tree.pop(key)
        base = dict(self._base_dict)
        base.pop("name")
        out = {}
        for d in self.dimensions:
            parts = _split(d.path)
            v = _get(tree, parts)
            try:
                d.index(v)
            except SpaceError:
                raise SpaceError(
                    f"{what} is not in the space: {d.path}={v!r} is not among the choices {list(d.choices)}"
                ) from None
            out[d.path] = tuple(v) if isinstance(v, list) else v
            _set(tree, parts, d.choices[0])
            _set(base, parts, d.choices[0])
        if tree != base:
            diff = _first_difference(tree, base)
            raise SpaceError(f"{what} is not in the space: {diff} differs from the base and is not searched")
        return out

    def contains(self, arch: ArchConfig) -> bool:
        try:
            self.values_of(arch)
        except SpaceError:
            return False
        return True

    def params_of(self, arch: ArchConfig, what: str = "architecture") -> dict[str, Any]:
        """Trial parameters (as `sample` suggests them) of an architecture in the space: for enqueueing."""
        values = self.values_of(arch, what)
        out = {}
        for d in self.dimensions:
            i = d.index(values[d.path])
            out[d.path] = i if d.ordinal else d.labels[i]
        return out

    def from_params(self, params: dict[str, Any], name: str | None = None) -> ArchConfig:
        """Inverse of `params_of` (trial.params -> ArchConfig)."""
        values = {}
        for d in self.dimensions:
            p = params[d.path]
            values[d.path] = d.choices[p] if d.ordinal else d.choices[d.labels.index(p)]
        return self.decode(values, name)

    def sample(self, trial: TrialLike, name: str | None = None) -> ArchConfig:
        """Suggest every dimension on an Optuna(-like) trial and return the architecture."""
        params = {}
        for d in self.dimensions:
            if d.ordinal:
                params[d.path] = trial.suggest_int(d.path, 0, len(d.choices) - 1)
            else:
                params[d.path] = trial.suggest_categorical(d.path, list(d.labels))
        return self.from_params(params, name)

    def random(self, rng: np.random.Generator, name: str | None = None) -> ArchConfig:
        """A uniformly random point."""
        return self.decode({d.path: d.choices[rng.integers(len(d.choices))] for d in self.dimensions}, name)

    def encode(self, arch: ArchConfig) -> np.ndarray:
        """Feature vector in [0, 1]: normalized choice index per dimension (for predictors)."""
        values = self.values_of(arch)
        return np.array(
            [d.index(values[d.path]) / max(len(d.choices) - 1, 1) for d in self.dimensions], dtype=np.float64
        )

    def mutate(self, arch: ArchConfig, rng: np.random.Generator, prob: float = 0.1) -> ArchConfig:
        """Resample each dimension with probability `prob` (at least one changes)."""
        values = self.values_of(arch)
        flip = rng.random(len(self.dimensions)) < prob
        if not flip.any():
            flip[rng.integers(len(self.dimensions))] = True
        for d, f in zip(self.dimensions, flip):
            if f:
                values[d.path] = d.choices[rng.integers(len(d.choices))]
        return self.decode(values)

    def describe(self) -> str:
        """Human-readable table of the dimensions and the size."""
        width = max(len(d.path) for d in self.dimensions)
        lines = [f"search space {self.name!r} ({self.source}): {self.description}".rstrip(": ")]
        lines.append(f"base: {self.base.name}; references: {', '.join(self.references) or '-'}")
        for d in self.dimensions:
            marks = []
            for ref_name, ref in self.references.items():
                marks.append(f"{ref_name[-1].upper()}={_label(self.values_of(ref)[d.path])}")
            choices = ", ".join(str(_label(c)) for c in d.choices)
            lines.append(f"  {d.path:<{width}}  [{choices}]  {' '.join(marks)}")
        lines.append(f"{len(self.dimensions)} dimensions, {self.size:,} points (10^{self.log10_size:.2f})")
        return "\n".join(lines)


_EXAMPLE_PATHS = "backbone.stem.out_channels, backbone.stages.0.num_blocks, neck.up.1.hidden_channels"


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in a:
            if a[k] != b.get(k):
                return _first_difference(a[k], b.get(k), f"{path}.{k}" if path else str(k))
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{path}.{i}")
    return f"{path}={a!r} (base: {b!r})"


def _spaces_dir() -> Path:
    return Path(str(resources.files("nas.space").joinpath("spaces")))


def available_spaces() -> list[str]:
    return sorted(p.stem for p in _spaces_dir().glob("*.yaml"))


def load_space(name_or_path: str | os.PathLike) -> SearchSpace:
    """A shipped space by name (`"yolo_nas"`) or a space YAML file."""
    key = str(name_or_path)
    shipped = _spaces_dir() / f"{key}.yaml"
    if shipped.is_file():
        path = shipped
    else:
        path = Path(key).expanduser()
        if not path.is_file():
            raise SpaceError(
                f"unknown search space {key!r}: available spaces are {', '.join(available_spaces())} "
                f"(or pass the path of a space YAML file)"
            )
    return SearchSpace.from_dict(parse_yaml(path.read_text(), str(path)), source=str(path))
