"""The search as a Python function: `run(...)` (notebooks) and `run_search(cfg, out_dir)` (the Hydra app).

A run creates or resumes the study, enqueues the released references, evaluates trials until the study
holds `n_trials` finished ones (nas.search.worker; Ctrl-C / SIGTERM / SIGHUP stop cleanly: the running trial is
marked failed and is re-run on resume), then writes trials.csv, pareto.csv, pareto.png, selected/<tier>.yaml
and report.{md,json} from the study, so every worker of a study writes the same outputs (a shared run
directory is written once).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import optuna
from optuna.trial import TrialState

from nas.errors import ConfigError
from nas.search.config import (
    STORAGE_KINDS,
    ProxyConfig,
    SearchConfig,
    SpaceConfig,
    StorageConfig,
    StrategyConfig,
    group_option,
    replace,
)
from nas.search.outputs import SearchResult, finalize
from nas.search.select import TrialRecord, pareto_front
from nas.search.study import Session
from nas.search.tracking import Tracker, make_tracker
from nas.search.worker import Worker, interruptible
from nas.space import SearchSpace

__all__ = ["SearchResult", "finalize", "run", "run_search"]

log = logging.getLogger("nas.search")


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with `n` torch CPU threads (restored afterwards); on a busy machine 1 is often fastest."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---- progress -----------------------------------------------------------------------------------


class _Progress:
    """tqdm bar over finished trials with the best proxy score so far and the Pareto-front size."""

    def __init__(self, session: Session, total: int, enabled: bool, tracker: Tracker):
        self.session, self.tracker = session, tracker
        self.records = session.records()
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total, initial=min(len(self.records), total), desc=session.cfg.study_name, unit="trial"
            )
            self._postfix()

    def _postfix(self) -> None:
        if self.bar is None:
            return
        feas = [r for r in self.records if r.feasible]
        best = max((r.values["proxy_score"] for r in feas if "proxy_score" in r.values), default=math.nan)
        front = pareto_front(self.records, self.session.objectives, self.session.directions)
        self.bar.set_postfix(best_score=f"{best:.3f}", pareto=len(front), refresh=False)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state != TrialState.COMPLETE:
            return
        rec = TrialRecord.from_attrs(trial.number, trial.user_attrs)
        self.records.append(rec)
        self.tracker.log_trial(
            trial.number, trial.params, rec.values, {"proxies": rec.proxies, "feasible": rec.feasible}
        )
        if self.bar is not None:
            self.bar.update(1)
            self._postfix()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---- the run --------------------------------------------------------------------------------------


def _config_dict(cfg: SearchConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def run_search(cfg: SearchConfig, out_dir: str | os.PathLike, space: SearchSpace | None = None) -> SearchResult:
    """Run (or resume) the search of `cfg`, writing every output under `out_dir`."""
    with torch_threads(cfg.threads):
        return _run_search(cfg, out_dir, space)


def _run_search(cfg: SearchConfig, out_dir: str | os.PathLike, space: SearchSpace | None) -> SearchResult:
    t0 = time.perf_counter()
    session = Session(cfg, out_dir, space)
    done = session.n_complete()
    log.info(
        "study %r in %s: %d finished trial(s), target %d; objectives %s; budgets %s",
        cfg.study_name,
        session.storage_desc,
        done,
        cfg.n_trials,
        list(session.objectives),
        {k: round(v, 4) for k, v in session.budgets.items()},
    )
    _startup_hint(cfg)
    if cfg.enqueue_references:
        session.db(session.enqueue_references)
    if cfg.tier_start != "none":
        session.db(session.enqueue_tier_start)
    tracker = make_tracker(cfg.logger, session.out_dir, _config_dict(cfg), cfg.study_name)
    interrupted = False
    try:
        if cfg.n_trials - done > 0:
            progress = _Progress(session, cfg.n_trials, cfg.progress, tracker)
            try:
                with interruptible():
                    Worker(session, callbacks=[progress]).run(cfg.timeout_s)
            except KeyboardInterrupt:
                interrupted = True
                session.db(session.fail_own_running)  # interrupted while telling: nothing stays RUNNING
                log.warning("interrupted: the study is consistent; run the same command again to resume")
            finally:
                progress.close()
        result = finalize(session, time.perf_counter() - t0, interrupted, tracker)
    finally:
        tracker.close()
    return result


def _startup_hint(cfg: SearchConfig) -> None:
    """TPE and GP sample at random during their start-up trials: a short search with them is a random search."""
    if cfg.strategy.name in ("tpe", "gp") and cfg.n_trials <= cfg.strategy.n_startup_trials:
        log.warning(
            "strategy=%s with n_trials=%d <= strategy.n_startup_trials=%d: every trial is a random start-up trial, "
            "so this search samples exactly like strategy=random with the same seed; raise n_trials or lower "
            "strategy.n_startup_trials",
            cfg.strategy.name,
            cfg.n_trials,
            cfg.strategy.n_startup_trials,
        )


# ---- the notebook API ---------------------------------------------------------------------------


def _storage_config(storage: str | StorageConfig | None) -> StorageConfig:
    if storage is None:
        return StorageConfig(kind="sqlite")
    if isinstance(storage, StorageConfig):
        return storage
    if storage in STORAGE_KINDS:
        return StorageConfig(kind=storage)
    if storage.startswith("sqlite:"):
        return StorageConfig(kind="sqlite", url=storage)
    if storage.startswith("postgresql"):
        return StorageConfig(kind="postgres", url=storage)
    if storage.endswith((".journal", ".log")):
        return StorageConfig(kind="journal", path=storage)
    raise ConfigError(
        f"storage={storage!r}: expected one of {', '.join(STORAGE_KINDS)}, a sqlite:/// or postgresql:// URL, "
        "or a *.journal path"
    )


def run(
    space: str | SearchSpace = "yolo_nas",
    *,
    hardware: str | None = None,
    proxy: str | ProxyConfig = "zero_cost",
    strategy: str | StrategyConfig = "nsga2",
    n_trials: int = 60,
    storage: str | StorageConfig | None = None,
    seed: int = 0,
    out_dir: str | os.PathLike = "runs/api",
    objectives: list[str] | None = None,
    **options: Any,
) -> SearchResult:
    """Run a search without Hydra; `options` are further `SearchConfig` fields (tiers, name, progress, ...).

    Example: `run("yolo_nas", strategy="tpe", n_trials=20, storage="memory", out_dir="runs/nb")`.
    """
    space_obj = space if isinstance(space, SearchSpace) else None
    # a name is an option of the Hydra group, read as `proxy=flops` composes it on the command line
    proxy_cfg = proxy if isinstance(proxy, ProxyConfig) else group_option("proxy", proxy, ProxyConfig)
    strategy_cfg = (
        strategy if isinstance(strategy, StrategyConfig) else group_option("strategy", strategy, StrategyConfig)
    )
    cfg = replace(
        SearchConfig(),
        space=SpaceConfig(name=space_obj.name if space_obj is not None else str(space)),
        hardware=hardware,
        proxy=proxy_cfg,
        strategy=strategy_cfg,
        storage=_storage_config(storage),
        n_trials=n_trials,
        seed=seed,
        objectives=None if objectives is None else list(objectives),
        **options,
    )
    return run_search(cfg, out_dir, space=space_obj)
