"""A restricted unpickler for whole-model pickles (ultralytics' `yolo_nas_{s,m,l}.pt`), usable as
`torch.load(f, weights_only=False, pickle_module=nas.models.unpickle)`.

Safety model: `find_class` is the only way a pickle stream can reach a Python callable, and here it
returns only
* our own tensor rebuild functions (they rebuild a dense tensor from a storage and ignore hooks,
  metadata and Parameter state), dtypes, `torch.Size`, `collections.OrderedDict`, `builtins.set` and a
  latin-1-only `_codecs.encode` (protocol-2 bytes), and
* for the known super-gradients / torch.nn / numpy-scalar class paths, an *inert placeholder*: a class
  whose construction stores its arguments and whose `__setstate__` stores the state, nothing else.
Every other global (os.system, builtins.exec, subprocess.Popen, ...) raises `RefusedGlobal` before
anything is called. No super-gradients code is imported and no module code of the pickle runs.
`module_state_dict` then walks the placeholders' `_parameters`, `_buffers` (minus
`_non_persistent_buffers_set`) and `_modules` into a state_dict, exactly as `nn.Module.state_dict` would.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
from collections import OrderedDict
from typing import Any

import torch

__all__ = ["Inert", "RefusedGlobal", "Unpickler", "is_module", "load", "loads", "module_state_dict"]

# The class paths a pickled super-gradients YOLO-NAS references (ultralytics assets and SG >= 3.1.x
# objects), read from the SG source (`src/super_gradients/modules/`, `training/models/detection_models/`) and the
# pickles of ultralytics' `yolo_nas_{s,m,l}.pt`, which ultralytics' `NAS._load` reads with `torch.load`.
_SG = "super_gradients."
_YN = _SG + "training.models.detection_models.yolo_nas."
SG_MODULE_CLASSES = frozenset(
    {
        _YN + "yolo_nas_variants.YoloNAS",
        _YN + "yolo_nas_variants.YoloNAS_S",
        _YN + "yolo_nas_variants.YoloNAS_M",
        _YN + "yolo_nas_variants.YoloNAS_L",
        _SG + "training.models.detection_models.customizable_detector.CustomizableDetector",
        _SG + "modules.detection_modules.NStageBackbone",
        *(
            _YN + f"yolo_stages.{c}"
            for c in (
                "YoloNASStem",
                "YoloNASStage",
                "YoloNASCSPLayer",
                "SequentialWithIntermediates",
                "YoloNASBottleneck",
                "YoloNASUpStage",
                "YoloNASDownStage",
            )
        ),
        _SG + "training.models.detection_models.csp_darknet53.SPP",
        _YN + "panneck.YoloNASPANNeckWithC2",
        _YN + "dfl_heads.NDFLHeads",
        _YN + "dfl_heads.YoloNASDFLHead",
        _SG + "modules.qarepvgg_block.QARepVGGBlock",
        _SG + "modules.repvgg_block.RepVGGBlock",
        _SG + "modules.skip_connections.Residual",
        _SG + "modules.conv_bn_act_block.Conv",
        _SG + "modules.conv_bn_relu_block.ConvBNReLU",
    }
)
TORCH_MODULE_CLASSES = frozenset(
    {
        "torch.nn.modules.conv.Conv2d",
        "torch.nn.modules.conv.ConvTranspose2d",
        "torch.nn.modules.batchnorm.BatchNorm2d",
        "torch.nn.modules.activation.ReLU",
        "torch.nn.modules.pooling.MaxPool2d",
        "torch.nn.modules.linear.Identity",
        "torch.nn.modules.container.Sequential",
        "torch.nn.modules.container.ModuleList",
        "torch.nn.modules.dropout.Dropout",
    }
)
# Plain (non-module) objects that only appear as metadata: SG's preprocessing pipeline and numpy scalars
# in training metrics. They stay inert and are never looked into.
OBJECT_CLASSES = frozenset(
    {
        *(
            _SG + f"training.processing.processing.{c}"
            for c in (
                "ComposeProcessing",
                "DetectionLongestMaxSizeRescale",
                "DetectionCenterPadding",
                "DetectionPadToSize",
                "StandardizeImage",
                "NormalizeImage",
                "ImagePermute",
                "ReverseImageChannels",
            )
        ),
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "numpy.dtype",
    }
)


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle references a global outside the allow-list; nothing was called."""

    def __init__(self, path: str):
        super().__init__(f"refused global {path!r}")
        self.path = path


class Inert:
    """Stand-in for an allowed class: stores constructor arguments and pickled state, runs nothing."""

    __slots__ = ("_args", "_state")
    _path = "?"
    _is_module = False

    def __new__(cls, *args: Any, **kwargs: Any) -> Inert:
        obj = object.__new__(cls)
        obj._args = (args, kwargs)
        obj._state = None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self._state = state

    def __reduce__(self):  # a placeholder must never be written back out as if it were the real class
        raise TypeError(f"inert placeholder of {self._path} cannot be pickled")

    def __repr__(self) -> str:
        return f"<inert {self._path}>"


_INERT_CACHE: dict[str, type[Inert]] = {}


def _inert_class(path: str) -> type[Inert]:
    cls = _INERT_CACHE.get(path)
    if cls is None:
        name = path.rsplit(".", 1)[-1]
        is_mod = path in SG_MODULE_CLASSES or path in TORCH_MODULE_CLASSES
        cls = type(name, (Inert,), {"__slots__": (), "_path": path, "_is_module": is_mod})
        _INERT_CACHE[path] = cls
    return cls


