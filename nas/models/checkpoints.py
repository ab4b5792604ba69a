"""Checkpoint formats: reading the released YOLO-NAS weights without super-gradients, and our own format.

Formats read by `load_checkpoint` (the format is recognised from the content, not the file name):
* super-gradients `.pth`: a dict with `ema_net` and/or `net` (`ema_net` is used when present, as
  super-gradients does), or a bare state_dict; a `module.` / `net.` / `ema_model.` prefix shared by all
  keys is stripped; other top-level keys (acc, epoch, optimizer_state_dict, ...) are ignored.
  Read with `torch.load(weights_only=True)`.
* ultralytics assets `yolo_nas_{s,m,l}.pt`: a whole super-gradients model object pickled with
  torch.save. Read with the restricted unpickler of `nas.models.unpickle` (allow-listed classes become
  inert placeholders, every other global is refused, nothing executes).
* this project's format `{"arch": ArchConfig dict, "state_dict": ..., "meta": {...}}` (`save_checkpoint`),
  readable with `torch.load(weights_only=True)`. `meta["weights_sha256"]` is a digest of every tensor in the
  file (weights and, in a last.pt, the train state), verified on load: a damaged file is refused, not trained on.
When the file does not record the architecture it is inferred from the key shapes (`infer_arch`).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas.errors import CheckpointError, SpaceError, WeightsNotFoundError
from nas.io import atomic_path
from nas.models import unpickle
from nas.models.reparam import fuse as fuse_model
from nas.models.shapes import expected_shapes, infer_arch, shape_diff, shapes_of
from nas.models.yolo_nas import build
from nas.space.io import RELEASED, load_arch
from nas.space.schema import ArchConfig
from nas.version import __version__

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "add_checksum",
    "load_checkpoint",
    "load_model",
    "load_state_dict_strict",
    "read_checkpoint",
    "release_file_names",
    "resolve_weights",
    "save_checkpoint",
    "weights_dir",
]

FORMAT_VERSION = 1
WEIGHTS_ENV = "NAS_WEIGHTS_DIR"
_PREFIXES = ("module.", "ema_model.", "net.")
_ULTRALYTICS_URL = "https://github.com/ultralytics/assets/releases/download/v8.2.0/{name}.pt"
_SG_URLS = ("https://sghub.deci.ai/models/{name}_coco.pth", "https://sg-hub-nv.s3.amazonaws.com/models/{name}_coco.pth")


@dataclass
class Checkpoint:
    """What a checkpoint file holds, in the form this project uses."""

    arch: ArchConfig
    state_dict: OrderedDict[str, torch.Tensor]
    format: str  # "nas" | "super-gradients" | "ultralytics" | "state_dict"
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- weights directory


def weights_dir() -> Path:
    """`$NAS_WEIGHTS_DIR`, else `$XDG_CACHE_HOME/yolo-nas-search/weights` (default `~/.cache/...`)."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "yolo-nas-search" / "weights"


def release_file_names(name: str) -> tuple[str, ...]:
    """File names under which the weights of a released model are looked for, in order of preference."""
    return (f"{name}.pt", f"{name}_coco.pth", f"{name}_coco2017.pth", f"{name}.pth")


def resolve_weights(name: str) -> Path:
    """Path of the released weights `name` ("yolo_nas_s" | "yolo_nas_m" | "yolo_nas_l") in `weights_dir()`."""
    if name not in RELEASED:
        raise CheckpointError(f"unknown released model {name!r}; expected one of {', '.join(RELEASED)}")
    root = weights_dir()
    candidates = [root / f for f in release_file_names(name)]
    for path in candidates:
        if path.is_file():
            return path
    raise _weights_not_found(name, candidates)


