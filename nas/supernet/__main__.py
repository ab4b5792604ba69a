"""`nas supernet train key=value ...` (also `python -m nas.supernet train ...`): train the supernet of a space.

    nas supernet train space=yolo_nas weights=yolo_nas_l data=coco128.yaml epochs=30 imgsz=640

Keys: the supernet's (space, random_subnets, distill) and every `nas train` key (`weights`: the checkpoint the
largest sub-network starts from; `resume`: a supernet run's last.pt). Writes runs/supernet/exp*/{best,last}.pt.
"""

from __future__ import annotations

import json
import sys

from nas.errors import NasError
from nas.options import describe, keys_of, parse_text, split_args
from nas.supernet.train import SupernetOptions, train_supernet
from nas.train.options import TrainOptions

PROG = "nas supernet"


def usage() -> str:
    lines = [
        f"usage: {PROG} train key=value ...",
        "",
        "train the weight-sharing supernet of a search space",
        "",
        "keys:",
    ]
    for cls in (SupernetOptions, TrainOptions):
        lines += describe(cls)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "train" or any(a in ("-h", "--help", "help") for a in args):
        print(usage(), file=sys.stderr if not args or args[0] != "train" else sys.stdout)
        return 0 if args and any(a in ("-h", "--help", "help") for a in args) else 2
    try:
        texts = split_args(args[1:], keys_of(SupernetOptions, TrainOptions), "train", prog=PROG)
        sup = {k: parse_text(SupernetOptions, k, t) for k, t in texts.items() if k in keys_of(SupernetOptions)}
        train = {k: parse_text(TrainOptions, k, t) for k, t in texts.items() if k in keys_of(TrainOptions)}
        result = train_supernet(None, TrainOptions(**train), SupernetOptions(**sup))
    except NasError as e:
        print(f"{PROG} train: error: {e}", file=sys.stderr)
        return 2
    metrics = {k: result.metrics.get(k) for k in ("epoch", "mAP50_95", "mAP50")}
    # fractions (0-1), as nas train and nas val print them
    best = str(result.best) if result.best else None
    print(json.dumps({"best": best, "last": str(result.last), **metrics, "scale": "fraction"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
