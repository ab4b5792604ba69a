"""Options as frozen dataclasses: each default once, checks in `__post_init__`, built from a mapping or `key=value`.

    @dataclass(frozen=True)
    class FooOptions:
        size: int = 640
        mode: str = "fast"

        HELP: ClassVar = {"size": "input size (multiple of 32)", "mode": "how"}  # CLI help
        CHOICES: ClassVar = {"mode": ("fast", "exact")}                         # checked when parsed

        def __post_init__(self):
            check(self.size % 32 == 0, "size", self.size, "a multiple of 32")

    from_args(FooOptions, ["size=320"], command="foo")     # CLI: typed from the field's annotation
    from_dict(FooOptions, {"size": 320}, source="foo.yaml")  # YAML / Hydra: nested dataclasses, field paths
    merge(FooOptions, None, {"size": 320})                   # a function's **kwargs

A class-level ORDER tuple lists the keys in the order users see them (subclass fields come last otherwise).
Field metadata: {"convert": fn} converts a mapping value before the class sees it; {"internal": True} is
not a key. Errors name the key path, the bad value and what is allowed. A check in `__post_init__` raises
`field_error(cls, name, message)`; `from_dict` puts the key path (and source) in front of it. Only the
standard library and `nas.errors` are imported: `nas help` and `nas.space` stay light.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import types
import typing
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, TypeVar

from nas.errors import ConfigError, NasError

__all__ = [
    "check",
    "check_imgsz",
    "check_name",
    "check_one_of",
    "check_positive_int",
    "class_table",
    "describe",
    "field_error",
    "from_args",
    "from_dict",
    "keys_of",
    "merge",
    "parse_text",
    "pick",
    "replace",
    "split_args",
]

T = TypeVar("T")


def class_table(cls: type, name: str) -> dict[str, Any]:
    """A class-level table such as HELP or CHOICES, merged along the MRO (a subclass entry wins)."""
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        out.update(klass.__dict__.get(name, {}))
    return out


def field_error(error: type[NasError], name: str, message: str) -> NasError:
    """An `error` for field `name`; `from_dict` prefixes its key path. str(): "name: message"."""
    e = error(f"{name}: {message}")
    e.field_name, e.message = name, message  # type: ignore[attr-defined]
    return e


def check(ok: bool, name: str, value: Any, expected: str, error: type[NasError] = ConfigError) -> None:
    """`__post_init__` helper: raise "name: got VALUE; expected EXPECTED" unless `ok` (`.expected` on the error, for
    a caller that names the key as its user wrote it)."""
    if not ok:
        e = field_error(error, name, f"got {value!r}; expected {expected}")
        e.expected = expected  # type: ignore[attr-defined]
        raise e


MAX_NAME_BYTES = 255  # a file or folder name on ext4, XFS, APFS, NTFS


def check_name(name: str, key: str = "name") -> None:
    """A run directory name: non-empty, no '/', at most 255 bytes (longer fails with ENAMETOOLONG at mkdir)."""
    shown = name if len(name) <= 40 else f"{name[:20]}...{name[-10:]} ({len(name.encode())} bytes)"
    check(bool(name) and "/" not in name, key, shown, "a folder name without '/'")
    check(len(name.encode()) <= MAX_NAME_BYTES, key, shown, f"a folder name of at most {MAX_NAME_BYTES} bytes")


def check_imgsz(imgsz: int | tuple[int, int], stride: int = 32) -> tuple[int, int]:
    """(h, w) of an int or (h, w) size; ConfigError unless each is a positive multiple of `stride`."""
    hw = (imgsz, imgsz) if isinstance(imgsz, int) and not isinstance(imgsz, bool) else imgsz
    if (
        not isinstance(hw, (tuple, list))
        or len(hw) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v < stride or v % stride for v in hw)
    ):
        raise ConfigError(f"imgsz={imgsz!r}: expected a positive multiple of {stride} (e.g. 320, 640)")
    return int(hw[0]), int(hw[1])


def check_positive_int(name: str, value: object) -> None:
    """`__post_init__` helper: ConfigError "name=VALUE: expected a positive integer" (bools are not integers)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r}: expected a positive integer")


