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
import hashlib
import json
import logging
import math
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from nas.errors import ConfigError
from nas.io import write_text_atomic
from nas.search import emit, report
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
from nas.search.evidence import gate, load_evidence, sentence, signal_key, tier_evidence
from nas.search.select import Selection, TrialRecord, pareto_front, rerank_tiers, select_tiers
from nas.search.study import Session
from nas.search.tiers import tier_counts, tier_windows
from nas.search.tracking import Tracker, make_tracker
from nas.search.worker import Worker, interruptible
from nas.space import ArchConfig, SearchSpace, load_arch
from nas.version import __version__

__all__ = ["SearchResult", "finalize", "run", "run_search"]

log = logging.getLogger("nas.search")
OUTPUTS_ATTR = "nas_outputs"  # where the outputs of which study state were written (one entry per run dir)


@dataclass(frozen=True)
class SearchResult:
    """What a search produced; `paths` names every output file."""

    study_name: str
    storage: str
    out_dir: Path
    trials: list[TrialRecord]
    pareto: list[TrialRecord]
    selections: dict[str, Selection]
    report: dict[str, Any]
    paths: dict[str, Path]
    interrupted: bool

    @property
    def selected(self) -> dict[str, ArchConfig]:
        """The emitted architecture per tier, read back from its YAML (tiers without a candidate are absent)."""
        return {k.split("/", 1)[1]: load_arch(p) for k, p in self.paths.items() if k.startswith("selected/")}

    def __repr__(self) -> str:
        return (
            f"SearchResult(study={self.study_name!r}, trials={len(self.trials)}, pareto={len(self.pareto)}, "
            f"selected={sorted(k for k in self.paths if k.startswith('selected/'))}, out_dir='{self.out_dir}')"
        )


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


def _study_wall_s(session: Session) -> float:
    """Wall-clock span of the study's trials (first start to last completion): the same for every worker."""
    trials = session.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    ends = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0


def finalize(session: Session, search_time_s: float, interrupted: bool, tracker: Tracker | None = None) -> SearchResult:
    """Write the outputs of the study as it is now (also used by the Hydra sweeper).

    Everything written comes from the study, so workers of one study write the same files; under the study
    lock, a worker that finds its run directory already holding the outputs of this very study state (written
    by another worker) does not write them again. `search_time_s` (this process) is logged, not reported.
    """
    log.info("this process searched for %.1f s", search_time_s)
    session.db(session.drop_unneeded)
    with session.lock("finalize"):
        return session.db(_finalize, session, interrupted, tracker)


def _proxy_label(p: Any, data: Any = None) -> str:
    """What scored the candidates, with the data it used (the report names it: a search on your own data says so)."""
    if list(p.proxies) == ["supernet"]:
        return (
            f"{p.name}(sub-network of {p.supernet}, BatchNorm on {p.supernet_bn_images} images; mAP50_95 at "
            f"{p.train_imgsz}px on {p.train_data})"
        )
    if p.combine == "raw" and set(p.proxies) <= {"short_train", "inherit"}:
        return (
            f"{p.name}({','.join(p.proxies)}; {p.train_epochs} epoch(s) at {p.train_imgsz}px on {p.train_data}; "
            f"{p.train_score})"
        )
    if data is None:
        return f"{p.name}({','.join(p.proxies)}; {p.combine}; {p.imgsz}px)"
    batch = (
        f"{p.batch_size} images of {data.name} ({data.split} split)"
        if p.batch_source == "synthetic"
        else f"{p.batch_size} seeded noise images"
    )
    return f"{p.name}({','.join(p.proxies)}; {p.combine}; {p.imgsz}px; batch: {batch})"


