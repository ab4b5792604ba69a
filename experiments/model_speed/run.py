"""CPU latency of YOLO-NAS S/M/L: torch eager, torch fused, onnxruntime, against the machine's matmul roofline.

Everything is measured in one run, side by side: the paths of a model are timed in rotating rounds of
blocks, so drift affects them alike. The roofline is a large fp32 matrix multiply
(torch and onnxruntime, same thread count); achieved GFLOP/s of every path use the FLOPs of the fused graph
(2 x fvcore multiply-adds), so the numbers compare work done per second.

    python experiments/model_speed/run.py                      # S, M, L at 640, all cores
    python experiments/model_speed/run.py --threads 8 --repeats 50
    python experiments/model_speed/run.py --models s --imgsz 160 --repeats 3 --warmup 1 --out /tmp/speed  # smoke

Writes results.json and results.md into --out (default: this folder).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nas.engine.info import layer_macs  # noqa: E402
from nas.export.onnx import export_onnx  # noqa: E402
from nas.latency.counting import gflops  # noqa: E402
from nas.latency.runtimes import cpu_name  # noqa: E402
from nas.models import build, fuse  # noqa: E402
from nas.space import load_arch  # noqa: E402

DEPLOYMENT_PATH = "onnxruntime fused"


def summarize(times_s: list[float]) -> dict[str, float]:
    ms = np.array(times_s) * 1e3
    return {
        "median_ms": float(np.median(ms)),
        "p25_ms": float(np.percentile(ms, 25)),
        "p75_ms": float(np.percentile(ms, 75)),
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
        "repeats": len(ms),
    }


def interleaved(paths: dict[str, Callable[[], object]], warmup: int, repeats: int, rounds: int = 3):
    """Time each path `repeats` times, in `rounds` blocks per path with the paths rotating between blocks.

    Blocks rather than single calls: torch's OpenMP and onnxruntime's pools keep their threads spinning for a
    while after a call, which would tax whichever runtime runs next. One untimed call opens every block.
    """
    for fn in paths.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    rounds = max(1, min(rounds, repeats))
    for r in range(rounds):
        n = repeats // rounds + (r < repeats % rounds)
        for name in names[r % len(names) :] + names[: r % len(names)]:
            paths[name]()
            for _ in range(n):
                t0 = time.perf_counter()
                paths[name]()
                times[name].append(time.perf_counter() - t0)
    return times


def ort_session(path: Path, threads: int, level: str):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    opts.add_session_config_entry("session.set_denormal_as_zero", "1")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def roofline(threads: int, n: int, repeats: int) -> dict[str, float]:
    """GFLOP/s of an n x n x n fp32 matmul in torch (MKL/oneDNN) and onnxruntime (MLAS)."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "matmul",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
        [onnx.numpy_helper.from_array(b, "b")],
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "matmul.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
        sess = ort_session(path, threads, "ORT_ENABLE_ALL")
        times = interleaved({"torch": lambda: torch.mm(ta, tb), "ort": lambda: sess.run(None, {"a": a})}, 2, repeats)
    flop = 2 * n**3
    out = {f"{k}_gflops": flop / statistics.median(v) / 1e9 for k, v in times.items()}
    out["gflops"] = max(out.values())
    out["n"] = n
    return out


def bench_model(name: str, imgsz: int, threads: int, warmup: int, repeats: int, tmp: Path) -> dict:
    torch.manual_seed(0)
    unfused = build(load_arch(name)).eval()
    fused = fuse(copy.deepcopy(unfused), "full")
    fused_cl = copy.deepcopy(fused).to(memory_format=torch.channels_last)
    gflop_fused = gflops(unfused.arch, imgsz)  # the one count: the deployed network, from the ArchConfig
    gflop_unfused = 2 * layer_macs(unfused, imgsz)[""] / 1e9  # fvcore's trace of the training graph, for reference
    onnx_fused, onnx_unfused = tmp / f"{name}_fused.onnx", tmp / f"{name}_unfused.onnx"
    for path, f in ((onnx_fused, True), (onnx_unfused, False)):
        result = export_onnx(unfused, path, imgsz=imgsz, fuse=f)
        if not result.ok:
            raise RuntimeError(f"{path.name}: {result}")
    x = torch.rand(1, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(0))
    x_cl = x.contiguous(memory_format=torch.channels_last)
    x_np = x.numpy()
    sessions = {
        DEPLOYMENT_PATH: ort_session(onnx_fused, threads, "ORT_ENABLE_ALL"),
        "onnxruntime fused, extended opt (no NCHWc)": ort_session(onnx_fused, threads, "ORT_ENABLE_EXTENDED"),
        "onnxruntime unfused export": ort_session(onnx_unfused, threads, "ORT_ENABLE_ALL"),
    }

    def torch_path(model, inp):
        def run():
            with torch.inference_mode():
                return model(inp)

        return run

    paths: dict[str, Callable[[], object]] = {
        "torch eager (unfused)": torch_path(unfused, x),
        "torch fused": torch_path(fused, x),
        "torch fused, channels_last": torch_path(fused_cl, x_cl),
    }
    for label, sess in sessions.items():
        paths[label] = lambda s=sess: s.run(None, {"images": x_np})
    times = interleaved(paths, warmup, repeats)
    out = {"gflops_fused": gflop_fused, "gflops_unfused": gflop_unfused, "paths": {}}
    for label, t in times.items():
        row = summarize(t)
        row["gflop_per_s"] = gflop_fused / (row["median_ms"] / 1e3)
        out["paths"][label] = row
    return out


