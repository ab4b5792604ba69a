"""The supernet as an accuracy signal (issue 25), measured against the same ground truth as every other proxy.

    python experiments/proxy_correlation/supernet.py train [--epochs 20] [--device cuda]   # one supernet, resumable
    python experiments/proxy_correlation/supernet.py score --jobs 2                        # every trained architecture
    python experiments/proxy_correlation/supernet.py report                                # supernet_results.md

`train` trains the supernet of the `yolo_nas` space with the ground truth's recipe (run.RECIPE: the synthetic set,
160 px, batch 8, the same lr and schedule; `--epochs` to change the length) and the sandwich rule of
nas.supernet, starting from the ground truth's trained L (runs/train/gt_yolo_nas_l_s0/last.pt, the "released
family turned into a supernet on your data" path) when it is there, else from scratch; a killed run resumes from
its last.pt. It writes results/supernet_train.json (epochs, wall and CPU seconds, the machine).

`score` scores every architecture with a ground truth (the 27-sample and the S window, the searches' picks) as a
sub-network of that supernet (nas.supernet.score: extract, BatchNorm re-estimated on 64 train images, val mAP at
160 px, and its measured INT8 drop), one file per architecture in results/proxies/supernet/<name>.json. The
reports read them as the signal `supernet (mAP50_95)` beside every other proxy (report.py, window_report.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # this folder's runner: the recipe, the units, the pool

from nas.io import write_text_atomic

HERE = run.HERE
SUPERNET_RUN = run.RUNS / "supernet" / "gt"
TRAIN_JSON = run.RESULTS / "supernet_train.json"
PROXY = "supernet"
# The supernets trained: the chosen configuration ("gt": in-place distillation from the largest) and the ablation of
# that choice ("distill0": the plain sandwich), with the same recipe, epochs and starting weights
VARIANTS = {"gt": {"distill": 1.0}, "distill0": {"distill": 0.0}}


def run_dir(variant: str = "gt") -> Path:
    return SUPERNET_RUN if variant == "gt" else SUPERNET_RUN.parent / variant


def train_json(variant: str = "gt") -> Path:
    return TRAIN_JSON if variant == "gt" else TRAIN_JSON.with_name(f"supernet_train_{variant}.json")


def proxy_name(variant: str = "gt") -> str:
    """The proxy folder (results/proxies/<name>/) and the report's signal label `<name> (mAP50_95)`."""
    return PROXY if variant == "gt" else f"{PROXY}_{variant}"


def _cpu_s() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def train(args) -> int:
    import torch

    from nas.supernet import train_supernet
    from nas.train.outputs import in_points

    torch.set_num_threads(args.threads)
    where = run_dir(args.variant)
    distill = VARIANTS[args.variant]["distill"] if args.distill is None else args.distill
    last = where / "last.pt"
    recipe = {**run.RECIPE, "epochs": args.epochs}
    parent = run.gt_checkpoint(run.PARENT)
    if not last.is_file() and not parent.is_file() and not args.from_scratch:
        # runs/ is not committed: on a new machine the parent is gone, and a supernet from random init is not the
        # one behind the committed scores (supernet_train.json: started_from)
        raise SystemExit(
            f"{parent} is missing: the supernet starts from the trained parent {run.PARENT}. Train it first without "
            f"touching the committed results/gt file: python {Path(run.__file__).name} train-one {run.PARENT} 0 "
            f"--out {run.RUNS / f'parent_{run.PARENT}_s0.json'} --run-name gt_{run.PARENT}_s0; or pass --from-scratch"
        )
    start = {"resume": str(last)} if last.is_file() else {"weights": str(parent)} if parent.is_file() else {}
    t0, c0 = time.perf_counter(), _cpu_s()
    result = train_supernet(
        args.space,
        **recipe,
        **start,
        seed=0,
        device=args.device,
        workers=args.workers,
        project=str(where.parent.parent),  # train_supernet writes <project>/supernet/<name>
        name=where.name,
        exist_ok=True,
        plots=False,
        random_subnets=args.random_subnets,
        distill=distill,
    )
    doc = {
        "what": "the supernet of the yolo_nas space trained with the ground truth's recipe (supernet.py train)",
        "recipe": recipe,
        "random_subnets": args.random_subnets,
        "variant": args.variant,
        "distill": distill,
        "started_from": start,
        "epochs": len(result.history),
        "largest_mAP50_95": in_points(result.history[-1]).get("mAP50_95"),  # the trainer's fraction, in points
        "wall_s_this_process": round(time.perf_counter() - t0, 1),
        "cpu_s_this_process": round(_cpu_s() - c0, 1),
        "resumed": "resume" in start,
        "device": args.device,
        "machine": run._machine(args.device),
        "checkpoint": str(result.last),
    }
    write_text_atomic(train_json(args.variant), json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))
    return 0


