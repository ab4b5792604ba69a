"""Drift-free timing: each network measured interleaved with a fixed reference network in the same time window.

On a machine whose speed drifts (shared hosts, turbo, thermal limits) two measurements of one network
taken minutes apart disagree by more than predictors differ. Timed in alternation with a reference
(the released S), run by run, both see the same machine: the ratio network / reference is stable even
when the milliseconds are not. Both are kept: the median ms of each, and the median of the per-round
ratios. Results are written one JSON per network as they finish, so a killed run continues.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from nas.io import write_text_atomic
from nas.latency.hardware import Hardware
from nas.latency.modules import deployed_model
from nas.latency.runtimes import make_runtime
from nas.space.schema import ArchConfig

__all__ = ["measure_pairs"]


def _prepared(arch: ArchConfig, hw: Hardware, runtime: Any) -> Callable[[], Any]:
    model, inputs = deployed_model(arch, hw.input_hw, hw.batch)
    return runtime.prepare(model, inputs)


def measure_pairs(
    archs: Iterable[ArchConfig],
    hw: Hardware,
    reference: ArchConfig,
    rounds: int = 7,
    warmup: int = 2,
    out_dir: str | Path | None = None,
    progress: bool = False,
    desc: str = "pairs",
) -> list[dict[str, Any]]:
    """Time every arch alternating with `reference`, `rounds` runs each; one result dict per arch.

    Each dict: median ms of the network and of the reference in that window, the median of the per-round
    ratios (network / reference), the samples. With `out_dir`, results already there are reused (resume).
    """
    archs = list(archs)
    store = Path(out_dir) if out_dir is not None else None
    runtime = make_runtime(hw)
    sync = runtime.sync or (lambda: None)

    def once(run: Callable[[], Any]) -> tuple[float, float]:
        """(wall ms, process CPU ms) of one run: the second hardly sees other jobs on a shared machine."""
        t0, c0 = time.perf_counter(), time.process_time()
        run()
        sync()
        return (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3

    results: list[dict[str, Any]] = []
    with runtime.context():
        ref_run: Callable[[], Any] | None = None
        for arch in tqdm(archs, desc=desc, disable=not progress, unit="net"):
            path = store / f"{arch.digest()}.json" if store is not None else None
            if path is not None and path.is_file():
                results.append(json.loads(path.read_text()))
                continue
            if ref_run is None:
                ref_run = _prepared(reference, hw, runtime)
            t0 = time.monotonic()
            run = _prepared(arch, hw, runtime)
            for _ in range(warmup):
                run()
                ref_run()
            sync()
            net, ref = [], []
            for r in range(rounds):  # alternate which goes first: neither always follows the other
                first, second = (run, ref_run) if r % 2 == 0 else (ref_run, run)
                a, b = once(first), once(second)
                net.append(a if r % 2 == 0 else b)
                ref.append(b if r % 2 == 0 else a)
            res = {"name": arch.name, "digest": arch.digest(), "reference": reference.name, "clock": hw.timing.clock}
            for i, clock in enumerate(("", "cpu_")):  # wall clock, then process CPU time
                net_ms, ref_ms = [t[i] for t in net], [t[i] for t in ref]
                res[f"{clock}net_ms"] = statistics.median(net_ms)
                res[f"{clock}ref_ms"] = statistics.median(ref_ms)
                res[f"{clock}ratio"] = statistics.median(n / m for n, m in zip(net_ms, ref_ms))
                res[f"{clock}net_samples_ms"] = [round(v, 4) for v in net_ms]
                res[f"{clock}ref_samples_ms"] = [round(v, 4) for v in ref_ms]
            res |= {
                "seconds": round(time.monotonic() - t0, 2),
                "finished": time.time(),
            }
            if path is not None:
                write_text_atomic(path, json.dumps(res, indent=1) + "\n")
            results.append(res)
    return results
