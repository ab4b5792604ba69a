"""`python -m nas.space +space=yolo_nas`: print a search space's dimensions and size."""

from __future__ import annotations

import sys

from nas.errors import SpaceError
from nas.space.space import available_spaces, load_space


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    names = [a.split("=", 1)[1] for a in args if a.lstrip("+").startswith("space=")]
    names += [a for a in args if "=" not in a and not a.startswith("-")]
    if len(names) != 1 or any(a in ("-h", "--help") for a in args):
        print(
            f"usage: python -m nas.space +space=NAME|PATH\navailable spaces: {', '.join(available_spaces())}",
            file=sys.stderr,
        )
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
