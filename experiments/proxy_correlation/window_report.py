"""The equal-latency ground truth's report (issue 23), by the analysis PLAN.md declared before the data.

    python experiments/proxy_correlation/window_report.py          # window_results.json + window_results.md

Recomputed from the committed per-unit files only (results/window/, results/gt/ for the released M/L's seed 0,
results/proxies/, window.json); tests/proxy/test_window_report.py recomputes it and fails on any difference.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # this folder: the endpoints' statistics (one implementation for both reports)

from nas.io import write_text_atomic
from nas.latency.device import short_describe

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BASELINE = "FLOPs"  # PLAN.md: the declared baseline
TIERS = ("yolo_nas_s", "yolo_nas_m", "yolo_nas_l")


def _units(results: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """{name: {seed: result row}} of the window's units, and the released M/L's seed 0 from results/gt."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for r in report._load(results / "window"):
        if r.get("mAP50_95") is not None:
            out.setdefault(r["name"], {})[int(r["seed"])] = r
    for r in report._load(results / "gt"):
        if r["name"] in ("yolo_nas_m", "yolo_nas_l") and r.get("mAP50_95") is not None:
            out.setdefault(r["name"], {}).setdefault(int(r["seed"]), r)
    return out


def seed_values(units: dict[str, dict[int, dict[str, Any]]]) -> dict[str, dict[int, float]]:
    return {n: {s: float(r["mAP50_95"]) for s, r in sorted(by.items())} for n, by in units.items()}


def ceiling(values: dict[str, dict[int, float]], names: list[str], seeds=(0, 1, 2), boot: int = 2000) -> dict:
    """The window ranking's own noise: Spearman of seed i vs seed j (mean over pairs), split-half (seed k vs the
    mean of the others), and the Spearman-Brown reliability of the k-seed mean, with bootstrap intervals over
    architectures. Only architectures with every seed count."""
    full = [n for n in names if all(s in values.get(n, {}) for s in seeds)]
    k = len(seeds)
    if len(full) < 4:
        return {"n": len(full), "pairwise": None, "split_half": None, "reliability": None}
    m = np.array([[values[n][s] for s in seeds] for n in full])

    def stat(rows: np.ndarray) -> tuple[float, float, float] | None:
        if any(len(set(rows[:, j])) < 2 for j in range(k)):
            return None
        pair = np.mean(
            [stats.spearmanr(rows[:, i], rows[:, j]).statistic for i, j in itertools.combinations(range(k), 2)]
        )
        half = np.mean(
            [stats.spearmanr(rows[:, j], np.delete(rows, j, axis=1).mean(axis=1)).statistic for j in range(k)]
        )
        return float(pair), float(half), float(k * pair / (1 + (k - 1) * pair))

    point = stat(m)
    rng = np.random.default_rng(0)
    draws = [stat(m[rng.integers(0, len(full), len(full))]) for _ in range(boot)]
    draws = [d for d in draws if d is not None and all(math.isfinite(v) for v in d)]
    ci = lambda j: [float(np.percentile([d[j] for d in draws], 2.5)), float(np.percentile([d[j] for d in draws], 97.5))]  # noqa: E731
    return {
        "n": len(full),
        "seeds": list(seeds),
        "pairwise": point[0] if point else None,
        "pairwise_ci": ci(0) if draws else None,
        "split_half": point[1] if point else None,
        "split_half_ci": ci(1) if draws else None,
        "reliability": point[2] if point else None,
        "reliability_ci": ci(2) if draws else None,
        "abs_diff_mean": float(np.mean([abs(a - b) for row in m for a, b in itertools.combinations(row, 2)])),
        "sd_within": float(np.sqrt(np.mean(m.var(axis=1, ddof=1)))),
    }