def names() -> list[str]:
    """Every architecture the ground truth names, trained yet or not: the 27-sample, the S window and the picks."""
    sys.path.insert(0, str(HERE))
    from window_report import window_names

    out = [u["name"] for u in run.load_sample()["units"]]
    window = json.loads((HERE / "window.json").read_text()) if (HERE / "window.json").is_file() else None
    if window:
        out += window_names(window)
        out += [t["unit"] for per in window["search"].values() for rec in per.values() for t in rec["tiers"].values()]
    return list(dict.fromkeys(out))


def score(args) -> int:
    last = run_dir(args.variant) / "last.pt"
    if not last.is_file():
        raise SystemExit(f"{last} is missing: run `python {Path(__file__).name} train` first")
    me = [sys.executable, str(Path(__file__).resolve())]
    proxy = proxy_name(args.variant)
    # every named architecture, trained yet or not: the checkpoint lives in runs/ (not committed) and may not
    # outlive this machine, while a score file is committed; the report joins scores with whatever has a truth
    todo = [n for n in names() if not run.proxy_path(proxy, n).is_file()]
    cmds = [[*me, "score-one", n, "--variant", args.variant] for n in todo]
    print(f"{len(cmds)} architectures to score")
    return run._pool_run(cmds, args.jobs, 1)


# Fine-tuning from the supernet's weights against training from scratch (issue 25, item 4): the released S and the
# default search's S pick (vote, search seed 0), each trained FINETUNE_EPOCHS epochs with the ground truth's recipe
# from its extracted sub-network (BatchNorm re-estimated), validated every epoch
FINETUNE = ("yolo_nas_s", "vote_s0_yolo_nas_s")
FINETUNE_EPOCHS = 6


def finetune_path(name: str) -> Path:
    return run.RESULTS / "supernet" / f"finetune_{name}_s0.json"


def finetune(args) -> int:
    last = SUPERNET_RUN / "last.pt"
    if not last.is_file():
        raise SystemExit(f"{last} is missing: run `python {Path(__file__).name} train` first")
    me = [sys.executable, str(HERE / "run.py"), "train-one"]
    cmds = [
        [*me, n, "0", "--init", f"supernet:{last}", "--out", str(finetune_path(n)), "--run-name", f"sn_ft_{n}_s0",
         "--set", f"epochs={FINETUNE_EPOCHS}", "val_period=1"]
        for n in FINETUNE
        if not finetune_path(n).is_file()
    ]  # fmt: skip
    print(f"{len(cmds)} fine-tunings to run")
    return run._pool_run(cmds, args.jobs, 1)


def score_one(args) -> int:
    import torch

    from nas.supernet import score as supernet_score

    torch.set_num_threads(int(os.environ.get("NAS_THREADS", "1")))
    c0, last, proxy = time.process_time(), run_dir(args.variant) / "last.pt", proxy_name(args.variant)
    values = supernet_score(run.train_arch(args.name), last, data=run.RECIPE["data"],
                            imgsz=run.RECIPE["imgsz"], int8=args.variant == "gt")  # fmt: skip
    out = {
        "proxy": proxy,
        "name": args.name,
        "machine": run._machine("cpu"),
        "threads": torch.get_num_threads(),
        "cpu_s": round(time.process_time() - c0, 2),
        "supernet": str(last),
        **values,
    }
    write_text_atomic(run.proxy_path(proxy, args.name), json.dumps(out, indent=1) + "\n")
    print(f"{proxy} {args.name}: {values}", flush=True)
    return 0


# The signals the supernet is read against (issue 25): FLOPs (PLAN.md's declared baseline), the zero-cost vote (the
# search's default before PLAN.md's rule), synflow (the rule's default) and the 1-epoch training proxy (tse)
AGAINST = ("FLOPs", "zero-cost vote", "synflow", "short_train_e1 (tse)")
LABEL = "supernet (mAP50_95)"
EVIDENCE_JSON, EVIDENCE_MD = run.RESULTS / "supernet_evidence.json", HERE / "supernet_results.md"


