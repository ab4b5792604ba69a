"""`nas MODE key=value ...`: the command line of the model zoo (ultralytics-style).

    nas predict model=yolo_nas_s.pt source=img.jpg conf=0.3
    nas val model=yolo_nas_s.pt data=synthetic
    nas train model=yolo_nas_s.yaml data=synthetic epochs=1 imgsz=128
    nas info model=yolo_nas_s.pt detailed=true
    nas export model=yolo_nas_s.pt format=onnx nms=true
    nas export model=yolo_nas_s.pt format=onnx int8=true data=synthetic calib=32
    nas export model=yolo_nas_s.pt format=openvino int8=true     (also torchscript; engine with TensorRT + CUDA)
    nas benchmark model=yolo_nas_s.pt data=synthetic formats=onnx,onnx_int8,openvino_int8
    nas val model=yolo_nas_s_int8.onnx data=synthetic       (ONNX exports run in onnxruntime)
    nas latency model=yolo_nas_m hardware=cpu_ort measure=true
    nas search +space=yolo_nas strategy=tpe n_trials=100    (the Hydra app, python -m nas.search)
    nas space +space=yolo_nas                                (python -m nas.space)
    nas help

Keys are typed; an unknown key or a bad value exits with code 2 and lists what is valid. Predict and val
write to a fresh run directory, runs/<mode>/exp, exp2, ... (`project=`, `name=`, `exist_ok=`).
A new mode is one more `Mode` entry in `MODES`.
"""

from __future__ import annotations

import json
import runpy
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from nas.engine.options import InfoOptions, PredictOptions, ValData, ValOptions
from nas.errors import ConfigError, DataError, NasError
from nas.export.options import BenchmarkOptions, ExportOptions, ExportTarget
from nas.io import increment_dir, machine_error_text
from nas.latency.options import LatencyOptions
from nas.options import check_name, describe, keys_of, parse_text, pick, split_args
from nas.train.options import TrainOptions

__all__ = ["MODES", "Mode", "increment_dir", "main", "parse_args"]


@dataclass(frozen=True)
class ModelKey:
    model: str = "yolo_nas_s"

    HELP: ClassVar = {"model": "checkpoint path, released name, or ArchConfig YAML"}


@dataclass(frozen=True)
class ModelKeys(ModelKey):
    weights: str | None = None

    HELP: ClassVar = {
        "weights": "initial weights of an ArchConfig YAML model: released name, checkpoint path or auto (inherited)"
    }


@dataclass(frozen=True)
class PredictSource:
    source: str | None = None

    HELP: ClassVar = {"source": "image file, directory or glob (default: synthetic images)"}


@dataclass(frozen=True)
class PredictSave:
    save: bool = True

    HELP: ClassVar = {"save": "save annotated images"}


@dataclass(frozen=True)
class DeviceKey:
    device: str | None = None

    HELP: ClassVar = {"device": "cpu, cuda, cuda:N or N (default: cpu)"}


@dataclass(frozen=True)
class RunDir:
    project: str = "runs"
    name: str = "exp"
    exist_ok: bool = False

    HELP: ClassVar = {
        "project": "parent of the run directories",
        "name": "run directory name (exp, exp2, ... when taken)",
        "exist_ok": "reuse runs/<mode>/<name> instead of incrementing",
    }

    def __post_init__(self):
        check_name(self.name)


@dataclass(frozen=True)
class Mode:
    """A `nas MODE`: its runner, help line, and the options classes whose fields are its keys (in order)."""

    run: Callable[[dict[str, Any]], int]
    help: str
    parts: tuple[type, ...] = ()

    @property
    def keys(self) -> list[str]:
        return keys_of(*self.parts)


def _model(args: dict[str, Any]):
    from nas.api import NAS

    model = NAS(args["model"], weights=args.get("weights"))
    if model.inherited is not None:
        print(model.inherited.summary())
    if args.get("device"):
        model.to(args["device"])
    return model


def _predict_chunk(model, items: list[Any], opts: Any, bad: list[tuple[str, str]]) -> list[Any]:
    """Results of `items`; an unreadable image is recorded in `bad` and skipped (the others still run)."""
    try:
        return list(model.predict(items, options=opts, stream=True))
    except DataError as e:
        if len(items) == 1:
            bad.append((str(items[0]), str(e)))
            print(f"nas predict: skipped {items[0]}: {e}", file=sys.stderr)
            return []
    return [r for item in items for r in _predict_chunk(model, [item], opts, bad)]  # find the bad one(s)


