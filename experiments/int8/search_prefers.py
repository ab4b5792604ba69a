"""Does a search with the INT8 drop estimate prefer QARepVGG where the drop says it should? Small searches, same
seed and budget, hardware cpu_ort_int8:

- baseline: objectives [proxy_score, int8_latency_ms];
- objective: [proxy_score, int8_latency_ms, int8_drop] (nas.quant.estimate, measured drops of nas/quant/block_drop.json);
- objective_yolov6: the same objective with YOLOv6's published COCO drops (block_drop_yolov6_coco.json: RepVGG
  3.7, QARepVGG 0.7 points): the case where the drop says QARepVGG;
- measured_max0.3: the baseline objectives under the constraint int8_drop <= 0.3 (the issue's goal), measured drops;
- yolov6_max1.0: the baseline objectives under int8_drop <= 1.0 with YOLOv6's drops.

Reported per search: the share of `block` dimensions set to qarepvgg among all trials, among the feasible ones,
on the Pareto front and in the selected S/M/L; and the time `int8_drop` costs per candidate.

    python experiments/int8/search_prefers.py --n-trials 48 --out runs/int8/search
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from nas.io import write_text_atomic

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BASE, WITH_DROP = "[proxy_score,int8_latency_ms]", "[proxy_score,int8_latency_ms,int8_drop]"
YOLOV6 = HERE / "block_drop_yolov6_coco.json"
# name -> (objectives, extra overrides)
RUNS = {
    "baseline": (BASE, []),
    "objective": (WITH_DROP, []),
    "objective_yolov6": (WITH_DROP, [f"int8_drop_table={YOLOV6}"]),
    "measured_max0.3": (BASE, ["max_int8_drop=0.3"]),
    "yolov6_max1.0": (BASE, ["max_int8_drop=1.0", f"int8_drop_table={YOLOV6}"]),
}


def _blocks(row: dict) -> list[str]:
    return [v for k, v in row.items() if k.endswith(".block") and v in ("qarepvgg", "repvgg")]


def _arch_blocks(path: Path) -> list[str]:
    """The block type of each stage of an emitted architecture: the same dimensions `_blocks` counts in trials.csv."""
    from nas.space import load_arch

    arch = load_arch(path)
    return [
        s.block for s in (*arch.backbone.stages, *arch.neck.up, *arch.neck.down) if s.block in ("qarepvgg", "repvgg")
    ]


def _qa_share(blocks: list[str]) -> float:
    return sum(b == "qarepvgg" for b in blocks) / len(blocks) if blocks else float("nan")


def _share(path: Path, feasible_only: bool = False) -> tuple[float, int]:
    rows = list(csv.DictReader(path.open()))
    if feasible_only:
        rows = [r for r in rows if r.get("feasible", "True") in ("True", "1", "true")]
    return _qa_share([b for r in rows for b in _blocks(r)]), len(rows)


def estimate_cost_s(n: int = 5) -> float:
    import numpy as np

    from nas.quant.estimate import int8_drop_estimate
    from nas.space.space import load_space

    space = load_space("yolo_nas")
    rng = np.random.default_rng(0)
    archs = [space.random(rng) for _ in range(n)]
    t0 = time.perf_counter()
    for a in archs:
        int8_drop_estimate(a)
    return (time.perf_counter() - t0) / n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-trials", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "runs" / "int8" / "search"))
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    args = ap.parse_args(argv)
    out = Path(args.out)
    done = HERE / "search_prefers.json"
    result = json.loads(done.read_text()) if done.exists() else {}
    if result.get("n_trials") != args.n_trials or result.get("seed") != args.seed:  # another budget: start over
        result = {"n_trials": args.n_trials, "seed": args.seed}
    result.setdefault("runs", {})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in args.runs:
        objectives, extra = RUNS[name]
        run_dir = out / name
        if run_dir.exists():
            shutil.rmtree(run_dir)  # a fresh study each time (a leftover one would resume at its own budget)
        cmd = [sys.executable, "-m", "nas.search", "+space=yolo_nas", "+experiment=smoke", "hardware=cpu_ort_int8",
               f"objectives={objectives}", "cost=int8_latency_ms", f"n_trials={args.n_trials}", f"seed={args.seed}",
               f"name=int8-prefers-{name}", f"hydra.run.dir={run_dir}", "logger=none",
               "evidence_gate=false", *extra]  # the picks themselves (not the released layouts the gate keeps)  # fmt: skip
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, cwd=ROOT)
        trials, n = _share(run_dir / "trials.csv")
        feasible, n_feasible = _share(run_dir / "trials.csv", feasible_only=True)
        front, n_front = _share(run_dir / "pareto.csv")
        selected = sorted((run_dir / "selected").glob("*.yaml"))
        result["runs"][name] = {
            "objectives": objectives,
            "overrides": [e.replace(str(HERE) + "/", "") for e in extra],
            "wall_s": round(time.perf_counter() - t0, 1),
            "trials": n,
            "qarepvgg_share_trials": trials,
            "feasible": n_feasible,
            "qarepvgg_share_feasible": feasible,
            "pareto": n_front,
            "qarepvgg_share_pareto": front,
            "selected": {p.stem: _qa_share(_arch_blocks(p)) for p in selected},
        }
        print(name, result["runs"][name], flush=True)
        write_text_atomic(done, json.dumps(result, indent=1) + "\n")
    result["int8_drop_cost_s_per_candidate"] = estimate_cost_s()
    result["block_drop"] = json.loads((ROOT / "nas" / "quant" / "block_drop.json").read_text())
    result["block_drop_yolov6"] = json.loads(YOLOV6.read_text())
    write_text_atomic(done, json.dumps(result, indent=1) + "\n")
    write_text_atomic(HERE / "search_prefers.md", markdown(result))
    return 0


def _pct(v: float | None) -> str:
    return "-" if v is None or v != v else f"{v:.0%}"


def markdown(r: dict) -> str:
    drop = r.get("block_drop", {}).get("drop", {})
    v6 = r.get("block_drop_yolov6", {}).get("drop", {})
    better = min(drop, key=drop.get) if drop else "?"
    lines = [
        "# Does the INT8 drop estimate steer the search where the drop says it should?",
        "",
        f"Searches of the `yolo_nas` space, {r['n_trials']} trials each, seed {r['seed']}, NSGA-II, hardware "
        "`cpu_ort_int8`, the smoke proxy settings. Measured drops (nas/quant/block_drop.json): "
        + ", ".join(f"{k} {v:.3f}" for k, v in drop.items())
        + f" mAP50-95 points (lower: **{better}**; RepVGG minus QARepVGG over the training seeds: "
        + r.get("block_drop", {}).get("repvgg_minus_qarepvgg", "no verdict recorded")
        + "); YOLOv6's published COCO drops: "
        + ", ".join(f"{k} {v:.1f}" for k, v in v6.items())
        + ". Share: of the block-type dimensions set to qarepvgg.",
        "",
        "| search | objectives | constraint | trials | qarepvgg (all) | feasible | qarepvgg (feasible) | front | "
        "qarepvgg (front) | qarepvgg in selected S / M / L | wall s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name in sorted(r["runs"], key=lambda n: list(RUNS).index(n) if n in RUNS else len(RUNS)):
        x = r["runs"][name]
        sel = x.get("selected", {})
        tiers = " / ".join(_pct(sel.get(t)) for t in ("yolo_nas_s", "yolo_nas_m", "yolo_nas_l"))
        lines.append(
            f"| {name} | `{x['objectives']}` | {', '.join(f'`{o}`' for o in x.get('overrides', [])) or '-'} | "
            f"{x['trials']} | {_pct(x['qarepvgg_share_trials'])} | {x.get('feasible', '-')} | "
            f"{_pct(x.get('qarepvgg_share_feasible'))} | {x['pareto']} | {_pct(x['qarepvgg_share_pareto'])} | "
            f"{tiers} | {x['wall_s']:.0f} |"
        )
    if "int8_drop_cost_s_per_candidate" in r:
        lines += ["", f"`int8_drop` costs {r['int8_drop_cost_s_per_candidate'] * 1e6:.0f} µs per candidate."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
