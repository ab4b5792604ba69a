from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from nas.latency.hardware import TimingSettings, load_hardware
from nas.latency.runtimes import (
    OrtCPURuntime,
    RuntimeUnavailableError,
    Timing,
    TorchCPURuntime,
    TorchCUDARuntime,
    environment,
    make_runtime,
    measure,
    measure_noise,
    onnx_bytes,
    time_runner,
)

FAST = TimingSettings(warmup=2, repeats=5)


def tiny_model() -> tuple[nn.Module, tuple[torch.Tensor]]:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1)).eval()
    return m, (torch.rand(1, 3, 32, 32),)


def test_timing_statistics_on_known_samples():
    t = Timing(tuple(float(x) for x in range(1, 11)))  # 1..10 ms
    assert t.median_ms == 5.5
    assert t.p10_ms == pytest.approx(1.9)
    assert t.p90_ms == pytest.approx(9.1)
    assert t.iqr_ms == pytest.approx(4.5)
    assert t.cv == pytest.approx(np.std(np.arange(1, 11)) / 5.5)
    s = t.summary()
    assert s["n"] == 10 and s["median_ms"] == 5.5
    assert Timing((3.0,)).cv == 0.0


def test_time_runner_counts_warmup_repeats_and_min_time(monkeypatch):
    calls = []
    t = time_runner(lambda: calls.append(1), TimingSettings(warmup=3, repeats=4))
    assert len(calls) == 7 and len(t.samples_ms) == 4
    synced = []
    calls.clear()
    now = [0.0]  # a fake clock: each run takes exactly 2 ms, however loaded the machine is
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(time, "process_time", lambda: now[0])

    def slow() -> None:
        calls.append(1)
        now[0] += 0.002

    t = time_runner(slow, TimingSettings(warmup=0, repeats=1, min_time_s=0.02), sync=lambda: synced.append(1))
    assert len(t.samples_ms) == 10 and sum(t.samples_ms) >= 20.0 - 1e-9  # kept repeating until 20 ms were measured
    assert len(synced) == len(calls) + 1  # a sync after warm-up, then after every timed run
    t = time_runner(lambda: None, TimingSettings(warmup=0, repeats=1, min_time_s=10.0, max_repeats=50))
    assert len(t.samples_ms) == 50  # bounded


@pytest.mark.parametrize("runtime", [TorchCPURuntime(1), OrtCPURuntime(1)], ids=["torch", "onnxruntime"])
def test_measure_a_tiny_model(runtime):
    m, x = tiny_model()
    before = torch.get_num_threads()
    t = measure(m, x, runtime, FAST)
    assert torch.get_num_threads() == before  # the runtime's thread count is held only while measuring
    assert len(t.samples_ms) == 5
    assert 0 < t.p10_ms <= t.median_ms <= t.p90_ms
    assert t.cv >= 0