def _weights_not_found(name: str, candidates: list[Path]) -> WeightsNotFoundError:
    looked = "\n".join(f"  {p}" for p in candidates)
    sg = " or ".join(u.format(name=name) for u in _SG_URLS)
    return WeightsNotFoundError(
        f"released weights for {name} not found; looked for:\n{looked}\n"
        f"Place one of these files in {candidates[0].parent} (or point {WEIGHTS_ENV} at the folder that holds it); "
        "this package never downloads. They were published as:\n"
        f"  - ultralytics assets release: {_ULTRALYTICS_URL.format(name=name)} -> save as {name}.pt\n"
        f"  - super-gradients model zoo: {name}_coco.pth ({sg}; these hosts may no longer serve it)\n"
        "The YOLO-NAS weights are Deci's, under LICENSE.YOLONAS.md: non-commercial use only (no commercial or "
        "production use, no redistribution) without Deci's agreement. Any other checkpoint loads by path: "
        "nas.models.load_model('/path/to/file.pth')."
    )


def _resolve_path(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    if p.is_file():
        return p
    key = str(path)
    if key in RELEASED:
        return resolve_weights(key)
    if p.name == key:  # a bare file name such as "yolo_nas_s.pt": look in the weights directory
        for name in RELEASED:
            if key in release_file_names(name):
                found = weights_dir() / key
                if found.is_file():
                    return found
                raise _weights_not_found(name, [found])
    if p.exists():
        raise CheckpointError(f"{p}: not a file")
    raise CheckpointError(f"{p}: no such checkpoint file (or a released name: {', '.join(RELEASED)})")


# ---------------------------------------------------------------- reading


def _is_torchscript(path: Path) -> bool:
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            return False
    try:  # the same zip reader and test that torch.load uses before dispatching to torch.jit.load
        records = torch._C.PyTorchFileReader(str(path)).get_all_records()
    except RuntimeError:
        return False  # unreadable zip: torch.load reports it below
    return "constants.pkl" in records


def _torch_load(path: Path) -> tuple[Any, bool]:
    """(object, used_restricted_unpickler). Tries weights_only first, then the restricted unpickler."""
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file")
    if _is_torchscript(path):
        raise CheckpointError(
            f"{path}: a TorchScript archive, not a checkpoint; it is not loaded because it would run its code"
        )
    with open(path, "rb") as f:  # a file object keeps torch.load from dispatching on the file name
        try:
            return torch.load(f, map_location="cpu", weights_only=True), False
        except Exception as e:  # a refused global (a pickled model) or a corrupt file: the second try tells which
            if os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "0").lower() in ("1", "y", "yes", "true"):
                raise CheckpointError(
                    f"{path}: not loadable with weights_only=True ({_short(e)}); the restricted unpickler for "
                    "pickled models cannot run while TORCH_FORCE_WEIGHTS_ONLY_LOAD is set: unset it"
                ) from None
    with open(path, "rb") as f, warnings.catch_warnings():
        # torch's legacy format compares each pickled module class with its source; placeholders have none
        warnings.filterwarnings("ignore", message="Couldn't retrieve source code for container")
        try:
            return torch.load(f, map_location="cpu", weights_only=False, pickle_module=unpickle), True
        except unpickle.RefusedGlobal as e:
            raise CheckpointError(
                f"{path}: refused to unpickle global {e.path!r}: only tensors, containers and the known "
                "super-gradients / torch.nn classes are allowed; nothing from the file was executed"
            ) from None
        except Exception as e:
            raise CheckpointError(
                f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {_short(e)}"
            ) from None


def _short(e: BaseException) -> str:
    """The first sentence of an underlying error, for a one-line reason."""
    lines = str(e).strip().splitlines()
    first = lines[0] if lines else ""
    cut = first.find(". ")
    return f"{type(e).__name__}: {first[: cut + 1] if cut > 0 else first}"[:240]


def _as_state_dict(obj: Any, where: str, path: Path) -> OrderedDict[str, torch.Tensor]:
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path}: {where} is not a state_dict (got {type(obj).__name__})")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: {where} is not a state_dict: non-tensor entries {bad[:5]}")
    sd = OrderedDict(obj)
    changed = True
    while changed:  # DDP / EMA wrappers prefix every key; strip only a prefix that all keys share
        changed = False
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in sd):
                sd = OrderedDict((k[len(prefix) :], v) for k, v in sd.items())
                changed = True
    return sd