def _against(scores, y: dict[str, float], lat: dict[str, float], boot: int, others=AGAINST) -> dict[str, Any]:
    """The supernet's endpoints and, paired, its difference from each of `others` on the architectures both have."""
    import report

    mine = scores.get(LABEL, {})
    out: dict[str, Any] = {}
    for other in others:
        names = [n for n in mine if n in scores.get(other, {}) and n in y and n in lat]
        if len(names) < 4:
            continue
        out[other] = report.paired_endpoints(
            [mine[n][0] for n in names], [scores[other][n][0] for n in names], [y[n] for n in names],
            [lat[n] for n in names], boot,
        )  # fmt: skip
    return out


def evidence(results: Path = run.RESULTS, boot: int = 2000) -> dict[str, Any]:
    """Issue 25's evidence from the committed files: the supernet's training cost, its endpoints on the 27-sample
    and on the S window against FLOPs, the vote, synflow and tse (paired bootstrap), the extracted S/M/L against
    their standalone training, and the measured INT8 drops."""
    import numpy as np
    import report
    import window_report as wr

    proxy = {r["name"]: r for r in report._load(results / "proxies" / PROXY)}
    gt = report.ground_truth(report._load(results / "gt"))
    y_27, lat_27 = {n: g["mAP50_95"] for n, g in gt.items()}, report.latencies(results)
    scores_27 = report.proxy_scores(results)
    sample = _against(scores_27, y_27, lat_27, boot)
    window = json.loads((results.parent / "window.json").read_text())
    values = wr.seed_values(wr._units(results))
    names = wr.window_names(window)
    y_win = {n: float(np.mean(list(values[n].values()))) for n in names if values.get(n)}
    scores_win, lat_win = wr._signals(window, results), wr._latency(window, results)
    win = _against(scores_win, y_win, lat_win, boot)
    ablation = {}  # the chosen supernet against each ablated one, paired, on both sets
    for v in VARIANTS:
        label = f"{proxy_name(v)} (mAP50_95)"
        if v == "gt" or label not in scores_27:
            continue
        path = results / train_json(v).name
        ablation[v] = {
            "changed": VARIANTS[v],
            "training": json.loads(path.read_text()) if path.is_file() else None,
            "sample_27": _against(scores_27, y_27, lat_27, boot, others=(label,)).get(label),
            "window": _against(scores_win, y_win, lat_win, boot, others=(label,)).get(label),
        }
    train = (
        json.loads((results / "supernet_train.json").read_text())
        if (results / "supernet_train.json").is_file()
        else None
    )
    parent = results / "supernet" / f"parent_{run.PARENT}_s0.json"
    parent = json.loads(parent.read_text()) if parent.is_file() else None
    cost = None
    if train and parent:
        cost = {
            "parent_cpu_s": parent["cpu_s_this_process"],
            "parent_mAP50_95": parent["mAP50_95"],
            "supernet_cpu_s": train["cpu_s_this_process"],
            "supernet_epochs": train["epochs"],
            "supernet_over_parent": train["cpu_s_this_process"] / parent["cpu_s_this_process"],
            "total_over_parent": (train["cpu_s_this_process"] + parent["cpu_s_this_process"])
            / parent["cpu_s_this_process"],
        }
        l_gt = gt.get(run.PARENT, {}).get("cpu_s")  # the 27-sample's L training (1 torch thread, as the supernet)
        if l_gt:
            cost.update(gt_L_cpu_s=l_gt, supernet_over_gt_L=train["cpu_s_this_process"] / l_gt)
    extracted = {
        n: {"supernet_mAP50_95": proxy[n]["mAP50_95"], "standalone_mAP50_95": gt[n]["mAP50_95"],
            "standalone_seeds": len(gt[n]["seeds"]), "gap": proxy[n]["mAP50_95"] - gt[n]["mAP50_95"]}
        for n in ("yolo_nas_s", "yolo_nas_m", "yolo_nas_l") if n in proxy and n in gt
    }  # fmt: skip
    drops = {n: r["int8_drop"] for n, r in proxy.items() if r.get("int8_drop") is not None}
    fp32 = [proxy[n]["mAP50_95"] for n in drops]
    int8 = None
    if len(drops) >= 3:
        d = np.array(list(drops.values()))
        int8 = {
            "n": len(d),
            "mean": float(d.mean()),
            "min": float(d.min()),
            "max": float(d.max()),
            "spearman_with_fp32_mAP": report._spearman_value(np.array(fp32), d),
            "released": {n: drops[n] for n in ("yolo_nas_s", "yolo_nas_m", "yolo_nas_l") if n in drops},
        }
    finetuned = {}  # fine-tuning from the supernet's weights against the standalone training from scratch
    trained = report._load(results / "window") + report._load(results / "gt")  # read once for every network
    for n in FINETUNE:
        path = results / "supernet" / f"finetune_{n}_s0.json"
        scratch = [r for r in trained if r["name"] == n]
        if not path.is_file() or not scratch:
            continue
        ft = json.loads(path.read_text())
        curve = [h.get("mAP50_95") for h in ft["history"]]
        target = float(np.mean([r["mAP50_95"] for r in scratch]))  # the standalone mAP (20 epochs, its seeds' mean)
        finetuned[n] = {
            "extracted_mAP50_95": proxy[n]["mAP50_95"] if n in proxy else None,
            "finetune_curve": curve,
            "finetune_cpu_s": ft["cpu_s_this_process"],
            "standalone_mAP50_95": target,
            "standalone_trainings": len(scratch),
            "standalone_cpu_s": float(
                np.mean([r["cpu_s_this_process"] for r in scratch if r.get("cpu_s_this_process")])
            )
            if any(r.get("cpu_s_this_process") for r in scratch)
            else None,
            "scratch_curve": {
                h["epoch"]: h["mAP50_95"] for h in scratch[0]["history"] if h.get("mAP50_95") is not None
            },
            "epochs_to_standalone": next((i + 1 for i, v in enumerate(curve) if v is not None and v >= target), None),
        }
    per_candidate = [float(r["cpu_s"]) for r in proxy.values() if r.get("cpu_s") is not None]
    return {
        "what": "the supernet as the search's accuracy signal (issue 25), from the committed per-architecture files",
        "training": train,
        "cost": cost,
        "scored": len(proxy),
        "cpu_s_per_candidate": float(np.mean(per_candidate)) if per_candidate else None,
        "fp32_seconds_per_candidate": float(np.mean([r["seconds"] for r in proxy.values()])) if proxy else None,
        "machines": sorted({r.get("machine", "?") for r in proxy.values()}),
        "sample_27": sample,
        "window": win,
        "extracted": extracted,
        "int8_drop": int8,
        "ablation": ablation,
        "finetune": finetuned,
    }


