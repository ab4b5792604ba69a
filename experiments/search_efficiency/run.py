"""Search efficiency: hypervolume vs trials per strategy (3 seeds) against random search with 1000 trials.

The objective is fixed and cached: (proxy_score, cost) from nas.search's Evaluator, with the proxy values
cached on disk by architecture digest, so every strategy and seed sees identical values for the same
architecture. Hypervolume is 2-D (cost minimized, score maximized) over feasible trials (cost <= the
largest tier budget), with one reference point for all runs: (max cost, the lowest score any run saw).

    python experiments/search_efficiency/run.py                        # full: nsga2 tpe x 3 seeds x 150, random x 3 x 1000
    python experiments/search_efficiency/run.py --n-trials 20 --random-trials 40 --seeds 0 --strategies nsga2 tpe \\
        --space tests/... --out /tmp/se                                  # a tiny check

Each (strategy, seed) run is saved under <out>/runs/ as it finishes: a killed benchmark resumes where it was.
Writes <out>/results.json, <out>/results.md and <out>/hv_vs_trials.png.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from nas.io import write_text_atomic
from nas.search import ProxyConfig, SearchConfig, SpaceConfig, StorageConfig, StrategyConfig, run_search
from nas.search.select import hypervolume_2d

HERE = Path(__file__).resolve().parent


def config(args: argparse.Namespace, strategy: str, seed: int, n_trials: int) -> SearchConfig:
    cost = "latency_ms" if args.hardware else "flops_g"
    return SearchConfig(
        space=SpaceConfig(name=args.space),
        hardware=args.hardware,
        proxy=ProxyConfig(cache_dir=args.cache_dir, imgsz=args.proxy_hw, batch_source=args.proxy_batch),
        strategy=StrategyConfig(name=strategy),
        storage=StorageConfig(kind="memory"),
        objectives=["proxy_score", cost],
        n_trials=n_trials,
        seed=seed,
        tiers=None,
        progress=False,
        threads=1,
        name=f"{strategy}-seed{seed}",
    )


def one_run(job: tuple[argparse.Namespace, str, int, int]) -> dict:
    """One search; its trials (cost, score, feasible) in order, saved to <out>/runs/<name>.json."""
    args, strategy, seed, n = job
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = Path(args.out) / "runs" / f"{strategy}-seed{seed}-n{n}.json"
    if path.exists():
        return json.loads(path.read_text())
    cfg = config(args, strategy, seed, n)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        res = run_search(cfg, tmp)
    cost = cfg.objectives[1]
    out = {
        "strategy": strategy,
        "seed": seed,
        "n_trials": n,
        "cost": cost,
        "max_cost": res.report["max_cost"],
        "wall_s": round(time.perf_counter() - t0, 1),
        "trials": [[r.values[cost], r.values["proxy_score"], r.feasible] for r in res.trials],
    }
    write_text_atomic(path, json.dumps(out))
    print(f"  {strategy} seed {seed}: {n} trials in {out['wall_s']} s", flush=True)
    return out


def curve(run: dict, ref_cost: float, ref_score: float) -> list[float]:
    """Hypervolume after each trial."""
    pts, hv = [], []
    for c, s, feasible in run["trials"]:
        if feasible:
            pts.append((c, s))
        hv.append(hypervolume_2d(pts, ref_cost, ref_score))
    return hv


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="yolo_nas")
    ap.add_argument("--hardware", default=None, help="nas.latency hardware for latency_ms (default: analytic flops_g)")
    # gp is optional: Optuna's GPSampler takes ~10-30 s per trial on this 60-dimension space on one CPU core
    ap.add_argument("--strategies", nargs="+", default=["nsga2", "tpe"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--n-trials", type=int, default=150)
    ap.add_argument("--random-trials", type=int, default=1000)
    ap.add_argument(
        "--random-seeds", nargs="+", type=int, default=None, help="seeds of the random-N runs (default: --seeds)"
    )
    ap.add_argument(
        "--workers", type=int, default=2, help="runs in parallel processes, 1 thread each (they share the cache)"
    )
    ap.add_argument("--proxy-hw", type=int, default=ProxyConfig.imgsz)
    ap.add_argument("--proxy-batch", default=ProxyConfig.batch_source)
    ap.add_argument("--cache-dir", default=str(HERE / ".cache"), help="proxy cache (by architecture digest)")
    ap.add_argument("--out", default=str(HERE))
    args = ap.parse_args(argv)
    out = Path(args.out)
    t0 = time.perf_counter()
    args.random_seeds = args.seeds if args.random_seeds is None else args.random_seeds
    jobs = [(args, "random", s, args.random_trials) for s in args.random_seeds]
    jobs += [(args, st, s, args.n_trials) for st in args.strategies if st != "random" for s in args.seeds]
    print(f"{len(jobs)} runs ({args.workers} worker(s)); proxy cache {args.cache_dir}", flush=True)
    if args.workers > 1:
        with mp.get_context("spawn").Pool(args.workers) as pool:
            runs = pool.map(one_run, jobs, chunksize=1)
    else:
        runs = [one_run(j) for j in jobs]

    ref_cost = max(r["max_cost"] for r in runs)
    ref_score = min(s for r in runs for c, s, f in r["trials"] if f)
    curves = {(r["strategy"], r["seed"]): curve(r, ref_cost, ref_score) for r in runs}
    target = float(np.mean([curves[("random", s)][-1] for s in args.random_seeds]))
    checkpoints = sorted({k for k in (10, 25, 50, 100, 150, 300, 1000) if k <= args.random_trials})
    summary = {}
    for st in ["random", *[s for s in args.strategies if s != "random"]]:
        cs = [curves[(st, s)] for s in (args.random_seeds if st == "random" else args.seeds)]
        reach = [next((i + 1 for i, v in enumerate(c) if v >= target), None) for c in cs]
        summary[st] = {
            "hv_at": {k: float(np.mean([c[k - 1] for c in cs])) / target for k in checkpoints if k <= len(cs[0])},
            "trials_to_random_final": reach,
            "median_trials_to_random_final": float(np.median([r for r in reach if r is not None]))
            if all(r is not None for r in reach)
            else None,
        }
    result = {
        "space": args.space,
        "hardware": args.hardware,
        "cost": runs[0]["cost"],
        "strategies": args.strategies,
        "seeds": args.seeds,
        "random_seeds": args.random_seeds,
        "n_trials": args.n_trials,
        "random_trials": args.random_trials,
        "reference_point": {"cost": ref_cost, "proxy_score": ref_score},
        "random_final_hv_mean": target,
        "summary": summary,
        "curves": {f"{k[0]}-seed{k[1]}": v for k, v in curves.items()},
        "run_wall_s": {f"{r['strategy']}-seed{r['seed']}": r["wall_s"] for r in runs},
        "benchmark_wall_s": round(time.perf_counter() - t0, 1),
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
        "target": "reach random-1000's hypervolume within <= 150 trials",
    }
    write_text_atomic(out / "results.json", json.dumps(result, indent=1) + "\n")
    write_text_atomic(out / "results.md", markdown(result, checkpoints))
    plot(out / "hv_vs_trials.png", result, args)
    print((out / "results.md").read_text())
    return 0


def markdown(result: dict, checkpoints: list[int]) -> str:
    ks = checkpoints
    lines = [
        f"# Search efficiency on `{result['space']}` (objective: proxy_score vs {result['cost']})",
        "",
        f"Hypervolume relative to random search's final hypervolume after {result['random_trials']} trials "
        f"(mean of seeds {result['random_seeds']}); trials needed to reach it, per seed ({result['seeds']}).",
        "",
        "| strategy | " + " | ".join(f"HV@{k}" for k in ks) + " | trials to reach random's final HV |",
        "|---|" + "---|" * len(ks) + "---|",
    ]
    for st, s in result["summary"].items():
        cells = " | ".join(f"{s['hv_at'][k]:.3f}" if k in s["hv_at"] else "-" for k in ks)
        reach = ", ".join("never" if r is None else str(r) for r in s["trials_to_random_final"])
        lines.append(f"| {st} | {cells} | {reach} |")
    lines += ["", f"Target: {result['target']}. Benchmark wall time: {result['benchmark_wall_s']} s.", ""]
    return "\n".join(lines)


def plot(path: Path, result: dict, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    target = result["random_final_hv_mean"]
    for i, st in enumerate(["random", *[s for s in args.strategies if s != "random"]]):
        seeds = args.random_seeds if st == "random" else args.seeds
        cs = np.array([result["curves"][f"{st}-seed{s}"] for s in seeds]) / target
        x = np.arange(1, cs.shape[1] + 1)
        ax.plot(x, cs.mean(0), label=st, c=f"C{i}")
        ax.fill_between(x, cs.min(0), cs.max(0), color=f"C{i}", alpha=0.15)
    ax.axhline(1.0, c="k", ls="--", lw=0.8, label=f"random-{args.random_trials} final")
    ax.axvline(150, c="0.6", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("trials")
    ax.set_ylabel("hypervolume / random's final")
    ax.set_title(f"{result['space']}: proxy_score vs {result['cost']} (mean, min-max over seeds)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
