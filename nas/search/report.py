"""The search's outputs: trials.csv, pareto.csv, pareto.png, report.json and report.md (atomic writes)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nas.io import write_bytes_atomic, write_text_atomic
from nas.search.select import Selection, TrialRecord
from nas.space import SearchSpace

__all__ = ["UNITS", "plot_pareto", "render_markdown", "write_csv"]

UNITS = {"proxy_score": "", "latency_ms": "ms", "flops_g": "GFLOPs", "params_m": "M"}


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    if isinstance(v, (list, tuple)):
        return "-".join(map(str, v))
    return v


def write_csv(path: str | os.PathLike, records: Sequence[TrialRecord], space: SearchSpace) -> Path:
    """One row per record: identity, every metric, raw proxies, then the value of every dimension."""
    metrics = sorted(
        {k for r in records for k in r.values},
        key=lambda k: (k not in UNITS, list(UNITS).index(k) if k in UNITS else 0, k),
    )
    proxies = sorted({k for r in records for k in r.proxies})
    dims = [d.path for d in space.dimensions]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "trial",
            "name",
            "digest",
            "reference",
            "feasible",
            *metrics,
            *(f"proxy.{p}" for p in proxies),
            "eval_s",
            *dims,
        ]
    )
    for r in records:
        try:
            values = space.values_of(r.arch)
        except Exception:  # a trial of another space version: leave the dimension columns empty
            values = {}
        w.writerow(
            [
                r.number,
                r.arch.name,
                r.arch.digest(),
                r.reference or "",
                r.feasible,
                *(_fmt(r.values.get(m, float("nan"))) for m in metrics),
                *(_fmt(r.proxies.get(p, float("nan"))) for p in proxies),
                f"{r.eval_s:.3f}",
                *(_fmt(values.get(d, "")) for d in dims),
            ]
        )
    return write_text_atomic(path, buf.getvalue())


def plot_pareto(
    path: str | os.PathLike,
    records: Sequence[TrialRecord],
    front: Sequence[TrialRecord],
    selections: Mapping[str, Selection],
    cost: str,
    score: str = "proxy_score",
    title: str = "",
) -> Path:
    """Score vs cost: all trials, infeasible ones, the Pareto front, references and selected tiers."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=120)
    feas = [r for r in records if r.feasible]
    infeas = [r for r in records if not r.feasible]
    ax.scatter(
        [r.values[cost] for r in feas], [r.values[score] for r in feas], s=12, c="0.6", label=f"trials ({len(feas)})"
    )
    if infeas:
        ax.scatter(
            [r.values[cost] for r in infeas],
            [r.values[score] for r in infeas],
            s=12,
            c="0.8",
            marker="x",
            label=f"over budget ({len(infeas)})",
        )
    # the 2-D front of (cost, score) among the feasible trials, drawn as a staircase
    best, stair = -math.inf, []
    for r in sorted(feas, key=lambda r: (r.values[cost], -r.values[score])):
        if r.values[score] > best:
            best = r.values[score]
            stair.append(r)
    if stair:
        ax.step([r.values[cost] for r in stair], [r.values[score] for r in stair], where="post", c="tab:blue", lw=1.2)
    ax.scatter(
        [r.values[cost] for r in front],
        [r.values[score] for r in front],
        s=22,
        c="tab:blue",
        label=f"Pareto front ({len(front)})",
        zorder=3,
    )
    for sel in selections.values():
        ax.axvline(sel.budget, c="0.7", ls="--", lw=0.8, zorder=0)
        if sel.reference is not None:
            r = sel.reference
            ax.scatter([r.values[cost]], [r.values[score]], marker="*", s=160, c="tab:orange", edgecolors="k", zorder=4)
            ax.annotate(
                r.arch.name, (r.values[cost], r.values[score]), textcoords="offset points", xytext=(6, -12), fontsize=8
            )
        if sel.record is not None:
            r = sel.record
            ax.scatter([r.values[cost]], [r.values[score]], marker="D", s=50, c="tab:red", edgecolors="k", zorder=5)
            ax.annotate(
                f"selected {sel.tier}",
                (r.values[cost], r.values[score]),
                textcoords="offset points",
                xytext=(6, 4),
                fontsize=8,
            )
    ax.scatter([], [], marker="*", s=100, c="tab:orange", edgecolors="k", label="released (reference)")
    ax.scatter([], [], marker="D", s=40, c="tab:red", edgecolors="k", label="selected per tier")
    unit = UNITS.get(cost, "")
    ax.set_xlabel(f"{cost} ({unit})" if unit else cost)
    ax.set_ylabel(score)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return write_bytes_atomic(path, buf.getvalue())