def check_one_of(name: str, value: object, choices: Collection[str]) -> None:
    """`__post_init__` helper: ConfigError "name=VALUE; expected one of A, B" unless `value` is in `choices`."""
    if value not in choices:
        raise ConfigError(f"{name}={value!r}; expected one of {', '.join(choices)}")


# ---- dict -> dataclass --------------------------------------------------------------------------------------


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _public_fields(cls: type) -> dict[str, dataclasses.Field]:
    """The keys of `cls`: its init fields, those in a class-level ORDER tuple first in that order."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and not f.metadata.get("internal")}
    order = [n for n in getattr(cls, "ORDER", ()) if n in fields]  # fields ORDER leaves out follow, in field order
    return {name: fields[name] for name in [*order, *(n for n in fields if n not in order)]}


def _loc(source: str, path: str) -> str:
    return f"{source}: {path}" if source and path else (source or path)


def _optional(hint: Any) -> tuple[Any, bool]:
    """(inner type, True) for `X | None`; (hint, False) otherwise."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) < len(typing.get_args(hint)):
            return (args[0] if len(args) == 1 else functools.reduce(operator.or_, args)), True
    return hint, False


def _coerce(hint: Any, value: Any, path: str, source: str, error: type[NasError]) -> Any:
    inner, optional = _optional(hint)
    if value is None and optional:
        return None
    origin = typing.get_origin(inner)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise error(f"{_loc(source, path)}: expected a list, got {value!r}")
        args = typing.get_args(inner)
        items = [
            _coerce(args[0] if origin is list or args[-1] is Ellipsis else args[min(i, len(args) - 1)], v,
                    f"{path}[{i}]", source, error)
            for i, v in enumerate(value)
        ]  # fmt: skip
        return tuple(items) if origin is tuple else items
    if isinstance(inner, type) and dataclasses.is_dataclass(inner):
        return value if isinstance(value, inner) else from_dict(inner, value, source=source, error=error, _path=path)
    if inner is float:
        # YAML 1.1 reads `1e-3` (no dot) as a string; accept what float() accepts, nothing else.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise error(f"{_loc(source, path)}: got {value!r}; expected a number") from None
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
    return value


def from_dict(
    cls: type[T],
    data: Any,
    *,
    source: str = "",
    error: type[NasError] = ConfigError,
    extra: Mapping[str, Any] | None = None,
    _path: str = "",
) -> T:
    """Build dataclass `cls` from a plain mapping (nested dataclasses, tuples and lists typed by the annotations).

    Errors read "SOURCE: key.path: ..." and name unknown keys with the allowed ones, missing required keys,
    and what a field's `__post_init__` check said. `extra` are further constructor arguments (not keys).
    """
    where = _loc(source, _path) or cls.__name__
    if not isinstance(data, Mapping):
        raise error(f"{where}: expected a mapping, got {type(data).__name__} {data!r}")
    fields = _public_fields(cls)
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        raise error(f"{where}: unknown key(s) {unknown}; allowed keys: {list(fields)}")
    hints = _hints(cls)
    kwargs: dict[str, Any] = dict(extra or {})
    for name, f in fields.items():
        sub = f"{_path}.{name}" if _path else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise error(f"{source + ': ' if source else ''}required key {sub!r} is missing")
            continue
        convert = f.metadata.get("convert")
        kwargs[name] = convert(data[name]) if convert else _coerce(hints[name], data[name], sub, source, error)
    try:
        return cls(**kwargs)
    except NasError as e:
        name = getattr(e, "field_name", None)
        if name is None:
            raise
        sub = f"{_path}.{name}" if _path else name
        raise error(f"{_loc(source, sub)}: {e.message}") from None  # type: ignore[attr-defined]


def replace(obj: T, **changes: Any) -> T:
    """`dataclasses.replace` that names an unknown field and the valid ones."""
    names = [f.name for f in dataclasses.fields(obj) if f.init]  # type: ignore[arg-type]
    bad = sorted(set(changes) - set(names))
    if bad:
        raise ConfigError(f"{type(obj).__name__}: unknown field(s) {bad}; fields: {sorted(names)}")
    return dataclasses.replace(obj, **changes)  # type: ignore[type-var]