def _run_predict(args: dict[str, Any]) -> int:
    from nas.engine.sources import resolve_source
    from nas.io import write_text_atomic

    items = resolve_source(args["source"]) if args["source"] is not None else None
    t0 = time.perf_counter()
    model = _model(args)
    if not model.is_exported and model.fused == "none":
        model.fuse()  # same outputs (to fp32 rounding), 10-25% faster on the CPU (S at 640: 279 -> 246 ms)
    if items is None:  # the API's default source (a few synthetic images)
        from nas.api import _default_source

        items = _default_source()
    opts = pick(PredictOptions, args)
    print(
        f"{model!r} ready in {time.perf_counter() - t0:.1f} s; {len(items)} image(s) at imgsz {opts.imgsz}. The first "
        "image is slower: PyTorch (or onnxruntime) selects and prepares its kernels on the first call at a shape"
    )
    save_dir: Path | None = None  # created with the first result: a run that fails before has no directory
    records: list[dict[str, Any]] = []
    bad: list[tuple[str, str]] = []
    step = max(1, opts.batch)
    for start in range(0, len(items), step):
        for r in _predict_chunk(model, items[start : start + step], opts, bad):
            if save_dir is None:
                save_dir = increment_dir(Path(args["project"]) / "predict" / args["name"], args["exist_ok"])
            h, w = r.orig_shape
            print(f"image {len(records) + 1} {r.path}: {h}x{w} {r.verbose()}, {r.speed_ms['inference']:.1f}ms")
            if args["save"]:
                r.save(save_dir / f"{Path(r.path).stem}.jpg")
            records.append({"path": r.path, "orig_shape": [h, w], "detections": r.summary()})
            with open(save_dir / "predictions.jsonl", "a") as fh:  # each result as it is made
                fh.write(json.dumps(records[-1]) + "\n")
    if save_dir is not None:
        write_text_atomic(save_dir / "predictions.json", json.dumps(records, indent=1))
        print(f"{len(records)} images; results saved to {save_dir}")
    if bad:
        print(f"nas predict: error: {len(bad)} of {len(items)} images unreadable:", file=sys.stderr)
        for path, err in bad:
            print(f"  {path}: {err}", file=sys.stderr)
        return 1
    return 0


def _run_val(args: dict[str, Any]) -> int:
    from nas.data import load_dataset
    from nas.engine.val import default_data, validate

    auto = args["data"] == "auto"  # the model decides which; a named dataset is checked before loading the model
    dataset = None if auto else load_dataset(args["data"], split=args["split"])
    model = _model(args)
    if dataset is None:
        dataset = load_dataset(default_data(args["data"], model.model), split=args["split"])
    save_dir = increment_dir(Path(args["project"]) / "val" / args["name"], args["exist_ok"])
    try:
        metrics = validate(model.model, dataset, pick(ValOptions, args), save_dir=save_dir)
    except BaseException:
        if not any(save_dir.iterdir()):  # failed before writing anything: leave no empty run directory
            save_dir.rmdir()
        raise
    print(
        f"P {metrics['precision']:.3f}, R {metrics['recall']:.3f}, mAP50 {metrics['mAP50']:.4f}, mAP50-95 "
        f"{metrics['mAP50_95']:.4f} (fractions; {metrics['protocol']} protocol, {metrics['letterbox']} letterbox); "
        f"results saved to {save_dir}"
    )
    return 0


def _run_info(args: dict[str, Any]) -> int:
    model = _model(args)
    model.info(options=pick(InfoOptions, args))
    return 0


def _arch_of(model: str):
    """The architecture behind model= without loading weights (latency needs none)."""
    from nas.space.io import RELEASED, load_arch

    path = Path(model)
    if model in RELEASED or path.suffix in (".yaml", ".yml"):
        # "yolo_nas_s.yaml" names the released architecture unless such a file exists, as in NAS()
        return load_arch(path.stem if path.stem in RELEASED and not path.exists() else model)
    from nas.models import load_checkpoint

    return load_checkpoint(model)[0]


