"""`python -m nas.space +space=yolo_nas`: print a search space's dimensions and size."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from nas.errors import ConfigError, SpaceError
from nas.options import from_args
from nas.space.space import available_spaces, load_space


@dataclass(frozen=True)
class _Args:
    space: str | None = None  # `+space=NAME`, as the Hydra app spells it


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    usage = f"usage: python -m nas.space +space=NAME|PATH\navailable spaces: {', '.join(available_spaces())}"
    names = [a for a in args if "=" not in a and not a.startswith("-")]  # a bare NAME|PATH
    try:
        given = from_args(_Args, [a for a in args if "=" in a], "python -m nas.space").space
    except ConfigError as e:
        print(f"error: {e}\n{usage}", file=sys.stderr)
        return 2
    names += [given] if given is not None else []
    if len(names) != 1 or any(a in ("-h", "--help") for a in args):
        print(usage, file=sys.stderr)
        return 2
    try:
        space = load_space(names[0])
    except SpaceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(space.describe())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
