"""`nas benchmark`: every export format side by side - file size, mAP on a dataset, latency, speed-up.

Each row is exported from the same model (`nas.export.formats.export`, checked as usual), loaded back with its
runtime (`nas.engine.exported`) and validated with the same protocol. Latency: one pre-processed image at
`latency_imgsz`, at 1 thread and at all threads; within one thread count every row runs once per round, round after
round, so load on the machine hits all rows alike, and the median is kept. The speed-up is the FP32 ONNX row's
median over the row's. A row that cannot run here (TensorRT without a GPU) keeps its error and the others go on.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas.data import load_dataset
from nas.engine.exported import load_exported
from nas.engine.val import validate
from nas.export.formats import export, export_metadata
from nas.export.options import VARIANTS, BenchmarkOptions, ExportOptions
from nas.io import write_text_atomic
from nas.latency.device import current_fingerprint
from nas.models.reparam import fuse
from nas.options import merge

__all__ = ["BenchmarkRow", "benchmark", "format_table"]

REFERENCE = "onnx"
_SUFFIX = {"onnx": ".onnx", "openvino": "_openvino_model", "torchscript": ".torchscript", "engine": ".engine"}


@dataclass
class BenchmarkRow:
    """One format: its file, size, accuracy, latency per thread count and speed-up over the FP32 ONNX."""

    name: str
    file: str | None = None
    size_mb: float | None = None
    export_s: float | None = None
    mAP50_95: float | None = None  # percent
    mAP50: float | None = None
    ms: dict[str, float] = field(default_factory=dict)  # threads -> median ms
    speedup: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files) / 1e6


def _export(model: nn.Module, name: str, imgsz: int, work: Path, o: BenchmarkOptions, meta: dict) -> Path:
    fmt, changes = VARIANTS[name]
    eo = ExportOptions(imgsz=imgsz, data=o.data, calib=o.calib, **changes)
    path = work / f"{name}_{imgsz}{_SUFFIX[fmt]}"
    result = export(model, fmt, path, eo, metadata=meta)
    if not result.ok:
        raise RuntimeError(f"export check failed: {result}")
    return Path(result.path)


def _detector(name: str, path: Path | None, torch_model: nn.Module, threads: int) -> nn.Module:
    if path is None:
        return torch_model
    fmt = VARIANTS[name][0]
    if fmt in ("onnx", "openvino"):
        return type(load_exported(path))(path, threads=threads)
    return load_exported(path)


def _time(detectors: dict[str, nn.Module], x: torch.Tensor, threads: int, rounds: int) -> dict[str, float]:
    """Median ms per row, interleaved: each round runs every row once."""
    torch.set_num_threads(threads)  # the torch and TorchScript rows
    samples: dict[str, list[float]] = {k: [] for k in detectors}
    with torch.inference_mode():
        for det in detectors.values():  # warm-up: kernel selection, memory pools
            for _ in range(2):
                det(x.to(getattr(det, "device", x.device)))
        for _ in range(rounds):
            for name, det in detectors.items():
                xi = x.to(getattr(det, "device", x.device))
                t0 = time.perf_counter()
                det(xi)
                if xi.device.type == "cuda":
                    torch.cuda.synchronize()
                samples[name].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in samples.items()}


def benchmark(
    model: nn.Module,
    names: dict[int, str],
    work_dir: str | os.PathLike,
    options: BenchmarkOptions | None = None,
    *,
    log: Any = print,
    timing_context: Any = contextlib.nullcontext,
    **kwargs: Any,
) -> dict[str, Any]:
    """Benchmark `model` (a YOLO-NAS module) in every format of `options.formats`; files go to `work_dir`.

    `timing_context()` is entered around the timed runs only (e.g. to pause other work on the machine).

    Returns {"options", "fingerprint", "rows": [BenchmarkRow as dict], ...} and writes results.json/results.md there.
    """
    o = merge(BenchmarkOptions, options, kwargs, "benchmark")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    lat_imgsz = o.latency_imgsz or o.imgsz
    meta = export_metadata(model.arch, names)
    dataset = load_dataset(o.data, split=o.split)
    fused = fuse(_copy(model), "full")
    rows = {name: BenchmarkRow(name) for name in o.variants}
    lat_files: dict[str, Path | None] = {}
    for name, row in rows.items():
        log(f"[{name}] export, val ...")
        try:
            t0 = time.perf_counter()
            path = None if VARIANTS[name] is None else _export(model, name, o.imgsz, work, o, meta)
            row.export_s = round(time.perf_counter() - t0, 1)
            if path is not None:
                row.file, row.size_mb = str(path), round(_size_mb(path), 2)
                lat_files[name] = path if lat_imgsz == o.imgsz else _export(model, name, lat_imgsz, work, o, meta)
            else:
                lat_files[name] = None
            det = fused if path is None else load_exported(path)
            m = validate(det, dataset, imgsz=o.imgsz, verbose=False)
            row.mAP50_95, row.mAP50 = round(100 * m["mAP50_95"], 2), round(100 * m["mAP50"], 2)
        except Exception as e:  # a format that cannot run here: recorded, the others go on
            row.error = f"{type(e).__name__}: {e}".splitlines()[0]
            log(f"[{name}] {row.error}")
    x = torch.rand(1, 3, lat_imgsz, lat_imgsz, generator=torch.Generator().manual_seed(0))
    thread_counts = sorted({1, os.cpu_count() or 1})
    for threads in thread_counts:
        timed = {n: _detector(n, p, fused, threads) for n, p in lat_files.items() if rows[n].error is None}
        log(f"timing {', '.join(timed)} at {threads} thread(s), {o.rounds} rounds interleaved ...")
        with timing_context():
            measured = _time(timed, x, threads, o.rounds)
        for name, ms in measured.items():
            rows[name].ms[str(threads)] = round(ms, 2)
    for row in rows.values():
        ref = rows.get(REFERENCE)
        for t, ms in row.ms.items():
            if ref is not None and t in ref.ms:
                row.speedup[t] = round(ref.ms[t] / ms, 2)
    fp = current_fingerprint("cuda" if torch.cuda.is_available() else "cpu")
    fp["libs"].update(_versions())
    out = {
        "model": model.arch.name,
        "options": dataclasses.asdict(o),
        "latency_imgsz": lat_imgsz,
        "threads": thread_counts,
        "fingerprint": fp,
        "rows": [dataclasses.asdict(r) for r in rows.values()],
    }
    write_text_atomic(work / "results.json", json.dumps(out, indent=1) + "\n")
    write_text_atomic(work / "results.md", format_table(out) + "\n")
    return out


def _copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).eval().float().cpu()


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    out = {}
    for dist in ("openvino", "nncf", "tensorrt"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def format_table(result: dict[str, Any]) -> str:
    """The Markdown table of a benchmark result (as `benchmark` returns or results.json holds)."""
    threads = [str(t) for t in result["threads"]]
    o = result["options"]
    cpu = result["fingerprint"]["cpu"]
    isa = ", ".join(k for k, v in cpu["isa"].items() if v) or "none"
    head = (
        f"{result['model']} on {o['data']} ({o['split']}), mAP at {o['imgsz']} px, latency at "
        f"{result['latency_imgsz']} px, batch 1, median of {o['rounds']} interleaved runs; CPU {cpu['model_name']} "
        f"(family {cpu['family']}, model {cpu['model']}; {isa}; {cpu['cores']} cores)"
    )
    cols = ["format", "size MB", "mAP50-95", "mAP50"]
    cols += [f"ms @{t} thr" for t in threads] + [f"speed-up @{t} thr" for t in threads]
    lines = [head, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    for r in result["rows"]:
        if r["error"]:
            lines.append(f"| {r['name']} | {r['error']} |" + " |" * (len(cols) - 2))
            continue
        cells = [r["name"], fmt(r["size_mb"], ".1f"), fmt(r["mAP50_95"], ".2f"), fmt(r["mAP50"], ".2f")]
        cells += [fmt(r["ms"].get(t), ".1f") for t in threads]
        cells += [fmt(r["speedup"].get(t), ".2f") + ("x" if r["speedup"].get(t) is not None else "") for t in threads]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
