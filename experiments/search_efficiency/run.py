"""Search efficiency: hypervolume vs trials per strategy (3 seeds) against random search with 1000 trials.

The objective is fixed and cached: (proxy_score, cost) from nas.search's Evaluator, with the proxy values
cached on disk by architecture digest, so every strategy and seed sees identical values for the same
architecture. Hypervolume is 2-D (cost minimized, score maximized) over feasible trials (cost <= the
largest tier budget), with one reference point for all runs: (max cost, the lowest score any run saw).

    python experiments/search_efficiency/run.py                        # full: nsga2 tpe x 3 seeds x 150, random x 3 x 1000
    python experiments/search_efficiency/run.py --n-trials 20 --random-trials 40 --seeds 0 --strategies nsga2 tpe \\
        --space tests/... --out /tmp/se                                  # a tiny check

Each (strategy, seed) run is saved under <out>/raw/ as it finishes (committed: every trial's cost, score and
feasibility, the run's tier picks and the machine): a killed benchmark resumes where it was, and
`results.json` / `results.md` / `hv_vs_trials.png` are computed from those files alone (`--report-only`; a test
recomputes the committed ones). Hypervolumes at each checkpoint carry a 95% t interval over seeds.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from experiments.stats import t_interval
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
        evidence_gate=False,  # the strategy's own picks (the gate's released layout would hide them)
        progress=False,
        threads=1,
        name=f"{strategy}-seed{seed}",
    )


def _machine() -> str:
    """The fingerprint each raw run records, in words (CPUs of one machine class differ and drift)."""
    from nas.latency.device import current_fingerprint, describe

    return describe(current_fingerprint("cpu"), "cpu")


def _picks(report: dict[str, Any], cost: str) -> dict[str, dict[str, Any] | None]:
    """Each tier's selected architecture (the strategy's own pick: the evidence gate is off)."""
    out = {}
    for tier, t in report["tiers"].items():
        sel = t.get("selected")
        out[tier] = (
            None
            if sel is None
            else {
                "trial": sel["trial"],
                "digest": sel["digest"],
                "equals_reference": bool(sel.get("equals_reference")),
                cost: sel["values"][cost],
                "proxy_score": sel["values"]["proxy_score"],
            }
        )
    return out


def raw_path(out: Path, strategy: str, seed: int, n: int) -> Path:
    return out / "raw" / f"{strategy}-seed{seed}-n{n}.json"


def one_run(job: tuple[argparse.Namespace, str, int, int]) -> dict:
    """One search; its trials (cost, score, feasible) in order and its tier picks, saved to <out>/raw/<name>.json."""
    args, strategy, seed, n = job
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = raw_path(Path(args.out), strategy, seed, n)
    if path.exists():
        return json.loads(path.read_text())
    cfg = config(args, strategy, seed, n)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        res = run_search(cfg, tmp)
    cost = cfg.objectives[1]
    out = {
        "space": args.space,
        "strategy": strategy,
        "seed": seed,
        "n_trials": n,
        "cost": cost,
        "max_cost": res.report["max_cost"],
        "wall_s": round(time.perf_counter() - t0, 1),
        "machine": _machine(),
        "picks": _picks(res.report, cost),
        "trials": [[r.values[cost], r.values["proxy_score"], r.feasible] for r in res.trials],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
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
    ap.add_argument("--report-only", action="store_true", help="recompute results.* from <out>/raw/ without running")
    args = ap.parse_args(argv)
    out = Path(args.out)
    args.random_seeds = args.seeds if args.random_seeds is None else args.random_seeds
    if not args.report_only:
        jobs = [(args, "random", s, args.random_trials) for s in args.random_seeds]
        jobs += [(args, st, s, args.n_trials) for st in args.strategies if st != "random" for s in args.seeds]
        print(f"{len(jobs)} runs ({args.workers} worker(s)); proxy cache {args.cache_dir}", flush=True)
        if args.workers > 1:
            with mp.get_context("spawn").Pool(args.workers) as pool:
                pool.map(one_run, jobs, chunksize=1)
        else:
            for j in jobs:
                one_run(j)
    result = summarize(load_raw(out))
    write_results(out, result)
    print((out / "results.md").read_text())
    return 0


def load_raw(out: Path) -> list[dict]:
    """Every saved run under <out>/raw/, in file-name order."""
    runs = [json.loads(p.read_text()) for p in sorted((out / "raw").glob("*.json"))]
    if not runs:
        raise SystemExit(f"{out / 'raw'}: no saved runs; run the benchmark first (without --report-only)")
    return runs


def _relative(ci: list[float] | None, target: float) -> list[float] | None:
    """An interval as a fraction of `target`; None stays None (one seed has no interval, not a zero-width one)."""
    return None if ci is None else [v / target for v in ci]


def summarize(runs: list[dict]) -> dict[str, Any]:
    """results.json from the raw runs alone: every number below is recomputed from them by a test."""
    random_runs = sorted((r for r in runs if r["strategy"] == "random"), key=lambda r: r["seed"])
    if not random_runs:
        raise SystemExit("no random-N run among the saved runs: it is the reference of every curve")
    others = sorted((r for r in runs if r["strategy"] != "random"), key=lambda r: (r["strategy"], r["seed"]))
    strategies = list(dict.fromkeys(r["strategy"] for r in others))
    random_trials = random_runs[0]["n_trials"]
    n_trials = max((r["n_trials"] for r in others), default=random_trials)
    ref_cost = max(r["max_cost"] for r in runs)
    ref_score = min(s for r in runs for c, s, f in r["trials"] if f)
    curves = {(r["strategy"], r["seed"]): curve(r, ref_cost, ref_score) for r in runs}
    random_finals = [curves[("random", r["seed"])][-1] for r in random_runs]
    target = float(np.mean(random_finals))
    checkpoints = sorted({k for k in (10, 25, 50, 100, 150, 300, 1000) if k <= random_trials})
    summary = {}
    for st in ["random", *strategies]:
        mine = random_runs if st == "random" else [r for r in others if r["strategy"] == st]
        cs = [curves[(st, r["seed"])] for r in mine]
        reach = [next((i + 1 for i, v in enumerate(c) if v >= target), None) for c in cs]
        hv_at = {}
        for k in checkpoints:
            if k <= min(len(c) for c in cs):
                per_seed = [c[k - 1] / target for c in cs]
                hv_at[str(k)] = {"mean": float(np.mean(per_seed)), "ci95": t_interval(per_seed), "seeds": per_seed}
        summary[st] = {
            "seeds": [r["seed"] for r in mine],
            "hv_at": hv_at,
            "trials_to_random_final": reach,
            "median_trials_to_random_final": float(np.median(reach)) if all(r is not None for r in reach) else None,
        }
    picks = {f"{r['strategy']}-seed{r['seed']}": r.get("picks") for r in runs}
    return {
        "space": runs[0].get("space", "yolo_nas"),
        "cost": runs[0]["cost"],
        "strategies": strategies,
        "seeds": sorted({r["seed"] for r in others}),
        "random_seeds": [r["seed"] for r in random_runs],
        "n_trials": n_trials,
        "random_trials": random_trials,
        "reference_point": {"cost": ref_cost, "proxy_score": ref_score},
        "random_final_hv": random_finals,
        "random_final_hv_mean": target,
        "random_final_hv_ci95": _relative(t_interval(random_finals), target),
        "summary": summary,
        "picks": picks,
        "curves": {f"{k[0]}-seed{k[1]}": v for k, v in curves.items()},
        "run_wall_s": {f"{r['strategy']}-seed{r['seed']}": r["wall_s"] for r in runs},
        "run_wall_s_total": round(sum(r["wall_s"] for r in runs), 1),
        "machines": sorted({r["machine"] for r in runs if "machine" in r}),
        "target": f"reach random-{random_trials}'s hypervolume within <= 150 trials",
    }


def write_results(out: Path, result: dict[str, Any]) -> None:
    write_text_atomic(out / "results.json", json.dumps(result, indent=1) + "\n")
    write_text_atomic(out / "results.md", markdown(result))
    plot(out / "hv_vs_trials.png", result)


def _fmt_ci(ci: list[float] | None) -> str:
    return "" if ci is None else f" [{ci[0]:.2f}, {ci[1]:.2f}]"


def markdown(result: dict) -> str:
    ks = sorted({int(k) for s in result["summary"].values() for k in s["hv_at"]})
    finals = ", ".join(f"{v / result['random_final_hv_mean']:.3f}" for v in result["random_final_hv"])
    lines = [
        f"# Search efficiency on `{result['space']}` (objective: proxy_score vs {result['cost']})",
        "",
        f"Hypervolume relative to random search's final hypervolume after {result['random_trials']} trials, the mean "
        f"over random seeds {result['random_seeds']} (each seed's final: {finals}); mean over seeds with a 95% t "
        f"interval; trials needed to reach it, per seed. Recomputed from `raw/` (`run.py --report-only`).",
        "",
        "| strategy | seeds | " + " | ".join(f"HV@{k}" for k in ks) + " | trials to reach random's final HV |",
        "|---|---|" + "---|" * len(ks) + "---|",
    ]
    for st, s in result["summary"].items():
        cells = " | ".join(
            f"{s['hv_at'][str(k)]['mean']:.3f}{_fmt_ci(s['hv_at'][str(k)]['ci95'])}" if str(k) in s["hv_at"] else "-"
            for k in ks
        )
        reach = ", ".join("never" if r is None else str(r) for r in s["trials_to_random_final"])
        lines.append(f"| {st} | {len(s['seeds'])} | {cells} | {reach} |")
    tiers = sorted({t for p in result["picks"].values() if p for t in p})
    if tiers:
        cost = result["cost"]
        lines += [
            "",
            f"Each run's tier picks ({cost}, proxy_score; `=ref`: the released layout), with the evidence gate off:",
            "",
            "| run | " + " | ".join(tiers) + " |",
            "|---|" + "---|" * len(tiers),
        ]
        for run, p in result["picks"].items():
            cells = []
            for t in tiers:
                x = (p or {}).get(t)
                cells.append(
                    "-"
                    if x is None
                    else f"{x[cost]:.1f}, {x['proxy_score']:.2f}" + (" =ref" if x["equals_reference"] else "")
                )
            lines.append(f"| {run} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Target: {result['target']}. Sum of the runs' wall times: {result['run_wall_s_total']} s "
        f"(machines: {'; '.join(result['machines']) or 'not recorded'}).",
        "",
    ]
    return "\n".join(lines)


def plot(path: Path, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    target = result["random_final_hv_mean"]
    for i, (st, summ) in enumerate(result["summary"].items()):
        cs = [np.array(result["curves"][f"{st}-seed{s}"]) / target for s in summ["seeds"]]
        n = min(len(c) for c in cs)
        cs = np.array([c[:n] for c in cs])
        x = np.arange(1, n + 1)
        ax.plot(x, cs.mean(0), label=f"{st} ({len(cs)} seeds)", c=f"C{i}")
        ax.fill_between(x, cs.min(0), cs.max(0), color=f"C{i}", alpha=0.15)
    ax.axhline(1.0, c="k", ls="--", lw=0.8, label=f"random-{result['random_trials']} final (mean)")
    ax.axvline(150, c="0.6", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("trials")
    ax.set_ylabel("hypervolume / random's final")
    ax.set_title(f"{result['space']}: proxy_score vs {result['cost']} (mean, min-max over seeds)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