def _md(res: dict[str, Any]) -> str:
    def f(v, fmt="{:.2f}"):
        return "–" if v is None else fmt.format(v)

    def endpoint_rows(label: str, d: dict[str, Any]) -> list[str]:
        """One table row per PLAN.md endpoint of a `report.paired_endpoints` result."""
        rows = []
        for end in ("spearman", "partial_spearman_given_latency", "same_latency_pairs_right", "budget_regret"):
            e = d.get(end)
            if not e:
                continue
            ci = f" [{e['ci'][0]:+.2f}, {e['ci'][1]:+.2f}]" if e.get("ci") else ""
            diff = f"{e['diff']:+.2f}{ci}" if e.get("diff") is not None else "–"
            rows.append(f"| {label} | {d['n']} | {end} | {f(e['a'])} | {f(e['b'])} | {diff} | {f(e['a_better'])} |")
        return rows

    lines = ["# The supernet as the accuracy signal (issue 25)", "",
             "Generated by `python experiments/proxy_correlation/supernet.py report` from the committed files"
             " (`results/proxies/supernet/`, `results/supernet_train.json`, `results/supernet/`); a test recomputes"
             " it. Differences are the supernet's minus the other signal's, paired bootstrap over architectures"
             " (2,000 resamples); P: the fraction of resamples in which the supernet is better.", ""]  # fmt: skip
    c = res.get("cost")
    if c:
        lines += [
            f"Training: the parent L ({c['parent_cpu_s']:.0f} CPU-s, {c['parent_mAP50_95']:.2f} mAP) then the supernet,"
            f" {c['supernet_epochs']} epochs ({c['supernet_cpu_s']:.0f} CPU-s): the supernet alone"
            f" {c['supernet_over_parent']:.2f}x this parent's CPU-s (2 torch threads), both together {c['total_over_parent']:.2f}x"
            + (
                f"; against the 27-sample's L training (1 thread, as the supernet: {c['gt_L_cpu_s']:.0f} CPU-s) the"
                f" supernet is {c['supernet_over_gt_L']:.2f}x."
                if c.get("gt_L_cpu_s")
                else "."
            ),
            "",
        ]
    lines += [f"Scoring: {res['scored']} architectures, {f(res['cpu_s_per_candidate'], '{:.1f}')} CPU-s a candidate"
              f" with its INT8 drop ({f(res['fp32_seconds_per_candidate'], '{:.1f}')} s for the FP32 score alone).", ""]  # fmt: skip
    for key, title in (("sample_27", "The 27-architecture sample"), ("window", "The S window (seed means so far)")):
        block = res.get(key) or {}
        if not block:
            continue
        lines += [f"## {title}", "", "| against | n | endpoint | supernet | other | difference [95% CI] | P |",
                  "|---|---:|---|---:|---:|---|---:|"]  # fmt: skip
        for other, d in block.items():
            lines += endpoint_rows(other, d)
        lines.append("")
    for v, a in (res.get("ablation") or {}).items():
        lines += [f"## Ablation: {v} ({a['changed']})", "",
                  "The chosen supernet minus the ablated one (same recipe, epochs and starting weights), paired.", "",
                  "| set | n | endpoint | chosen | ablated | difference [95% CI] | P |", "|---|---:|---|---:|---:|---|---:|"]  # fmt: skip
        for where in ("sample_27", "window"):
            d = a.get(where) or {}
            lines += endpoint_rows(where, d)
        lines.append("")
    if res.get("extracted"):
        lines += ["## Extracted S/M/L against their standalone training", "",
                  "| network | extracted from the supernet | standalone (seeds) | gap |", "|---|---:|---:|---:|"]  # fmt: skip
        for n, e in res["extracted"].items():
            lines.append(f"| {n} | {e['supernet_mAP50_95']:.2f} | {e['standalone_mAP50_95']:.2f} ({e['standalone_seeds']})"
                         f" | {e['gap']:+.2f} |")  # fmt: skip
        lines.append("")
    if res.get("finetune"):
        lines += ["## Fine-tuning from the supernet's weights against training from scratch", "",
                  f"The ground truth's recipe for {FINETUNE_EPOCHS} epochs (val every epoch), starting from the extracted"
                  " sub-network (BatchNorm re-estimated); from scratch: the standalone 20-epoch training (val every 5).", "",
                  "| network | extracted | fine-tuned, per epoch | CPU-s | from scratch (epoch: mAP) | CPU-s | epochs to the standalone mAP |",
                  "|---|---:|---|---:|---|---:|---:|"]  # fmt: skip
        for n, e in res["finetune"].items():
            curve = ", ".join(f(v) for v in e["finetune_curve"])
            scratch = ", ".join(f"{k}: {v:.2f}" for k, v in e["scratch_curve"].items())
            lines.append(f"| {n} | {f(e['extracted_mAP50_95'])} | {curve} | {e['finetune_cpu_s']:.0f} | {scratch}"
                         f" (mean of {e['standalone_trainings']}: {e['standalone_mAP50_95']:.2f}) |"
                         f" {f(e['standalone_cpu_s'], '{:.0f}')} | {e['epochs_to_standalone'] or '–'} |")  # fmt: skip
        lines.append("")
    i8 = res.get("int8_drop")
    if i8:
        lines += ["## Measured INT8 drop of each candidate", "",
                  f"{i8['n']} sub-networks quantized (static QDQ) and validated: drop mean {i8['mean']:.2f}, range"
                  f" [{i8['min']:.2f}, {i8['max']:.2f}] mAP; Spearman with the FP32 score {f(i8['spearman_with_fp32_mAP'])}."
                  " Released: " + ", ".join(f"{n} {v:.2f}" for n, v in i8["released"].items()) + ".", ""]  # fmt: skip
    return "\n".join(lines)


