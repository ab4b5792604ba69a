"""`nas MODE key=value ...`: the command line of the model zoo (ultralytics-style).

    nas predict model=yolo_nas_s.pt source=img.jpg conf=0.3
    nas val model=yolo_nas_s.pt data=synthetic
    nas info model=yolo_nas_s.pt detailed=true
    nas export model=yolo_nas_s.pt format=onnx nms=true
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
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.errors import ConfigError, NasError

__all__ = ["MODES", "Key", "Mode", "increment_dir", "main", "parse_args"]


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _int(text: str) -> int:
    return int(text)


def _float(text: str) -> float:
    return float(text)


def _str(text: str) -> str:
    if not text:
        raise ValueError("expected a non-empty value")
    return text


def _int_list(text: str) -> list[int]:
    return [int(t) for t in text.strip("[]() ").replace(" ", "").split(",") if t]


_TYPE_NAMES = {
    _bool: "true or false",
    _int: "an integer",
    _float: "a number",
    _str: "a string",
    _int_list: "integers like 0,2,5",
}


@dataclass(frozen=True)
class Key:
    parse: Callable[[str], Any]
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    optional: bool = False  # "none" / "null" give None

    def convert(self, name: str, text: str) -> Any:
        if self.optional and text.lower() in ("none", "null"):
            return None
        try:
            value = self.parse(text)
        except ValueError:
            raise ConfigError(f"{name}={text!r}: expected {_TYPE_NAMES[self.parse]}") from None
        if self.choices and value not in self.choices:
            raise ConfigError(f"{name}={text!r}: expected one of {', '.join(self.choices)}")
        return value


@dataclass(frozen=True)
class Mode:
    run: Callable[[dict[str, Any]], int]
    help: str
    keys: dict[str, Key] = field(default_factory=dict)


_MODEL = {
    "model": Key(_str, "yolo_nas_s", "checkpoint path, released name, or ArchConfig YAML"),
    "weights": Key(
        _str,
        None,
        "initial weights of an ArchConfig YAML model: released name, checkpoint path or auto (inherited)",
        optional=True,
    ),
}
_HARDWARE = {"hardware": Key(_str, "cpu_ort", "latency target (python -m nas.latency list)", optional=True)}
_DEVICE = {"device": Key(_str, None, "cpu, cuda, cuda:N or N (default: cpu)", optional=True)}
_RUN_DIR = {
    "project": Key(_str, "runs", "parent of the run directories"),
    "name": Key(_str, "exp", "run directory name (exp, exp2, ... when taken)"),
    "exist_ok": Key(_bool, False, "reuse runs/<mode>/<name> instead of incrementing"),
}
_NMS = {
    "iou": Key(_float, 0.7, "NMS IoU threshold"),
    "max_det": Key(_int, 300, "detections kept per image"),
    "half": Key(_bool, False, "fp16 inference (CUDA only)"),
}


def increment_dir(path: Path, exist_ok: bool = False) -> Path:
    """`path` if free (or exist_ok), else path2, path3, ... (created)."""
    if not exist_ok and path.exists():
        for n in range(2, 10_000):
            candidate = path.with_name(f"{path.name}{n}")
            if not candidate.exists():
                path = candidate
                break
        else:
            raise ConfigError(f"{path}: 9,999 run directories exist; choose another name= or project=")
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_inputs(args: dict[str, Any]) -> None:
    """Validate sizes and thresholds before a model is loaded or a run directory created."""
    from nas.engine.predict import check_imgsz, check_thresholds

    check_imgsz(args["imgsz"])
    check_thresholds(args["conf"], args["iou"], args["max_det"])


def _model(args: dict[str, Any]):
    from nas.api import NAS

    model = NAS(args["model"], weights=args.get("weights"))
    if model.inherited is not None:
        print(model.inherited.summary())
    if args.get("device"):
        model.to(args["device"])
    return model


def _predict_chunk(model, items: list[Any], args: dict[str, Any], bad: list[tuple[str, str]]) -> list[Any]:
    """Results of `items`; an unreadable image is recorded in `bad` and skipped (the others still run)."""
    from nas.errors import DataError

    opts = {k: args[k] for k in ("conf", "iou", "imgsz", "max_det", "classes", "agnostic", "preprocess", "half")}
    try:
        return list(model.predict(items, batch=len(items), stream=True, **opts))
    except DataError as e:
        if len(items) == 1:
            bad.append((str(items[0]), str(e)))
            print(f"nas predict: skipped {items[0]}: {e}", file=sys.stderr)
            return []
    return [r for item in items for r in _predict_chunk(model, [item], args, bad)]  # find the bad one(s)


def _run_predict(args: dict[str, Any]) -> int:
    from nas.engine.sources import resolve_source
    from nas.io import write_text_atomic

    check_inputs(args)
    items = resolve_source(args["source"]) if args["source"] is not None else None
    model = _model(args)
    if items is None:  # the API's default source (a few synthetic images)
        from nas.api import _default_source

        items = _default_source()
    save_dir: Path | None = None  # created with the first result: a run that fails before has no directory
    records: list[dict[str, Any]] = []
    bad: list[tuple[str, str]] = []
    step = max(1, args["batch"])
    for start in range(0, len(items), step):
        for r in _predict_chunk(model, items[start : start + step], args, bad):
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
    from nas.engine.val import validate

    check_inputs(args)
    dataset = load_dataset(args["data"], split=args["split"])
    model = _model(args)
    save_dir = increment_dir(Path(args["project"]) / "val" / args["name"], args["exist_ok"])
    try:
        metrics = validate(
            model.model,
            dataset,
            imgsz=args["imgsz"],
            batch=args["batch"],
            conf=args["conf"],
            iou=args["iou"],
            max_det=args["max_det"],
            protocol=args["protocol"],
            half=args["half"],
            save_dir=save_dir,
        )
    except BaseException:
        if not any(save_dir.iterdir()):  # failed before writing anything: leave no empty run directory
            save_dir.rmdir()
        raise
    print(f"mAP50-95 {metrics['mAP50_95']:.4f}, mAP50 {metrics['mAP50']:.4f}; results saved to {save_dir}")
    return 0


def _run_info(args: dict[str, Any]) -> int:
    model = _model(args)
    if args["fuse"]:
        model.fuse()
    model.info(detailed=args["detailed"], imgsz=args["imgsz"], hardware=args["hardware"])
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

        timing = measure_archs([arch], hw)[0]
        error = (predicted - timing["median_ms"]) / timing["median_ms"]
        print(
            f"measured {timing['median_ms']:.2f} ms (p10 {timing['p10_ms']:.2f}, p90 {timing['p90_ms']:.2f}, "
            f"{timing['n']} runs); prediction error {error:+.1%}"
        )
    return 0


def _run_export(args: dict[str, Any]) -> int:
    model = _model(args)
    steps = "fuse, trace, check against torch in onnxruntime" if args["fuse"] else "trace, check in onnxruntime"
    print(f"exporting {model.arch.name} to {args['format']} at {args['imgsz']}px ({steps}) ...", flush=True)
    model.export(
        args["format"],
        file=args["file"],
        imgsz=args["imgsz"],
        batch=args["batch"],
        half=args["half"],
        dynamic=args["dynamic"],
        fuse=args["fuse"],
        nms=args["nms"],
        conf=args["conf"],
        iou=args["iou"],
        max_det=args["max_det"],
        opset=args["opset"],
    )
    return 0 if model.last_export.ok else 1


MODES: dict[str, Mode] = {
    "predict": Mode(
        _run_predict,
        "detect objects in images; writes annotated images and predictions.json to runs/predict/exp*",
        {
            **_MODEL,
            "source": Key(_str, None, "image file, directory or glob (default: synthetic images)", optional=True),
            "conf": Key(_float, 0.25, "confidence threshold"),
            **_NMS,
            "imgsz": Key(_int, 640, "inference size (multiple of 32)"),
            "batch": Key(_int, 1, "images per forward"),
            "classes": Key(_int_list, None, "keep only these class ids, e.g. 0,2", optional=True),
            "agnostic": Key(_bool, False, "class-agnostic NMS"),
            "preprocess": Key(_str, "ultralytics", "letterbox: ultralytics or sg", ("ultralytics", "sg")),
            "save": Key(_bool, True, "save annotated images"),
            **_DEVICE,
            **_RUN_DIR,
        },
    ),
    "val": Mode(
        _run_val,
        "COCO mAP (pycocotools) on a dataset; writes metrics.json and predictions.json to runs/val/exp*",
        {
            **_MODEL,
            "data": Key(_str, "synthetic", "synthetic, a data YAML (coco8.yaml, ...) or a COCO JSON"),
            "split": Key(_str, "val", "dataset split"),
            "imgsz": Key(_int, 640, "validation size (multiple of 32)"),
            "batch": Key(_int, 8, "images per forward"),
            "conf": Key(_float, None, "confidence threshold (default: 0.001 ultralytics, 0.01 sg)", optional=True),
            **_NMS,
            "protocol": Key(_str, "ultralytics", "pre-processing protocol", ("ultralytics", "sg")),
            **_DEVICE,
            **_RUN_DIR,
        },
    ),
    "info": Mode(
        _run_info,
        "layers, parameters, gradients and GFLOPs (fvcore)",
        {
            **_MODEL,
            "imgsz": Key(_int, 640, "input size for the GFLOPs count"),
            "detailed": Key(_bool, False, "per-layer table"),
            "fuse": Key(_bool, False, "fuse (re-parameterize) before counting"),
            **_HARDWARE,
            **_DEVICE,
        },
    ),
    "latency": Mode(
        _run_latency,
        "predicted (and measured) latency of the deployed network on a hardware target",
        {
            "model": _MODEL["model"],
            **_HARDWARE,
            "measure": Key(_bool, False, "also measure it end to end on this machine (the target's runtime)"),
        },
    ),
    "export": Mode(
        _run_export,
        "write an ONNX file checked against torch in onnxruntime",
        {
            **_MODEL,
            "format": Key(_str, "onnx", "export format", ("onnx",)),
            "file": Key(_str, None, "output path (default: beside the checkpoint)", optional=True),
            "imgsz": Key(_int, 640, "input size (multiple of 32)"),
            "batch": Key(_int, 1, "batch size of the graph"),
            "dynamic": Key(_bool, False, "dynamic batch, height and width"),
            "fuse": Key(_bool, True, "fuse before export"),
            "nms": Key(_bool, False, "NMS in the graph (outputs num_dets, boxes, scores, classes)"),
            "conf": Key(_float, 0.25, "in-graph NMS confidence threshold"),
            **_NMS,
            "opset": Key(_int, None, "ONNX opset (default 17)", optional=True),
            **_DEVICE,
        },
    ),
}

# Modes whose arguments belong to another parser: `nas search ...` is the Hydra app (overrides, -m),
# `nas space ...` prints a search space. Their arguments are passed through untouched.
PASS_THROUGH = {
    "search": ("nas.search", "architecture search: the Hydra app (python -m nas.search +space=yolo_nas ...)"),
    "space": ("nas.space", "print a search space's dimensions and size (+space=yolo_nas)"),
}


def mode_usage(name: str) -> str:
    """The keys of one mode, with their defaults (`nas MODE --help`)."""
    if name in PASS_THROUGH:
        module, help_text = PASS_THROUGH[name]
        return f"nas {name}: {help_text}\n(its options: python -m {module} --help)"
    mode = MODES[name]
    return "\n".join([f"usage: nas {name} key=value ...", "", mode.help, "", "keys:", *_key_lines(mode)])


def _key_lines(mode: Mode) -> list[str]:
    lines = []
    for key, spec in mode.keys.items():
        text = spec.help
        if "default" not in text:  # a help text that already names its default says it once
            text += f" [default: {'none' if spec.default is None else spec.default}]"
        lines.append(f"  {key + '=':<12} {text}")
    return lines


def usage() -> str:
    lines = ["usage: nas MODE key=value ...", "", "modes:"]
    for name, mode in MODES.items():
        lines.append(f"  {name:<8} {mode.help}")
    for name, (_module, help_text) in PASS_THROUGH.items():
        lines.append(f"  {name:<8} {help_text}")
    lines.append(f"  {'help':<8} this message (nas MODE --help: one mode's keys)")
    for name, mode in MODES.items():
        lines += ["", f"nas {name} keys:", *_key_lines(mode)]
    lines += ["", "example: nas predict model=yolo_nas_s.pt source=images/ conf=0.3"]
    return "\n".join(lines)


def _run_module(module: str, argv: list[str]) -> int:
    """`python -m module argv...` in this process: signals (Ctrl-C, SIGTERM, SIGHUP) reach the search directly,
    and a killed `nas` leaves no child behind that would race a re-run on the same study."""
    import runpy

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
    args = {key: spec.default for key, spec in mode.keys.items()}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise ConfigError(f"argument {pair!r} is not key=value; valid keys for {mode_name}: {', '.join(mode.keys)}")
        key = key.strip().lstrip("-").replace("-", "_")
        if key not in mode.keys:
            raise ConfigError(f"unknown key {key!r} for nas {mode_name}; valid keys: {', '.join(mode.keys)}")
        args[key] = mode.keys[key].convert(key, text.strip())
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
