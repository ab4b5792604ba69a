"""One search worker on the tiny space, as a process: `python -m tests.search.worker_main SPACE CACHE KIND URL OUT
N_TRIALS [key=value ...]` (keys: name, strategy, seed, delay_s, retry_s, heartbeat_s, grace_s, population).

`delay_s` adds that many seconds of waiting to every trial's evaluation (cached or not), standing in for an
objective whose cost is mostly waiting (a remote GPU, a training job on another machine) rather than this CPU.
Used by tests/search (PostgreSQL, signals) and experiments/reliability.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from nas.errors import NasError
from nas.search import StorageConfig, StrategyConfig, run_search
from nas.search.objectives import Evaluator
from tests.search.tiny import tiny_config


def main(argv: list[str]) -> int:
    space, cache, kind, url, out, n, *rest = argv
    opts = dict(kv.split("=", 1) for kv in rest)
    delay_s = float(opts.get("delay_s", 0))
    if delay_s:
        evaluate = Evaluator.evaluate

        def slow_evaluate(self, arch):
            time.sleep(delay_s)
            return evaluate(self, arch)

        Evaluator.evaluate = slow_evaluate
    hb = int(opts.get("heartbeat_s", 2))
    storage = StorageConfig(
        kind=kind,
        url=url if kind in ("postgres", "sqlite") and url != "-" else None,
        path=url if kind == "journal" and url != "-" else None,
        heartbeat_interval_s=hb or None,
        grace_period_s=int(opts.get("grace_s", 8)),
        retry_s=float(opts.get("retry_s", 60)),
    )
    strategy = StrategyConfig(
        name=opts.get("strategy", "nsga2"), population_size=int(opts.get("population", 4)), n_startup_trials=3
    )
    cfg = tiny_config(
        Path(space), Path(cache), name=opts.get("name", "shared"), n_trials=int(n), storage=storage,
        strategy=strategy, seed=int(opts.get("seed", 0)),
    )  # fmt: skip
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(message)s")
    try:
        res = run_search(cfg, out)
    except NasError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 130 if res.interrupted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
