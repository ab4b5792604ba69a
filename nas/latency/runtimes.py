"""One way to time a module per backend: warm-up, repeats, median and spread, fixed threads and input.

Backends: PyTorch eager on the CPU (fp32), onnxruntime on the CPU (fp32; the module is exported to ONNX
with torch's legacy exporter and run with all graph optimizations), PyTorch on CUDA (fp16, replayed as
a CUDA graph; `torch.compile` optional). onnxruntime INT8 timing is not implemented: `precision: int8`
is refused with a clear error. Callers pass the *deployed* module (see `nas.latency.modules`):
timing an unfused network, or eager `predict()` with pre/post-processing, measures something else.
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.errors import ConfigError
from nas.latency.hardware import Hardware, TimingSettings

if TYPE_CHECKING:
    from torch import Tensor, nn

__all__ = [
    "NoiseReport",
    "Runtime",
    "RuntimeUnavailableError",
    "Timing",
    "cpu_name",
    "environment",
    "make_runtime",
    "measure",
    "measure_noise",
    "onnx_bytes",
    "time_runner",
]


class RuntimeUnavailableError(ConfigError):
    """The backend cannot run here (no CUDA device, INT8 not implemented yet, ...)."""


@dataclass(frozen=True)
class Timing:
    """Latency samples of one measurement (ms) and their statistics."""

    samples_ms: tuple[float, ...]

    def _q(self, q: float) -> float:
        return float(np.percentile(self.samples_ms, q))

    @property
    def median_ms(self) -> float:
        return float(statistics.median(self.samples_ms))

    @property
    def p10_ms(self) -> float:
        return self._q(10)

    @property
    def p90_ms(self) -> float:
        return self._q(90)

    @property
    def iqr_ms(self) -> float:
        return self._q(75) - self._q(25)

    @property
    def mean_ms(self) -> float:
        return float(np.mean(self.samples_ms))

    @property
    def cv(self) -> float:
        """Coefficient of variation of the samples (std / mean)."""
        return float(np.std(self.samples_ms) / np.mean(self.samples_ms)) if len(self.samples_ms) > 1 else 0.0

    def summary(self) -> dict[str, float]:
        return {
            "median_ms": round(self.median_ms, 5),
            "p10_ms": round(self.p10_ms, 5),
            "p90_ms": round(self.p90_ms, 5),
            "iqr_ms": round(self.iqr_ms, 5),
            "cv": round(self.cv, 4),
            "n": len(self.samples_ms),
        }

    def __str__(self) -> str:
        return f"{self.median_ms:.3f} ms (p10 {self.p10_ms:.3f}, p90 {self.p90_ms:.3f}, n={len(self.samples_ms)})"


@dataclass(frozen=True)
class NoiseReport:
    """The same model measured several times, from scratch each time: how much the medians disagree."""

    medians_ms: tuple[float, ...]

    @property
    def cv(self) -> float:
        m = np.asarray(self.medians_ms)
        return float(m.std() / m.mean()) if len(m) > 1 else 0.0

    @property
    def max_ratio(self) -> float:
        """Largest / smallest median."""
        return max(self.medians_ms) / min(self.medians_ms)

    def summary(self) -> dict[str, Any]:
        return {
            "medians_ms": [round(m, 5) for m in self.medians_ms],
            "cv": round(self.cv, 4),
            "max_ratio": self.max_ratio,
        }


def time_runner(run: Callable[[], Any], settings: TimingSettings, sync: Callable[[], Any] | None = None) -> Timing:
    """Warm up, then time `run()` (followed by `sync()`) until both `repeats` and `min_time_s` are reached."""
    clock = time.perf_counter if settings.clock == "wall" else time.process_time
    for _ in range(settings.warmup):
        run()
    if sync is not None:
        sync()
    samples: list[float] = []
    total = 0.0
    while len(samples) < settings.repeats or (total < settings.min_time_s and len(samples) < settings.max_repeats):
        t0 = clock()
        run()
        if sync is not None:
            sync()
        dt = clock() - t0
        samples.append(dt * 1e3)
        total += dt
    return Timing(tuple(samples))


class Runtime:
    """A backend that turns a module and its inputs into a zero-argument callable to time."""

    name = "runtime"
    sync: Callable[[], Any] | None = None

    def prepare(self, module: nn.Module, inputs: Sequence[Tensor]) -> Callable[[], Any]:
        raise NotImplementedError

    def context(self) -> contextlib.AbstractContextManager:
        """Process-wide settings (threads, ...) held while measuring, restored afterwards."""
        return contextlib.nullcontext()


class TorchCPURuntime(Runtime):
    name = "torch-cpu-fp32"

    def __init__(self, threads: int):
        self.threads = threads

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        torch.set_flush_denormal(True)
        try:
            yield
        finally:
            torch.set_flush_denormal(False)
            torch.set_num_threads(threads)

    def prepare(self, module: nn.Module, inputs: Sequence[Tensor]) -> Callable[[], Any]:
        import torch

        module = module.eval()
        xs = tuple(inputs)

        def run() -> Any:
            with torch.inference_mode():
                return module(*xs)

        return run


def onnx_bytes(module: nn.Module, inputs: Sequence[Tensor], opset: int = 17) -> bytes:
    """ONNX model of `module` traced on `inputs` (torch's legacy exporter, constants folded).

    Kept here, tiny and self-contained, so that timing does not depend on the export API; once
    `nas.export.onnx` offers an in-memory export of an arbitrary module, this can delegate to it.
    """
    import torch

    buf = io.BytesIO()
    names = [f"x{i}" for i in range(len(inputs))]
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        torch.onnx.export(
            module.eval(),
            tuple(inputs),
            buf,
            input_names=names,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return buf.getvalue()


class OrtCPURuntime(Runtime):
    name = "onnxruntime-cpu-fp32"

    def __init__(self, threads: int):
        self.threads = threads

    def session(self, model: bytes):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.set_denormal_as_zero", "1")
        opts.log_severity_level = 3
        return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])

    def prepare(self, module: nn.Module, inputs: Sequence[Tensor]) -> Callable[[], Any]:
        sess = self.session(onnx_bytes(module, inputs))
        feeds = {i.name: np.ascontiguousarray(x.numpy()) for i, x in zip(sess.get_inputs(), inputs)}
        # Inputs and outputs bound once to fixed buffers: a timed run neither allocates nor copies its
        # outputs, as inside a whole network (where a block's output stays in the runtime's arena).
        outputs = [np.empty_like(y) for y in sess.run(None, feeds)]
        binding = sess.io_binding()
        for name, x in feeds.items():
            binding.bind_cpu_input(name, x)
        for o, y in zip(sess.get_outputs(), outputs):
            binding.bind_output(o.name, "cpu", 0, y.dtype, list(y.shape), y.ctypes.data)

        def run() -> Any:
            sess.run_with_iobinding(binding)
            return outputs

        return run


class TorchCUDARuntime(Runtime):
    """fp16 on a CUDA device; with `cuda_graphs` the whole forward is captured once and replayed."""

    name = "torch-cuda"

    def __init__(self, precision: str = "fp16", cuda_graphs: bool = True, compile: bool = False):
        if precision not in ("fp16", "fp32"):
            raise RuntimeUnavailableError(f"CUDA timing supports precision fp16 or fp32, got {precision!r}")
        self.precision, self.cuda_graphs, self.compile = precision, cuda_graphs, compile

    @property
    def sync(self) -> Callable[[], Any]:  # type: ignore[override]
        import torch

        return torch.cuda.synchronize

    def prepare(self, module: nn.Module, inputs: Sequence[Tensor]) -> Callable[[], Any]:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeUnavailableError("CUDA timing needs a CUDA device; torch.cuda.is_available() is False here")
        dtype = {"fp16": torch.float16, "fp32": torch.float32}[self.precision]
        dev = torch.device("cuda")
        module = module.eval().to(dev, dtype)
        xs = tuple(x.to(dev, dtype) for x in inputs)
        if self.compile:
            module = torch.compile(module, mode="max-autotune-no-cudagraphs")
        with torch.inference_mode():
            if not self.cuda_graphs:
                return lambda: _no_grad_call(module, xs)
            side = torch.cuda.Stream()  # warm up on a side stream before capture, as torch's docs require
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    module(*xs)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = module(*xs)  # lives in the graph's memory pool; kept for the caller

        def run() -> Any:
            graph.replay()
            return static_out

        return run


def _no_grad_call(module: nn.Module, xs: tuple) -> Any:
    import torch

    with torch.inference_mode():
        return module(*xs)


def make_runtime(hw: Hardware) -> Runtime:
    """The runtime that times on `hw` (checked here, not at first use)."""
    if hw.precision == "int8":
        raise RuntimeUnavailableError(
            f"hardware {hw.name!r}: INT8 timing is not implemented in this version; set precision: fp32 "
            f"in {hw.name}.yaml (or time an fp32 target such as cpu_ort)"
        )
    if hw.accelerator == "cuda":
        return TorchCUDARuntime(hw.precision, hw.cuda_graphs, hw.compile)
    if hw.backend == "onnxruntime":
        return OrtCPURuntime(hw.threads or 1)
    return TorchCPURuntime(hw.threads or 1)


def measure(module: nn.Module, inputs: Sequence[Tensor], runtime: Runtime, settings: TimingSettings) -> Timing:
    """Time one module on one runtime."""
    with runtime.context():
        run = runtime.prepare(module, inputs)
        return time_runner(run, settings, runtime.sync)


def measure_noise(
    build: Callable[[], tuple[nn.Module, Sequence[Tensor]]], runtime: Runtime, settings: TimingSettings, times: int = 5
) -> NoiseReport:
    """Measure the same model `times` times, preparing it from scratch each time (session, graph, ...)."""
    medians = []
    for _ in range(times):
        module, inputs = build()
        medians.append(measure(module, inputs, runtime, settings).median_ms)
    return NoiseReport(tuple(medians))


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it (else what `platform` knows): part of every measurement's record."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(hw: Hardware) -> dict[str, Any]:
    """Where a table was measured: CPU/GPU model, cores, library versions."""
    import torch

    env: dict[str, Any] = {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.system(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
    }
    if hw.backend == "onnxruntime":
        import onnx
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
        env["onnx"] = onnx.__version__
    if hw.accelerator == "cuda" and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
    return env
