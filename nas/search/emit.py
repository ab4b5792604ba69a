"""Emitted architectures: one ArchConfig YAML per tier, and inherited weights for an emitted YAML.

    python -m nas.search.emit inherit runs/.../selected/yolo_nas_s.yaml weights=yolo_nas_s [out=PATH]

writes `PATH` (default: next to the YAML, `.pt`) with weights inherited from a released model (a name,
resolved in the weights directory) or a checkpoint path; `weights=auto` picks the closest released model
whose weights are present. The inherited fraction of parameters is printed and stored in the checkpoint.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nas.errors import ConfigError, NasError
from nas.io import write_text_atomic
from nas.models.inherit import save_inherited
from nas.options import from_args
from nas.search.select import Selection
from nas.space import ArchConfig, load_arch
from nas.supernet.weights import is_supernet_source, save_supernet_weights

__all__ = ["emitted_name", "main", "write_selected"]


def emitted_name(tier: str, arch: ArchConfig, references: Mapping[str, ArchConfig]) -> str:
    """A released architecture keeps its name; anything else is `<tier>_<digest8>`."""
    for name, ref in references.items():
        if arch == ref:
            return name
    return f"{tier}_{arch.digest()[:8]}"


def write_selected(
    selections: Mapping[str, Selection],
    out_dir: str | os.PathLike,
    references: Mapping[str, ArchConfig],
    header: Mapping[str, object],
    suffix: str = "",
) -> dict[str, Path]:
    """`<out_dir>/<tier><suffix>.yaml` per tier with a selection; a stale file of a tier without one is removed."""
    out_dir = Path(out_dir)
    paths = {}
    for tier, sel in selections.items():
        path = out_dir / f"{tier}{suffix}.yaml"
        if sel.record is None:
            path.unlink(missing_ok=True)
            continue
        arch = sel.record.arch.replace(name=emitted_name(tier, sel.record.arch, references))
        values = ", ".join(f"{k}={v:.6g}" for k, v in sel.record.values.items())
        lines = [
            f"# Selected by nas.search for tier {tier!r}: {'re-ranked' if 'rerank' in header else 'best'} proxy score "
            f"with {header.get('cost')} <= {sel.budget:.6g}",
            *(f"# {k}: {v}" for k, v in header.items()),
            f"# trial {sel.record.number}: {values}",
            f"# load: nas.space.load_arch('{path.name}'); weights: python -m nas.search.emit inherit {path.name} "
            f"weights={header.get('weights', 'auto')}",
        ]
        paths[tier] = write_text_atomic(path, "\n".join(lines) + "\n" + arch.to_yaml())
    return paths


@dataclass(frozen=True)
class _InheritArgs:
    weights: str | None = None  # required
    out: str | None = None


def _usage() -> str:
    return (
        "usage: python -m nas.search.emit inherit ARCH.yaml weights=NAME|PATH|auto|supernet:PATH [out=PATH.pt]\n"
        "  NAME: yolo_nas_s | yolo_nas_m | yolo_nas_l (looked up in the weights directory)\n"
        "  supernet:PATH: the architecture's sub-network of a trained supernet (nas supernet train)"
    )


def main(argv: list[str] | None = None) -> int:
    """`inherit` subcommand: write a checkpoint for an emitted architecture."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] != "inherit" or any(a in ("-h", "--help") for a in args):
        print(_usage(), file=sys.stderr)
        return 2
    arch_path = args[1]
    try:
        opts = from_args(_InheritArgs, args[2:], "inherit", prog="python -m nas.search.emit")
        if opts.weights is None:
            raise ConfigError("weights=... is required")
    except ConfigError as e:
        print(f"error: {e}\n{_usage()}", file=sys.stderr)
        return 2
    try:
        arch = load_arch(arch_path)
        out = Path(opts.out or Path(arch_path).with_suffix(".pt"))
        if is_supernet_source(opts.weights):
            info = save_supernet_weights(arch, opts.weights, out)
            summary = (
                f"the sub-network of supernet {info['supernet']} (BatchNorm re-estimated on {info['bn_images']} images)"
            )
        else:
            summary = save_inherited(arch, opts.weights, out).summary()
    except NasError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
