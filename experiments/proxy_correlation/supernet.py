"""The supernet as an accuracy signal (issue 25), measured against the same ground truth as every other proxy.

    python experiments/proxy_correlation/supernet.py train [--epochs 20] [--device cuda]   # one supernet, resumable
    python experiments/proxy_correlation/supernet.py score --jobs 2                        # every trained architecture

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

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # this folder's runner: the recipe, the units, the pool

from nas.io import write_text_atomic

HERE = run.HERE
SUPERNET_RUN = run.RUNS / "supernet" / "gt"
TRAIN_JSON = run.RESULTS / "supernet_train.json"
PROXY = "supernet"


def _cpu_s() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def train(args) -> int:
    import torch

    from nas.supernet import train_supernet

    torch.set_num_threads(args.threads)
    last = SUPERNET_RUN / "last.pt"
    recipe = {**run.RECIPE, "epochs": args.epochs}
    parent = run.gt_checkpoint(run.PARENT)
    start = {"resume": str(last)} if last.is_file() else {"weights": str(parent)} if parent.is_file() else {}
    t0, c0 = time.perf_counter(), _cpu_s()
    result = train_supernet(
        args.space,
        **recipe,
        **start,
        seed=0,
        device=args.device,
        workers=args.workers,
        project=str(SUPERNET_RUN.parent.parent),  # train_supernet writes <project>/supernet/<name>
        name=SUPERNET_RUN.name,
        exist_ok=True,
        plots=False,
        random_subnets=args.random_subnets,
        distill=args.distill,
    )
    doc = {
        "what": "the supernet of the yolo_nas space trained with the ground truth's recipe (supernet.py train)",
        "recipe": recipe,
        "random_subnets": args.random_subnets,
        "distill": args.distill,
        "started_from": start,
        "epochs": len(result.history),
        "largest_mAP50_95": result.history[-1].get("mAP50_95"),
        "wall_s_this_process": round(time.perf_counter() - t0, 1),
        "cpu_s_this_process": round(_cpu_s() - c0, 1),
        "resumed": "resume" in start,
        "device": args.device,
        "machine": run._machine(args.device),
        "checkpoint": str(result.last),
    }
    write_text_atomic(TRAIN_JSON, json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))
    return 0


def names() -> list[str]:
    """Every architecture with a ground truth: the 27-sample (and its extra), the S window and the picks."""
    sys.path.insert(0, str(HERE))
    from window_report import window_names

    out = [u["name"] for u in run.load_sample()["units"]]
    window = json.loads((HERE / "window.json").read_text()) if (HERE / "window.json").is_file() else None
    if window:
        out += window_names(window)
        out += [t["unit"] for per in window["search"].values() for rec in per.values() for t in rec["tiers"].values()]
    return list(dict.fromkeys(out))


def score(args) -> int:
    last = SUPERNET_RUN / "last.pt"
    if not last.is_file():
        raise SystemExit(f"{last} is missing: run `python {Path(__file__).name} train` first")
    me = [sys.executable, str(Path(__file__).resolve())]
    cmds = [[*me, "score-one", n] for n in names() if not run.proxy_path(PROXY, n).is_file()]
    print(f"{len(cmds)} architectures to score")
    return run._pool_run(cmds, args.jobs, 1)


def score_one(args) -> int:
    import torch

    from nas.supernet import score as supernet_score

    torch.set_num_threads(int(os.environ.get("NAS_THREADS", "1")))
    c0 = time.process_time()
    values = supernet_score(run.train_arch(args.name), SUPERNET_RUN / "last.pt", data=run.RECIPE["data"],
                            imgsz=run.RECIPE["imgsz"], int8=True)  # fmt: skip
    out = {
        "proxy": PROXY,
        "name": args.name,
        "machine": run._machine("cpu"),
        "threads": torch.get_num_threads(),
        "cpu_s": round(time.process_time() - c0, 2),
        "supernet": str(SUPERNET_RUN / "last.pt"),
        **values,
    }
    write_text_atomic(run.proxy_path(PROXY, args.name), json.dumps(out, indent=1) + "\n")
    print(f"{PROXY} {args.name}: {values}", flush=True)
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
    p.add_argument("--distill", type=float, default=1.0)
    p.add_argument("--space", default="yolo_nas", help="the space whose supernet is trained (a name or a YAML)")
    p = sub.add_parser("score")
    p.add_argument("--jobs", type=int, default=2)
    p = sub.add_parser("score-one")
    p.add_argument("name")
    args = ap.parse_args(argv)
    return {"train": train, "score": score, "score-one": score_one}[args.what](args)


if __name__ == "__main__":
    raise SystemExit(main())
