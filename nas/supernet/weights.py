"""Weights for an emitted architecture from a trained supernet: `weights=supernet:PATH`.

    python -m nas.search.emit inherit runs/.../selected/s.yaml weights=supernet:runs/supernet/exp/best.pt

The architecture's sub-network is extracted, its BatchNorm statistics re-estimated on `bn_images` images of the
data the supernet was trained on (recorded in its checkpoint), and written as an ordinary checkpoint of the
architecture (with the supernet's number of classes), which `NAS(path)`, `nas train model=PATH`, export and INT8
take like any other. The checkpoint's meta records the supernet's path and digest.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from nas.data import load_dataset
from nas.models.checkpoints import save_checkpoint
from nas.models.inherit import InheritReport
from nas.proxy.train import recalibrate_bn
from nas.space.io import load_arch
from nas.space.schema import ArchConfig
from nas.supernet.plan import with_classes
from nas.supernet.score import load_cached, supernet_digest

__all__ = ["PREFIX", "extract_weights", "is_supernet_source", "save_supernet_weights", "supernet_inherit"]

PREFIX = "supernet:"


def is_supernet_source(weights: Any) -> bool:
    return isinstance(weights, str) and weights.startswith(PREFIX)


def extract_weights(
    arch: ArchConfig | str,
    supernet: str | os.PathLike,
    *,
    bn_images: int = 64,
    data: Any = None,
    imgsz: int | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """(the sub-network of `arch` as a plain network in eval mode, what was done) from the supernet checkpoint
    `supernet` (`supernet:` prefix allowed). `data` / `imgsz` default to the supernet's training data and size."""
    path = str(supernet)[len(PREFIX) :] if is_supernet_source(str(supernet)) else os.fspath(supernet)
    net = load_cached(path)
    arch = with_classes(load_arch(arch), net.num_classes)
    model = net.extract(arch)
    recorded = net.checkpoint_meta.get("supernet", {})
    data = data if data is not None else recorded.get("data")
    imgsz = int(imgsz or recorded.get("imgsz") or 640)
    used = recalibrate_bn(model, load_dataset(data, "train"), imgsz, bn_images) if bn_images and data else 0
    info = {"supernet": str(Path(path)), "supernet_digest": supernet_digest(path), "bn_images": used}
    info.update(data=str(data) if data is not None else None, imgsz=imgsz)
    model.checkpoint_meta = {"class_names": net.checkpoint_meta.get("class_names"), "supernet_weights": info}
    return model.eval(), info


def supernet_inherit(arch: ArchConfig | str, supernet: str | os.PathLike, **kw: Any) -> tuple[nn.Module, InheritReport]:
    """`extract_weights` reported like `nas.models.inherit` (every tensor a copy of the sub-network): what
    `NAS(arch, weights="supernet:PATH")` and `nas train model=ARCH.yaml weights=supernet:PATH` use."""
    model, info = extract_weights(arch, supernet, **kw)
    n = sum(p.numel() for p in model.parameters())
    k = len(list(model.parameters()))
    where = f"{PREFIX}{info['supernet']}; BatchNorm re-estimated on {info['bn_images']} images"
    return model, InheritReport(where, f"the supernet ({info['supernet_digest']})", True, n, n, k, 0, 0)


def save_supernet_weights(arch: ArchConfig | str, supernet: str | os.PathLike, out: str | os.PathLike, **kw: Any):
    """Write the checkpoint of `arch` with its supernet weights (`extract_weights`); returns what was done."""
    model, info = extract_weights(arch, supernet, **kw)
    save_checkpoint(out, model, model.arch, {"supernet_weights": info})
    return info
