"""The ground truth at equal latency (issue 23; the analysis is declared in PLAN.md, committed before the data).

    python experiments/proxy_correlation/window.py select                  # the S window set -> window.json, archs/window/
    python experiments/proxy_correlation/window.py train --jobs 2          # the default search's picks, then every unit
    python experiments/proxy_correlation/window.py status                  # what is done, what is left (CPU-hours)

`train` is one resumable driver (a second one refuses to start): it runs the default search at the search seeds
whose picks are not fixed yet (one search at a time, in one of the `--jobs` slots), then trains every unit
(architecture, seed) without a result file, S window first (seed-major, so partial results cover every
architecture), then the M/L truth-test units. A killed training resumes from its last.pt; each finished unit
writes results/window/<name>_s<seed>.json atomically. `runs/window_jobs` (a number), when present, overrides
`--jobs` while the driver runs (to free a core for other work); `runs/window_first` (`name:seed` a line) moves those
units to the queue's front.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # this folder's ground-truth runner: the recipe, the pool of draws, train-one
from window_report import window_names  # the S window set (the units and every recorded S pick)

from nas.io import write_text_atomic

HERE = run.HERE
WINDOW_ARCHS = run.ARCHS / "window"
WINDOW_RESULTS = run.RESULTS / "window"
WINDOW_JSON = HERE / "window.json"
JOBS_FILE = run.RUNS / "window_jobs"
FIRST_FILE = run.RUNS / "window_first"
POOL_SEED, POOL_SIZE, WINDOW, PER_BLOCK = 1, 6000, 0.10, 6
SEEDS = (0, 1, 2)  # training seeds of the S window
SEARCH_SEEDS = {"yolo_nas_s": (0, 1, 2), "yolo_nas_m": (0, 1), "yolo_nas_l": (0, 1)}
ML_SEEDS = (0, 1)  # training seeds of the M/L picks; the released M/L add seed 1 to results/gt's seed 0
# The search defaults whose picks are trained (PLAN.md): the vote (the default when the plan was written) and the
# default its rule chose at the end of the round (synflow alone)
SIGNALS = ("vote", "synflow")
# Each signal's search, spelled out (not "the default"), so that a later change of the default does not change it
SIGNAL_OVERRIDES = {"vote": ["proxy=zero_cost", "proxy.proxies=[synflow,naswot,snip,zen]"],
                    "synflow": ["proxy=zero_cost", "proxy.proxies=[synflow]"]}  # fmt: skip


def _depth(arch) -> int:
    """Total blocks of the backbone stages and the neck stages (the neck's depth multipliers applied)."""
    return sum(s.num_blocks for s in arch.backbone.stages) + sum(
        s.effective_num_blocks for s in (*arch.neck.up, *arch.neck.down)
    )


def select(args) -> int:
    """Draw the S window set (fixed: refuses to overwrite window.json without --force)."""
    from nas.latency import arch_cost, load_predictor
    from nas.space import load_space

    if WINDOW_JSON.is_file() and not args.force:
        print(f"{WINDOW_JSON} exists: the window set is fixed (use --force to redraw it)")
        return 0
    space = load_space("yolo_nas")
    pred = load_predictor("cpu_ort", warn=False)
    pool = run._pool(space, np.random.default_rng(POOL_SEED), POOL_SIZE)
    lat = np.array([pred.predict(a) for a in pool])
    ref = float(pred.predict(space.references["yolo_nas_s"]))
    inside = [i for i in range(len(pool)) if abs(lat[i] / ref - 1.0) <= WINDOW]
    units: list[dict[str, Any]] = []
    for kind in ("qarepvgg", "repvgg"):
        cand = sorted((i for i in inside if run._block_majority(pool[i]) == kind), key=lambda i: (_depth(pool[i]), i))
        if len(cand) < PER_BLOCK:
            raise SystemExit(f"only {len(cand)} mostly-{kind} draws within the window; enlarge the pool")
        # evenly spaced quantiles of depth: from the shallowest (widest) to the deepest (narrowest) at one latency
        for q in np.linspace(0, len(cand) - 1, PER_BLOCK):
            units.append({"index": cand[int(np.rint(q))], "role": "window", "blocks": kind})
    under = [i for i in range(len(pool)) if lat[i] <= ref]
    flops = {i: arch_cost(pool[i], 640).gflops for i in under}
    units.append({"index": max(under, key=lambda i: (flops[i], -i)), "role": "flops_s", "blocks": None})
    WINDOW_ARCHS.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, u in enumerate(units):
        name = f"w{k:02d}" if u["role"] == "window" else "flops_s"
        arch = pool[u["index"]].replace(name=name)
        write_text_atomic(WINDOW_ARCHS / f"{name}.yaml", arch.to_yaml())
        cost = arch_cost(arch, 640)
        rows.append(
            {
                "name": name,
                "role": u["role"],
                "blocks": run._block_majority(arch),
                "depth": _depth(arch),
                "latency_ms": round(float(pred.predict(arch)), 1),
                "gflops": round(cost.gflops, 3),
                "params_m": round(cost.params_m, 3),
                "digest": arch.digest(),
            }
        )
    s = space.references["yolo_nas_s"]
    rows.append(
        {
            "name": "yolo_nas_s",
            "role": "released",
            "blocks": run._block_majority(s),
            "depth": _depth(s),
            "latency_ms": round(ref, 1),
            "gflops": round(arch_cost(s, 640).gflops, 3),
            "params_m": round(arch_cost(s, 640).params_m, 3),
            "digest": s.digest(),
        }
    )
    doc = {
        "what": "the S window set of the equal-latency ground truth (PLAN.md)",
        "pool": {"seed": POOL_SEED, "size": POOL_SIZE, "drawn_by": "run._pool (size-spread)"},
        "window": f"predicted cpu_ort latency within ±{WINDOW:.0%} of the released S ({ref:.1f} ms)",
        "in_window_draws": len(inside),
        "latency": "predicted, cpu_ort shipped table (80-class head, 640 px)",
        "units": rows,
        "search": {},
    }
    write_text_atomic(WINDOW_JSON, json.dumps(doc, indent=1) + "\n")
    for r in rows:
        print(f"{r['name']:>10} {r['role']:>8} {r['blocks']:>8} depth {r['depth']:>2} {r['latency_ms']:7.1f} ms")
    return 0


def load_window() -> dict[str, Any]:
    if not WINDOW_JSON.is_file():
        raise SystemExit(f"{WINDOW_JSON} is missing: run `python {Path(__file__).name} select` first")
    return json.loads(WINDOW_JSON.read_text())


# ---- the default search at several seeds -------------------------------------------------------------


def search_dir(signal: str, seed: int) -> Path:
    return run.RUNS / "window_search" / f"{signal}_s{seed}"


def search_command(signal: str, seed: int, overrides: list[str]) -> list[str]:
    d = search_dir(signal, seed)
    return [sys.executable, "-m", "nas.search", "+space=yolo_nas", f"seed={seed}", f"hydra.run.dir={d}",
            "logger=none", "progress=false", f"name=window-{signal}-seed{seed}", "evidence_gate=false", *SIGNAL_OVERRIDES[signal],
            *overrides]  # fmt: skip


def record_search(signal: str, seed: int) -> None:
    """Fix a finished search's S/M/L picks in window.json (and archs/window/<signal>_s<seed>_<tier>.yaml)."""
    from nas.space import load_arch

    d = search_dir(signal, seed)
    rep = json.loads((d / "report.json").read_text())
    doc = load_window()
    picks = {}
    for tier, t in rep["tiers"].items():
        sel = t["selected"]
        released = bool(sel.get("equals_reference"))
        unit = tier if released else f"{signal}_s{seed}_{tier}"
        if not released:
            arch = load_arch(d / "selected" / f"{tier}.yaml").replace(name=unit)
            write_text_atomic(WINDOW_ARCHS / f"{unit}.yaml", arch.to_yaml())
        picks[tier] = {
            "unit": unit,
            "emitted_name": sel["name"],
            "equals_released": released,
            "budget_ms": t["budget"],
            "selected": {k: sel["values"].get(k) for k in run.OBJECTIVE_KEYS},
            "released": {k: (t["reference"] or {"values": {}})["values"].get(k) for k in run.OBJECTIVE_KEYS},
        }
    doc["search"].setdefault(signal, {})[str(seed)] = {
        "command": " ".join(["python", "-m", *search_command(signal, seed, [])[2:]]),
        "trials": rep["trials"],
        "tiers": picks,
    }
    write_text_atomic(WINDOW_JSON, json.dumps(doc, indent=1) + "\n")


# ---- units ----------------------------------------------------------------------------------------


def unit_arch_path(name: str) -> Path:
    p = WINDOW_ARCHS / f"{name}.yaml"
    return p if p.is_file() else run.ARCHS / f"{name}.yaml"


def result_path(name: str, seed: int) -> Path:
    return WINDOW_RESULTS / f"{name}_s{seed}.json"


def units(doc: dict[str, Any]) -> list[tuple[str, int]]:
    """(name, seed) in training order: the S window set seed-major (released S, the search's S picks, the FLOPs
    baseline, then w00..), then the M/L truth test (released second seeds, then the picks)."""
    searches = [doc.get("search", {}).get(signal, {}) for signal in SIGNALS]
    s_picks = [
        p[str(k)]["tiers"]["yolo_nas_s"]["unit"] for p in searches for k in SEARCH_SEEDS["yolo_nas_s"] if str(k) in p
    ]
    window = [u["name"] for u in doc["units"] if u["role"] == "window"]
    s_names = list(dict.fromkeys(["yolo_nas_s", *s_picks, "flops_s", *window]))
    out = [(n, s) for s in SEEDS for n in s_names]
    ml: list[tuple[str, int]] = [("yolo_nas_m", 1), ("yolo_nas_l", 1)]
    for picks in searches:
        for tier in ("yolo_nas_m", "yolo_nas_l"):
            for k in SEARCH_SEEDS[tier]:
                if str(k) in picks:
                    u = picks[str(k)]["tiers"][tier]["unit"]
                    ml += [(u, s) for s in ML_SEEDS if u not in ("yolo_nas_m", "yolo_nas_l")]
    return out + [u for u in dict.fromkeys(ml) if u not in out]


def done(name: str, seed: int) -> bool:
    """A unit's result exists: in results/window, or (the released M/L seed 0) in results/gt."""
    return result_path(name, seed).is_file() or (name in run.RELEASED[1:] and run.gt_path(name, seed).is_file())


def train_command(name: str, seed: int) -> list[str]:
    return [sys.executable, str(HERE / "run.py"), "train-one", name, str(seed), "--arch", str(unit_arch_path(name)),
            "--out", str(result_path(name, seed)), "--run-name", f"win_{name}_s{seed}"]  # fmt: skip


def _running_elsewhere(marker: str) -> bool:
    """A process not started by this driver (an earlier driver's child) runs a command line containing `marker`."""
    me = str(os.getpid())
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline.parent.name != me and any(marker.encode() == a for a in args):
            return True
    return False


def _marker(key: str) -> str:
    """The argument that identifies a unit's process: its run name (training) or study name (search)."""
    what, _, arg = key.partition(":")
    if what == "search":
        signal, _, seed = arg.partition(":")
        return f"name=window-{signal}-seed{seed}"
    return f"win_{what}_s{arg}"


def _finished(signal: str, seed: int) -> bool:
    """The search has written its report over all its trials (report.json, 60 complete)."""
    path = search_dir(signal, seed) / "report.json"
    try:
        return json.loads(path.read_text())["trials"]["complete"] >= 60
    except (OSError, ValueError, KeyError):
        return False


def _first(queue: list[tuple[str, list[str]]]) -> list[tuple[str, list[str]]]:
    """`queue` with the keys listed in runs/window_first (one `name:seed` a line) moved to its front, in that file's
    order: a scheduling change while the driver runs (e.g. the released S's second seed, which a truth-test decision
    waits for); what is trained and how it is analysed does not change."""
    try:
        first = [line.strip() for line in FIRST_FILE.read_text().splitlines() if line.strip()]
    except OSError:
        return queue
    rank = {key: i for i, key in enumerate(first)}
    return sorted(queue, key=lambda item: rank.get(item[0], len(rank)))  # stable: the rest keep their order


def _jobs(default: int) -> int:
    try:
        return max(1, int(JOBS_FILE.read_text().strip()))
    except (OSError, ValueError):
        return default


def train(args) -> int:
    """The resumable driver: pending searches first (one at a time), then every unit without a result."""
    from filelock import FileLock, Timeout

    run.RUNS.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run.RUNS / "window_driver.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise SystemExit("another window.py train driver is running (runs/window_driver.lock)") from None
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NAS_THREADS": "1", "PYTHONPATH": str(HERE.parents[1])}
    running: dict[str, subprocess.Popen] = {}
    failed: dict[str, int] = {}
    while True:
        doc = load_window()
        queue: list[tuple[str, list[str]]] = []
        pending = [
            (signal, k)
            for signal in SIGNALS
            for k in sorted({k for v in SEARCH_SEEDS.values() for k in v})
            if str(k) not in doc.get("search", {}).get(signal, {})
        ]
        for signal, k in pending:
            if _finished(signal, k):  # finished under an earlier driver: its report is the record
                record_search(signal, k)
                print(time.strftime("%H:%M:%S"), f"recorded the picks of search:{signal}:{k}", flush=True)
                doc = load_window()
        pending = [(signal, k) for signal, k in pending if str(k) not in doc.get("search", {}).get(signal, {})]
        todo = [(f"{n}:{s}", train_command(n, s)) for n, s in units(doc) if not done(n, s)]
        first = [item for item in todo if item[0].endswith(":0")][: len(window_names(doc))]
        queue += first  # the S window's seed 0 first: the searches of later signals wait behind it
        if pending:  # one search at a time: the next one waits for this one's picks
            signal, k = pending[0]
            queue.append((f"search:{signal}:{k}", search_command(signal, k, [])))
        queue += [item for item in todo if item not in first]
        queue = _first([(key, cmd) for key, cmd in queue if key not in running and failed.get(key, 0) < 2])
        elsewhere = [key for key, _ in queue if _running_elsewhere(_marker(key))]  # a restarted driver's orphans
        queue = [(key, cmd) for key, cmd in queue if key not in elsewhere]
        if not queue and not running and not elsewhere:
            break
        while queue and len(running) + len(elsewhere) < _jobs(args.jobs):
            key, cmd = queue.pop(0)
            if key.startswith("search:") and any(k.startswith("search:") for k in (*running, *elsewhere)):
                continue
            print(time.strftime("%H:%M:%S"), "start:", key, flush=True)
            running[key] = subprocess.Popen(cmd, env=env, cwd=HERE.parents[1])
        time.sleep(10.0)  # scanning /proc for orphans costs CPU: poll slowly
        for key, p in list(running.items()):
            if p.poll() is None:
                continue
            del running[key]
            if p.returncode:
                failed[key] = failed.get(key, 0) + 1
                print(time.strftime("%H:%M:%S"), f"failed ({p.returncode}):", key, flush=True)
            elif key.startswith("search:"):
                _, signal, seed = key.split(":")
                record_search(signal, int(seed))
                print(time.strftime("%H:%M:%S"), "recorded the picks of", key, flush=True)
            else:
                print(time.strftime("%H:%M:%S"), "done:", key, flush=True)
    lock.release()
    return 1 if failed else 0


def proxies(args) -> int:
    """Every requested proxy of every window architecture (the S window set and the recorded picks of all tiers),
    one file per (proxy, architecture) as run.py's `proxies` writes them; resumable."""
    doc = load_window()
    names = window_names(doc) + [
        t["unit"] for per in doc.get("search", {}).values() for rec in per.values() for t in rec["tiers"].values()
    ]
    names = [n for n in dict.fromkeys(names) if n not in run.RELEASED or not run.proxy_path("zero_cost", n).is_file()]
    cmds = [
        [sys.executable, str(HERE / "run.py"), "proxy-one", proxy, n]
        for proxy in args.which.split(",")
        for n in names
        if not run.proxy_path(proxy, n).is_file()
    ]
    print(f"{len(cmds)} proxy units to compute")
    return run._pool_run(cmds, args.jobs, 1)


LATENCY_JSON = run.RESULTS / "window_latency.json"


def latency(args) -> int:
    """Measured cpu_ort latency (onnxruntime FP32, 1 thread, 640 px, the process CPU clock: robust to a shared
    machine) of every window architecture and every recorded pick, each round in a shuffled order with the released
    S measured right before each one; the ratio to that S is the number that carries across machines. One file."""
    import dataclasses as dc
    import random

    from nas.latency import hardware as hwmod
    from nas.latency.modules import deployed_model
    from nas.latency.runtimes import make_runtime, measure
    from nas.space import load_arch

    doc = load_window()
    names = [u["name"] for u in doc["units"]]
    for per in doc.get("search", {}).values():
        names += [t["unit"] for rec in per.values() for t in rec["tiers"].values()]
    names = list(dict.fromkeys(names))
    hw = hwmod.load_hardware("cpu_ort")
    hw = dc.replace(hw, timing=dc.replace(hw.timing, clock="process", warmup=2, repeats=args.repeats, min_time_s=0.0))
    runtime = make_runtime(hw)
    models = {n: deployed_model(load_arch(unit_arch_path(n)), hw.input_hw, hw.batch) for n in names}
    rows: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    rng = random.Random(0)
    for r in range(args.rounds):
        order = list(names)
        rng.shuffle(order)
        for n in order:
            s = measure(*models["yolo_nas_s"], runtime, hw.timing).median_ms
            m = measure(*models[n], runtime, hw.timing).median_ms
            rows[n].append({"ms": round(m, 3), "s_ms": round(s, 3)})
        print(f"round {r + 1} of {args.rounds} done", flush=True)
    out = {
        "what": "measured latency of the window's architectures and the searches' picks (window.py latency)",
        "hardware": "cpu_ort (onnxruntime FP32, 1 thread, 640 px), clock=process",
        "machine": run._machine("cpu"),
        "rounds": args.rounds,
        "repeats": args.repeats,
        "units": {
            n: {
                "median_ms": round(float(np.median([x["ms"] for x in v])), 3),
                "ratio_to_released_s": round(float(np.median([x["ms"] / x["s_ms"] for x in v])), 4),
                "rounds": v,
            }
            for n, v in rows.items()
        },
    }
    write_text_atomic(LATENCY_JSON, json.dumps(out, indent=1) + "\n")
    for n, u in out["units"].items():
        print(f"{n:>22} {u['median_ms']:9.1f} ms  x{u['ratio_to_released_s']:.3f} of the released S")
    return 0


def status(args) -> int:
    doc = load_window()
    rows = [(n, s, done(n, s)) for n, s in units(doc)]
    from window_report import training_cost

    cost = training_cost([json.loads(p.read_text()) for p in sorted(WINDOW_RESULTS.glob("*.json"))])
    print(f"{sum(d for *_, d in rows)} of {len(rows)} units done ({cost['cpu_hours']:.2f} CPU-hours so far)")
    for n, s, d in rows:
        if not d:
            print(f"  todo: {n} seed {s}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("select")
    p.add_argument("--force", action="store_true")
    p = sub.add_parser("train")
    p.add_argument("--jobs", type=int, default=2, help="units at a time (runs/window_jobs overrides it live)")
    sub.add_parser("status")
    p = sub.add_parser("latency", help="measured latency of every window architecture and pick")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p = sub.add_parser("proxies")
    p.add_argument("--which", default="zero_cost", help="comma-separated: zero_cost, short_train_e1, ...")
    p.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args(argv)
    commands = {"select": select, "train": train, "status": status, "proxies": proxies, "latency": latency}
    return commands[args.what](args)


if __name__ == "__main__":
    raise SystemExit(main())
