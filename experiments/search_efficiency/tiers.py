"""Tier coverage: how many feasible candidates each tier window gets, per way of covering the tiers.

1. The cost of `--samples` uniform samples of the space against the tier budgets (the references' costs):
   the fraction of the space in each window (<= S, S..M, M..L, > L). Counted from the ArchConfig only.
2. Searches with a cheap proxy (`--proxy flops`: no model is built) per strategy and seed, per variant
   (tier_start/tier_target): none/none (the strategy alone), stratified/none (stratified start only),
   stratified/constraint (aimed trials judged by their tier's window) and stratified/mutate (aimed trials mutate
   a best candidate of their window): per tier, the feasible evaluated candidates under the budget and inside
   the window, how many of those came after the start, and whether the selection is the reference.

    python experiments/search_efficiency/tiers.py                       # nsga2 tpe, seeds 0 1, 60 trials, cpu_ort
    python experiments/search_efficiency/tiers.py --seeds 0 --n-trials 100 --variants stratified/mutate

Writes <out>/tiers.json and <out>/tiers.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from nas.io import write_text_atomic
from nas.search import ProxyConfig, SearchConfig, SpaceConfig, StorageConfig, run_search
from nas.search.config import StrategyConfig, group_option
from nas.search.objectives import Evaluator
from nas.search.tiers import tier_counts, tier_windows
from nas.space import load_space

HERE = Path(__file__).resolve().parent
VARIANTS = ("none/none", "stratified/none", "stratified/constraint", "stratified/mutate")


def config(args: argparse.Namespace, strategy: str, seed: int, variant: str, every: int = 1) -> SearchConfig:
    start, target = variant.split("/")
    proxy = group_option("proxy", args.proxy, ProxyConfig)
    proxy.cache_dir = args.cache_dir
    return SearchConfig(
        space=SpaceConfig(name=args.space),
        hardware=args.hardware,
        proxy=proxy,
        strategy=group_option("strategy", strategy, StrategyConfig),
        storage=StorageConfig(kind="memory"),
        n_trials=args.n_trials,
        seed=seed,
        tier_start=start,
        tier_target=target,
        tier_target_every=every,
        progress=False,
        threads=1,
        name=f"{strategy}-seed{seed}-{start}-{target}-every{every}",
    )


def uniform_fractions(args: argparse.Namespace) -> dict:
    """Fraction of `args.samples` uniform samples of the space per tier window (and above the largest)."""
    space = load_space(args.space)
    ev = Evaluator(config(args, "random", 0, "none/none"), space)
    budgets = {n: ev.costs(a)[ev.cost] for n, a in space.references.items()}
    rng = np.random.default_rng(args.sample_seed)
    costs = np.array([ev.costs(space.random(rng))[ev.cost] for _ in range(args.samples)])
    smallest = space.decode({d.path: d.choices[0] for d in space.dimensions})
    fractions = {t: float(((costs > lo) & (costs <= hi)).mean()) for t, (lo, hi) in tier_windows(budgets).items()}
    fractions["above_largest"] = float((costs > max(budgets.values())).mean())
    return {
        "cost": ev.cost,
        "samples": args.samples,
        "sample_seed": args.sample_seed,
        "budgets": budgets,
        "first_choice_arch_cost": ev.costs(smallest)[ev.cost],
        "sample_cost": {"min": float(costs.min()), "median": float(np.median(costs)), "max": float(costs.max())},
        "fraction_in_window": fractions,
    }


def one_search(args: argparse.Namespace, strategy: str, seed: int, variant: str, every: int) -> dict:
    cfg = config(args, strategy, seed, variant, every)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        res = run_search(cfg, tmp)
    budgets = {t: v["budget"] for t, v in res.report["tiers"].items()}
    # candidates evaluated after the start: the references and the stratified start are the first trials
    n_first = sum(r.reference is not None for r in res.trials) + sum(res.report["tier_start"]["trials"].values())
    later = [r for r in res.trials if r.number >= n_first]
    after = tier_counts(later, res.report["cost"], budgets)
    tiers = {}
    for tier, t in res.report["tiers"].items():
        sel = t["selected"]
        tiers[tier] = {
            **t["candidates"],
            "in_window_after_start": after[tier]["in_window"],
            "selected": None if sel is None else sel["digest"],
            "selected_is_reference": bool(sel and sel["equals_reference"]),
            "best_score": None if sel is None else sel["values"]["proxy_score"],
        }
    return {
        "strategy": strategy,
        "seed": seed,
        "variant": variant,
        "tier_target_every": every if not variant.endswith("/none") else None,
        "start_trials": res.report["tier_start"]["trials"],
        "aimed_trials": res.report["tier_target"]["trials"],
        "wall_s": round(time.perf_counter() - t0, 1),
        "tiers": tiers,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="yolo_nas")
    ap.add_argument("--hardware", default="cpu_ort")
    ap.add_argument("--proxy", default="flops", help="a proxy preset; flops/params build no model")
    ap.add_argument("--strategies", nargs="+", default=["nsga2", "tpe"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), help="tier_start/tier_target pairs")
    ap.add_argument("--every", nargs="+", type=int, default=[1, 2, 3], help="tier_target_every values to run")
    ap.add_argument("--n-trials", type=int, default=60)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--cache-dir", default=str(HERE / ".cache"), help="proxy cache (by architecture digest)")
    ap.add_argument("--out", default=str(HERE))
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*latency table.*")  # the shipped table's CPU differs: ratios hold
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.perf_counter()
    uniform = uniform_fractions(args)
    runs = []
    for strategy in args.strategies:
        for seed in args.seeds:
            for variant in args.variants:
                for every in [1] if variant.endswith("/none") else args.every:
                    runs.append(one_search(args, strategy, seed, variant, every))
                    print(f"  {strategy} seed {seed} {variant} every {every}: {runs[-1]['tiers']}", flush=True)
    result = {
        "space": args.space,
        "hardware": args.hardware,
        "proxy": args.proxy,
        "n_trials": args.n_trials,
        "default_tier_target_every": SearchConfig.tier_target_every,
        "uniform": uniform,
        "runs": runs,
        "benchmark_wall_s": round(time.perf_counter() - t0, 1),
    }
    out = Path(args.out)
    write_text_atomic(out / "tiers.json", json.dumps(result, indent=1) + "\n")
    write_text_atomic(out / "tiers.md", markdown(result))
    print((out / "tiers.md").read_text())
    return 0


def markdown(result: dict) -> str:
    u = result["uniform"]
    tiers = list(u["budgets"])
    lines = [
        f"# Tier coverage on `{result['space']}` (cost: {u['cost']} on {result['hardware']})",
        "",
        f"Uniform samples ({u['samples']}, seed {u['sample_seed']}): cost min {u['sample_cost']['min']:.4g}, "
        f"median {u['sample_cost']['median']:.4g}, max {u['sample_cost']['max']:.4g}; the space's first-choice "
        f"architecture costs {u['first_choice_arch_cost']:.4g}.",
        "",
        "| window | " + " | ".join(f"{t} ({u['budgets'][t]:.4g})" for t in tiers) + " | above the largest |",
        "|---|" + "---|" * (len(tiers) + 1),
        "| fraction of uniform samples | "
        + " | ".join(f"{u['fraction_in_window'][t]:.1%}" for t in [*tiers, "above_largest"])
        + " |",
        "",
        f"Searches (proxy={result['proxy']}, {result['n_trials']} trials; variant: tier_start/tier_target; "
        "every: tier_target_every, one sampled trial in `every` aims at a tier): feasible evaluated candidates per "
        "tier, in window (of them after the start) / under budget; `ref` where the tier's selection is the "
        "released reference.",
        "",
        "| strategy | seed | variant | every | " + " | ".join(tiers) + " | distinct selections |",
        "|---|---|---|---|" + "---|" * (len(tiers) + 1),
    ]
    for r in result["runs"]:
        cells = []
        for t in tiers:
            c = r["tiers"][t]
            cells.append(
                f"{c['in_window']} ({c['in_window_after_start']}) / {c['under_budget']}"
                + (" ref" if c["selected_is_reference"] else "")
            )
        distinct = len({c["selected"] for c in r["tiers"].values() if c["selected"]})
        every = r["tier_target_every"] or "-"
        lines.append(
            f"| {r['strategy']} | {r['seed']} | {r['variant']} | {every} | " + " | ".join(cells) + f" | {distinct} |"
        )
    lines += ["", f"Benchmark wall time: {result['benchmark_wall_s']} s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
