"""`python -m nas.models`: a summary of the released YOLO-NAS S/M/L architectures; needs no weights."""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from typing import ClassVar

import torch

from nas.errors import ConfigError, WeightsNotFoundError
from nas.latency.counting import gflops
from nas.models import build, fuse_report, resolve_weights, weights_dir
from nas.options import describe, from_args
from nas.space import RELEASED, load_arch

__all__ = ["ModelSummary", "SummaryOptions", "main", "summarize"]


@dataclass(frozen=True)
class ModelSummary:
    name: str
    digest: str
    params: int
    keys: int
    params_partial: int
    keys_partial: int
    params_full: int
    keys_full: int
    gflops: float | None
    weights: str


def summarize(name: str, flops: bool = True, imgsz: int = 640) -> ModelSummary:
    """Parameters and state_dict keys unfused / partially fused / fully fused, GFLOPs, and the weights file."""
    arch = load_arch(name)
    with torch.device("meta"):  # counting needs shapes only
        model = build(arch)
    partial = fuse_report(copy.deepcopy(model), "partial")
    full = fuse_report(model, "full")
    g = gflops(arch, imgsz) if flops else None
    try:
        weights = str(resolve_weights(name))
    except WeightsNotFoundError:
        weights = "not placed"
    return ModelSummary(
        name=name,
        digest=arch.digest(),
        params=partial.params_before,
        keys=partial.keys_before,
        params_partial=partial.params_after,
        keys_partial=partial.keys_after,
        params_full=full.params_after,
        keys_full=full.keys_after,
        gflops=g,
        weights=weights,
    )


def _table(rows: list[ModelSummary], imgsz: int) -> str:
    head = ["model", "params", "keys", f"GFLOPs@{imgsz}", "params (partial)", "keys", "params (full)", "keys", "digest"]
    body = [
        [
            r.name,
            f"{r.params:,}",
            str(r.keys),
            "-" if r.gflops is None else f"{r.gflops:.1f}",
            f"{r.params_partial:,}",
            str(r.keys_partial),
            f"{r.params_full:,}",
            str(r.keys_full),
            r.digest,
        ]
        for r in rows
    ]
    widths = [max(len(c) for c in col) for col in zip(head, *body)]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in [head, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclass(frozen=True)
class SummaryOptions:
    """`python -m nas.models [flops=false] [imgsz=640]`."""

    flops: bool = True
    imgsz: int = 640

    HELP: ClassVar = {
        "flops": "count GFLOPs (from the ArchConfig)",
        "imgsz": "square input size for the FLOP count (pixels)",
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print("usage: python -m nas.models key=value ...\n" + "\n".join(describe(SummaryOptions)))
        return 0
    try:
        opts = from_args(SummaryOptions, args, "python -m nas.models")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = [summarize(name, flops=opts.flops, imgsz=opts.imgsz) for name in RELEASED]
    print("YOLO-NAS released architectures (built from nas/space/archs/*.yaml; no weights needed)")
    print(_table(rows, opts.imgsz))
    print(
        "partial = QARepVGG branches fused, BatchNorms kept (super-gradients' conversion form); "
        "full = every BatchNorm folded too. GFLOPs = 2 x MACs of the deployed network (nas.latency.counting)."
    )
    print(f"\nreleased weights directory: {weights_dir()} (set NAS_WEIGHTS_DIR to change it)")
    for r in rows:
        print(f"  {r.name}: {r.weights}")
    if any(r.weights == "not placed" for r in rows):
        print(
            "  place yolo_nas_{s,m,l}.pt (ultralytics) or yolo_nas_{s,m,l}_coco.pth (super-gradients) there; see docs/models.md"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