def merge(cls: type[T], options: T | None, changes: Mapping[str, Any], where: str = "") -> T:
    """`options` (or the defaults) with keyword `changes`: how a function takes an options object or **kwargs."""
    names = keys_of(cls)
    bad = sorted(set(changes) - set(names))
    if bad:
        valid = ", ".join(names)
        raise ConfigError(f"unknown option(s) {bad} for {where or cls.__name__}; valid options: {valid}")
    if options is None:
        return cls(**changes)
    if not isinstance(options, cls):
        raise ConfigError(f"{where or cls.__name__}: options must be a {cls.__name__}, got {type(options).__name__}")
    return dataclasses.replace(options, **changes) if changes else options  # type: ignore[type-var]


# ---- key=value text -----------------------------------------------------------------------------------------


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _str(text: str) -> str:
    if not text:
        raise ValueError("expected a non-empty value")
    return text


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.strip("[]() ").replace(" ", "").split(",") if t]


_PARSERS: dict[Any, tuple[Callable[[str], Any], str]] = {
    bool: (_bool, "true or false"),
    int: (int, "an integer"),
    float: (float, "a number"),
    str: (_str, "a string"),
}


def _text_parser(hint: Any) -> tuple[Callable[[str], Any], str]:
    if hint in _PARSERS:
        return _PARSERS[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (list, tuple) and args and args[0] is int:
        return ((_ints if origin is list else lambda t: tuple(_ints(t))), "integers like 0,2,5")
    if origin in (typing.Union, types.UnionType):  # int | tuple[int, int]: the first alternative on the CLI
        return _text_parser(args[0])
    return _str, "a string"


def parse_text(cls: type, name: str, text: str) -> Any:
    """The value of `name=text` for a field of `cls`, typed by its annotation; ConfigError names what is expected."""
    hint, optional = _optional(_hints(cls)[name])
    if optional and text.lower() in ("none", "null"):
        return None
    parse, expected = _text_parser(hint)
    try:
        value = parse(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r}: expected {expected}") from None
    choices = class_table(cls, "CHOICES").get(name, ())
    if choices and value not in choices:
        raise ConfigError(f"{name}={text!r}: expected one of {', '.join(map(str, choices))}")
    return value


def keys_of(*classes: type) -> list[str]:
    """The keys of one or more options classes, in field order."""
    return [name for cls in classes for name in _public_fields(cls)]


def split_args(args: Iterable[str], keys: Iterable[str], command: str, prog: str = "") -> dict[str, str]:
    """`key=value` strings -> {key: text}; "-"/"+" prefixes and dashes in keys are accepted (`--max-det=5`)."""
    keys = list(keys)
    out: dict[str, str] = {}
    for arg in args:
        key, sep, text = arg.partition("=")
        if not sep:
            raise ConfigError(f"argument {arg!r} is not key=value; valid keys for {command}: {', '.join(keys)}")
        key = key.strip().lstrip("-+").replace("-", "_")
        if key not in keys:
            raise ConfigError(
                f"unknown key {key!r} for {prog + ' ' if prog else ''}{command}; valid keys: {', '.join(keys)}"
            )
        out[key] = text.strip()
    return out


def from_args(cls: type[T], args: Iterable[str], command: str, prog: str = "", **fixed: Any) -> T:
    """Options `cls` from `key=value` strings (`fixed` are further constructor arguments, e.g. a positional)."""
    texts = split_args(args, keys_of(cls), command, prog)
    values = {k: parse_text(cls, k, v) for k, v in texts.items()}
    return cls(**fixed, **values)


def pick(cls: type[T], values: Mapping[str, Any]) -> T:
    """`cls` from the entries of a wider mapping that are its keys (e.g. one command's share of the CLI keys)."""
    return cls(**{k: values[k] for k in keys_of(cls) if k in values})


def describe(cls: type, width: int = 12) -> list[str]:
    """Help lines `  key=   help [default: value]` of an options class, in field order."""
    lines, helps = [], class_table(cls, "HELP")
    for name, f in _public_fields(cls).items():
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        shown = "none" if default is None else default
        if default is dataclasses.MISSING:
            shown = "required"
        text = helps.get(name, "")
        if "default" not in text:  # a help text that already names its default says it once
            text += f" [default: {shown}]"
        lines.append(f"  {name + '=':<{width}} {text}")
    return lines
