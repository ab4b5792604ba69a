"""One candidate per job: the study side (`CandidateSweep`, used by the `nas` Hydra sweeper plugin) and the
job side (`evaluate_candidate`). The sweeper asks the study for a batch of candidates, writes each as an
ArchConfig YAML, launches one job per candidate through any Hydra launcher, and tells the study what the
jobs return. Launcher-agnostic: nothing here imports Hydra.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from nas.errors import ConfigError
from nas.io import write_text_atomic
from nas.search.config import SearchConfig
from nas.search.liveness import worker_id
from nas.search.objectives import Evaluation, Evaluator
from nas.search.outputs import SearchResult, finalize
from nas.search.runner import torch_threads
from nas.search.study import Session
from nas.space import load_arch, load_space

__all__ = ["CandidateSweep", "JobOutcome", "evaluate_candidate"]

log = logging.getLogger("nas.search")


def evaluate_candidate(cfg: SearchConfig, path: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Evaluate the architecture in `path` on the configured objectives (a sweeper job's work)."""
    with torch_threads(cfg.threads):
        arch = load_arch(path)
        ev = Evaluator(cfg, load_space(cfg.space.name)).evaluate(arch)
    result = {
        "digest": arch.digest(),
        "values": ev.values,
        "proxies": ev.proxies,
        "eval_s": ev.eval_s,
        "cached": ev.cached,
    }
    write_text_atomic(Path(out_dir) / "objectives.json", json.dumps(result, indent=2) + "\n")
    return result


@dataclass(frozen=True)
class JobOutcome:
    """What the launcher reports for one job: its return value, or the error that failed it."""

    value: dict[str, Any] | None
    error: str | None = None


Launch = Callable[[Sequence[Path]], Sequence[JobOutcome]]


class CandidateSweep:
    """Drives a study by launching one job per candidate until it holds `n_trials` finished trials."""

    def __init__(self, cfg: SearchConfig, sweep_dir: str | os.PathLike, n_jobs: int, max_failures: int):
        if n_jobs < 1:
            raise ConfigError(f"hydra.sweeper.n_jobs={n_jobs}: must be >= 1")
        self.cfg, self.n_jobs, self.max_failures = cfg, n_jobs, max_failures
        self.sweep_dir = Path(sweep_dir)
        # Only this process writes to the study (jobs just evaluate), so no heartbeat is needed.
        self.cfg = dataclasses.replace(cfg, storage=dataclasses.replace(cfg.storage, heartbeat_interval_s=None))
        self.candidates_dir = self.sweep_dir / "candidates"
        self.session: Session

    def prepare(self) -> None:
        """References first; the proxy reference population is computed here once, so jobs find it cached."""
        self.session.evaluator.reference()
        if self.cfg.enqueue_references:
            self.session.enqueue_references()
        if self.cfg.tier_start != "none":
            self.session.enqueue_tier_start()
        self.session.recover()

    def run(self, launch: Launch) -> SearchResult:
        with torch_threads(self.cfg.threads):
            self.session = Session(self.cfg, self.sweep_dir)  # evaluates the references: under `threads` too
            return self._run(launch)

    def _run(self, launch: Launch) -> SearchResult:
        t0 = time.perf_counter()
        self.prepare()
        failures = 0
        while (remaining := self.cfg.n_trials - self.session.n_complete()) > 0:
            self.session.enqueue_tier_start()  # the start trials the study needs now (planned once)
            batch = []
            for _ in range(min(self.n_jobs, remaining)):
                trial = self.session.study.ask()
                trial.set_user_attr("worker", worker_id())  # a killed sweeper's trials are re-run on resume
                arch = self.session.sample(trial)
                path = write_text_atomic(self.candidates_dir / f"trial_{trial.number:05d}.yaml", arch.to_yaml())
                batch.append((trial, arch, path))
            try:
                outcomes = launch([p for _, _, p in batch])
            except BaseException:
                for trial, _, _ in batch:  # a consistent study: nothing stays RUNNING; re-run on resume
                    trial.set_user_attr("interrupted", True)
                    self.session.study.tell(trial, state=TrialState.FAIL)
                raise
            for (trial, arch, _), out in zip(batch, outcomes):
                if out.value is None or out.value.get("digest") != arch.digest():
                    failures += 1
                    log.warning("trial %d failed: %s", trial.number, out.error or "job returned no result")
                    self.session.study.tell(trial, state=TrialState.FAIL)
                    continue
                ev = Evaluation(out.value["values"], out.value["proxies"], out.value["eval_s"], out.value["cached"])
                self.session.store(trial, arch, ev)
                self.session.study.tell(trial, ev.objective_values(self.session.objectives))
            log.info("%d/%d trials finished", self.session.n_complete(), self.cfg.n_trials)
            if failures > self.max_failures:
                raise ConfigError(
                    f"{failures} candidate jobs failed (more than hydra.sweeper.max_failures={self.max_failures}); "
                    f"see the job logs under {self.sweep_dir}"
                )
        return finalize(self.session, time.perf_counter() - t0, interrupted=False)