def _typed_storage(storage: Any) -> torch.storage.TypedStorage:
    if not isinstance(storage, torch.storage.TypedStorage):
        raise pickle.UnpicklingError(f"tensor rebuild got {type(storage).__name__} instead of a storage")
    return storage


def _ints(name: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(type(v) is int for v in value):
        raise pickle.UnpicklingError(f"tensor rebuild got a bad {name}: {value!r}")
    return tuple(value)


def _rebuild(storage: Any, dtype: torch.dtype, offset: Any, size: Any, stride: Any) -> torch.Tensor:
    if type(offset) is not int:
        raise pickle.UnpicklingError(f"tensor rebuild got a bad storage offset: {offset!r}")
    untyped = storage._untyped_storage
    t = torch.empty((0,), dtype=dtype, device=untyped.device)
    return t.set_(untyped, offset, _ints("size", size), _ints("stride", stride))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    # Hooks and metadata are dropped on purpose: weights are plain dense tensors.
    storage = _typed_storage(storage)
    return _rebuild(storage, storage.dtype, storage_offset, size, stride)


def _rebuild_tensor_v3(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, dtype=None, metadata=None
):
    storage = _typed_storage(storage)
    if not isinstance(dtype, torch.dtype):
        raise pickle.UnpicklingError(f"tensor rebuild got a bad dtype: {dtype!r}")
    return _rebuild(storage, dtype, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    # A Parameter becomes its plain tensor; pickled Parameter attributes (state) are not restored.
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError(f"parameter rebuild got {type(data).__name__} instead of a tensor")
    return data


def _encode_latin1(text: Any, encoding: Any = "latin1") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode only decodes latin1 strings, got {encoding!r}")
    return text.encode("latin1")


def _safe_globals() -> dict[str, Any]:
    out: dict[str, Any] = {
        "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
        "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
        "torch._utils._rebuild_parameter": _rebuild_parameter,
        "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
        "collections.OrderedDict": OrderedDict,
        "builtins.set": set,
        "builtins.frozenset": frozenset,
        "torch.Size": torch.Size,
        "_codecs.encode": _encode_latin1,
    }
    for attr, value in vars(torch).items():
        if isinstance(value, torch.dtype):
            out[f"torch.{attr}"] = value
    return out


_SAFE: dict[str, Any] = {}


class Unpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose `find_class` only hands out the allow-list above."""

    def find_class(self, module: str, name: str) -> Any:
        if not _SAFE:
            _SAFE.update(_safe_globals())
        # Protocol-2 pickles (torch.save's default) name builtins the Python 2 way (`__builtin__.set`);
        # translate the name exactly as pickle's own find_class does, then check it.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        path = f"{module}.{name}"
        if path in _SAFE:
            return _SAFE[path]
        if path in SG_MODULE_CLASSES or path in TORCH_MODULE_CLASSES or path in OBJECT_CLASSES:
            return _inert_class(path)
        raise RefusedGlobal(path)


def load(file: Any, **kwargs: Any) -> Any:
    """`pickle.load` through the restricted `Unpickler` (torch calls this for legacy-format headers)."""
    return Unpickler(file, **kwargs).load()


def loads(data: bytes, **kwargs: Any) -> Any:
    return load(io.BytesIO(data), **kwargs)


def is_module(obj: Any) -> bool:
    """True for the placeholder of a pickled nn.Module (super-gradients or torch.nn class)."""
    return isinstance(obj, Inert) and obj._is_module and isinstance(obj._state, dict)


def module_state_dict(root: Inert) -> OrderedDict[str, torch.Tensor]:
    """Parameters and persistent buffers of a pickled module tree, keyed like `nn.Module.state_dict()`.

    Raises ValueError on anything that is not what `nn.Module` pickles (a cycle, a non-tensor parameter, ...).
    """
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    seen: set[int] = set()
    stack: list[tuple[str, Inert]] = [("", root)]
    while stack:
        prefix, mod = stack.pop()
        if not is_module(mod):
            raise ValueError(f"{prefix.rstrip('.') or '<root>'}: expected a pickled nn.Module, got {mod!r}")
        if id(mod) in seen:
            raise ValueError(f"{prefix.rstrip('.')}: module appears twice in the tree (shared or cyclic)")
        seen.add(id(mod))
        state: dict = mod._state  # type: ignore[assignment]
        # Attributes added to nn.Module after the pickle was written are simply absent: default to empty.
        non_persistent = state.get("_non_persistent_buffers_set") or set()
        for attr in ("_parameters", "_buffers"):
            entries = state.get(attr) or {}
            if not isinstance(entries, dict):
                raise ValueError(f"{prefix}{attr}: expected a dict, got {type(entries).__name__}")
            for name, t in entries.items():
                if t is None or (attr == "_buffers" and name in non_persistent):
                    continue
                if not isinstance(name, str) or not isinstance(t, torch.Tensor):
                    raise ValueError(f"{prefix}{name}: expected a tensor, got {type(t).__name__}")
                out[prefix + name] = t.detach()
        children = state.get("_modules") or {}
        if not isinstance(children, dict):
            raise ValueError(f"{prefix}_modules: expected a dict, got {type(children).__name__}")
        # Depth-first in registration order, like nn.Module.state_dict: push children reversed.
        for name, child in reversed(list(children.items())):
            if child is not None:
                if not isinstance(name, str):
                    raise ValueError(f"{prefix}_modules: bad child name {name!r}")
                stack.append((f"{prefix}{name}.", child))
    return out
