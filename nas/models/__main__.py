"""`python -m nas.models`: a summary of the released YOLO-NAS S/M/L architectures; needs no weights."""

from __future__ import annotations

import copy
import logging
import sys
import warnings
from dataclasses import dataclass
from typing import ClassVar

import torch

from nas.errors import ConfigError, WeightsNotFoundError
from nas.models import build, fuse_report, resolve_weights, weights_dir
from nas.options import describe, from_args
from nas.space import RELEASED, load_arch

__all__ = ["ModelSummary", "SummaryOptions", "gflops", "main", "summarize"]


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


def gflops(model: torch.nn.Module, imgsz: int = 640) -> float:
    """GFLOPs (2 x multiply-accumulates, as ultralytics reports them) of one imgsz x imgsz image, by fvcore.

    Counted at imgsz / 10 and scaled by 100: every counted op (conv, transposed conv) scales exactly with
    the pixel count for sizes that are multiples of 32, and tracing the small input is much faster.
    """
    from fvcore.nn import FlopCountAnalysis

    small = imgsz // 10 if imgsz % 320 == 0 else imgsz
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    x = torch.zeros(1, model.arch.in_channels, small, small)
    with torch.no_grad(), warnings.catch_warnings():
        # fvcore traces with torch.jit, which warns about its own deprecation and about traced constants
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        analysis = FlopCountAnalysis(model.eval(), x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        macs = analysis.total()
    return 2 * macs * (imgsz / small) ** 2 / 1e9


def summarize(name: str, flops: bool = True, imgsz: int = 640) -> ModelSummary:
    """Parameters and state_dict keys unfused / partially fused / fully fused, GFLOPs, and the weights file."""
    arch = load_arch(name)
    with torch.device("meta"):  # counting needs shapes only
        model = build(arch)
    partial = fuse_report(copy.deepcopy(model), "partial")
    full = fuse_report(model, "full")
    g = None
    if flops:
        torch.manual_seed(0)
        g = gflops(build(arch), imgsz)
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

    HELP: ClassVar = {"flops": "count GFLOPs (fvcore)", "imgsz": "square input size for the FLOP count (pixels)"}


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
        "full = every BatchNorm folded too. GFLOPs = 2 x MACs (fvcore)."
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