def test_onnxruntime_runs_the_exported_module_and_agrees_with_torch():
    m, x = tiny_model()
    sess = OrtCPURuntime(1).session(onnx_bytes(m, x))
    (y,) = sess.run(None, {"x0": x[0].numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(y, m(*x).numpy(), rtol=1e-4, atol=1e-5)
    opts = sess.get_session_options()
    assert opts.intra_op_num_threads == 1
    run = OrtCPURuntime(1).prepare(m, x)  # io-bound: outputs land in the same buffers every run
    (first,) = run()
    (second,) = run()
    assert first is second
    np.testing.assert_allclose(second, y, rtol=1e-6)


def test_measure_noise_remeasures_from_scratch():
    built = []

    def build():
        built.append(1)
        return tiny_model()

    r = measure_noise(build, TorchCPURuntime(1), FAST, times=3)
    assert len(built) == 3 and len(r.medians_ms) == 3
    assert r.cv >= 0 and r.max_ratio >= 1
    assert set(r.summary()) == {"medians_ms", "cv", "max_ratio"}


def test_make_runtime_per_hardware():
    assert isinstance(make_runtime(load_hardware("cpu_ort")), OrtCPURuntime)
    assert isinstance(make_runtime(load_hardware("cpu_torch")), TorchCPURuntime)
    cuda = make_runtime(load_hardware("cuda_fp16"))  # constructing it needs no GPU
    assert isinstance(cuda, TorchCUDARuntime) and cuda.cuda_graphs and cuda.precision == "fp16"
    assert make_runtime(load_hardware("cpu_ort")).threads == 1


def test_int8_runs_in_onnxruntime_only():
    from nas.latency.runtimes import OrtCPUInt8Runtime

    assert isinstance(make_runtime(load_hardware("cpu_ort", precision="int8")), OrtCPUInt8Runtime)
    with pytest.raises(RuntimeUnavailableError, match=r"INT8 timing runs in onnxruntime"):
        make_runtime(load_hardware("cpu_torch", precision="int8"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_runtime_without_a_gpu_says_so():
    m, x = tiny_model()
    with pytest.raises(RuntimeUnavailableError, match="CUDA"):
        TorchCUDARuntime().prepare(m, x)


@pytest.mark.gpu
def test_cuda_graph_replay_matches_eager_and_times():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    m, x = tiny_model()
    rt = TorchCUDARuntime("fp16", cuda_graphs=True)
    run = rt.prepare(m, x)
    eager = TorchCUDARuntime("fp16", cuda_graphs=False)
    expected = _tensors(eager.prepare(m, x)())
    t = time_runner(run, FAST, rt.sync)  # replays the graph
    got = _tensors(run())
    torch.cuda.synchronize()
    assert len(got) == len(expected) > 0 and all(g.shape == e.shape for g, e in zip(got, expected))
    assert all(e.abs().max() > 0 and torch.allclose(g, e, rtol=1e-3, atol=1e-3) for g, e in zip(got, expected))
    assert len(t.samples_ms) == 5 and t.median_ms > 0
    t2 = measure(m, x, eager, FAST)
    assert t2.median_ms > 0


def _tensors(out) -> list[torch.Tensor]:
    """The output tensors of a forward (a tensor or nested tuples/lists of them), as float32 copies."""
    if isinstance(out, torch.Tensor):
        return [out.detach().float().clone()]
    return [t for o in out for t in _tensors(o)]


def test_environment_names_the_machine_and_libraries():
    env = environment(load_hardware("cpu_ort"))
    assert env["cpu"] and env["cpu_count"] >= 1
    assert {"torch", "onnxruntime", "onnx", "numpy", "python"} <= set(env)
    assert "onnxruntime" not in environment(load_hardware("cpu_torch"))


def test_the_cuda_path_modules_run_in_fp16():
    """What TorchCUDARuntime does to a module (`.to(dtype=float16)`), checked on the CPU for every unit kind."""
    from nas.latency.modules import deployed_model, unit_module
    from nas.latency.units import decompose

    from .conftest import tiny_arch

    arch = tiny_arch()
    units = {u.kind: u for u in decompose(arch, 64)}
    assert set(units) == {"conv", "upsample", "csp_in", "bottlenecks", "concat_conv", "spp", "decode"}
    cases = [unit_module(u) for u in units.values()] + [deployed_model(arch, (64, 64))]
    for module, inputs in cases:
        with torch.inference_mode():
            ref = module(*inputs)
            half = module.to(torch.float16)(*(x.half() for x in inputs))
        flat_ref, flat_half = torch.utils._pytree.tree_leaves(ref), torch.utils._pytree.tree_leaves(half)
        assert flat_half[0].dtype == torch.float16  # (the training-time anchors stay float32 by design)
        for r, h in zip(flat_ref, flat_half):
            if isinstance(r, torch.Tensor) and r.is_floating_point():
                torch.testing.assert_close(h.float(), r, rtol=2e-2, atol=0.25)
