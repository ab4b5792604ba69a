"""nas.options: one mechanism from key=value strings and from mappings into frozen options dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from nas.errors import ConfigError, SpaceError
from nas.options import check, describe, from_args, from_dict, merge


@dataclass(frozen=True)
class Inner:
    size: int = 32

    def __post_init__(self):
        check(self.size % 32 == 0, "size", self.size, "a multiple of 32")


@dataclass(frozen=True)
class Outer:
    name: str
    ratio: float = 0.5
    ids: list[int] | None = None
    mode: str = "fast"
    inner: Inner = field(default_factory=Inner)
    pairs: tuple[Inner, ...] = ()

    HELP: ClassVar = {"ratio": "a ratio", "mode": "how"}
    CHOICES: ClassVar = {"mode": ("fast", "exact")}


def test_key_value_strings_are_typed_by_the_annotations():
    o = from_args(Outer, ["name=x", "ratio=1", "ids=0,2", "--mode=exact"], "demo")
    assert (o.name, o.ratio, o.ids, o.mode) == ("x", 1.0, [0, 2], "exact")
    assert from_args(Outer, ["name=x", "ids=none"], "demo").ids is None
    for args, message in [
        (["name=x", "ratio=abc"], "ratio='abc': expected a number"),
        (["name=x", "mode=slow"], "mode='slow': expected one of fast, exact"),
        (["name=x", "colour=red"], "unknown key 'colour' for prog demo; valid keys: name, ratio, ids, mode"),
        (["name"], "argument 'name' is not key=value; valid keys for demo: name"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            from_args(Outer, args, "demo", prog="prog")
    assert "  ratio=       a ratio [default: 0.5]" in describe(Outer)


def test_mappings_build_nested_dataclasses_with_field_path_errors():
    o = from_dict(Outer, {"name": "x", "ratio": "1e-3", "inner": {"size": 64}, "pairs": [{"size": 32}]})
    assert o == Outer("x", 1e-3, inner=Inner(64), pairs=(Inner(32),))
    cases = [
        ({"name": "x", "inner": {"size": 33}}, "f.yaml: inner.size: got 33; expected a multiple of 32"),
        ({"name": "x", "pairs": [{}, {"size": 1}]}, r"f.yaml: pairs\[1\].size: got 1"),
        ({"name": "x", "inner": {"sise": 1}}, r"f.yaml: inner: unknown key\(s\) \['sise'\]; allowed keys: \['size'\]"),
        ({}, "f.yaml: required key 'name' is missing"),
        ({"name": "x", "pairs": 3}, "f.yaml: pairs: expected a list, got 3"),
        ([1], "f.yaml: expected a mapping"),
    ]
    for data, message in cases:
        with pytest.raises(SpaceError, match=message):
            from_dict(Outer, data, source="f.yaml", error=SpaceError)


def test_keyword_changes_are_checked_against_the_fields():
    assert merge(Inner, None, {"size": 64}) == Inner(64)
    assert merge(Inner, Inner(64), {}) == Inner(64)
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['sise'\] for f\(\); valid options: size"):
        merge(Inner, None, {"sise": 64}, "f()")
    with pytest.raises(ConfigError, match="size: got 3"):
        merge(Inner, Inner(), {"size": 3})