def _run_latency(args: dict[str, Any]) -> int:
    from nas.latency import load_hardware, load_predictor

    arch = _arch_of(args["model"])
    hw = load_hardware(args["hardware"] or "cpu_ort")
    predicted = load_predictor(hw).predict(arch)
    print(f"{arch.name} on {hw.name}: predicted {predicted:.2f} ms ({hw})")
    if args["measure"]:
        from nas.latency.build import measure_archs

        timing_hw = load_hardware(hw, clock=args["clock"]) if args["clock"] else hw
        print(f"measuring on the {timing_hw.timing.clock} clock", flush=True)
        timing = measure_archs([arch], timing_hw)[0]
        error = (predicted - timing["median_ms"]) / timing["median_ms"]
        print(
            f"measured {timing['median_ms']:.2f} ms (p10 {timing['p10_ms']:.2f}, p90 {timing['p90_ms']:.2f}, "
            f"{timing['n']} runs); prediction error {error:+.1%}"
        )
    return 0


def _run_export(args: dict[str, Any]) -> int:
    model = _model(args)
    opts = pick(ExportOptions, args)
    steps = "fuse, trace, check against torch in its runtime" if opts.fuse else "trace, check in its runtime"
    print(f"exporting {model.arch.name} to {args['format']} at {opts.imgsz}px ({steps}) ...", flush=True)
    model.export(args["format"], file=args["file"], options=pick(ExportOptions, args))
    return 0 if model.last_export.ok else 1


def _run_benchmark(args: dict[str, Any]) -> int:
    from nas.export.benchmark import benchmark, format_table

    opts = pick(BenchmarkOptions, args)  # checked before anything is built
    model = _model(args)
    model._torch_only("benchmark")
    work = increment_dir(Path(args["project"]) / "benchmark" / args["name"], args["exist_ok"])
    result = benchmark(model.model, model.names, work, opts)
    print(format_table(result))
    print(f"results saved to {work / 'results.json'} and results.md (the exported files beside them)")
    return 0


def _run_train(args: dict[str, Any]) -> int:
    import os

    import torch

    from nas.api import NAS

    opts = pick(TrainOptions, args)  # checked before anything is built
    torch.manual_seed(opts.seed)  # the initialization of a YAML model
    result = NAS(args["model"]).train(options=opts)
    if int(os.environ.get("RANK", "0")) == 0:
        # fractions (0-1), as the trainer's history, results.csv, nas val and metrics.json hold them
        metrics = {k: result.metrics.get(k) for k in ("epoch", "mAP50_95", "mAP50")}
        print(json.dumps({"best": str(result.best) if result.best else None, **metrics, "scale": "fraction"}))
    return 0


MODES: dict[str, Mode] = {
    "predict": Mode(
        _run_predict,
        "detect objects in images; writes annotated images and predictions.json to runs/predict/exp*",
        (ModelKeys, PredictSource, PredictOptions, PredictSave, DeviceKey, RunDir),
    ),
    "train": Mode(
        _run_train,
        "train or fine-tune; writes best.pt, last.pt, results.csv/png to runs/train/exp* (torchrun for DDP)",
        (ModelKey, TrainOptions),
    ),
    "val": Mode(
        _run_val,
        "COCO mAP (pycocotools) on a dataset; writes metrics.json and predictions.json to runs/val/exp*",
        (ModelKeys, ValData, ValOptions, DeviceKey, RunDir),
    ),
    "info": Mode(
        _run_info,
        "layers, parameters, gradients and GFLOPs (counted from the ArchConfig)",
        (ModelKeys, InfoOptions, DeviceKey),
    ),
    "latency": Mode(
        _run_latency,
        "predicted (and measured) latency of the deployed network on a hardware target",
        (ModelKey, LatencyOptions),
    ),
    "benchmark": Mode(
        _run_benchmark,
        "every export format side by side: size, mAP, latency at 1 and all threads, speed-up over FP32 ONNX",
        (ModelKeys, BenchmarkOptions, RunDir),
    ),
    "export": Mode(
        _run_export,
        "write an ONNX, OpenVINO, TorchScript or TensorRT file checked against torch in its runtime",
        (ModelKeys, ExportTarget, ExportOptions, DeviceKey),
    ),
}

