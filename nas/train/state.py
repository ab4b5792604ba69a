"""Training checkpoints: last.pt / best.pt in the project's `{arch, state_dict, meta}` format plus a `train_state`.

`state_dict` holds the EMA weights (the model users load: `NAS("runs/train/exp/best.pt")`); `meta` the class names,
the options and the epoch's metrics; `train_state` what a bit-for-bit resume needs: the raw weights, optimizer,
EMA, AMP-scaler and RNG states, the epoch, the position inside it and the running loss sums. Files are written
atomically (temp file, fsync, rename) and read back with the project's safe loader (`torch.load(weights_only=True)`,
then the restricted unpickler of `nas.models.unpickle`): nothing from a user file is executed.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from nas.errors import CheckpointError
from nas.io import atomic_path
from nas.models.checkpoints import FORMAT_VERSION, _check_meta, _interpret, _torch_load, add_checksum
from nas.space.schema import ArchConfig
from nas.version import __version__

__all__ = ["read_train_state", "rng_state", "set_rng_state", "write_checkpoint"]


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_checkpoint(
    path: Path, arch: ArchConfig, weights: dict[str, torch.Tensor], meta: dict, train_state: dict | None
) -> Path:
    """Write one checkpoint atomically (a killed run leaves the previous file intact)."""
    meta = dict(meta, format_version=FORMAT_VERSION, nas_version=__version__)
    _check_meta(meta, f"{path}: meta")
    payload: dict[str, Any] = {
        "arch": arch.to_dict(),
        "state_dict": OrderedDict((k, v.detach().cpu()) for k, v in weights.items()),
        "meta": meta,
    }
    if train_state is not None:
        payload["train_state"] = train_state
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(add_checksum(payload), f)
        f.flush()
        os.fsync(f.fileno())
    return path


def read_train_state(path: str | os.PathLike, arch: ArchConfig | None = None) -> tuple[ArchConfig, dict, dict]:
    """(arch, meta, train_state) of a last.pt; refuses files without a train state and, when `arch` is given,
    a checkpoint of another architecture."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(
            f"resume={os.fspath(path)!r}: no such file; pass the last.pt of a run (runs/train/<name>/last.pt)"
        )
    obj, restricted = _torch_load(p)
    _sd, fmt, saved_arch, meta = _interpret(obj, p, restricted)
    state = obj.get("train_state") if isinstance(obj, dict) else None
    if fmt != "nas" or not isinstance(state, dict):
        raise CheckpointError(
            f"{p}: not a training checkpoint (no train_state); resume needs the last.pt a `nas train` run wrote. "
            "To start from these weights instead, pass the file as model= without resume"
        )
    if arch is not None and saved_arch != arch:
        raise CheckpointError(
            f"{p}: a checkpoint of architecture {saved_arch.name!r}, but the model to resume is {arch.name!r} "
            f"(the architectures differ); resume with model={p} alone, or start a new run"
        )
    return saved_arch, meta, state