def _plain(value: Any) -> Any:
    """A copy of `value` with only JSON-like types (placeholders and tensors dropped)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if isinstance(k, (str, int))}
    return None


def _class_names(value: Any) -> list[str] | None:
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _interpret(obj: Any, path: Path, restricted: bool) -> tuple[OrderedDict, str, ArchConfig | None, dict]:
    if restricted and unpickle.is_module(obj):
        try:
            sd = unpickle.module_state_dict(obj)
        except ValueError as e:
            raise CheckpointError(f"{path}: malformed pickled model: {e}") from None
        meta: dict[str, Any] = {"pickled_class": obj._path}
        names = _class_names(obj._state.get("_class_names"))
        if names:
            meta["class_names"] = names
        return sd, "ultralytics", None, meta
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{path}: unrecognised checkpoint: a {type(obj).__name__}; expected a state_dict, a super-gradients "
            "checkpoint dict (net / ema_net), a pickled super-gradients model or this project's format"
        )
    if "arch" in obj and "state_dict" in obj:
        try:
            arch = ArchConfig.from_dict(obj["arch"])
        except SpaceError as e:
            raise CheckpointError(f"{path}: arch: {e}") from None
        meta = _plain(obj.get("meta") or {})
        _verify_checksum(obj, meta, path)
        return _as_state_dict(obj["state_dict"], "state_dict", path), "nas", arch, meta
    for key in ("ema_net", "net"):
        if obj.get(key) is not None:
            meta = {"source_key": key}
            for extra in ("epoch", "acc"):
                if isinstance(obj.get(extra), (int, float)):
                    meta[extra] = obj[extra]
            processing = obj.get("processing_params")
            if isinstance(processing, Mapping) and _class_names(processing.get("class_names")):
                meta["class_names"] = list(processing["class_names"])
            return _as_state_dict(obj[key], key, path), "super-gradients", None, meta
    if "state_dict" in obj:
        return _as_state_dict(obj["state_dict"], "state_dict", path), "state_dict", None, {}
    if all(isinstance(v, torch.Tensor) for v in obj.values()):
        return _as_state_dict(obj, "the file", path), "state_dict", None, {}
    keys = [str(k) for k in list(obj)[:8]]
    raise CheckpointError(
        f"{path}: unrecognised checkpoint dict with keys {keys}; expected a state_dict, 'net' / 'ema_net' "
        "(super-gradients) or 'arch' + 'state_dict' (this project)"
    )


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read any supported checkpoint (a path, or a released name such as "yolo_nas_s")."""
    p = _resolve_path(path)
    obj, restricted = _torch_load(p)
    sd, fmt, arch, meta = _interpret(obj, p, restricted)
    if arch is None:
        try:
            arch = infer_arch(sd)
        except CheckpointError as e:
            raise CheckpointError(f"{p}: {e}") from None
    else:
        diff = shape_diff(expected_shapes(arch), shapes_of(sd))
        if diff:
            raise CheckpointError(
                f"{p}: the state_dict does not match its recorded architecture {arch.name!r}:\n{diff}"
            )
    return Checkpoint(arch=arch, state_dict=sd, format=fmt, path=p, meta=meta)


def load_checkpoint(path: str | os.PathLike) -> tuple[ArchConfig, OrderedDict[str, torch.Tensor]]:
    """(architecture, state_dict) of a checkpoint in any supported format; the arch is inferred if not recorded."""
    ckpt = read_checkpoint(path)
    return ckpt.arch, ckpt.state_dict


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "<state_dict>"):
    """`model.load_state_dict(strict=True)` that first lists missing / unexpected / mismatched keys."""
    diff = shape_diff(shapes_of(model.state_dict()), shapes_of(state_dict))
    if diff:
        name = getattr(getattr(model, "arch", None), "name", type(model).__name__)
        raise CheckpointError(f"{source}: the weights do not fit architecture {name!r}:\n{diff}")
    model.load_state_dict(state_dict, strict=True)
    return model