def render_markdown(report: Mapping[str, Any]) -> str:
    """report.md from the report.json dict."""
    objectives = report["objectives"]
    lines = [
        f"# Search report: {report['study']}",
        "",
        f"- space: `{report['space']}`, hardware: `{report['hardware']}`, strategy: `{report['strategy']}`, seed: {report['seed']}",
        f"- objectives: {', '.join(f'{o} ({d})' for o, d in zip(objectives, report['directions']))}; tier cost: `{report['cost']}`",
        f"- trials: {report['trials']['complete']} complete ({report['trials']}); Pareto front: {report['pareto_size']}",
        f"- search time: {report['search_time_s']:.1f} s this session; evaluation time over all trials: {report['eval_time_s']:.1f} s",
        f"- proxy: `{report.get('proxy_label', report['proxy'].get('name'))}`",
        f"- storage: `{report['storage']}`"
        + (" (interrupted: resume with the same command)" if report["interrupted"] else ""),
        "",
        "| tier | budget | | " + " | ".join(objectives) + " | trial | file |",
        "|---|---|---|" + "---|" * len(objectives) + "---|---|",
    ]
    for tier, t in report["tiers"].items():
        for label in ("reference", "selected"):
            row = t.get(label)
            if row is None:
                lines.append(
                    f"| {tier} | {t['budget']:.4g} | {label} | " + " | ".join("-" for _ in objectives) + " | - | - |"
                )
                continue
            vals = " | ".join(f"{row['values'][o]:.4g}" for o in objectives)
            lines.append(
                f"| {tier} | {t['budget']:.4g} | {label} `{row['name']}` | {vals} | {row['trial']} | {row.get('path', '')} |"
            )
    lines += ["", *_candidate_lines(report)]
    said = [t["evidence"]["sentence"] for t in report["tiers"].values() if t.get("evidence")]
    if said:
        lines += ["", "What each pick is worth (nas.search.evidence; experiments/proxy_correlation/PLAN.md):", ""]
        lines += [f"- {line}" for line in said]
    if report.get("rerank"):
        r = report["rerank"]
        lines += [
            "",
            f"Two stages (`rerank.k={r['k']}`): per tier the {r['k']} best by proxy_score under the budget, re-scored"
            f" by `{r['proxy']}` ({r['train_score']}); the best of them is selected:",
            "",
            "| tier | trial | architecture | proxy_score | re-rank score |",
            "|---|---|---|---|---|",
        ]
        for tier, t in report["tiers"].items():
            for c in t.get("rerank") or []:
                lines.append(f"| {tier} | {c['trial']} | `{c['name']}` | {c['proxy_score']:.4g} | {c['rerank']:.4g} |")
    lines += ["", "Proxy scores are zero-cost estimates, not measured accuracy (see docs/search.md).", ""]
    return "\n".join(lines)


def _candidate_lines(report: Mapping[str, Any]) -> list[str]:
    """Per tier: how many feasible candidates were evaluated under its budget and inside its window."""
    start = report.get("tier_start") or {}
    counts = start.get("trials") or {}
    target = report.get("tier_target") or {}
    aimed = target.get("trials") or {}
    lines = [
        f"Feasible candidates evaluated per tier (distinct architectures; window: next-smaller budget < "
        f"`{report['cost']}` <= budget; start: `{start.get('mode', 'none')}`, stratified start trials per tier "
        f"in brackets; after the start, trials aimed at the tier: `tier_target={target.get('mode', 'none')}`, "
        f"one in {target.get('every', '-')}, directed mutations in brackets):",
        "",
        "| tier | budget | window | under budget | in window | aimed after the start | selected |",
        "|---|---|---|---|---|---|---|",
    ]
    for tier, t in report["tiers"].items():
        lo, hi = t["window"]
        c = t["candidates"]
        sel = t.get("selected")
        if sel is None:
            what = "none"
        else:
            what = "the reference" if sel.get("equals_reference") else f"new `{sel['name']}`"
        started = f" ({counts[tier]})" if tier in counts else ""
        a = aimed.get(tier)
        a_cell = f"{a['aimed']} ({a['mutated']})" if a else "-"
        lines.append(
            f"| {tier} | {hi:.4g} | ({lo:.4g}, {hi:.4g}] | {c['under_budget']} | {c['in_window']}{started} "
            f"| {a_cell} | {what} |"
        )
    return lines


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
