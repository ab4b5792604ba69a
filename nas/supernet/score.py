"""Scoring an architecture with a trained supernet: extract its sub-network, re-estimate every BatchNorm's
statistics on training images, val mAP on the val split; optionally its measured INT8 drop (nas.quant).

    from nas.supernet import score
    score(arch, "runs/supernet/exp/best.pt", data="synthetic", imgsz=160)     # {"mAP50_95": ..., "seconds": ...}
    score(arch, "runs/supernet/exp/best.pt", int8=True)                       # + int8_mAP50_95, int8_drop

The sub-network's BatchNorm statistics are those of the sandwich's mixture of sub-networks until re-estimated
(once-for-all's recalibration): `bn_images` train images, no gradient step. mAP in percent (points).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from nas.data import load_dataset
from nas.engine.ort import OrtDetector
from nas.engine.val import validate
from nas.export.onnx import export_onnx
from nas.proxy.train import recalibrate_bn
from nas.quant import calibration_images, quantize_onnx
from nas.space.schema import ArchConfig
from nas.supernet.net import SuperNet
from nas.supernet.plan import with_classes
from nas.supernet.train import load_supernet

__all__ = ["load_cached", "score", "supernet_digest"]

_LOADED: dict[str, tuple[str, SuperNet]] = {}
_DIGESTS: dict[str, str] = {}


def _identity(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def supernet_digest(path: str | os.PathLike) -> str:
    """Content hash of a supernet checkpoint (sha256 of the file, 16 hex; cached per path, size and mtime)."""
    p = Path(path).expanduser()
    key = _identity(p)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()[:16]
    return _DIGESTS[key]


def load_cached(source: SuperNet | str | os.PathLike) -> SuperNet:
    """`load_supernet(source)`, kept in memory while the same file is asked for again."""
    if isinstance(source, SuperNet):
        return source
    p = Path(source).expanduser()
    key = _identity(p) if p.is_file() else str(p)
    hit = _LOADED.get("last")
    if hit is None or hit[0] != key:
        hit = (key, load_supernet(p))  # one supernet in memory: a search scores every candidate with the same one
        _LOADED["last"] = hit
    return hit[1]


def _int8_map(model: torch.nn.Module, arch: ArchConfig, train_ds: Any, val_ds: Any, imgsz: int, calib: int,
              batch: int, seed: int) -> float:  # fmt: skip
    """mAP50-95 (points) of the static-QDQ INT8 ONNX of `model` (calibrated on `calib` train images) on the val set."""
    images = calibration_images(train_ds, calib, imgsz, seed=seed)
    with tempfile.TemporaryDirectory(prefix="nas-supernet-int8-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        meta = {"arch": arch.to_yaml(), "names": {str(k): v for k, v in val_ds.names.items()}}
        export_onnx(model, fp32, imgsz=imgsz, metadata=meta, check=False)
        q = quantize_onnx(fp32, Path(tmp) / "int8.onnx", images)
        m = validate(OrtDetector(q.path, threads=torch.get_num_threads()), val_ds, imgsz=imgsz, batch=batch,
                     verbose=False)  # fmt: skip
    return 100 * float(m["mAP50_95"])


def score(
    arch: ArchConfig,
    supernet: SuperNet | str | os.PathLike,
    *,
    data: Any = "synthetic",
    imgsz: int = 160,
    bn_images: int = 64,
    batch: int = 8,
    int8: bool = False,
    calib_images: int = 32,
    seed: int = 0,
) -> dict[str, Any]:
    """mAP50-95 (points) of `arch` as a sub-network of `supernet` (a `SuperNet` or a checkpoint path) on `data`'s
    val split at `imgsz`, after re-estimating its BatchNorm statistics on `bn_images` train images (0: keep the
    supernet's); with `int8`, also of its INT8 post-training quantization (`calib_images` train images) and the
    drop. Returns {"mAP50_95", "seconds"[, "int8_mAP50_95", "int8_drop", "int8_seconds"]}."""
    t0 = time.perf_counter()
    net = load_cached(supernet)
    train_ds, val_ds = load_dataset(data, "train"), load_dataset(data, "val")
    arch = with_classes(arch, net.num_classes)
    model = net.extract(arch)
    if bn_images:
        recalibrate_bn(model, train_ds, imgsz, bn_images, batch)
    model.eval()
    m = validate(model, val_ds, imgsz=imgsz, batch=batch, verbose=False)
    out: dict[str, Any] = {"mAP50_95": 100 * float(m["mAP50_95"]), "seconds": time.perf_counter() - t0}
    if int8:
        t1 = time.perf_counter()
        q = _int8_map(model, arch, train_ds, val_ds, imgsz, calib_images, batch, seed)
        out.update(int8_mAP50_95=q, int8_drop=out["mAP50_95"] - q, int8_seconds=time.perf_counter() - t1)
    return out
