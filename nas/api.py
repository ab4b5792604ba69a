"""`NAS`: the model-zoo front end (load, info, predict, val, train, export), shaped like ultralytics' `YOLO`/`NAS`.

from nas import NAS
model = NAS("yolo_nas_s.pt")      # any checkpoint format, a released name, or an ArchConfig YAML
model.info()
results = model("bus.jpg")        # == model.predict("bus.jpg")
metrics = model.val(data="synthetic")
result = model.train(data="custom.yaml", epochs=100)   # fine-tune; result.best is runs/train/exp/best.pt
model.export(format="onnx")
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nas.data import load_dataset
from nas.device import select_device
from nas.engine.exported import ExportedDetector, is_exported, load_exported
from nas.engine.info import ModelInfo, model_info
from nas.engine.names import default_names
from nas.engine.options import InfoOptions, PredictOptions, ValData, ValOptions
from nas.engine.ort import OrtDetector
from nas.engine.predict import predict_iter
from nas.engine.val import default_data, validate
from nas.errors import CheckpointError, ConfigError, SpaceError
from nas.export.formats import default_file, export_metadata
from nas.export.formats import export as export_model
from nas.export.options import ExportOptions, ExportTarget
from nas.models import build, fuse, load_model
from nas.models.inherit import InheritReport, inherit_weights
from nas.options import merge
from nas.space.io import RELEASED, load_arch
from nas.space.schema import ArchConfig
from nas.supernet.weights import is_supernet_source, supernet_inherit
from nas.train.options import TrainOptions
from nas.train.run import train as run_training
from nas.train.trainer import TrainResult

if TYPE_CHECKING:
    from nas.export.onnx import ExportResult

__all__ = ["NAS", "select_device"]


def _names(model: nn.Module, num_classes: int) -> dict[int, str]:
    recorded = (getattr(model, "checkpoint_meta", None) or {}).get("class_names")
    if recorded is None:
        return default_names(num_classes)
    names = dict(recorded) if isinstance(recorded, dict) else dict(enumerate(recorded))
    names = {int(k): str(v) for k, v in names.items()}
    if sorted(names) != list(range(num_classes)):
        where = (getattr(model, "checkpoint_meta", None) or {}).get("path", "the checkpoint")
        raise CheckpointError(
            f"{where}: meta.class_names has {len(names)} entries but the model predicts {num_classes} classes; "
            "record one name per class (or none)"
        )
    return names


def _load(source: Any) -> tuple[nn.Module, Path | None]:
    """Build or load the network behind `NAS(source)`; returns it and its checkpoint path (if any)."""
    if isinstance(source, nn.Module):
        if not isinstance(getattr(source, "arch", None), ArchConfig):
            raise ConfigError(f"NAS() needs a YOLO-NAS module with an .arch ArchConfig, got {type(source).__name__}")
        path = (getattr(source, "checkpoint_meta", None) or {}).get("path")
        return source, Path(path) if path else None
    if isinstance(source, ArchConfig):
        return build(source), None
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigError(
            f"NAS() takes a checkpoint path, a released name ({', '.join(RELEASED)}), an ArchConfig YAML path, "
            f"an ArchConfig or a YOLO-NAS module; got {type(source).__name__}"
        )
    text = str(source)
    path = Path(text).expanduser()
    if is_exported(path):  # ONNX, OpenVINO, TorchScript, TensorRT: predict and val run it in its runtime
        return load_exported(path), path
    if path.suffix in (".yaml", ".yml"):
        if path.is_file():
            return build(load_arch(path)), None
        if path.stem in RELEASED and path.name == text:  # "yolo_nas_s.yaml": the released architecture
            return build(load_arch(path.stem)), None
        raise SpaceError(f"architecture file {text!r} does not exist (released architectures: "
                         f"{', '.join(r + '.yaml' for r in RELEASED)})")  # fmt: skip
    model = load_model(source)  # a released name resolves in the weights dir, with a "place it here" error
    return model, Path(model.checkpoint_meta["path"])


class NAS:
    """A YOLO-NAS-family detector with ultralytics' front API.

    `model` is a checkpoint path (super-gradients .pth, ultralytics .pt, this project's format), a bare
    released name ("yolo_nas_s" -> the weights dir), an ArchConfig YAML path or `ArchConfig` (random
    init; "yolo_nas_s.yaml" names the released architecture), or a YOLO-NAS module.
    """

    def __init__(
        self,
        model: str | os.PathLike | ArchConfig | nn.Module,
        weights: str | os.PathLike | None = None,
    ):
        """weights: initial weights for an architecture given as YAML/ArchConfig: a released name, a
        checkpoint path, or "auto" (the closest released model present in the weights directory). An
        architecture equal to the source's loads strictly; otherwise weights are inherited by structured
        slicing (`nas.models.inherit`) and `self.inherited` reports the fraction of parameters copied."""
        self.model, self.ckpt_path = _load(model)
        self.inherited = None  # InheritReport when `weights` was given
        if weights is not None:
            if self.ckpt_path is not None:
                raise ConfigError(
                    f"weights={os.fspath(weights)!r}: {self.ckpt_path} already holds weights; "
                    "weights= initialises an architecture given as YAML or ArchConfig"
                )
            self.inherited = self._initial_weights(weights)
        self.model.eval()
        self.names: dict[int, str] = _names(self.model, self.arch.num_classes)
        self.last_export: ExportResult | None = None  # the file and onnxruntime-vs-torch diffs of the last export

    def _initial_weights(self, weights: str | os.PathLike) -> InheritReport:
        """Weights for an architecture given as YAML/ArchConfig: inherited (`nas.models.inherit`), or its
        sub-network of a trained supernet (`supernet:PATH`, with the supernet's classes)."""
        if is_supernet_source(weights):
            self.model, report = supernet_inherit(self.arch, weights)
            return report
        state_dict, report = inherit_weights(self.arch, weights)
        self.model.load_state_dict(state_dict, strict=True)
        return report

    @property
    def arch(self) -> ArchConfig:
        return self.model.arch

    @property
    def device(self) -> torch.device:
        return getattr(self.model, "device", None) or next(self.model.parameters()).device

    @property
    def is_onnx(self) -> bool:
        """Loaded from an .onnx export: predict and val run in onnxruntime; fuse/to/export do not apply."""
        return isinstance(self.model, OrtDetector)

    @property
    def is_exported(self) -> bool:
        """Loaded from an export (ONNX, OpenVINO, TorchScript, TensorRT): predict and val only."""
        return isinstance(self.model, ExportedDetector)

    def _torch_only(self, what: str) -> None:
        if self.is_exported:
            kind = "an ONNX" if self.is_onnx else f"a {self.model.runtime}"
            raise ConfigError(
                f"{what} needs the torch model; {self.ckpt_path} is {kind} export (predict and val only): "
                "load the checkpoint it was exported from"
            )

    @property
    def fused(self) -> str:
        """ "none", "partial" or "full"."""
        return getattr(self.model, "fusion", "none")

    def fuse(self, mode: str = "full") -> NAS:
        """Re-parameterize in place for inference (see `nas.models.fuse`); outputs are unchanged."""
        self._torch_only("fuse()")
        fuse(self.model, mode)
        return self

    def to(self, device: str | int | torch.device) -> NAS:
        dev = select_device(device)
        if self.is_exported and self.model.runtime != "TorchScript":
            if dev.type != self.model.device.type:
                where = self.model.device.type.upper() if self.model.device.type == "cuda" else "the CPU"
                runtime = self.model.runtime
                raise ConfigError(
                    f"device={device!r}: a {runtime} model runs on {where}; use device={self.model.device.type}"
                )
            return self
        self.model.to(dev)
        return self

    def _use(self, device: str | int | torch.device | None) -> None:
        if device is not None:
            self.to(device)
        self.model.eval()

    def info(self, options: InfoOptions | None = None, *, verbose: bool = True, **kwargs: Any) -> ModelInfo:
        """Print and return layers, parameters and gradients (current fusion state), GFLOPs at imgsz x imgsz (of
        the deployed network, counted from the ArchConfig) and the predicted latency on `hardware` (a
        `nas.latency` target; None to skip).

        Keywords are `InfoOptions` fields (imgsz, detailed, fuse, hardware); fuse=True fuses in place first.
        """
        self._torch_only("info()")
        opts = merge(InfoOptions, options, kwargs, "NAS.info")
        if opts.fuse:
            self.fuse()
        return model_info(self.model, opts, verbose=verbose)

    def predict(
        self,
        source: Any = None,
        *,
        device: str | int | torch.device | None = None,
        stream: bool = False,
        options: PredictOptions | None = None,
        **kwargs: Any,
    ):
        """Detect objects; returns a list of `Results` (a generator when `stream`).

        source: image path, directory, glob, list, PIL image, or numpy array in HWC **BGR** uint8 (as
        cv2.imread returns); None uses images of the embedded synthetic set. Keywords are `PredictOptions`
        fields (conf, iou, imgsz, max_det, batch, classes, agnostic, preprocess, half); defaults and
        pre-processing equal ultralytics' NAS predictor; preprocess="sg" selects super-gradients' resize + centre pad.
        """
        opts = merge(PredictOptions, options, kwargs, "NAS.predict")
        if source is None:
            source = _default_source()
        self._use(device)
        it = predict_iter(self.model, self.names, source, opts)
        return it if stream else list(it)

    __call__ = predict

    def val(
        self,
        data: Any = ValData.data,
        *,
        split: str = ValData.split,
        device: str | int | torch.device | None = None,
        verbose: bool = True,
        options: ValOptions | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """COCO mAP (pycocotools) on a dataset: "synthetic", a data YAML, a COCO JSON, or a loaded dataset.

        Keywords are `ValOptions` fields (imgsz, batch, conf, iou, max_det, protocol, half).
        protocol="ultralytics" matches ultralytics' NAS validator (conf default 0.001); protocol="sg"
        super-gradients' 636 + pad-640 recipe (conf default 0.01). Prints a table with `verbose`.
        """
        opts = merge(ValOptions, options, kwargs, "NAS.val")
        data = default_data(data, self.model)
        if isinstance(data, (str, os.PathLike)):
            data = load_dataset(data, split=split)
        self._use(device)
        return validate(self.model, data, opts, verbose=verbose)

    def train(self, options: TrainOptions | None = None, **kwargs: Any) -> TrainResult:
        """Train or fine-tune this model; `options` are `nas.train.TrainOptions` keys (ultralytics names: data,
        epochs, imgsz, batch, device, workers, resume, ...). A dataset with other classes than the model's moves
        it onto them (class-prediction layers re-initialized, reported). Afterwards this object holds the EMA
        weights of the last epoch; the result has the best epoch's metrics and the path of best.pt."""
        opts = merge(TrainOptions, options, kwargs, "NAS.train")
        if opts.weights is not None and not opts.resume:
            if self.ckpt_path is not None or self.inherited is not None:
                raise ConfigError(f"weights={opts.weights!r}: this model already holds weights")
            self.inherited = self._initial_weights(opts.weights)
            print(self.inherited.summary())
        pretrained = self.ckpt_path is not None or self.inherited is not None
        result = run_training(self.model, opts, pretrained=pretrained)
        self.model = result.model
        self.ckpt_path = result.best if result.best is not None else self.ckpt_path
        self.names = dict(enumerate(result.class_names))
        self.model.checkpoint_meta = {"path": str(self.ckpt_path), "format": "nas", "class_names": result.class_names}
        return result

    def export(
        self,
        format: str = ExportTarget.format,
        *,
        file: str | os.PathLike | None = None,
        verbose: bool = True,
        options: ExportOptions | None = None,
        **kwargs: Any,
    ) -> str:
        """Write a deployment file and check it against torch in its runtime; returns its path.

        format: onnx (onnxruntime), openvino (an IR directory "<stem>_openvino_model/"), torchscript
        ("<stem>.torchscript") or engine (TensorRT, needs tensorrt and a CUDA GPU); each loads back with `NAS(path)`.

        Keywords are `ExportOptions` fields (imgsz, batch, half, dynamic, fuse, nms, conf, iou, max_det, opset,
        int8, data, calib, calib_method).
        The default file is the checkpoint's path with the format's suffix, else "<arch name>.onnx".
        nms=True puts NMS (predict semantics: conf, iou, max_det) in the graph with fixed-size outputs.
        int8=True writes "<stem>_int8.onnx": the checked FP32 export quantized by onnxruntime (static QDQ,
        per-channel s8 weights, u8 activations) with `calib_method` ranges from `calib` images of `data`'s
        train split (see `nas.quant`); `NAS("..._int8.onnx")` predicts and validates it. `data` may also be a
        loaded dataset.
        """
        ExportTarget(format, None if file is None else os.fspath(file))  # checks the format
        opts = merge(ExportOptions, options, kwargs, "NAS.export")
        self._torch_only("export()")
        if file is None:
            stem = self.ckpt_path.with_suffix("") if self.ckpt_path else Path(self.arch.name)
            file = default_file(stem, format, opts.int8)
        result = export_model(self.model, format, file, opts, metadata=export_metadata(self.arch, self.names))
        if verbose or not result.ok:
            print(result, file=sys.stdout if result.ok else sys.stderr)
        self.last_export = result
        return str(result.path)

    def __repr__(self) -> str:
        if self.inherited is not None:  # weights= given: a strict copy or a structured inheritance
            r = self.inherited
            how = "strict" if r.exact else f"inherited {r.fraction:.1%}"
            where = f", weights={how} from {r.source_arch} ({str(r.source)!r})"
        elif self.ckpt_path:
            where = f", weights={str(self.ckpt_path)!r}"
        else:
            where = ", random init"
        return f"NAS(arch={self.arch.name!r}, classes={len(self.names)}{where}, fused={self.fused!r}, device={self.device})"


def _default_source() -> list[str]:
    images = load_dataset("synthetic", split="val").images[:4]
    print(f"no source given: predicting on {len(images)} images of the embedded synthetic set", file=sys.stderr)
    return [str(r.path) for r in images]