def write_markdown(results: dict, path: Path) -> None:
    s, mach = results["settings"], results["machine"]
    lines = [
        "# YOLO-NAS CPU latency (fp32, batch 1)",
        "",
        f"{mach['cpu']} ({mach['logical_cpus']} logical CPUs), input {s['imgsz']}x{s['imgsz']}, {s['repeats']} timed "
        f"repeats after {s['warmup']} warm-up, in 3 rotating rounds of blocks per path; torch {mach['torch']}, onnxruntime "
        f"{mach['onnxruntime']}. GFLOP/s of every path use the fused graph's FLOPs (2 x fvcore multiply-adds); "
        f"the roofline is the faster of torch's and onnxruntime's fp32 {s['matmul_n']}^3 matmul with the same "
        "thread count, measured before and after the models (the higher counts).",
        "",
        f"Command: `{results['command']}`",
        "",
    ]
    for run in results["runs"]:
        r0, r1 = run["roofline"], run["roofline_after"]
        lines += [
            f"## {run['threads']} thread(s): roofline {run['roofline_gflops']:.1f} GFLOP/s",
            "",
            f"matmul before: torch {r0['torch_gflops']:.1f}, onnxruntime {r0['ort_gflops']:.1f}; after: torch "
            f"{r1['torch_gflops']:.1f}, onnxruntime {r1['ort_gflops']:.1f} GFLOP/s",
            "",
        ]
        for name, m in run["models"].items():
            lines += [
                f"### {name} ({m['gflops_fused']:.1f} GFLOPs fused, {m['gflops_unfused']:.1f} unfused)",
                "",
                "| path | median ms | p25-p75 ms | min ms | GFLOP/s | % of roofline |",
                "|---|---:|---:|---:|---:|---:|",
            ]
            for label, r in m["paths"].items():
                mark = " **(deployment)**" if label == DEPLOYMENT_PATH else ""
                lines.append(
                    f"| {label}{mark} | {r['median_ms']:.1f} | {r['p25_ms']:.1f}-{r['p75_ms']:.1f} | "
                    f"{r['min_ms']:.1f} | {r['gflop_per_s']:.1f} | {100 * r['roofline_frac']:.0f}% |"
                )
            lines.append("")
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["s", "m", "l"], help="s m l, or ArchConfig YAML paths")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--threads", type=int, nargs="+", default=[len(os.sched_getaffinity(0))], help="one run per count")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--matmul-n", type=int, default=2048)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = p.parse_args(argv)
    import onnxruntime

    torch.set_flush_denormal(True)  # onnxruntime sessions get set_denormal_as_zero too: same footing
    results = {
        "machine": {
            "cpu": cpu_name(),
            "logical_cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
        "command": " ".join(["python", "experiments/model_speed/run.py", *(sys.argv[1:] if argv is None else argv)]),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "runs": [],
    }
    names = [f"yolo_nas_{k}" if k in ("s", "m", "l") else k for k in args.models]
    with tempfile.TemporaryDirectory() as tmp:
        for threads in args.threads:
            torch.set_num_threads(threads)
            run = {"threads": threads, "models": {}}
            print(f"{threads} thread(s): roofline ({args.matmul_n}^3 fp32 matmul) ...")
            run["roofline"] = roofline(threads, args.matmul_n, max(args.repeats // 3, 3))
            for name in names:
                print(f"{threads} thread(s): {name}: exporting and timing ...")
                run["models"][name] = bench_model(name, args.imgsz, threads, args.warmup, args.repeats, Path(tmp))
            run["roofline_after"] = roofline(threads, args.matmul_n, max(args.repeats // 3, 3))
            run["roofline_gflops"] = max(run["roofline"]["gflops"], run["roofline_after"]["gflops"])
            for m in run["models"].values():
                for r in m["paths"].values():
                    r["roofline_frac"] = r["gflop_per_s"] / run["roofline_gflops"]
            results["runs"].append(run)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    write_markdown(results, args.out / "results.md")
    print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
