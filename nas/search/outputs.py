"""The outputs of a search, written from the study as it is now: the tier selection (re-ranked and gated by the
committed evidence), trials.csv, pareto.csv, pareto.png, selected/<tier>.yaml and report.{md,json}.

Everything comes from the study, so every worker of a study writes the same outputs; a run directory that already
holds the outputs of this very study state is not written again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from nas.io import write_text_atomic
from nas.search import emit, report
from nas.search.evidence import gate, load_evidence, sentence, signal_key, tier_evidence
from nas.search.select import Selection, TrialRecord, pareto_front, rerank_tiers, select_tiers
from nas.search.study import Session
from nas.search.tiers import tier_counts, tier_windows
from nas.search.tracking import Tracker
from nas.space import ArchConfig, load_arch
from nas.version import __version__

__all__ = ["OUTPUTS_ATTR", "SearchResult", "finalize"]

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


@dataclass
class _Picks:
    """The selection of a study state: per tier the emitted selection, the pick before the evidence gate, what the
    gate withheld, and the re-rank's rows; `header` heads every emitted YAML."""

    records: list[TrialRecord]
    front: list[TrialRecord]
    selections: dict[str, Selection]
    picks: dict[str, Selection]
    withheld: dict[str, Selection]
    reranked: dict[str, list[dict[str, Any]]]
    header: dict[str, Any]
    evidence: Any
    key: str


def _select(session: Session) -> _Picks:
    cfg, ev = session.cfg, session.evaluator
    records = session.records()
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
    return _Picks(records, front, selections, picks, withheld, reranked, header, evidence, key)


def _state(s: _Picks, counts: dict[str, int], rerank: dict[str, Any] | None) -> str:
    """What the outputs depend on: the trials, how they are selected (a changed rerank.* re-selects) and which
    picks the evidence gate withheld (the gate switched, or new evidence committed)."""
    trials = [[r.number, r.arch.digest()] for r in s.records]
    gated = [sorted(s.withheld)] if s.withheld else []
    return hashlib.sha256(json.dumps([trials, counts, *([rerank] if rerank else []), *gated]).encode()).hexdigest()


def _write_files(session: Session, s: _Picks, write: bool) -> dict[str, Path]:
    """selected/, trials.csv, pareto.csv and pareto.png (written when `write`); the paths of each."""
    cfg, ev, out_dir, refs = session.cfg, session.evaluator, session.out_dir, session.space.references
    if write:
        written = emit.write_selected(s.selections, out_dir / "selected", refs, s.header)
        candidates_written = emit.write_selected(s.withheld, out_dir / "selected", refs, s.header, suffix=".candidate")
        for tier in set(s.picks) - set(s.withheld):  # a stale candidate of an earlier state
            (out_dir / "selected" / f"{tier}.candidate.yaml").unlink(missing_ok=True)
        written.update({f"{t}.candidate": p for t, p in candidates_written.items()})
    else:
        written = {t: out_dir / "selected" / f"{t}.yaml" for t, sel in s.selections.items() if sel.record is not None}
        written.update({f"{t}.candidate": out_dir / "selected" / f"{t}.candidate.yaml" for t in s.withheld})
    paths = {f"selected/{tier}": p for tier, p in written.items()}
    paths["trials_csv"], paths["pareto_csv"] = out_dir / "trials.csv", out_dir / "pareto.csv"
    if write:
        report.write_csv(paths["trials_csv"], s.records, session.space)
        report.write_csv(paths["pareto_csv"], s.front, session.space)
    if s.records:
        paths["pareto_png"] = out_dir / "pareto.png"
        if write:
            title = f"{cfg.study_name}: {len(s.records)} trials, {ev.cost} on {ev.hardware or 'no hardware (analytic)'}"
            report.plot_pareto(paths["pareto_png"], s.records, s.front, s.selections, ev.cost, title=title)
    return paths


