"""Measurements on *this* machine for the latency validation: calibrate, then interleaved held-out networks.

Stages run in order, each resumable (one JSON per network under results/<machine>/<target>/<set>/):

    calibrate:<target>          `nas.latency.calibrate` (n=8) into results/<machine>/calibrations/
    pairs:<target>:<set>:<n>    networks of <set> timed interleaved with the released S
                                heldout: n seeded held-out networks (seed 1, disjoint from the table's
                                calibration networks) + S/M/L; again: the first n of heldout, re-measured
                                after all of them (the noise floor); calib: the table's first n calibration
                                networks (to fit a calibration for a target without shipped one, 2 threads)

<target> is a shipped hardware name, or cpu_ort_2t / cpu_torch_2t (the same with threads: 2).

    nohup python experiments/latency_predictor/measure_here.py machine=machine_b \\
        calibrate:cpu_ort pairs:cpu_ort:heldout:48 pairs:cpu_ort:again:12 > measure.log 2>&1 &
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from nas.io import write_text_atomic  # noqa: E402
from nas.latency.device import current_fingerprint, describe  # noqa: E402
from nas.latency.hardware import Hardware, load_hardware  # noqa: E402
from nas.options import from_args  # noqa: E402
from nas.space.io import load_arch  # noqa: E402


@dataclass(frozen=True)
class Options:
    """The `key=value` arguments; the others are stages."""

    machine: str = "machine_b"  # results/<machine>/
    rounds: int = 5  # pairs: interleaved rounds per network


def target(name: str) -> tuple[Hardware, str]:
    """(hardware to time on, name of the shipped table whose units predict it)."""
    if name.endswith("_2t"):
        base = name[: -len("_2t")]
        return load_hardware(base, threads=2, name=name), base
    return load_hardware(name), name


def archs_of(table_name: str, which: str, n: int) -> list:
    from nas.latency.tables import LatencyTable
    from nas.latency.validate import validation_archs
    from nas.space.space import load_space

    table = LatencyTable.load(table_name)
    space = load_space("yolo_nas")
    if which == "calib":  # the networks `calibrate n=...` measures
        from nas.latency.calibrate import spread_networks

        return spread_networks(table, space, n, 0)
    held = validation_archs(space, 48 if which == "again" else n, 1, set(table.calibration_archs))
    return held[:n] if which == "again" else held


def main(argv: list[str]) -> int:
    opts = from_args(Options, [a for a in argv if "=" in a], "measure_here.py")
    stages = [a for a in argv if "=" not in a]
    root = HERE / "results" / opts.machine
    root.mkdir(parents=True, exist_ok=True)
    os.environ["NAS_LATENCY_DIR"] = str(root / "calibrations")
    fp = current_fingerprint("cpu")
    write_text_atomic(root / "fingerprint.json", json.dumps({**fp, "device": describe(fp)}, indent=1) + "\n")
    s = load_arch("yolo_nas_s")
    for stage in stages:
        kind, name, *rest = stage.split(":")
        hw, table_name = target(name)
        t0 = time.monotonic()
        if kind == "calibrate":
            from nas.latency.calibrate import calibrate

            done = list((root / "calibrations").glob(f"{hw.name}.*.calibration.json"))
            if done:
                print(f"{stage}: already done ({done[0].name})", flush=True)
                continue
            r = calibrate(hw, n=int(rest[0]) if rest else 8, progress=False)
            print(f"{stage}: {r['method']} loo {r['fit']['loo_rel_rmse']:.2%}, {r['measure_seconds']} s", flush=True)
        elif kind == "pairs":
            from nas.latency.interleave import measure_pairs

            which, n = rest[0], int(rest[1])
            archs = archs_of(table_name, which, n)
            out = root / hw.name / which
            measure_pairs(archs, hw, s, rounds=opts.rounds, warmup=1, out_dir=out, progress=False)
            print(f"{stage}: {len(archs)} networks", flush=True)
        else:
            raise SystemExit(f"unknown stage {stage!r}")
        print(f"{stage}: {time.monotonic() - t0:.0f} s wall", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
