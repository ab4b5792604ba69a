"""The proxy table: each proxy's rank agreement with the trained ground truth, with bootstrap intervals.

Ground truth per architecture: final mAP50-95 of the recipe, averaged over the seeds trained. Per proxy score:
Spearman rho and Kendall tau over the architectures both have (95% percentile bootstrap intervals, resampling
architectures), top-5 overlap (of the 5 best by ground truth, how many the proxy also puts in its top 5) and the
mean CPU seconds per candidate (one thread) on the machine recorded. The ceiling: rho between the two seeds of the architectures
trained twice. "Settled": rho between the mAP at the second-to-last validation and the final one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from nas.io import write_text_atomic
from nas.latency.device import short_describe

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
# score key in a proxy's result file -> (table name, cost key)
ZERO_COST_SCORES = {
    "vote": ("zero-cost vote", "vote_s"),
    "synflow": ("synflow", "synflow_s"),
    "naswot": ("naswot", "naswot_s"),
    "snip": ("snip", "snip_s"),
    "grad_norm": ("grad_norm", "grad_norm_s"),
    "zen": ("zen", "zen_s"),
    "params": ("params", "params_s"),
    "flops": ("FLOPs", "flops_s"),
}
TRAINED_SCORES = ("mAP50_95", "tse")


def rank_stats(x: list[float], y: list[float], boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Spearman and Kendall of (x, y) with 95% bootstrap intervals (resampling pairs), and n."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    out: dict[str, Any] = {"n": n}
    if n < 3:
        return {**out, "spearman": None, "kendall": None, "spearman_ci": None, "kendall_ci": None}
    out["spearman"] = float(stats.spearmanr(x, y).statistic)
    out["kendall"] = float(stats.kendalltau(x, y).statistic)
    rng = np.random.default_rng(seed)
    rhos, taus = [], []
    for _ in range(boot):
        i = rng.integers(0, n, n)
        if len(set(x[i])) < 2 or len(set(y[i])) < 2:
            continue
        rhos.append(stats.spearmanr(x[i], y[i]).statistic)
        taus.append(stats.kendalltau(x[i], y[i]).statistic)
    ci = lambda v: [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))] if v else None  # noqa: E731
    out["spearman_ci"], out["kendall_ci"] = ci(rhos), ci(taus)
    return out


def _residual_ranks(v: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The ranks of v less their least-squares line on the ranks of z."""
    rv, rz = stats.rankdata(v), stats.rankdata(z)
    slope, icept = np.polyfit(rz, rv, 1)
    return rv - (slope * rz + icept)


def _partial_value(x: np.ndarray, y: np.ndarray, z: np.ndarray, size_only: float | None = None) -> float | None:
    """The point value of `partial_spearman` (None where it is undefined; `size_only` where x's ranks are a linear
    function of z's, e.g. FLOPs against predicted latency: a signal that only measures size, 0 when comparing)."""
    if min(len(set(x)), len(set(y)), len(set(z))) < 2:
        return None
    ex, ey = _residual_ranks(x, z), _residual_ranks(y, z)
    if np.allclose(ex, 0) and not np.allclose(ey, 0):
        return size_only
    if np.allclose(ex, 0) or np.allclose(ey, 0):
        return None
    return float(np.corrcoef(ex, ey)[0, 1])