def load_model(path: str | os.PathLike, fuse: bool | str = False, arch: ArchConfig | str | None = None) -> nn.Module:
    """Build the checkpoint's architecture (or `arch`), load its weights strictly, return it in eval mode.

    fuse: False, True / "full" or "partial" (see `nas.models.fuse`).
    """
    ckpt = read_checkpoint(path)
    model = build(ckpt.arch if arch is None else load_arch(arch))
    load_state_dict_strict(model, ckpt.state_dict, str(ckpt.path))
    model.eval()
    model.checkpoint_meta = dict(ckpt.meta, format=ckpt.format, path=str(ckpt.path))
    if fuse:
        fuse_model(model, "full" if fuse is True else fuse)
    return model


# ---------------------------------------------------------------- writing


def _digest(payload: Mapping[str, Any]) -> str:
    """sha256 over every tensor (with its key path, dtype and shape) of the state_dict and train_state."""
    h = hashlib.sha256()

    def walk(value: Any, key: str) -> None:
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"{key}:{t.dtype}:{list(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, f"{key}/{k}")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(v, f"{key}/{i}")
        else:
            h.update(f"{key}={value!r}".encode())

    walk(payload.get("state_dict"), "state_dict")
    walk(payload.get("train_state"), "train_state")
    return h.hexdigest()


def add_checksum(payload: dict[str, Any]) -> dict[str, Any]:
    """`payload` (this project's format) with `meta["weights_sha256"]` set from its tensors, before torch.save."""
    payload["meta"] = dict(payload["meta"], weights_sha256=_digest(payload))
    return payload


def _verify_checksum(obj: Mapping[str, Any], meta: Mapping[str, Any], path: Path) -> None:
    stored = meta.get("weights_sha256")
    if stored is None:  # written before checksums were stored
        return
    if _digest(obj) != stored:
        raise CheckpointError(
            f"{path}: the tensors do not match the checksum stored when the file was written: the file is damaged "
            "(disk error, partial copy, an edit); use another copy (best.pt / last.pt of the run, or re-download)"
        )


def _check_meta(value: Any, where: str = "meta") -> None:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_meta(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise CheckpointError(f"{where}: keys must be strings, got {k!r}")
            _check_meta(v, f"{where}.{k}")
        return
    raise CheckpointError(f"{where}: {type(value).__name__} is not allowed; use str, int, float, bool, list or dict")


def save_checkpoint(
    path: str | os.PathLike,
    model_or_state_dict: nn.Module | Mapping[str, torch.Tensor],
    arch: ArchConfig | str,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write `{"arch", "state_dict", "meta"}` atomically (temp file + rename); readable with weights_only=True.

    The weights must be those of the unfused `build(arch)`; anything else is refused with the key diff.
    """
    arch = load_arch(arch)
    sd = model_or_state_dict.state_dict() if isinstance(model_or_state_dict, nn.Module) else model_or_state_dict
    diff = shape_diff(expected_shapes(arch), shapes_of(sd))
    if diff:
        raise CheckpointError(
            f"{path}: the weights do not fit architecture {arch.name!r} (another architecture, or a fused model?):\n{diff}"
        )
    meta = dict(meta or {})
    _check_meta(meta, f"{path}: meta")
    meta.setdefault("format_version", FORMAT_VERSION)
    meta.setdefault("nas_version", __version__)
    payload = {
        "arch": arch.to_dict(),
        "state_dict": OrderedDict((k, v.detach().cpu()) for k, v in sd.items()),
        "meta": meta,
    }
    path = Path(path).expanduser()
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(add_checksum(payload), f)
        f.flush()
        os.fsync(f.fileno())
    return path
