"""The GPU latency table in one short lease: cuda_fp16 on the device found, within a time budget, resumable.

Run on a machine with a CUDA GPU (about 10 minutes on an H200; every stage continues where it stopped):

    PYTHONUNBUFFERED=1 python experiments/latency_predictor/gpu_table.py budget_s=540 [n_cal=20] [n_val=20]

Stages, most useful first, each skipped when its result is already there:
1. S/M/L fp16 at 640, batch 1: eager PyTorch vs the same network replayed as a CUDA graph (the seed's
   T4 TensorRT numbers are 3.21 / 5.85 / 7.87 ms);
2. the reduced unit set: the units of S/M/L, of `n_cal` calibration and `n_val` held-out networks;
3. calibration on the `n_cal` networks measured end to end;
4. validation on the `n_val` networks, each interleaved with S (ms and ratio form, noise floor on 5);
5. the remaining units of the space, shuffled, until `budget_s` is spent (the table stays partial
   otherwise; `python -m nas.latency build hardware=cuda_fp16` completes it on a later lease).

Writes nas/latency/tables/cuda_fp16_<gpu>.json and experiments/latency_predictor/results/gpu_<gpu>/
(gpu.json, gpu.md, validation.json/png); with $OUT set (the device tool) copies them there as well.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import numpy as np  # noqa: E402

from nas.io import write_text_atomic  # noqa: E402
from nas.latency.device import current_fingerprint, describe, device_slug  # noqa: E402
from nas.options import from_args  # noqa: E402

SEED_T4_TRT_MS = {"yolo_nas_s": 3.21, "yolo_nas_m": 5.85, "yolo_nas_l": 7.87}


def sml_eager_vs_graphs(hw, out: Path) -> dict:
    """Median ms of S/M/L, eager fp16 and CUDA-graph fp16 (each from a fresh model)."""
    import dataclasses

    from nas.latency.build import measure_archs
    from nas.space.io import RELEASED, load_arch

    path = out / "sml.json"
    if path.is_file():
        return json.loads(path.read_text())
    archs = [load_arch(n) for n in RELEASED]
    res = {}
    for mode, graphs in (("eager", False), ("cuda_graph", True)):
        for a, t in zip(archs, measure_archs(archs, dataclasses.replace(hw, cuda_graphs=graphs))):
            res.setdefault(a.name, {})[f"{mode}_ms"] = t["median_ms"]
            res[a.name][f"{mode}_p90_ms"] = t["p90_ms"]
    for name, r in res.items():
        r["seed_t4_tensorrt_ms"] = SEED_T4_TRT_MS[name]
    write_text_atomic(path, json.dumps(res, indent=1) + "\n")
    return res


@dataclass(frozen=True)
class Options:
    budget_s: float = 540.0  # seconds of the lease this script may use
    n_cal: int = 20  # calibration networks
    n_val: int = 20  # held-out validation networks


def main(argv: list[str]) -> int:
    opts = from_args(Options, argv, "gpu_table.py")
    budget = opts.budget_s
    n_cal, n_val = opts.n_cal, opts.n_val
    t_start = time.monotonic()
    fp = current_fingerprint("cuda")
    slug = device_slug(fp)
    if not slug:
        print("no CUDA device visible (torch.cuda.is_available() is False): nothing to build here", file=sys.stderr)
        return 2
    from nas.latency.build import build_table, calibrate_table
    from nas.latency.hardware import load_hardware
    from nas.latency.predictor import calibration_archs
    from nas.latency.spacemap import SpaceMap
    from nas.latency.tables import LatencyTable
    from nas.latency.units import decompose
    from nas.latency.validate import validate, validation_archs
    from nas.space.space import load_space

    hw = load_hardware("cuda_fp16")
    space = load_space("yolo_nas")
    out = HERE / "results" / f"gpu_{slug}"
    out.mkdir(parents=True, exist_ok=True)
    print(f"{describe(fp, 'cuda')}; table {hw.table_path}", flush=True)

    sml = sml_eager_vs_graphs(hw, out)
    print(f"[{time.monotonic() - t_start:.0f} s] S/M/L eager vs graphs: {sml}", flush=True)

    cal = calibration_archs(space, n_cal, 0)
    val = validation_archs(space, n_val, 1, {a.digest() for a in cal})
    table = build_table(hw, space, limit=0, calib=0, progress=False)  # creates/loads it, records the fingerprint
    reduced = {u.key for a in cal + val for u in decompose(a, hw.input_hw)}
    missing = len(reduced - set(table.units))
    table = build_table(hw, space, limit=missing, calib=0, first=cal + val, progress=True)
    print(f"[{time.monotonic() - t_start:.0f} s] reduced set: {len(reduced)} units, table has {len(table)}", flush=True)

    if "fit" not in table.data["calibration"] or len(table.calibration_archs) < n_cal:
        calibrate_table(table, space, n_cal, 0, progress=True)
        table.save()
    print(f"[{time.monotonic() - t_start:.0f} s] calibration: {table.data['calibration']['fit']}", flush=True)

    r = validate(hw, n=n_val, seed=1, noise=5, space=space, out=out, progress=True)
    print(f"[{time.monotonic() - t_start:.0f} s] validation: {r['ratio']['predictor']}", flush=True)

    chunk = 100
    while time.monotonic() - t_start < budget - 30:
        before = len(table)
        table = build_table(hw, space, limit=chunk, calib=0, progress=False)
        if len(table) == before:
            break
    total = len(LatencyTable.load(hw).units)
    n_space = len(SpaceMap(space, hw.input_hw).units())
    summary = {
        "fingerprint": fp,
        "device": describe(fp, "cuda"),
        "table": hw.table_path.name,
        "units": total,
        "units_in_space": n_space,
        "sml_ms": sml,
        "calibration": table.data["calibration"].get("fit"),
        "validation": {k: r[k] for k in ("absolute", "ratio", "noise_floor", "reference")},
        "seconds": round(time.monotonic() - t_start, 1),
    }
    write_text_atomic(out / "gpu.json", json.dumps(summary, indent=1, default=str) + "\n")
    lines = [
        f"# cuda_fp16 on {summary['device']}",
        "",
        "| network | eager fp16 ms | CUDA graph fp16 ms | seed T4 TensorRT ms |",
    ]
    lines.append("|---|---:|---:|---:|")
    for name, m in sml.items():
        lines.append(f"| {name} | {m['eager_ms']:.2f} | {m['cuda_graph_ms']:.2f} | {m['seed_t4_tensorrt_ms']:.2f} |")
    q, a = r["ratio"]["predictor"], r["absolute"]["predictor"]
    lines += [
        "",
        f"Table: {total} of {n_space:,} units. Validation on {q['n']} networks interleaved with S: ratio form "
        f"{q['within_5pct']:.0%} within ±5%, Kendall τ {q['kendall_tau']:.3f}; ms {a['within_10pct']:.0%} within ±10%.",
    ]
    write_text_atomic(out / "gpu.md", "\n".join(lines) + "\n")
    if os.environ.get("OUT"):
        dest = Path(os.environ["OUT"])
        for f in (hw.table_path, out / "gpu.json", out / "gpu.md", out / "sml.json", out / "validation.json"):
            if f.is_file():
                shutil.copy(f, dest / f.name)
    print("\n".join(lines))
    return 0 if np.isfinite(q["kendall_tau"]) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