def _finalize(session: Session, interrupted: bool, tracker: Tracker | None) -> SearchResult:
    cfg, out_dir = session.cfg, session.out_dir
    records = session.records()
    ev = session.evaluator
    front = pareto_front(records, session.objectives, session.directions)
    selections = select_tiers(records, ev.cost, session.budgets, session.objectives, session.directions)
    header = {
        "study": cfg.study_name,
        "space": session.space.name,
        "hardware": ev.hardware,
        "cost": ev.cost,
        "proxy": _proxy_label(cfg.proxy, cfg.data),
    }
    if cfg.proxy.supernet:  # the scores are sub-networks of this supernet: their weights too (docs/supernet.md)
        header["weights"] = f"supernet:{cfg.proxy.supernet}"
    reranked: dict[str, list[dict[str, Any]]] = {}
    if ev.reranker is not None:  # two stages: the k best per tier re-scored by the costly proxy
        log.info("re-ranking the %d best candidates per tier by %s", cfg.rerank.k, _proxy_label(ev.reranker.proxy))
        selections, reranked = rerank_tiers(
            selections, records, ev.cost, session.objectives, session.directions, cfg.rerank.k, ev.rerank_score
        )
        header["rerank"] = f"best of {cfg.rerank.k} by {_proxy_label(ev.reranker.proxy)}"
    # what the committed ground truth says each pick is worth; without evidence that it beats the released layout,
    # the released layout is emitted and the pick written beside it (nas.search.evidence)
    evidence, key = load_evidence(), signal_key(cfg.proxy, cfg.rerank.k if ev.reranker is not None else 0)
    picks = selections
    if cfg.evidence_gate:
        selections, withheld = gate(picks, evidence, session.space.name, key)
    else:
        withheld = {}
    counts = session.counts()
    # the outputs depend on the trials and on how they are selected (a changed rerank.* re-selects)
    rerank = dataclasses.asdict(cfg.rerank) if ev.reranker is not None else None
    trials = [[r.number, r.arch.digest()] for r in records]
    # ... and on which picks the evidence gate withheld (the gate switched, or new evidence committed)
    gated = [sorted(withheld)] if withheld else []
    state = hashlib.sha256(json.dumps([trials, counts, *([rerank] if rerank else []), *gated]).encode()).hexdigest()
    mark = {"state": state[:16], "dir": str(out_dir.resolve()), "host": socket.gethostname()}
    marks = session.study.user_attrs.get(OUTPUTS_ATTR, [])
    write = mark not in marks or not (out_dir / "report.json").is_file()
    paths: dict[str, Path] = {}
    if write:
        written = emit.write_selected(selections, out_dir / "selected", session.space.references, header)
        candidates_written = emit.write_selected(
            withheld, out_dir / "selected", session.space.references, header, suffix=".candidate"
        )
        for tier in set(picks) - set(withheld):  # a stale candidate of an earlier state
            (out_dir / "selected" / f"{tier}.candidate.yaml").unlink(missing_ok=True)
        written.update({f"{t}.candidate": p for t, p in candidates_written.items()})
    else:
        written = {t: out_dir / "selected" / f"{t}.yaml" for t, sel in selections.items() if sel.record is not None}
        written.update({f"{t}.candidate": out_dir / "selected" / f"{t}.candidate.yaml" for t in withheld})
    for tier, p in written.items():
        paths[f"selected/{tier}"] = p
    paths["trials_csv"], paths["pareto_csv"] = out_dir / "trials.csv", out_dir / "pareto.csv"
    if write:
        report.write_csv(paths["trials_csv"], records, session.space)
        report.write_csv(paths["pareto_csv"], front, session.space)
    if records:
        paths["pareto_png"] = out_dir / "pareto.png"
        if write:
            title = f"{cfg.study_name}: {len(records)} trials, {ev.cost} on {ev.hardware or 'no hardware (analytic)'}"
            report.plot_pareto(paths["pareto_png"], records, front, selections, ev.cost, title=title)

    def row(r: TrialRecord | None, path: Path | None = None) -> dict[str, Any] | None:
        if r is None:
            return None
        out = {"trial": r.number, "name": r.arch.name, "digest": r.arch.digest(), "values": r.values}
        if path is not None:
            out["path"] = str(path.relative_to(out_dir))
        return out

    tiers, windows = {}, tier_windows(session.budgets)
    candidates = tier_counts(records, ev.cost, session.budgets)
    for tier, sel in selections.items():
        sel_row = row(sel.record, paths.get(f"selected/{tier}"))
        if sel_row is not None:
            sel_row["name"] = emit.emitted_name(tier, sel.record.arch, session.space.references)
            sel_row["equals_reference"] = sel.reference is not None and sel.record.arch == sel.reference.arch
            if "weights" in header:
                sel_row["weights"] = header["weights"]
        ref_row = row(sel.reference)
        delta = None
        if sel.record is not None and sel.reference is not None:
            delta = {
                k: sel.record.values[k] - sel.reference.values[k]
                for k in sel.record.values
                if k in sel.reference.values
            }
        tiers[tier] = {
            "budget": sel.budget,
            "window": list(windows[tier]),
            "candidates": candidates[tier],  # feasible evaluated architectures, see nas.search.tiers.tier_counts
            "reference": ref_row,
            "selected": sel_row,
            "delta": delta,
        }
        if ev.reranker is not None:
            tiers[tier]["rerank"] = reranked[tier]
        pick = picks[tier].record
        if pick is not None:
            tier_ev = tier_evidence(evidence, session.space.name, key, tier)
            name = emit.emitted_name(tier, pick.arch, session.space.references)
            tiers[tier]["evidence"] = {
                **tier_ev,
                "pick": name,
                "withheld": tier in withheld,
                "sentence": sentence(tier, name, tier_ev, evidence, emits_pick=tier not in withheld),
            }
            if tier in withheld:
                tiers[tier]["candidate"] = row(pick, paths.get(f"selected/{tier}.candidate"))
                tiers[tier]["candidate"]["name"] = name
    rep = {
        "study": cfg.study_name,
        "storage": session.storage_desc,
        "space": session.space.name,
        "hardware": ev.hardware,
        "strategy": cfg.strategy.name,
        "seed": cfg.seed,
        "objectives": list(session.objectives),
        "directions": list(session.directions),
        "cost": ev.cost,
        "cost_imgsz": ev.cost_imgsz,
        "max_cost": session.max_cost,
        "tier_start": {"mode": cfg.tier_start, "trials": session.tier_start_counts()},
        "tier_target": {
            "mode": cfg.tier_target,
            "every": cfg.tier_target_every,
            "trials": session.tier_target_counts() if cfg.tier_target != "none" else {},
        },
        "trials": {"complete": len(records), **{k: v for k, v in counts.items() if k != "complete"}},
        "search_time_s": round(_study_wall_s(session), 2),
        "eval_time_s": round(sum(r.eval_s for r in records), 2),
        "interrupted": interrupted,
        "pareto_size": len(front),
        "tiers": tiers,
        "proxy": dataclasses.asdict(cfg.proxy),
        "proxy_label": header["proxy"],  # what scored the candidates and on which data, in words
        "rerank": rerank,
        "fingerprint": ev.fingerprint(),
        "versions": _versions(),
    }
    paths["report_json"] = out_dir / "report.json"
    paths["report_md"] = out_dir / "report.md"
    rep["files"] = {k: str(p.relative_to(out_dir)) for k, p in paths.items()}
    if write:
        report.write_json(paths["report_json"], rep)
        write_text_atomic(paths["report_md"], report.render_markdown(rep))
        session.study.set_user_attr(OUTPUTS_ATTR, [*[m for m in marks if m["dir"] != mark["dir"]][-15:], mark])
    else:
        log.info(
            "outputs of this study state are already in %s (written by an earlier run of this command or by "
            "another worker of the study; the study has not changed since, so they are kept as they are)",
            out_dir,
        )
    if tracker is not None:
        rows = [{"trial": r.number, "name": r.arch.name, **r.values} for r in front]
        tracker.log_summary(rep, rows, paths.get("pareto_png"))
    return SearchResult(
        cfg.study_name, session.storage_desc, out_dir, records, front, selections, rep, paths, interrupted
    )


def _versions() -> dict[str, str]:
    import torch

    return {"nas": __version__, "optuna": optuna.__version__, "torch": torch.__version__}


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
