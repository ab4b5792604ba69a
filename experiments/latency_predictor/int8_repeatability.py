"""Why do INT8 timings not repeat? The same network, several fresh onnxruntime sessions, timed interleaved.

The held-out validation re-measures the same (seeded, identical) network 20 minutes later; on `cpu_ort_int8` only
30% of those repeats agreed within ±5% (fp32: 100%). The graph is byte-identical each time (deployed_model is
seeded, the quantizer deterministic), so the spread is in the timing. This separates its two parts: within a
session (round to round) and between sessions of the same model (what a new `prepare` gets: its own weight
packing and memory placement). Both precisions, same windows, so machine drift hits all alike.

    python experiments/latency_predictor/int8_repeatability.py sessions=6 rounds=15 > int8_repeat.log
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from nas.io import write_text_atomic  # noqa: E402
from nas.latency.device import current_fingerprint, describe  # noqa: E402
from nas.latency.hardware import load_hardware  # noqa: E402
from nas.latency.modules import deployed_model  # noqa: E402
from nas.latency.runtimes import make_runtime  # noqa: E402
from nas.options import from_args  # noqa: E402
from nas.space.io import load_arch  # noqa: E402


@dataclass(frozen=True)
class Options:
    sessions: int = 6  # fresh onnxruntime sessions per network and precision
    rounds: int = 15  # timed rounds over every session
    nets: str = "yolo_nas_s"  # comma-separated architecture names
    machine: str = "machine_b_idle"  # results/<machine>/int8_repeatability.json


def spread(medians: list[float]) -> dict[str, float]:
    m = statistics.median(medians)
    return {
        "median_ms": m,
        "max_over_min": max(medians) / min(medians),
        "max_abs_dev_pct": 100 * max(abs(v / m - 1) for v in medians),
        "within_5pct_of_median": sum(abs(v / m - 1) <= 0.05 for v in medians) / len(medians),
    }


def main(argv: list[str]) -> int:
    opts = from_args(Options, argv, "int8_repeatability.py")
    k, rounds = opts.sessions, opts.rounds
    nets = opts.nets.split(",")
    out: dict = {"sessions": k, "rounds": rounds, "load_avg_start": os.getloadavg()[0], "networks": {}}
    fp = current_fingerprint("cpu")
    out["machine"] = describe(fp)
    for net in nets:
        arch = load_arch(net)
        res = {}
        runs = {}
        for target in ("cpu_ort", "cpu_ort_int8"):
            hw = load_hardware(target)
            rt = make_runtime(hw)
            model, inputs = deployed_model(arch, hw.input_hw, hw.batch)
            t0 = time.monotonic()
            runs[target] = [rt.prepare(model, inputs) for _ in range(k)]
            res[target] = {"prepare_s_each": (time.monotonic() - t0) / k}
        samples = {t: [[] for _ in range(k)] for t in runs}
        for t in runs:  # warm-up: every session 3 runs
            for r in runs[t]:
                for _ in range(3):
                    r()
        for i in range(rounds):  # round-robin over every session of both precisions
            order = [(t, j) for t in runs for j in range(k)]
            if i % 2:
                order.reverse()
            for t, j in order:
                c0 = time.process_time()
                runs[t][j]()
                samples[t][j].append((time.process_time() - c0) * 1e3)
        for t in runs:
            per = samples[t]
            med = [statistics.median(s) for s in per]
            within = [statistics.stdev(s) / statistics.mean(s) for s in per]
            res[t].update(
                session_medians_ms=med,
                between_sessions=spread(med),
                within_session_cv_median=statistics.median(within),
                # the validation's way: 5-round medians of one session, taken at different times
                five_round_medians_session0=[statistics.median(per[0][i : i + 5]) for i in range(0, rounds - 4, 5)],
            )
        out["networks"][net] = res
        print(
            net,
            json.dumps({t: res[t]["between_sessions"] | {"cv": res[t]["within_session_cv_median"]} for t in res}),
            flush=True,
        )
    out["load_avg_end"] = os.getloadavg()[0]
    dest = HERE / "results" / opts.machine / "int8_repeatability.json"
    write_text_atomic(dest, json.dumps(out, indent=1) + "\n")
    print(f"-> {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