# Modes whose arguments belong to another parser: `nas search ...` is the Hydra app (overrides, -m),
# `nas space ...` prints a search space. Their arguments are passed through untouched.
PASS_THROUGH = {
    "search": ("nas.search", "architecture search: the Hydra app (python -m nas.search +space=yolo_nas ...)"),
    "space": ("nas.space", "print a search space's dimensions and size (+space=yolo_nas)"),
    "supernet": ("nas.supernet", "train the weight-sharing supernet of a space (nas supernet train weights=...)"),
}


def mode_usage(name: str) -> str:
    """The keys of one mode, with their defaults (`nas MODE --help`)."""
    if name in PASS_THROUGH:
        module, help_text = PASS_THROUGH[name]
        return f"nas {name}: {help_text}\n(its options: python -m {module} --help)"
    mode = MODES[name]
    lines = [f"usage: nas {name} key=value ...", "", mode.help, "", "keys:"]
    for part in mode.parts:
        lines += describe(part)
    return "\n".join(lines)


def usage() -> str:
    lines = ["usage: nas MODE key=value ...", "", "modes:"]
    for name, mode in MODES.items():
        lines.append(f"  {name:<8} {mode.help}")
    for name, (_module, help_text) in PASS_THROUGH.items():
        lines.append(f"  {name:<8} {help_text}")
    lines.append(f"  {'help':<8} this message (nas MODE --help: one mode's keys)")
    for name, mode in MODES.items():
        lines += ["", f"nas {name} keys:"]
        for part in mode.parts:
            lines += describe(part)
    lines += ["", "example: nas predict model=yolo_nas_s.pt source=images/ conf=0.3"]
    return "\n".join(lines)


def _run_module(module: str, argv: list[str]) -> int:
    """`python -m module argv...` in this process: signals (Ctrl-C, SIGTERM, SIGHUP) reach the search directly,
    and a killed `nas` leaves no child behind that would race a re-run on the same study."""
    saved = sys.argv
    sys.argv = [f"nas {module}", *argv]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = saved
    return 0


def parse_args(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """(mode, typed arguments with defaults filled in); ConfigError on anything invalid."""
    if not argv or argv[0] in ("help", "-h", "--help"):
        if len(argv) > 1 and argv[1] in MODES:
            return "help", {"mode": argv[1]}
        return "help", {}
    mode_name, *pairs = argv
    if mode_name in MODES and any(p in ("-h", "--help", "help") for p in pairs):
        return "help", {"mode": mode_name}
    mode = MODES.get(mode_name)
    if mode is None:
        raise ConfigError(f"unknown mode {mode_name!r}; valid modes: {', '.join([*MODES, *PASS_THROUGH, 'help'])}")
    texts = split_args(pairs, mode.keys, mode_name, prog="nas")
    args: dict[str, Any] = {}
    for part in mode.parts:  # each part checks its values (thresholds, sizes, ...) when made
        obj = part(**{k: parse_text(part, k, t) for k, t in texts.items() if k in keys_of(part)})
        args.update({k: getattr(obj, k) for k in keys_of(part)})
    return mode_name, args


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `nas` console script; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in PASS_THROUGH:
        return _run_module(PASS_THROUGH[argv[0]][0], argv[1:])
    try:
        mode_name, args = parse_args(argv)
    except ConfigError as e:
        print(f"nas: error: {e}\n(see `nas help`)", file=sys.stderr)
        return 2
    if mode_name == "help":
        print(mode_usage(args["mode"]) if "mode" in args else usage())
        return 0
    try:
        return MODES[mode_name].run(args)
    except ConfigError as e:  # a value that parsed but is not valid (imgsz=650, device=cuda without CUDA)
        print(f"nas {mode_name}: error: {e}", file=sys.stderr)
        return 2
    except NasError as e:  # missing weights, bad data, ...: the message says what to do
        print(f"nas {mode_name}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"nas {mode_name}: interrupted (Ctrl-C); {_KEPT.get(mode_name, 'files already written are kept')}",
              file=sys.stderr)  # fmt: skip
        return 130  # 128 + SIGINT, as a shell reports a process Ctrl-C stopped
    except Exception as e:
        text = machine_error_text(e)
        if text is None:
            raise
        print(f"nas {mode_name}: error: {text}", file=sys.stderr)
        return 1


_KEPT = {
    "train": "last.pt of the last finished epoch is kept: continue with `nas train resume=<run dir>/last.pt`",
    "predict": "the results so far are in the run directory's predictions.jsonl",
}