def _signals(window: dict[str, Any], results: Path) -> dict[str, dict[str, tuple[float, float]]]:
    """{signal label: {arch: (value, CPU s)}}: every proxy file of the window's architectures, plus FLOPs, params
    and predicted latency from window.json (0 s)."""
    scores = report.proxy_scores(results)
    for u in window["units"]:
        scores.setdefault("FLOPs", {})[u["name"]] = (u["gflops"], 0.0)
        scores.setdefault("params", {})[u["name"]] = (u["params_m"], 0.0)
        scores.setdefault("predicted latency (cpu_ort)", {})[u["name"]] = (u["latency_ms"], 0.0)
    return scores


def window_names(window: dict[str, Any]) -> list[str]:
    """The S window set: the window.json units and the S picks of every recorded search (distinct)."""
    names = [u["name"] for u in window["units"]]
    for per_seed in window.get("search", {}).values():
        for rec in per_seed.values():
            names.append(rec["tiers"]["yolo_nas_s"]["unit"])
    return list(dict.fromkeys(names))


def _latency(window: dict[str, Any], results: Path) -> dict[str, float]:
    """Predicted cpu_ort ms of every window architecture (window.json; a search's pick from its record)."""
    lat = {u["name"]: float(u["latency_ms"]) for u in window["units"]}
    for per_seed in window.get("search", {}).values():
        for rec in per_seed.values():
            for t in rec["tiers"].values():
                if t["selected"].get("latency_ms") is not None:
                    lat.setdefault(t["unit"], float(t["selected"]["latency_ms"]))
    lat.update(report.latencies(results))  # the 27-sample (released M/L)
    return lat


def signal_table(values, names, scores, lat, boot: int = 2000) -> list[dict[str, Any]]:
    """PLAN.md's endpoints on the window set for every signal with a value for enough of its architectures, and the
    paired difference of each against the baseline (FLOPs)."""
    y_all = {n: float(np.mean(list(values[n].values()))) for n in names if values.get(n)}
    rows = []
    for label, by in sorted(scores.items()):
        used = [n for n in names if n in y_all and n in by and n in lat]
        if len(used) < 4:
            continue
        x, y, z = [by[n][0] for n in used], [y_all[n] for n in used], [lat[n] for n in used]
        row = {
            "signal": label,
            "n": len(used),
            **report.rank_stats(x, y, boot),
            "pairs": report.same_latency_pairs(x, y, z, ratio=math.inf),
            "pairs_ci": pairs_right_ci(x, y, boot),
            "partial_spearman_given_latency": report.partial_spearman(x, y, z, boot),
            "budget_regret": report.budget_regret(x, y, z),
            "cost_s": float(np.mean([by[n][1] for n in used])),
        }
        if label != BASELINE and BASELINE in scores:
            both = [n for n in used if n in scores[BASELINE]]
            if len(both) >= 4:
                row["vs_baseline"] = report.paired_difference(
                    [by[n][0] for n in both], [scores[BASELINE][n][0] for n in both],
                    [y_all[n] for n in both], [lat[n] for n in both], boot,
                )  # fmt: skip
        rows.append(row)
    rows.sort(key=lambda r: -(r["spearman"] if r["spearman"] is not None else -2))
    return rows