def report_cmd(args) -> int:
    res = evidence(boot=args.boot)
    write_text_atomic(EVIDENCE_JSON, json.dumps(res, indent=1) + "\n")  # insertion order: the Markdown's
    write_text_atomic(EVIDENCE_MD, _md(res) + "\n")
    print(_md(res))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("train")
    p.add_argument("--epochs", type=int, default=run.RECIPE["epochs"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--random-subnets", type=int, default=2)
    p.add_argument("--distill", type=float, default=None, help="default: the variant's")
    p.add_argument("--variant", default="gt", choices=sorted(VARIANTS))
    p.add_argument("--space", default="yolo_nas", help="the space whose supernet is trained (a name or a YAML)")
    p.add_argument("--from-scratch", action="store_true", help="start from random init when the parent is missing")
    p = sub.add_parser("score")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--variant", default="gt", choices=sorted(VARIANTS))
    p = sub.add_parser("score-one")
    p.add_argument("name")
    p.add_argument("--variant", default="gt", choices=sorted(VARIANTS))
    p = sub.add_parser("finetune")
    p.add_argument("--jobs", type=int, default=2)
    p = sub.add_parser("report")
    p.add_argument("--boot", type=int, default=2000)
    args = ap.parse_args(argv)
    return {"train": train, "score": score, "score-one": score_one, "finetune": finetune, "report": report_cmd}[
        args.what
    ](args)


if __name__ == "__main__":
    raise SystemExit(main())