def partial_spearman(x, y, z, boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Spearman of (x, y) with z held fixed: the Pearson correlation of the rank residuals of x and y after each is
    regressed on the ranks of z (here z is the predicted latency, so a proxy that only measures size scores 0).
    With a 95% bootstrap interval; None where a residual is constant (x or y a monotone function of z)."""
    x, y, z = (np.asarray(v, dtype=float) for v in (x, y, z))
    n = len(x)

    def one(i: np.ndarray) -> float | None:
        return _partial_value(x[i], y[i], z[i])

    if n < 4:
        return {"n": n, "value": None, "ci": None}
    rng = np.random.default_rng(seed)
    vals = [v for v in (one(rng.integers(0, n, n)) for _ in range(boot)) if v is not None and math.isfinite(v)]
    ci = [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))] if vals else None
    return {"n": n, "value": one(np.arange(n)), "ci": ci}


def same_latency_pairs(x, y, z, ratio: float = 1.25) -> dict[str, Any]:
    """Of the pairs whose z (predicted latency) is within `ratio` of each other and whose y differ, the fraction
    the proxy x orders as y does (ties in x count half): how well it ranks candidates of one latency budget."""
    x, y, z = (np.asarray(v, dtype=float) for v in (x, y, z))
    right, pairs = 0.0, 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            if max(z[i], z[j]) > ratio * min(z[i], z[j]) or y[i] == y[j]:
                continue
            pairs += 1
            s = np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
            right += 1.0 if s > 0 else 0.5 if s == 0 else 0.0
    return {"pairs": pairs, "accuracy": right / pairs if pairs else None, "ratio": ratio}


def _pairs_accuracy(x: np.ndarray, y: np.ndarray, z: np.ndarray, ratio: float = 1.25) -> float | None:
    """`same_latency_pairs`' accuracy, vectorised (the paired bootstrap computes it thousands of times)."""
    i, j = np.triu_indices(len(x), 1)
    keep = (np.maximum(z[i], z[j]) <= ratio * np.minimum(z[i], z[j])) & (y[i] != y[j])
    if not keep.any():
        return None
    s = np.sign(x[i] - x[j])[keep] * np.sign(y[i] - y[j])[keep]
    return float(np.mean(np.where(s > 0, 1.0, np.where(s == 0, 0.5, 0.0))))


def _spearman_value(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rho (Pearson of the average ranks; scipy's spearmanr, without its per-call checks)."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(np.corrcoef(stats.rankdata(x), stats.rankdata(y))[0, 1])


# PLAN.md's endpoints, each as (name, f(x, y, z) -> value or None, True where higher is better)
ENDPOINTS = (
    ("spearman", lambda x, y, z: _spearman_value(x, y), True),
    ("partial_spearman_given_latency", lambda x, y, z: _partial_value(x, y, z, size_only=0.0), True),
    ("same_latency_pairs_right", _pairs_accuracy, True),
    ("budget_regret", lambda x, y, z: budget_regret(x, y, z)["mean"], False),
)


def paired_endpoints(a, b, y, z, boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Signal `a` minus signal `b` on every endpoint of PLAN.md (overall rho, partial rho given latency, same-latency
    pairs right, budget regret), the architectures resampled together (one paired bootstrap for all four): per
    endpoint a's and b's point values, the difference with its 95% interval, and the fraction of resamples in which
    `a` is better (higher, or for the regret lower)."""
    a, b, y, z = (np.asarray(v, dtype=float) for v in (a, b, y, z))
    n = len(y)
    out: dict[str, Any] = {"n": n}
    if n < 4:
        return out
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, n, n) for _ in range(boot)]
    for name, f, higher in ENDPOINTS:
        va, vb = f(a, y, z), f(b, y, z)
        diffs = []
        for i in draws:
            if len(set(y[i])) < 2:
                continue
            da, db = f(a[i], y[i], z[i]), f(b[i], y[i], z[i])
            if da is not None and db is not None and math.isfinite(da) and math.isfinite(db):
                diffs.append(da - db)
        d = np.asarray(diffs)
        out[name] = {
            "a": va,
            "b": vb,
            "diff": va - vb if va is not None and vb is not None else None,
            "ci": [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))] if len(d) else None,
            "a_better": float(np.mean(d > 0 if higher else d < 0)) if len(d) else None,
        }
    return out


def budget_regret(x, y, z) -> dict[str, Any]:
    """What a search under a latency budget loses by trusting proxy x: for each budget B at one of the
    architectures' predicted latencies z, pick the architecture with the best x among those with z <= B;
    regret = the best y (trained mAP) under B minus the pick's y. Mean and max over the budgets, and how often
    the pick is the best (ties in x: the first)."""
    out = two_stage_regret(x, x, y, z, k=1)
    del out["k"]
    return out


def two_stage_regret(cheap, costly, y, z, k: int = 3) -> dict[str, Any]:
    """`budget_regret` of a two-stage pick: under each budget the `k` best by the cheap proxy survive and the costly
    one picks among them (the costly proxy runs k times per budget instead of once per candidate)."""
    cheap, costly, y, z = (np.asarray(v, dtype=float) for v in (cheap, costly, y, z))
    regrets = []
    for b in sorted(set(z.tolist())):
        under = np.flatnonzero(z <= b)
        if len(under) < 2:
            continue
        survivors = under[np.argsort(-cheap[under], kind="stable")[:k]]
        pick = survivors[int(np.argmax(costly[survivors]))]
        regrets.append(float(y[under].max() - y[pick]))
    if not regrets:
        return {"budgets": 0, "mean": None, "max": None, "best_picked": None, "k": k}
    return {
        "budgets": len(regrets),
        "mean": float(np.mean(regrets)),
        "max": float(np.max(regrets)),
        "best_picked": float(np.mean([r == 0 for r in regrets])),
        "k": k,
    }


def paired_difference(a, b, y, z, boot: int = 2000, seed: int = 0, a_costly=None) -> dict[str, Any]:
    """Proxy `a` against proxy `b` on the same architectures, with the architectures resampled together (a paired
    bootstrap, so what both get right or wrong cancels): Spearman rho(a) - rho(b) and budget regret(a) -
    regret(b) (mean over budgets; negative: `a` loses less mAP), each with its 95% interval, and the fraction of
    resamples in which `a`'s regret is below `b`'s. With `a_costly`, `a` is a two-stage pick (`a` pre-filters,
    `a_costly` ranks the survivors; `two_stage_regret`) and only the regret is compared."""
    a, b, y, z = (np.asarray(v, dtype=float) for v in (a, b, y, z))
    c = None if a_costly is None else np.asarray(a_costly, dtype=float)
    n = len(y)

    def one(i: np.ndarray) -> tuple[float, float] | None:
        if len(set(y[i])) < 2 or len(set(a[i])) < 2 or len(set(b[i])) < 2:
            return None
        d_rho = math.nan
        if c is None:
            d_rho = stats.spearmanr(a[i], y[i]).statistic - stats.spearmanr(b[i], y[i]).statistic
            ra = budget_regret(a[i], y[i], z[i])["mean"]
        else:
            ra = two_stage_regret(a[i], c[i], y[i], z[i])["mean"]
        rb = budget_regret(b[i], y[i], z[i])["mean"]
        return (float(d_rho), float(ra - rb)) if ra is not None and rb is not None else None

    if n < 4:
        return {"n": n, "rho": None, "rho_ci": None, "regret": None, "regret_ci": None, "a_lower_regret": None}
    rng = np.random.default_rng(seed)
    draws = [d for d in (one(rng.integers(0, n, n)) for _ in range(boot)) if d is not None and math.isfinite(d[1])]
    d_rho = np.array([d[0] for d in draws if math.isfinite(d[0])])
    d_reg = np.array([d[1] for d in draws])
    point = one(np.arange(n))
    ci = lambda v: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if len(v) else None  # noqa: E731
    return {
        "n": n,
        "rho": point[0] if point and math.isfinite(point[0]) else None,
        "rho_ci": ci(d_rho),
        "regret": point[1] if point else None,
        "regret_ci": ci(d_reg),
        "a_lower_regret": float(np.mean(d_reg < 0)) if len(d_reg) else None,
    }


# The default proxy by evidence (issue 14, item 3). A default search must finish in 5 minutes on 2 cores; measured
# (docs/search.md, "A default run"): 46 s of start-up and reference population, then 57 evaluated trials, so a
# candidate's proxy may cost (300 - 46) / 57 = 4.5 CPU seconds. The proxies within it that the search offers as an
# option, by table label (the training proxies cost 20-180 s a candidate and need a trained parent or minutes).
DEFAULT_SEARCH_CPU_S_PER_CANDIDATE = 4.5
INCUMBENT = "zero-cost vote"
SEARCH_OPTIONS = {
    INCUMBENT: "proxy=zero_cost proxy.proxies=[synflow,naswot,snip,zen]",
    **{p: f"proxy=zero_cost proxy.proxies=[{p}]" for p in ("synflow", "naswot", "snip", "grad_norm", "zen")},
    "params": "proxy=params",
    "FLOPs": "proxy=flops",
}
# PLAN.md: the supernet counts as within the search's time when a supernet is given (its training is a one-off cost
# per dataset, reported separately); when the rule picks it, the default without a supernet path is the rule's
# choice among the others (the default demo must stay within 5 minutes)
SUPERNET = "supernet (mAP50_95)"
SEARCH_OPTIONS[SUPERNET] = "proxy=supernet proxy.supernet=PATH"
NEEDS_SUPERNET = {SUPERNET}


# PLAN.md's symmetric rule: point regrets closer than this are a tie (broken by cost, then by overall rho)
REGRET_TIE = 0.05


def choose_default(table: list[dict[str, Any]], pairs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The search's default proxy from the evidence, by the rule PLAN.md declared before the equal-latency data:
    among the proxies within the default search's time budget, the lowest point budget regret (what the search
    does with its proxy is pick the best under each tier's budget); regrets within REGRET_TIE of the lowest are a
    tie, broken by the lower cost per candidate, then by the higher overall Spearman. Symmetric: the incumbent has
    no privilege. The paired-bootstrap interval of the chosen proxy against the incumbent is reported beside it
    (`pairs`), not used to decide."""
    by = {r["proxy"]: r for r in table}
    eligible = [
        label
        for label in SEARCH_OPTIONS
        if label in by
        and by[label].get("cost_s") is not None
        and (by[label]["cost_s"] <= DEFAULT_SEARCH_CPU_S_PER_CANDIDATE or label in NEEDS_SUPERNET)
        and (by[label].get("budget_regret") or {}).get("mean") is not None
    ]

    def rule(labels: list[str]) -> str:
        lowest = min(by[label]["budget_regret"]["mean"] for label in labels)
        tied = [label for label in labels if by[label]["budget_regret"]["mean"] <= lowest + REGRET_TIE]
        return min(tied, key=lambda label: (by[label]["cost_s"], -(by[label].get("spearman") or -2.0)))

    plain = [label for label in eligible if label not in NEEDS_SUPERNET]
    if not plain:
        return {"chosen": INCUMBENT, "search_option": SEARCH_OPTIONS[INCUMBENT], "incumbent": INCUMBENT,
                "criterion": "no proxy with a measured regret within the search's time", "eligible": [],
                "cpu_s_per_candidate_budget": DEFAULT_SEARCH_CPU_S_PER_CANDIDATE}  # fmt: skip
    chosen, default = rule(eligible), rule(plain)
    return {
        "chosen": chosen,
        # the search's default (no supernet path given): the rule among the signals that need no supernet
        "default_without_supernet": default,
        "search_option": SEARCH_OPTIONS[default],
        "with_supernet_option": SEARCH_OPTIONS[chosen] if chosen in NEEDS_SUPERNET else None,
        "incumbent": INCUMBENT,
        "criterion": (
            f"lowest point budget regret within the search's time (ties within {REGRET_TIE} mAP: lower cost, then "
            "higher rho); PLAN.md, symmetric"
        ),
        "cpu_s_per_candidate_budget": DEFAULT_SEARCH_CPU_S_PER_CANDIDATE,
        "eligible": eligible,
        "regret": {label: by[label]["budget_regret"]["mean"] for label in eligible},
        "vs_incumbent": pairs.get(chosen),
        "default_vs_incumbent": pairs.get(default),
    }


# (cheap pre-filter, costly ranker) pairs of the report's two-stage table
TWO_STAGE = [
    ("synflow", "short_train_e1 (tse)"),
    ("zero-cost vote", "inherit_bn (mAP50_95)"),
    ("params", "inherit_bn (mAP50_95)"),
    ("zero-cost vote", "short_train_e1 (mAP50_95)"),
    ("zero-cost vote", "short_train_e1 (tse)"),
    ("params", "short_train_e1 (tse)"),
]


# Training proxies: name -> (kind, nas.proxy.train.proxy_options fields; bn_images: inherit_score's). `inherit_*` start
# from the trained L (seed 0).
TRAINED_PROXIES = {
    "short_train_e1": ("short", {"epochs": 1, "imgsz": 160}),
    "short_train_e2": ("short", {"epochs": 2, "imgsz": 160}),
    "short_train_e4": ("short", {"epochs": 4, "imgsz": 160}),
    "short_train_e2_96px": ("short", {"epochs": 2, "imgsz": 96}),
    "inherit_e0": ("inherit", {"epochs": 0, "imgsz": 160}),
    "inherit_e1": ("inherit", {"epochs": 1, "imgsz": 160}),
    "inherit_bn": ("inherit", {"epochs": 0, "imgsz": 160, "bn_images": 64}),  # + BatchNorm re-estimated
}


def rerank_settings(ranker: str) -> dict[str, Any] | None:
    """A two-stage row's ranker ("<training proxy> (<score>)") as the search's `rerank.*` settings
    (nas.search.config.RerankConfig): the same training the experiment measured; None if it is not one."""
    name, _, score = ranker.partition(" (")
    if name not in TRAINED_PROXIES:
        return None
    kind, fields = TRAINED_PROXIES[name]
    out = {
        "proxy": "short_train" if kind == "short" else "inherit",
        "train_epochs": fields["epochs"],
        "train_score": score.rstrip(")"),
        "train_imgsz": fields["imgsz"],
    }
    if fields.get("bn_images"):
        out["inherit_bn_images"] = fields["bn_images"]
    return out


def latencies(results: Path = RESULTS) -> dict[str, float]:
    """Predicted `cpu_ort` ms at 640 px of the sample's architectures (sample.json beside results/)."""
    path = results.parent / "sample.json"
    return {u["name"]: float(u["latency_ms"]) for u in json.loads(path.read_text())["units"]} if path.is_file() else {}


def top_overlap(x: list[float], y: list[float], k: int = 5) -> int | None:
    """How many of the k best by y are also among the k best by x."""
    if len(x) < k:
        return None
    bx = set(np.argsort(-np.asarray(x, dtype=float))[:k])
    by = set(np.argsort(-np.asarray(y, dtype=float))[:k])
    return len(bx & by)


def _load(folder: Path) -> list[dict[str, Any]]:
    return (
        [{**json.loads(p.read_text()), "_file": p.stem} for p in sorted(folder.glob("*.json"))]
        if folder.is_dir()
        else []
    )


def ground_truth(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    by: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.get("mAP50_95") is None:
            continue
        g = by.setdefault(r["name"], {"seeds": {}, "train_s": 0.0, "cpu_s": None, "machines": []})
        g["seeds"][r["seed"]] = float(r["mAP50_95"])
        g["train_s"] += float(r.get("train_s", 0.0))
        if r.get("cpu_s_this_process") is not None and not r.get("resumed"):  # a whole training's CPU seconds
            g["cpu_s"] = (g["cpu_s"] or 0.0) + float(r["cpu_s_this_process"])
        g["machines"].append(short_describe(r.get("machine", "?")))
        vals = [h["mAP50_95"] for h in r.get("history", []) if "mAP50_95" in h]
        if len(vals) >= 2 and r["seed"] == 0:
            g["previous_val"] = vals[-2]
    for g in by.values():
        g["mAP50_95"] = float(np.mean(list(g["seeds"].values())))
    return by


def proxy_scores(results: Path = RESULTS) -> dict[str, dict[str, tuple[float, float]]]:
    """{score name: {arch: (value, seconds)}} over every proxy result file."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for folder in sorted((results / "proxies").glob("*")) if (results / "proxies").is_dir() else []:
        for r in _load(folder):
            if folder.name == "zero_cost":
                for key, (label, cost) in ZERO_COST_SCORES.items():
                    if r.get(key) is not None:
                        out.setdefault(label, {})[r["name"]] = (float(r[key]), float(r.get(cost, 0.0)))
            else:
                for key in TRAINED_SCORES:
                    if r.get(key) is not None and math.isfinite(float(r[key])):
                        cost = float(r.get("cpu_s", r["seconds"]))  # CPU seconds (1 thread) where recorded
                        out.setdefault(f"{folder.name} ({key})", {})[r["name"]] = (float(r[key]), cost)
    return out


# A learned combination (predictor-based NAS's answer to weak single proxies): ridge regression of trained mAP on
# every zero-cost proxy (params and FLOPs as logs), each architecture predicted by a model fitted on the others
# (leave-one-out), so its rank agreement is out of sample. The penalty is fixed in advance, not tuned on the results.
RIDGE_INPUTS = ("synflow", "naswot", "snip", "grad_norm", "zen", "params", "FLOPs")
RIDGE_LAMBDA = 1.0
RIDGE_LABEL = "ridge over the zero-cost proxies (leave-one-out)"


def ridge_loo(scores: dict[str, dict[str, tuple[float, float]]], gt: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """{arch: (leave-one-out predicted mAP, CPU s of its inputs)} over the architectures with every input."""
    names = [n for n in gt if all(n in scores.get(k, {}) for k in RIDGE_INPUTS)]
    if len(names) < 5:
        return {}
    x = np.array([[scores[k][n][0] for k in RIDGE_INPUTS] for n in names], dtype=float)
    for k in ("params", "FLOPs"):
        x[:, RIDGE_INPUTS.index(k)] = np.log(x[:, RIDGE_INPUTS.index(k)])
    y = np.array([gt[n]["mAP50_95"] for n in names])
    out = {}
    for i, n in enumerate(names):
        keep = np.arange(len(names)) != i
        mu, sd = x[keep].mean(0), x[keep].std(0) + 1e-12
        a = (x[keep] - mu) / sd
        w = np.linalg.solve(a.T @ a + RIDGE_LAMBDA * np.eye(a.shape[1]), a.T @ (y[keep] - y[keep].mean()))
        out[n] = (float((x[i] - mu) / sd @ w + y[keep].mean()), sum(scores[k][n][1] for k in RIDGE_INPUTS))
    return out


def build(results: Path = RESULTS, boot: int = 2000) -> dict[str, Any]:
    gt_rows = _load(results / "gt")
    gt = ground_truth(gt_rows)
    lat = latencies(results)
    scores = proxy_scores(results)
    ridge = ridge_loo(scores, gt)
    if ridge:
        scores[RIDGE_LABEL] = ridge
    if lat:  # the baseline every proxy must beat within a budget: the latency the search already predicts
        scores["predicted latency (cpu_ort)"] = {n: (ms, 0.0) for n, ms in lat.items()}
    table = []
    for label, values in scores.items():
        names = [n for n in values if n in gt]
        x = [values[n][0] for n in names]
        y = [gt[n]["mAP50_95"] for n in names]
        row = {"proxy": label, **rank_stats(x, y, boot), "top5_overlap": top_overlap(x, y)}
        known = [i for i, n in enumerate(names) if n in lat]  # at equal predicted latency (a budget's candidates)
        xz, yz, z = [x[i] for i in known], [y[i] for i in known], [lat[names[i]] for i in known]
        row["partial_spearman_given_latency"] = partial_spearman(xz, yz, z, boot)
        row["same_latency_pairs"] = same_latency_pairs(xz, yz, z)
        row["budget_regret"] = budget_regret(xz, yz, z)
        row["cost_s"] = float(np.mean([values[n][1] for n in names])) if names else None
        table.append(row)
    table.sort(key=lambda r: -(r["spearman"] if r["spearman"] is not None else -2))

    def vs_incumbent(label: str, costly: str | None = None) -> dict[str, Any] | None:
        """`paired_difference` of a proxy (or a two-stage pick with `costly`) against the search's default, on the
        architectures all of them have."""
        if INCUMBENT not in scores:
            return None
        used = [label, INCUMBENT, *([costly] if costly else [])]
        names = [n for n in scores[costly or label] if all(n in scores[u] for u in used) and n in gt and n in lat]
        x = {u: [scores[u][n][0] for n in names] for u in used}
        y, z = [gt[n]["mAP50_95"] for n in names], [lat[n] for n in names]
        return paired_difference(x[label], x[INCUMBENT], y, z, boot, a_costly=x[costly] if costly else None)

    pairs = {label: vs_incumbent(label) for label in scores if label != INCUMBENT}
    for row in table:
        row["vs_incumbent"] = pairs.get(row["proxy"])
    two_stage = []
    for cheap, costly in TWO_STAGE:
        if cheap not in scores or costly not in scores:
            continue
        names = [n for n in scores[costly] if n in scores[cheap] and n in gt and n in lat]
        out = two_stage_regret(
            [scores[cheap][n][0] for n in names],
            [scores[costly][n][0] for n in names],
            [gt[n]["mAP50_95"] for n in names],
            [lat[n] for n in names],
        )
        vs = vs_incumbent(cheap, costly)
        two_stage.append({"prefilter": cheap, "ranker": costly, "n": len(names), **out, "vs_incumbent": vs})
    twice = [n for n, g in gt.items() if {0, 1} <= g["seeds"].keys()]
    ceiling = rank_stats([gt[n]["seeds"][0] for n in twice], [gt[n]["seeds"][1] for n in twice], boot)
    ceiling["seed_abs_diff_mean"] = (
        float(np.mean([abs(gt[n]["seeds"][0] - gt[n]["seeds"][1]) for n in twice])) if twice else None
    )
    prev = [n for n, g in gt.items() if "previous_val" in g]
    settled = rank_stats([gt[n]["previous_val"] for n in prev], [gt[n]["seeds"].get(0, math.nan) for n in prev], boot)
    recipe = gt_rows[0].get("recipe") if gt_rows else None
    trials = []
    for r in _load(results / "recipe"):  # candidate recipes (the evidence behind the chosen one)
        vals = {h["epoch"]: h["mAP50_95"] for h in r.get("history", []) if h.get("mAP50_95") is not None}
        trials.append(
            {
                "trial": r.get("trial") or _trial_name(r),
                "name": r["name"],
                "seed": r["seed"],
                "recipe": r["recipe"],
                "mAP50_95": r["mAP50_95"],
                "val_curve": vals,
                "train_s": r.get("train_s"),
                "threads": r.get("threads"),
            }
        )
    return {
        "truth_test": truth_test(results, gt),
        "what": "rank agreement of each accuracy proxy with trained mAP50-95 (issue 14)",
        "recipe": recipe,
        "ground_truth": {n: {k: v for k, v in g.items()} for n, g in sorted(gt.items())},
        "n_architectures": len(gt),
        "n_trainings": len(gt_rows),
        "train_s_total": round(sum(float(r.get("train_s", 0.0)) for r in gt_rows), 1),
        "machines": sorted({r.get("machine", "?") for r in gt_rows}),
        "seed_ceiling": ceiling,
        "settled": settled,
        "proxies": table,
        "default_choice": choose_default(table, pairs),
        "rerank_choice": _rerank_choice(two_stage),
        "two_stage": two_stage,
        "recipe_trials": trials,
    }


def _rerank_choice(two_stage: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The two-stage row with the lowest mean budget regret among those the search can run, as `rerank.*`."""
    rows = [t for t in two_stage if rerank_settings(t["ranker"]) and t.get("mean") is not None]
    if not rows:
        return None
    best = min(rows, key=lambda t: t["mean"])
    return {"prefilter": best["prefilter"], "ranker": best["ranker"], "settings": rerank_settings(best["ranker"])}


def truth_test(results: Path, gt: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per tier: the default search's pick (search.json beside results/) and the released layout, trained mAP and
    predicted latency side by side; mAP None until trained."""
    path = results.parent / "search.json"
    if not path.is_file():
        return []
    picks = ground_truth(_load(results / "search"))
    rows = []
    for tier, t in json.loads(path.read_text())["tiers"].items():
        unit = t["unit"]
        rows.append(
            {
                "tier": tier,
                "pick": unit,
                "equals_released": t["equals_released"],
                "budget_ms": t["budget_ms"],
                "pick_latency_ms": t["selected"].get("latency_ms"),
                "released_latency_ms": t["released"].get("latency_ms"),
                "pick_proxy_score": t["selected"].get("proxy_score"),
                "released_proxy_score": t["released"].get("proxy_score"),
                "pick_mAP50_95": (picks.get(unit) or gt.get(unit) or {}).get("mAP50_95"),
                "released_mAP50_95": (gt.get(tier) or {}).get("mAP50_95"),
            }
        )
    return rows


def _trial_name(r: dict[str, Any]) -> str:
    """A recipe trial's name from its file stem convention <trial>_<name>_s<seed>."""
    return str(r.get("_file", "")).removesuffix(f"_{r['name']}_s{r['seed']}")


def _fmt(v: Any, ci: Any = None) -> str:
    if v is None:
        return "–"
    s = f"{v:.2f}"
    return f"{s} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else s


def _choice_line(c: dict[str, Any]) -> str:
    """The default proxy chosen by `choose_default`, and why, in one sentence."""
    why = c["criterion"]
    regret = c.get("regret", {}).get(c["chosen"])
    if regret is not None:
        why += f": {regret:.2f} mAP"
    vs = c.get("vs_incumbent")
    if vs and vs.get("regret_ci") and c["chosen"] != c["incumbent"]:
        lo, hi = vs["regret_ci"]
        why += (
            f"; against the previous default {vs['regret']:+.2f} [{lo:.2f}, {hi:.2f}]"
            f" ({'significant' if hi < 0 else 'not significant at this n'})"
        )
    if c.get("with_supernet_option"):  # PLAN.md: the rule picked the supernet; without one the search uses the rest's
        d = c["default_without_supernet"]
        return (
            f"Best by this evidence: **{c['chosen']}** (`{c['with_supernet_option']}`): {why}. Without a supernet"
            f" path the default is the rule's choice among the others: **{d}** (`{c['search_option']}`,"
            f" {c['regret'][d]:.2f} mAP)."
        )
    return f"Default by this evidence: **{c['chosen']}** (`{c['search_option']}`): {why}."


def _fmt_regret(r: dict[str, Any]) -> str:
    """A budget regret as 'mean / max (how often the best is picked)'."""
    return f"{r['mean']:.2f} / {r['max']:.2f} ({100 * r['best_picked']:.0f}%)" if r.get("mean") is not None else "–"


def markdown(res: dict[str, Any]) -> str:
    r = res["recipe"] or {}
    lines = [
        "# Accuracy proxies vs trained mAP (yolo_nas space, synthetic set)",
        "",
        f"Ground truth: {res['n_architectures']} architectures, {res['n_trainings']} trainings "
        f"({res['train_s_total'] / 3600:.2f} training-hours in all) with one recipe: "
        + ", ".join(f"{k} {v}" for k, v in r.items())
        + f". Machines: {'; '.join(res['machines']) or '–'}.",
        "",
        f"Seed-to-seed ceiling ({res['seed_ceiling']['n']} architectures trained twice): Spearman "
        f"{_fmt(res['seed_ceiling']['spearman'], res['seed_ceiling']['spearman_ci'])}, mean |difference| "
        f"{_fmt(res['seed_ceiling']['seed_abs_diff_mean'])} mAP. Settled (previous validation vs final): Spearman "
        f"{_fmt(res['settled']['spearman'], res['settled']['spearman_ci'])} over {res['settled']['n']}.",
        "",
        "At equal latency: ρ with the predicted `cpu_ort` latency held fixed (partial Spearman; a proxy that only"
        " measures size scores 0), and of the pairs within 1.25× predicted latency of each other, the fraction the"
        " proxy orders as the trained mAP does (0.5: a coin). Budget regret: with the budget at each architecture's"
        " latency in turn, the trained mAP lost by taking the proxy's best under the budget instead of the truly"
        " best (mean / max over the budgets; how often it picks the best).",
        "",
        "| proxy | n | Spearman ρ [95% CI] | Kendall τ [95% CI] | top-5 overlap | ρ at equal latency [95% CI] "
        "| same-latency pairs right (pairs) | budget regret mAP: mean / max (best picked) | CPU s / candidate |",
        "|---|---:|---|---|---:|---|---:|---:|---:|",
    ]
    for p in res["proxies"]:
        part, pairs = p.get("partial_spearman_given_latency") or {}, p.get("same_latency_pairs") or {}
        acc = f"{pairs['accuracy']:.2f} ({pairs['pairs']})" if pairs.get("accuracy") is not None else "–"
        regret = _fmt_regret(p.get("budget_regret") or {})
        lines.append(
            f"| {p['proxy']} | {p['n']} | {_fmt(p['spearman'], p['spearman_ci'])} | "
            f"{_fmt(p['kendall'], p['kendall_ci'])} | {p['top5_overlap'] if p['top5_overlap'] is not None else '–'} | "
            f"{_fmt(part.get('value'), part.get('ci'))} | {acc} | {regret} | {p['cost_s']:.1f} |"
            if p["cost_s"] is not None
            else f"| {p['proxy']} | 0 | – | – | – | – | – | – | – |"
        )
    if res.get("default_choice"):
        c = res["default_choice"]
        lines += [
            "",
            f"Against the {c['incumbent']} (the search's default until PLAN.md's rule), paired bootstrap over the same"
            " architectures: Δρ ="
            " ρ(proxy) − ρ(default); Δregret = budget regret(proxy) − regret(default), negative where the proxy loses"
            " less mAP under a budget; P: the fraction of resamples in which it does. Within the default search's"
            f" time: at most {c['cpu_s_per_candidate_budget']} CPU s a candidate (a 5-minute search on 2 cores).",
            "",
            "| proxy | n | Δρ [95% CI] | Δregret mAP [95% CI] | P(lower regret) | within the default search's time |",
            "|---|---:|---|---|---:|---|",
        ]
        for p in res["proxies"]:
            d = p.get("vs_incumbent")
            if not d or d.get("rho") is None:
                continue
            fits = (
                ("with a supernet" if p["proxy"] in NEEDS_SUPERNET else "yes") if p["proxy"] in c["eligible"] else "no"
            )
            lines.append(
                f"| {p['proxy']} | {d['n']} | {_fmt(d['rho'], d['rho_ci'])} | {_fmt(d['regret'], d['regret_ci'])} | "
                f"{_fmt(d['a_lower_regret'])} | {fits} |"
            )
        lines += ["", _choice_line(c)]
    if res.get("two_stage"):
        lines += [
            "",
            "Two stages: under each budget the 3 best by a cheap proxy survive and a costly one picks among them"
            " (budget regret as above, over the architectures both have):",
            "",
            "| pre-filter | ranker | n | budget regret mAP: mean / max (best picked) | Δregret vs the default alone"
            " [95% CI] | P(lower regret) |",
            "|---|---|---:|---:|---|---:|",
        ]
        for t in res["two_stage"]:
            d = t.get("vs_incumbent") or {}
            lines.append(
                f"| {t['prefilter']} | {t['ranker']} | {t['n']} | {_fmt_regret(t)} | "
                f"{_fmt(d.get('regret'), d.get('regret_ci'))} | {_fmt(d.get('a_lower_regret'))} |"
            )
    if res.get("truth_test"):
        lines += [
            "",
            "Truth test: the default search's pick per tier vs the released layout (predicted `cpu_ort` ms at 640 px; "
            "trained mAP50-95 with the recipe above):",
            "",
            "| tier | pick | pick ms | released ms | pick proxy score | released proxy score | pick mAP | released mAP |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for t in res["truth_test"]:
            pick = "the released layout" if t["equals_released"] else t["pick"]
            lines.append(
                f"| {t['tier']} | {pick} | {_fmt(t['pick_latency_ms'])} | {_fmt(t['released_latency_ms'])} | "
                f"{_fmt(t['pick_proxy_score'])} | {_fmt(t['released_proxy_score'])} | {_fmt(t['pick_mAP50_95'])} | "
                f"{_fmt(t['released_mAP50_95'])} |"
            )
    if res.get("recipe_trials"):
        base = res["recipe_trials"][0]["recipe"]
        lines += [
            "",
            "Recipe trials (the S layout unless named; what differs from the first listed; mAP50-95 at each validation):",
            "",
            "| trial | architecture | seed | recipe | validation mAP50-95 by epoch | final | training s (threads) |",
            "|---|---|---:|---|---|---:|---:|",
        ]
        for t in res["recipe_trials"]:
            diff = ", ".join(f"{k} {v}" for k, v in t["recipe"].items() if base.get(k) != v) or "as listed first"
            curve = ", ".join(f"{e}: {v:.2f}" for e, v in sorted(t["val_curve"].items(), key=lambda kv: int(kv[0])))
            lines.append(
                f"| {t['trial']} | {t['name']} | {t['seed']} | {diff} | {curve} | {_fmt(t['mAP50_95'])} | "
                f"{t['train_s'] or 0:.0f} ({t['threads']}) |"
            )
    lines += [
        "",
        "Training s: wall time of the unit (pauses and a shared machine included); CPU s: the process's and its"
        " data loader's CPU seconds, where recorded for a whole (not resumed) training. Machine `x86_64`: trained"
        " before the results recorded the device fingerprint.",
        "",
        "| architecture | mAP50-95 (seeds) | training s | CPU s | machine |",
        "|---|---|---:|---:|---|",
    ]
    for n, g in res["ground_truth"].items():
        seeds = ", ".join(f"{v:.1f}" for _, v in sorted(g["seeds"].items()))
        cpu = f"{g['cpu_s']:.0f}" if g.get("cpu_s") is not None else "–"
        machines = ", ".join(sorted(set(g.get("machines", []))))
        lines.append(f"| {n} | {g['mAP50_95']:.1f} ({seeds}) | {g['train_s']:.0f} | {cpu} | {machines} |")
    return "\n".join(lines) + "\n"


DOCS = HERE.parents[1] / "docs" / "search.md"
DOCS_BEGIN = "<!-- proxy-cost-accuracy: written by experiments/proxy_correlation/run.py report -->"
DOCS_END = "<!-- /proxy-cost-accuracy -->"


def docs_table(res: dict[str, Any]) -> str:
    """The cost-accuracy table of docs/search.md, from results.json's numbers (one fact, one place)."""
    lines = [
        f"Ground truth so far: {res['n_architectures']} architectures. ρ: Spearman with trained mAP50-95 [95% CI];"
        " pairs: of the pairs within 1.25× predicted latency, the fraction ordered right; regret: mAP lost under a"
        " latency budget by taking the proxy's best (mean over budgets); CPU s per candidate (one thread).",
        "",
        "| proxy | n | ρ | same-latency pairs right | budget regret (mAP) | CPU s |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for p in res["proxies"]:
        if p.get("spearman") is None:
            continue
        pairs, reg = p.get("same_latency_pairs") or {}, p.get("budget_regret") or {}
        acc = f"{pairs['accuracy']:.2f}" if pairs.get("accuracy") is not None else "–"
        regret = f"{reg['mean']:.2f}" if reg.get("mean") is not None else "–"
        lines.append(
            f"| {p['proxy']} | {p['n']} | {_fmt(p['spearman'], p['spearman_ci'])} | {acc} | {regret} | "
            f"{p['cost_s']:.1f} |"
        )
    if res.get("default_choice"):
        lines += ["", _choice_line(res["default_choice"])]
    return "\n".join(lines)


def with_docs_table(text: str, res: dict[str, Any]) -> str:
    """`text` (docs/search.md) with the block between the markers replaced by `docs_table(res)`."""
    head, sep, rest = text.partition(DOCS_BEGIN)
    _, sep2, tail = rest.partition(DOCS_END)
    if not (sep and sep2):
        raise SystemExit(f"{DOCS}: the markers {DOCS_BEGIN!r} ... {DOCS_END!r} are missing; put them back")
    return f"{head}{DOCS_BEGIN}\n{docs_table(res)}\n{DOCS_END}{tail}"


def report(args) -> int:
    res = build(RESULTS, args.boot)
    write_text_atomic(HERE / "results.json", json.dumps(res, indent=1) + "\n")
    write_text_atomic(HERE / "results.md", markdown(res))
    if DOCS.is_file():
        write_text_atomic(DOCS, with_docs_table(DOCS.read_text(), res))
    print(markdown(res))
    return 0