def pairs_right_ci(x, y, boot: int = 2000) -> list[float] | None:
    """95% bootstrap interval (architectures resampled) of the fraction of pairs the signal orders right."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rng = np.random.default_rng(0)
    vals = []
    for _ in range(boot):
        i = rng.integers(0, len(x), len(x))
        acc = report.same_latency_pairs(x[i], y[i], np.ones(len(i)), ratio=math.inf)["accuracy"]
        if acc is not None:
            vals.append(acc)
    return [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))] if vals else None


def two_level_difference(
    a: dict[str, dict[int, float]], b: dict[int, float], boot: int = 2000, ref_name: str | None = None
) -> dict[str, Any]:
    """Mean trained mAP of the picks `a` ({"unit@search_seed": {seed: mAP}}: one pick per search seed) minus the
    reference's (`b`: {seed: mAP}, the unit `ref_name`), with a two-level bootstrap (search seeds, then training seeds
    within each architecture) and a Welch t interval on the per-seed values as a check.

    A pick that is the reference's own unit shares its trainings: in each resample it takes the reference's resampled
    mean, so its difference is 0 by identity rather than two independent draws of the same numbers. No decision is
    made while a search seed's pick has no training (the mean would be over the trained picks only)."""
    untrained = sum(1 for v in a.values() if not v)
    picks = [(k.rsplit("@", 1)[0], list(v.values())) for k, v in a.items() if v]
    ref = list(b.values())
    if not picks or not ref:
        return {"diff": None, "n_picks_untrained": untrained}
    point = float(np.mean([np.mean(p) for _, p in picks]) - np.mean(ref))
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(boot):
        ref_mean = float(np.mean(rng.choice(ref, len(ref))))
        chosen = [picks[i] for i in rng.integers(0, len(picks), len(picks))]
        pm = np.mean([ref_mean if name == ref_name else np.mean(rng.choice(p, len(p))) for name, p in chosen])
        draws.append(float(pm - ref_mean))
    flat = [v for _, p in picks for v in p]
    welch = None
    if len(flat) >= 2 and len(ref) >= 2:
        t = stats.ttest_ind(flat, ref, equal_var=False)
        ci = t.confidence_interval(0.95)
        welch = [float(ci.low), float(ci.high)]
    lo, hi = float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))
    # no decision from a side without a spread (one training: its bootstrap interval is a point), nor from a subset
    # of the search seeds
    enough = len(ref) >= 2 and len(flat) >= 2 and welch is not None and not untrained
    return {
        "diff": point,
        "ci": [lo, hi],
        "welch_ci": welch,
        "n_picks": len(picks),
        "n_picks_untrained": untrained,
        "n_pick_trainings": len(flat),
        "n_reference_trainings": len(ref),
        "decision": "too few trainings"
        if not enough
        else "better"
        if lo > 0
        else "worse"
        if hi < 0
        else "not distinguishable",
    }


DECISION_WORDS = {
    "better": "the search beats released at this tier: it emits its pick",
    "worse": "the released layout is better: the search emits the released layout",
    "not distinguishable": "not distinguishable at this evidence: the search emits the released layout",
    "too few trainings": "too few trainings for a decision (each side needs 2 or more, every search seed's pick at "
    "least 1): the search emits the released layout",
}


def measured_latency(results: Path) -> dict[str, float]:
    """{unit: measured cpu_ort latency as a multiple of the released S's} from window.py latency's file (PLAN.md:
    each pick's and the released layout's latency measured on the machine, not only predicted); {} until it ran."""
    path = results / "window_latency.json"
    if not path.is_file():
        return {}
    return {n: float(u["ratio_to_released_s"]) for n, u in json.loads(path.read_text())["units"].items()}


def truth_test(
    window: dict[str, Any], values: dict[str, dict[int, float]], boot: int = 2000, measured: dict | None = None
) -> list[dict]:
    """Per search signal and tier: the picks (one per search seed) against the released layout; at S also against
    the FLOPs-under-budget pick and a random in-window architecture (the mean of the 12). `measured`: each unit's
    measured latency relative to the released S (`measured_latency`), recorded beside the picks."""
    measured = measured or {}
    rows = []
    window12 = [u["name"] for u in window["units"] if u["role"] == "window"]
    for signal, per_seed in sorted(window.get("search", {}).items()):
        for tier in TIERS:
            picks = {f"{rec['tiers'][tier]['unit']}@{k}": values.get(rec["tiers"][tier]["unit"], {})
                     for k, rec in sorted(per_seed.items())}  # fmt: skip
            row = {
                "signal": signal,
                "tier": tier,
                "picks": {k: v for k, v in picks.items()},
                "equals_released": [rec["tiers"][tier]["equals_released"] for _, rec in sorted(per_seed.items())],
                "released": values.get(tier, {}),
                "vs_released": two_level_difference(picks, values.get(tier, {}), boot, ref_name=tier),
            }
            units = [rec["tiers"][tier]["unit"] for _, rec in sorted(per_seed.items())]
            if measured:
                row["measured_x_s"] = {n: measured.get(n) for n in dict.fromkeys([tier, *units])}
            if tier == "yolo_nas_s":
                row["vs_flops_s"] = two_level_difference(picks, values.get("flops_s", {}), boot, ref_name="flops_s")
                means = {n: float(np.mean(list(values[n].values()))) for n in window12 if values.get(n)}
                row["random_in_window"] = float(np.mean(list(means.values()))) if means else None
                row["random_in_window_n"] = len(means)
            rows.append(row)
    return rows