def _row(r: TrialRecord | None, out_dir: Path, path: Path | None = None) -> dict[str, Any] | None:
    if r is None:
        return None
    out = {"trial": r.number, "name": r.arch.name, "digest": r.arch.digest(), "values": r.values}
    if path is not None:
        out["path"] = str(path.relative_to(out_dir))
    return out


def _tiers(session: Session, s: _Picks, paths: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """The report's row of each tier: budget, window, reference, selection and its delta, re-rank, evidence."""
    ev, out_dir, refs, name = session.evaluator, session.out_dir, session.space.references, session.space.name
    tiers, windows = {}, tier_windows(session.budgets)
    candidates = tier_counts(s.records, ev.cost, session.budgets)
    for tier, sel in s.selections.items():
        sel_row = _row(sel.record, out_dir, paths.get(f"selected/{tier}"))
        if sel_row is not None:
            sel_row["name"] = emit.emitted_name(tier, sel.record.arch, refs)
            sel_row["equals_reference"] = sel.reference is not None and sel.record.arch == sel.reference.arch
            if "weights" in s.header:
                sel_row["weights"] = s.header["weights"]
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
            "reference": _row(sel.reference, out_dir),
            "selected": sel_row,
            "delta": delta,
        }
        if ev.reranker is not None:
            tiers[tier]["rerank"] = s.reranked[tier]
        pick = s.picks[tier].record
        if pick is not None:
            tier_ev = tier_evidence(s.evidence, name, s.key, tier)
            pick_name = emit.emitted_name(tier, pick.arch, refs)
            tiers[tier]["evidence"] = {
                **tier_ev,
                "pick": pick_name,
                "withheld": tier in s.withheld,
                "sentence": sentence(tier, pick_name, tier_ev, s.evidence, emits_pick=tier not in s.withheld),
            }
            if tier in s.withheld:
                tiers[tier]["candidate"] = _row(pick, out_dir, paths.get(f"selected/{tier}.candidate"))
                tiers[tier]["candidate"]["name"] = pick_name
    return tiers


def _report(
    session: Session, s: _Picks, tiers: dict[str, Any], counts: dict[str, int], rerank: Any, interrupted: bool
) -> dict[str, Any]:
    cfg, ev = session.cfg, session.evaluator
    return {
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
        "trials": {"complete": len(s.records), **{k: v for k, v in counts.items() if k != "complete"}},
        "search_time_s": round(_study_wall_s(session), 2),
        "eval_time_s": round(sum(r.eval_s for r in s.records), 2),
        "interrupted": interrupted,
        "pareto_size": len(s.front),
        "tiers": tiers,
        "proxy": dataclasses.asdict(cfg.proxy),
        "proxy_label": s.header["proxy"],  # what scored the candidates and on which data, in words
        "rerank": rerank,
        "fingerprint": ev.fingerprint(),
        "versions": _versions(),
    }


def _finalize(session: Session, interrupted: bool, tracker: Tracker | None) -> SearchResult:
    cfg, out_dir = session.cfg, session.out_dir
    s = _select(session)
    counts = session.counts()
    rerank = dataclasses.asdict(cfg.rerank) if session.evaluator.reranker is not None else None
    mark = {"state": _state(s, counts, rerank)[:16], "dir": str(out_dir.resolve()), "host": socket.gethostname()}
    marks = session.study.user_attrs.get(OUTPUTS_ATTR, [])
    write = mark not in marks or not (out_dir / "report.json").is_file()
    paths = _write_files(session, s, write)
    rep = _report(session, s, _tiers(session, s, paths), counts, rerank, interrupted)
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
        rows = [{"trial": r.number, "name": r.arch.name, **r.values} for r in s.front]
        tracker.log_summary(rep, rows, paths.get("pareto_png"))
    return SearchResult(
        cfg.study_name, session.storage_desc, out_dir, s.records, s.front, s.selections, rep, paths, interrupted
    )


def _versions() -> dict[str, str]:
    import torch

    return {"nas": __version__, "optuna": optuna.__version__, "torch": torch.__version__}