def build(results: Path = RESULTS, boot: int = 2000) -> dict[str, Any]:
    window = json.loads((results.parent / "window.json").read_text())
    units = _units(results)
    values = seed_values(units)
    names = window_names(window)
    lat = _latency(window, results)
    rows = report._load(results / "window")  # this experiment's trainings (the released M/L's seed 0 is results/gt's)
    import run  # this folder's runner: the recipe every unit trains with

    return {
        "what": "the equal-latency ground truth of the S window (PLAN.md) and the redone truth test",
        "recipe": rows[0].get("recipe") if rows else run.RECIPE,
        "units": {n: values[n] for n in sorted(values)},
        "n_trainings": len(rows),
        **training_cost(rows),
        "machines": sorted({r.get("machine", "?") for r in rows}),
        "machine_effect": machine_effect(rows, report._load(INT8_TRAININGS)),
        "ceiling": ceiling(values, names, boot=boot),
        "signals": signal_table(values, names, _signals(window, results), lat, boot),
        "truth_test": truth_test(window, values, boot, measured_latency(results)),
    }


INT8_TRAININGS = HERE.parent / "int8" / "raw" / "train"  # the released S again, same recipe, on another machine


def machine_effect(rows: list[dict[str, Any]], extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Does the CPU a unit trained on shift its mAP? For every architecture trained with the same recipe on more than
    one machine (the window's units and `extra`: other experiments' trainings of the same layouts), the mean per
    machine and the difference of the two means with its Welch 95% interval. The window mixes machines across
    sessions; an interval well away from 0 would make that a confound."""
    recipe = rows[0]["recipe"] if rows else None
    groups: dict[str, dict[str, list[float]]] = {}
    for r in [*rows, *(e for e in extra if e.get("recipe") == recipe)]:
        groups.setdefault(r["name"], {}).setdefault(short_describe(r.get("machine", "?")), []).append(
            float(r["mAP50_95"])
        )
    out = []
    for name, per in sorted(groups.items()):
        if len(per) < 2:
            continue
        (ma, a), (mb, b) = sorted(per.items())[:2]
        row: dict[str, Any] = {"name": name, "machines": {ma: a, mb: b}, "difference": float(np.mean(b) - np.mean(a))}
        if len(a) > 1 and len(b) > 1:
            va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
            df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
            half = float(stats.t.ppf(0.975, df) * math.sqrt(va + vb))
            row["ci95"] = [row["difference"] - half, row["difference"] + half]
        out.append(row)
    return out


def _unit_cpu_s(r: dict[str, Any]) -> tuple[float, bool] | None:
    """(CPU seconds of the whole training, estimated?): measured where one process ran it all; a resumed training
    records only its last process's CPU seconds, so its whole cost is estimated per epoch (cpu_s x epochs / epochs
    run). None when the file records no CPU time."""
    if not r.get("cpu_s_this_process"):
        return None
    if not r.get("resumed"):
        return float(r["cpu_s_this_process"]), False
    if not r.get("epochs_this_process"):
        return None
    return float(r["cpu_s_this_process"]) * r["recipe"]["epochs"] / r["epochs_this_process"], True


def training_cost(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """CPU-hours of the trainings, in all and per machine fingerprint (units of different CPUs cost differently)."""
    costs = [(r.get("machine", "?"), _unit_cpu_s(r)) for r in rows]
    costs = [(m, c) for m, c in costs if c is not None]
    by_machine: dict[str, dict[str, Any]] = {}
    for m, (cpu_s, _) in costs:
        e = by_machine.setdefault(m, {"units": 0, "cpu_s": 0.0})
        e["units"] += 1
        e["cpu_s"] += cpu_s
    return {
        "cpu_hours": round(sum(c for _, (c, _) in costs) / 3600, 2),
        "cpu_hours_measured": round(sum(c for _, (c, est) in costs if not est) / 3600, 2),
        "n_resumed_estimated": sum(est for _, (_, est) in costs),
        "cpu_hours_by_machine": {
            m: {"units": e["units"], "cpu_hours": round(e["cpu_s"] / 3600, 2)} for m, e in sorted(by_machine.items())
        },
    }


# The search's names for the signals (nas.search.evidence.signal_key): the report's labels and the searches' names
LABEL_KEYS = {
    "zero-cost vote": "zero_cost[synflow,naswot,snip,zen]",
    **{p: f"zero_cost[{p}]" for p in ("synflow", "naswot", "snip", "grad_norm", "zen")},
    "FLOPs": "flops",
    "params": "params",
}
SEARCH_KEYS = {"vote": LABEL_KEYS["zero-cost vote"], "synflow": LABEL_KEYS["synflow"]}
EVIDENCE = HERE.parents[1] / "nas" / "search" / "evidence.json"


def evidence(res: dict[str, Any]) -> dict[str, Any]:
    """What nas.search.evidence reads: per signal its same-latency pairs right on the window set, per searched signal
    and tier its truth test."""
    signals = {}
    for r in res["signals"]:
        if r["signal"] in LABEL_KEYS and r["pairs"]["accuracy"] is not None:
            signals[LABEL_KEYS[r["signal"]]] = {
                "label": r["signal"],
                "pairs_right": round(r["pairs"]["accuracy"], 4),
                "pairs_right_ci": [round(v, 4) for v in r["pairs_ci"]] if r.get("pairs_ci") else None,
                "pairs": r["pairs"]["pairs"],
                "n": r["n"],
            }
    truth: dict[str, dict[str, Any]] = {}
    for t in res["truth_test"]:
        d = t["vs_released"]
        if t["signal"] in SEARCH_KEYS and d.get("diff") is not None:
            truth.setdefault(SEARCH_KEYS[t["signal"]], {})[t["tier"]] = {
                "diff": round(d["diff"], 4),
                "ci": [round(v, 4) for v in d["ci"]],
                "decision": d["decision"],
                "n_pick_trainings": d["n_pick_trainings"],
                "n_reference_trainings": d["n_reference_trainings"],
            }
    recipe = res.get("recipe") or {}
    return {
        "source": "experiments/proxy_correlation/window_results.json (window_report.py; PLAN.md)",
        "space": "yolo_nas",
        "data": f"{recipe.get('data', 'synthetic')} set, {recipe.get('imgsz', '?')} px, {recipe.get('epochs', '?')} epochs",
        "signals": signals,
        "truth_test": truth,
    }


def _f(v, ci=None, fmt="{:.2f}") -> str:
    if v is None:
        return "–"
    s = fmt.format(v)
    return f"{s} [{fmt.format(ci[0])}, {fmt.format(ci[1])}]" if ci else s


def markdown(res: dict[str, Any]) -> str:
    c = res["ceiling"]
    lines = [
        "# The S window: ground truth at equal latency (PLAN.md)",
        "",
        f"{res['n_trainings']} trainings so far ({res['cpu_hours']} CPU-hours at 1 thread; "
        f"{res['n_resumed_estimated']} resumed one(s) estimated per epoch), recipe as results.md. Machines: "
        + "; ".join(
            f"{short_describe(m)} ({e['units']} trainings, {e['cpu_hours']} CPU-hours)"
            for m, e in res["cpu_hours_by_machine"].items()
        )
        + ".",
        "",
        f"Ceiling (architectures with 3 seeds: {c['n']}): seed-vs-seed Spearman {_f(c.get('pairwise'), c.get('pairwise_ci'))},"
        f" split-half {_f(c.get('split_half'), c.get('split_half_ci'))}, reliability of the 3-seed mean"
        f" {_f(c.get('reliability'), c.get('reliability_ci'))} (goal ≥ 0.8); within-architecture SD"
        f" {_f(c.get('sd_within'))} mAP.",
        "",
        "| signal | n | Spearman ρ [95% CI] | pairs right (pairs) | partial ρ given latency | budget regret mAP"
        " | Δρ vs FLOPs [95% CI] | Δregret vs FLOPs [95% CI] | CPU s |",
        "|---|---:|---|---:|---|---:|---|---|---:|",
    ]
    for r in res["signals"]:
        p, part, reg, vs = (
            r["pairs"],
            r["partial_spearman_given_latency"],
            r["budget_regret"],
            r.get("vs_baseline") or {},
        )
        lines.append(
            f"| {r['signal']} | {r['n']} | {_f(r['spearman'], r['spearman_ci'])} | "
            f"{_f(p['accuracy'])} ({p['pairs']}) | {_f(part.get('value'), part.get('ci'))} | {_f(reg.get('mean'))} | "
            f"{_f(vs.get('rho'), vs.get('rho_ci'))} | {_f(vs.get('regret'), vs.get('regret_ci'))} | {r['cost_s']:.1f} |"
        )
    lines += ["", "Truth test (pick − reference, two-level bootstrap [95% CI]; Welch t interval as a check):", ""]
    lines += [
        "| search | tier | picks (search seed: mean mAP, seeds) | released (seeds) | pick − released | decision |"
    ]
    lines += ["|---|---|---|---|---|---|"]
    for t in res["truth_test"]:
        d = t["vs_released"]
        picks = ", ".join(
            f"{k}: {np.mean(list(v.values())):.2f} ({len(v)})" if v else f"{k}: –" for k, v in t["picks"].items()
        )
        rel = t["released"]
        rel_s = f"{np.mean(list(rel.values())):.2f} ({len(rel)})" if rel else "–"
        lines.append(
            f"| {t['signal']} | {t['tier']} | {picks} | {rel_s} | {_f(d.get('diff'), d.get('ci'))} | "
            f"{DECISION_WORDS[d['decision']] if d.get('diff') is not None else 'waiting for trainings'} |"
        )
    timed = [t for t in res["truth_test"] if t.get("measured_x_s")]
    if timed:
        lines += ["", "Measured latency (cpu_ort FP32, 1 thread, 640 px, process clock; `window.py latency`), as a"
                  " multiple of the released S measured beside it:", ""]  # fmt: skip
        for t in timed:
            cells = ", ".join(f"{n} {v:.2f}x" if v is not None else f"{n} –" for n, v in t["measured_x_s"].items())
            lines.append(f"- {t['signal']} {t['tier']}: {cells}")
    for t in res["truth_test"]:
        if t["tier"] == "yolo_nas_s" and t.get("vs_flops_s", {}).get("diff") is not None:
            f = t["vs_flops_s"]
            lines += ["", f"{t['signal']} S picks − the largest-FLOPs-under-budget pick: {_f(f['diff'], f['ci'])} ({f['decision']}); "
                      f"a random in-window architecture (mean of {t['random_in_window_n']}): {_f(t['random_in_window'])} mAP."]  # fmt: skip
    for e in res.get("machine_effect", []):
        (ma, a), (mb, b) = e["machines"].items()
        lines += [
            "",
            f"Machine check, `{e['name']}` trained with this recipe on two CPUs (this window's units and, for the "
            f"released S, experiments/int8's): {ma} {', '.join(f'{v:.2f}' for v in a)}; {mb} {', '.join(f'{v:.2f}' for v in b)}; "
            f"difference of means {_f(e['difference'], e.get('ci95'))} (Welch 95%; the window mixes machines across "
            "sessions: an interval excluding 0 would make the machine a confound).",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boot", type=int, default=2000)
    args = ap.parse_args(argv)
    res = build(RESULTS, args.boot)
    write_text_atomic(HERE / "window_results.json", json.dumps(res, indent=1) + "\n")
    write_text_atomic(HERE / "window_results.md", markdown(res))
    write_text_atomic(EVIDENCE, json.dumps(evidence(res), indent=1) + "\n")
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
